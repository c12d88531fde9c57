//! `bml check-exchange` against the simulator: a faithful exchange passes in
//! both aggTrades window modes (and says which end came back), and a
//! deliberately wrong one (legacy archive names, no used-weight header, a
//! `/market` base that accepts subscriptions and sends nothing) fails, naming
//! what and where. The simulator plays its tape at 60× (a minute a second)
//! so that the WebSocket checks hear every stream within their window.

mod support;

use support::{bml, text, Sim};

const DAY: &str = "2024-03-01";

/// A generated day (busy enough for a crowded aggTrades hour) and the previous
/// month's funding archive, in Vision's layout.
fn market() -> tempfile::TempDir {
    let day = support::vision_day_at_rates(DAY, 24, 31, Some((0.5, 0.2)));
    let folder = day
        .path()
        .join("data/futures/um/monthly/fundingRate/BTCUSDT");
    std::fs::create_dir_all(&folder).unwrap();
    support::write_archive(
        &folder.join("BTCUSDT-fundingRate-2024-02.zip"),
        &[(
            "BTCUSDT-fundingRate-2024-02.csv",
            b"calc_time,funding_interval_hours,last_funding_rate\n1706745600000,8,0.00010000\n",
        )],
    );
    day
}

fn check(sim: &Sim) -> std::process::Output {
    let scratch = tempfile::tempdir().unwrap();
    bml(
        scratch.path(),
        &[
            "check-exchange",
            "--ws-base",
            &sim.url().replace("http:", "ws:"),
            "--rest-base",
            sim.url(),
            "--vision-base",
            &sim.vision_url(),
            "--day",
            DAY,
        ],
    )
}

#[test]
fn a_faithful_exchange_passes_and_the_window_end_is_reported() {
    let root = market();
    for (end, extra) in [("first", None), ("last", Some("--stats-timestamp-text"))] {
        let mut args = vec!["--agg-trades-window-end", end, "--speed", "60"];
        args.extend(extra);
        let sim = Sim::start(root.path(), &args);
        let out = check(&sim);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(0), "{end}: {all}");
        assert!(all.contains(&format!("the {end} 1000")), "{end}: {all}");
        assert!(all.contains(" 0 FAIL"), "{all}");
        if extra.is_some() {
            assert!(all.contains("text (\""), "{all}");
        }
        for stream in ["aggTrade", "markPrice@1s", "bookTicker", "depth@100ms"] {
            let line = format!("pass  btcusdt@{stream} payloads read as bml reads them");
            assert!(all.contains(&line), "{line}: {all}");
        }
        assert!(
            all.contains("pass  btcusdt@depth@100ms diffs chain"),
            "{all}"
        );
        assert!(
            all.contains("pass  /market lists the subscriptions"),
            "{all}"
        );
        assert!(
            all.contains("pass  the old unrouted base is silent"),
            "{all}"
        );
    }
}

#[test]
fn a_wrong_exchange_fails_naming_what_and_where() {
    let root = market();
    // The archive names bml used to ask for, and an exchange without the
    // used-weight header.
    let daily = root
        .path()
        .join("data/futures/um/daily/markPriceKlines/BTCUSDT/1m");
    std::fs::rename(
        daily.join("BTCUSDT-1m-2024-03-01.zip"),
        daily.join("BTCUSDT-markPriceKlines-1m-2024-03-01.zip"),
    )
    .unwrap();
    let sim = Sim::start(
        root.path(),
        &[
            "--omit-weight-header",
            "--ws-silent-market",
            "--speed",
            "60",
        ],
    );
    let out = check(&sim);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("FAIL  Vision markPriceKlines archive at bml's URL: http://")
            && all.contains("markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip: 404"),
        "{all}"
    );
    assert!(
        all.contains("FAIL  answers carry X-MBX-USED-WEIGHT-1M"),
        "{all}"
    );
    assert!(
        all.contains("FAIL  btcusdt@markPrice@1s payloads read as bml reads them: ws://")
            && all.contains("/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s: silent"),
        "{all}"
    );
    assert!(all.contains(" 3 FAIL"), "{all}");
}
