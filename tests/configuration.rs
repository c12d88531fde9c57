//! Configuration: `bml.toml`, the `BML_*` variables and the flags, in that
//! order of strength; `bml config show`; credentials never printed.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{text, Sim};

/// bml run in `dir` (where a `bml.toml` may lie), with the `BML_*` of the
/// test's own environment cleared and `env` set.
fn bml_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bml"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BML_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(args);
    command.output().unwrap()
}

/// One hour of BTCUSDT's 1-minute klines over REST, its symbols and base URL
/// left to the configuration.
const KLINES_HOUR: [&str; 8] = [
    "ingest",
    "rest",
    "--start",
    "2024-03-01T00:00",
    "--end",
    "2024-03-01T01:00",
    "--kinds",
    "klines",
];

#[test]
fn the_file_sets_what_no_variable_or_flag_does_and_config_show_says_where_each_came_from() {
    let sim = Sim::synthetic(&["--seed", "7", "--trades-per-minute", "20"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bml.toml"),
        format!(
            "data_dir = \"state\"\nsymbols = [\"BTCUSDT\"]\nrest_base = \"{}\"\npoll_seconds = 15\n",
            sim.url()
        ),
    )
    .unwrap();

    // The file alone: its symbols, its REST base, its data dir.
    let out = bml_in(dir.path(), &[], &KLINES_HOUR);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dir.path().join("state/wal").is_dir(), "{}", text(&out));

    // A variable beats the file; a flag beats the variable.
    let dead = [("BML_REST_BASE", "http://127.0.0.1:9")];
    let out = bml_in(dir.path(), &dead, &KLINES_HOUR);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1:9"), "{}", text(&out));
    let flagged = [&KLINES_HOUR[..], &["--rest-base", sim.url()]].concat();
    let out = bml_in(dir.path(), &dead, &flagged);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let env = [
        ("BML_WS_BASE", "ws://someone:hunter2@127.0.0.1:1"),
        ("BML_POLL_SECONDS", "30"),
    ];
    let out = bml_in(
        dir.path(),
        &env,
        &["--lake-dir", "elsewhere", "config", "show"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    let from = |key: &str| -> (String, String) {
        let line = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in\n{shown}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        (words[1].to_string(), words[2..].join(" "))
    };
    assert_eq!(from("data_dir"), ("state".into(), "file".into()));
    assert_eq!(from("lake_dir"), ("elsewhere".into(), "flag".into()));
    assert_eq!(from("rest_base"), (sim.url().to_string(), "file".into()));
    assert_eq!(
        from("poll_seconds"),
        ("30".into(), "env BML_POLL_SECONDS".into())
    );
    assert_eq!(from("redundancy"), ("2".into(), "default".into()));
    assert_eq!(
        from("ws_base"),
        ("ws://***@127.0.0.1:1".into(), "env BML_WS_BASE".into())
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("configuration file  bml.toml"), "{shown}");
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "poll_seconds = \"soon\"\n",
            "poll_seconds: invalid value 'soon'",
        ),
        ("poll_seconds = 0\n", "poll_seconds: invalid value '0'"),
        (
            "streams = [\"trades\"]\n",
            "streams: invalid value 'trades'",
        ),
        ("polls = 1\n", "unknown key `polls`"),
        ("symbols = [\n", "bml.toml"),
    ];
    for (file, said) in cases {
        std::fs::write(dir.path().join("bml.toml"), file).unwrap();
        let out = bml_in(dir.path(), &[], &["status"]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bml.toml") && stderr.contains(said),
            "{file}: {stderr}"
        );
    }
    let out = bml_in(dir.path(), &[], &["--config", "missing.toml", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("missing.toml"), "{}", text(&out));
}

#[test]
fn credentials_in_a_url_never_reach_a_log_line_or_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = bml_in(
        dir.path(),
        &[],
        &[
            "-v",
            "run-once",
            "--symbols",
            "BTCUSDT",
            "--rest-base",
            "http://someone:hunter2@127.0.0.1:9",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("***@127.0.0.1:9"), "{said}");
}
