//! The README's two commands on a fresh clone, as a new user meets them: cargo's
//! target directory somewhere else (`CARGO_TARGET_DIR`), and a `python3` on PATH
//! without numpy, pyarrow or DuckDB. The project's own Python environment must
//! take care of the second, the scripts of the first.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::text;

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    text(&out)
}

/// The cargo target directory this test was built in (`…/target/debug/deps/` holds
/// the test binary).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The README's first lines: its main command and its test command.
fn readme_commands(readme: &str) -> (String, String) {
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .collect();
    (block[0].to_owned(), block[1].to_owned())
}

#[test]
#[ignore = "heavy tier: clones the repository and builds it from scratch (release and test)"]
fn the_readme_commands_work_on_a_fresh_clone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("main");
    run(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(repo)
            .arg(&clone),
        "git clone",
    );
    let shared = repo.join("../shared").canonicalize().unwrap();
    std::os::unix::fs::symlink(shared, work.path().join("shared")).unwrap();

    // A python3 without numpy first on PATH.
    let bare = work.path().join("bare-python");
    run(
        Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&bare),
        "python3 -m venv",
    );
    let path = format!(
        "{}:{}",
        bare.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let no_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!no_numpy.status.success(), "the bare python3 has numpy");

    // Elsewhere, and kept between runs so that only the first one builds cold.
    let cargo_target = target_dir().join("fresh-clone");
    let readme = std::fs::read_to_string(clone.join("README.md")).unwrap();
    let (main_job, tests) = readme_commands(&readme);
    assert_eq!(main_job, "scripts/demo");
    assert_eq!(tests, "cargo test --workspace -- --include-ignored");
    let shell = |command: &str| {
        let mut c = Command::new("bash");
        c.args(["-c", command])
            .current_dir(&clone)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", &cargo_target)
            .env_remove("BML_PYTHON")
            .env_remove("CARGO_MANIFEST_DIR");
        c
    };

    let demo = run(
        shell(&main_job).env("BML_DEMO_DAEMON_SECONDS", "65"),
        "the README's main command",
    );
    for said in [
        "run-once: 1 symbols",
        "archives ingested",
        "not published by Vision yet",
        "run-daemon stopped (duration reached)",
        "pyarrow reads the lake:",
    ] {
        assert!(demo.contains(said), "{said:?} missing from:\n{demo}");
    }
    assert!(demo.matches(" job: ").count() >= 2, "{demo}");
    assert!(
        clone.join(".python/default/bin/python").exists(),
        "the project's Python environment was made"
    );
    assert!(
        !clone.join("target/release").exists(),
        "built in the clone, not in CARGO_TARGET_DIR"
    );

    // The whole suite would run this test again inside itself: the README's test
    // command narrowed to one test target that needs the Python environment.
    let narrowed = tests.replace(
        "cargo test --workspace --",
        "cargo test --workspace --test readers --",
    );
    let tested = run(&mut shell(&narrowed), "the README's test command");
    assert!(tested.contains("test result: ok. 2 passed"), "{tested}");
}
