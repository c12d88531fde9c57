//! Deployment: the systemd unit and the two Airflow DAGs in `deploy/` run
//! command lines bml accepts; the DAGs load in a real Airflow (installed into
//! the project's `.python/airflow` environment on first use).

mod support;

use std::path::Path;
use std::process::Command;

use support::text;

/// The Airflow the DAGs are tested with.
const AIRFLOW: &str = "apache-airflow==3.3.2";

/// Runs `args` (a deployed command line, its binary left out) with `--help`
/// last: clap reads options in order, so it exits 0 only if every option
/// before it is one bml knows and every value parses.
fn accepted(args: &[&str], context: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_bml"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{context}: {}", text(&out));
}

#[test]
fn the_systemd_unit_runs_a_daemon_command_line_bml_accepts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bml-daemon.service");
    let unit = std::fs::read_to_string(path).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert!(args.contains(&"run-daemon"), "{exec}");
    accepted(&args, exec);
    for line in [
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}

#[test]
fn the_example_configuration_is_one_bml_accepts() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bml.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_bml"))
        .arg("--config")
        .arg(&example)
        .args(["config", "show"])
        .env_remove("BML_POLL_SECONDS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for line in ["poll_seconds", "metrics_addr", "symbols"] {
        let from_file = shown
            .lines()
            .any(|l| l.starts_with(line) && l.ends_with(" file"));
        assert!(from_file, "{line} not from the file:\n{shown}");
    }
}

#[test]
fn both_airflow_dags_load_in_a_real_airflow_with_their_tasks_schedules_and_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = Command::new(root.join("scripts/python-env"))
        .arg(root.join(".python/airflow"))
        .arg(AIRFLOW)
        .output()
        .unwrap();
    assert!(env.status.success(), "installing {AIRFLOW}: {}", text(&env));
    let python = String::from_utf8(env.stdout).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(python.trim())
        .arg(root.join("tests/deploy/load_dags.py"))
        .arg(root.join("deploy/airflow"))
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("BML_BIN", env!("CARGO_BIN_EXE_bml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    let loaded: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(loaded["import_errors"], serde_json::json!({}), "{loaded}");
    let dags = &loaded["dags"];
    let expected = [
        ("bml_minute_incremental", "* * * * *", vec!["run_once"]),
        (
            "bml_historical_backfill",
            "@hourly",
            vec!["backfill_years", "show_watermark"],
        ),
    ];
    assert_eq!(dags.as_object().map(|d| d.len()), Some(2), "{dags}");
    for (id, schedule, tasks) in expected {
        let dag = &dags[id];
        assert_eq!(dag["schedule"], schedule, "{id}: {dag}");
        assert_eq!(dag["catchup"], false, "{id}");
        assert_eq!(dag["max_active_runs"], 1, "{id}");
        let names: Vec<&String> = dag["tasks"].as_object().unwrap().keys().collect();
        assert_eq!(names, tasks, "{id}");
        for (task, spec) in dag["tasks"].as_object().unwrap() {
            // One writer per data dir: every task in the one-slot pool.
            assert_eq!(spec["pool"], "bml", "{id}.{task}");
            let command = spec["command"].as_str().unwrap();
            let mut words = command.split_whitespace();
            assert_eq!(words.next(), Some(env!("CARGO_BIN_EXE_bml")), "{command}");
            let args: Vec<&str> = words.collect();
            accepted(&args, &format!("{id}.{task}: {command}"));
        }
    }
    assert_eq!(
        dags["bml_historical_backfill"]["tasks"]["backfill_years"]["downstream"],
        serde_json::json!(["show_watermark"])
    );
}
