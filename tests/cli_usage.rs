//! Bad command lines: exit code 2 (clap's, "bad command line"), and a message
//! that says what was expected (the format, the valid values), not only that
//! something was wrong.

mod support;

use support::{bml, text};

#[test]
fn bad_command_lines_exit_2_and_say_what_was_expected() {
    let data = tempfile::tempdir().unwrap();
    let vision = ["ingest", "vision", "--symbol", "BTCUSDT"];
    let rest = ["ingest", "rest", "--symbol", "BTCUSDT"];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            [&vision[..], &["--start", "2024-3-1x"]].concat(),
            &["2024-3-1x", "YYYY-MM-DD"],
        ),
        (
            [
                &vision[..],
                &["--start", "2024-03-01", "--kinds", "klines,foo"],
            ]
            .concat(),
            &["\"foo\"", "markPriceKlines", "fundingRate"],
        ),
        (
            [
                &vision[..],
                &["--start", "2024-03-02", "--end", "2024-03-01"],
            ]
            .concat(),
            &["before --start"],
        ),
        (
            [
                &vision[..],
                &["--start", "2024-03-01", "--from-dir", "/nonexistent/vision"],
            ]
            .concat(),
            &["/nonexistent/vision", "not a directory"],
        ),
        (
            [
                &rest[..],
                &[
                    "--start",
                    "2024-03-01",
                    "--end",
                    "2024-03-02",
                    "--kinds",
                    "bar",
                ],
            ]
            .concat(),
            &["\"bar\"", "aggTrades", "openInterestHist"],
        ),
        (
            [&rest[..], &["--start", "2024-03-02", "--end", "2024-03-01"]].concat(),
            &["--end must be after --start"],
        ),
        (
            vec!["ingest", "poll", "--symbol", "BTCUSDT", "--kinds", "depthh"],
            &["\"depthh\"", "premiumIndex", "depth"],
        ),
    ];
    for (args, words) in cases {
        let out = bml(data.path(), &args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        for word in words {
            assert!(all.contains(word), "{args:?}: {word:?} not in {all}");
        }
    }
    assert!(!data.path().join("wal").exists(), "nothing was created");
}

/// Every command's `--help`, found by walking the "Commands:" lists.
fn all_help(args: &mut Vec<String>, data: &std::path::Path, out: &mut Vec<(String, String)>) {
    let mut with_help = args.clone();
    with_help.push("--help".into());
    let refs: Vec<&str> = with_help.iter().map(String::as_str).collect();
    let help = String::from_utf8_lossy(&bml(data, &refs).stdout).into_owned();
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A name starts its line; a wrapped description is indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    out.push((args.join(" "), help));
    for name in subcommands {
        args.push(name);
        all_help(args, data, out);
        args.pop();
    }
}

#[test]
fn help_keeps_global_options_apart_and_names_only_paths_that_exist() {
    let data = tempfile::tempdir().unwrap();
    let mut helps = Vec::new();
    all_help(&mut Vec::new(), data.path(), &mut helps);
    assert!(helps.len() > 15, "{helps:?}");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (command, help) in &helps {
        let global = help.split("Global options:").nth(1);
        let global = global.unwrap_or_else(|| panic!("bml {command}: no global options: {help}"));
        assert!(global.contains("--quiet"), "bml {command}: {help}");
        let own = help.split("Global options:").next().unwrap();
        assert!(!own.contains("--quiet"), "bml {command}: {help}");
        // The simulated exchange and check-exchange use no data dir.
        let dirs = !(command.starts_with("sim") || command.starts_with("check-exchange"));
        assert_eq!(global.contains("--data-dir"), dirs, "bml {command}: {help}");
        assert_eq!(global.contains("--lake-dir"), dirs, "bml {command}: {help}");
        for token in help.split(|c: char| c.is_whitespace() || "`(),;:".contains(c)) {
            let named = [".md", ".py", ".rs", ".toml"]
                .iter()
                .any(|e| token.ends_with(e))
                || ["docs/", "scripts/", "../shared/", "tests/"]
                    .iter()
                    .any(|p| token.starts_with(p));
            // The configuration file's name, not a path of the repository.
            if named && token != "bml.toml" {
                assert!(
                    repo.join(token).exists(),
                    "bml {command}: {token} does not exist"
                );
            }
        }
    }
}

#[test]
fn a_data_dir_or_lake_dir_that_is_a_file_is_a_bad_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, b"not a dir").unwrap();
    let below = file.join("sub");
    let cases: [(&[&std::path::Path], &str, &str); 3] = [
        (&[&file], "materialize", "is a file, not a directory"),
        (&[&below], "status", "cannot be made"),
        (&[dir.path(), &below], "materialize", "--lake-dir"),
    ];
    for (dirs, command, words) in cases {
        let mut bml = std::process::Command::new(env!("CARGO_BIN_EXE_bml"));
        bml.arg("--data-dir").arg(dirs[0]);
        if let Some(lake) = dirs.get(1) {
            bml.arg("--lake-dir").arg(lake);
        }
        let out = bml.arg(command).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(words), "{}", text(&out));
        assert!(text(&out).contains("afile"), "{}", text(&out));
    }
}
