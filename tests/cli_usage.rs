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
