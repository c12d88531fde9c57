//! The lake as the query engines people have see it: every engine reads every
//! row and column, gives the partition keys an integer type, and selects the
//! day's rows with `day = 1`. The engines run from the project's Python
//! environments (`scripts/python-env`); `tests/readers/read_lake.py` does the
//! reading, as a user would.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{bml, text};

const DATE: &str = "2024-03-01";
const KINDS: &str = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades";

/// A generated 2-hour day materialized into a lake: 120 rows.
fn lake() -> (tempfile::TempDir, tempfile::TempDir) {
    let day = support::vision_day_at_rates(DATE, 2, 5, Some((2.0, 5.0)));
    let data = tempfile::tempdir().unwrap();
    support::ingest_day(data.path(), day.path(), DATE, KINDS);
    let out = bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (day, data)
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/read_lake.py")
}

/// What `engine` saw in the lake, run by `python`.
fn read(mut python: Command, engine: &str, data: &Path) -> Value {
    let out = python
        .arg(script())
        .arg(engine)
        .arg(data.join("lake"))
        .output()
        .expect("run the reader");
    assert!(out.status.success(), "{engine}: {}", text(&out));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("{engine}: {e}: {}", text(&out)))
}

/// Every engine saw all 120 rows, the 58 columns with the symbol and the four
/// keys, integer keys, and the day's rows under `day = 1`.
fn assert_reads_the_lake(engine: &str, seen: &Value, integer: &[&str], close_sum: f64) {
    assert_eq!(seen["rows"], 120, "{engine}: {seen}");
    assert_eq!(seen["columns"], 58 + 5, "{engine}: {seen}");
    assert_eq!(seen["day_one"], 120, "{engine}: {seen}");
    for key in seen["keys"].as_array().unwrap() {
        assert!(
            integer.contains(&key.as_str().unwrap()),
            "{engine}: key type {key}: {seen}"
        );
    }
    let sum = seen["close_sum"].as_f64().unwrap();
    assert!(
        (sum - close_sum).abs() <= 1e-9 * close_sum.abs(),
        "{engine}: {seen}"
    );
}

/// A Python environment of `scripts/python-env` (made once, then reused) for
/// readers of other versions than the project's own.
fn python_env(name: &str, requirements: &[&str]) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/python-env"))
        .arg(root.join(".python").join(name))
        .args(requirements)
        .output()
        .expect("run scripts/python-env");
    assert!(out.status.success(), "{name}: {}", text(&out));
    Command::new(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn partition_keys_are_integers_in_duckdb_polars_and_pyarrow() {
    let (_day, data) = lake();
    let pyarrow = read(support::python(), "pyarrow", data.path());
    let close_sum = pyarrow["close_sum"].as_f64().unwrap();
    assert_reads_the_lake("pyarrow", &pyarrow, &["int32"], close_sum);
    let polars = read(support::python(), "polars", data.path());
    assert_reads_the_lake("polars", &polars, &["Int64"], close_sum);
    let duckdb = read(support::python(), "duckdb", data.path());
    assert_reads_the_lake(
        "duckdb (the README's recipe)",
        &duckdb,
        &["BIGINT"],
        close_sum,
    );
    // Why the README gives DuckDB a recipe: left to itself it reads the
    // zero-padded keys as strings, and `day = '1'` would match nothing.
    assert_eq!(
        duckdb["keys_without_recipe"],
        serde_json::json!(["BIGINT", "VARCHAR", "VARCHAR", "VARCHAR"]),
        "DuckDB's inference changed: update the README's recipe"
    );
}

#[test]
#[ignore = "heavy tier: installs polars 1.38, pyarrow 17 and pyspark 3.5 (with a JDK) once"]
fn older_readers_and_spark_read_the_lake() {
    let (_day, data) = lake();
    let current = read(support::python(), "pyarrow", data.path());
    let close_sum = current["close_sum"].as_f64().unwrap();

    let old = || python_env("old-readers", &["polars==1.38.*", "pyarrow==17.*"]);
    let polars = read(old(), "polars", data.path());
    assert!(polars["version"].as_str().unwrap().starts_with("1.38"));
    assert_reads_the_lake("polars 1.38", &polars, &["Int64"], close_sum);
    let pyarrow = read(old(), "pyarrow", data.path());
    assert!(pyarrow["version"].as_str().unwrap().starts_with("17."));
    assert_reads_the_lake("pyarrow 17", &pyarrow, &["int32"], close_sum);

    let java = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/need-java"))
        .output()
        .expect("run scripts/need-java");
    assert!(java.status.success(), "{}", text(&java));
    let spark = read(
        python_env("spark-3.5", &["pyspark==3.5.*"]),
        "spark",
        data.path(),
    );
    assert!(spark["version"].as_str().unwrap().starts_with("3.5"));
    assert_reads_the_lake("spark 3.5", &spark, &["int"], close_sum);
}
