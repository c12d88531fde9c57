//! The exact URLs `bml ingest vision` asks for, checked against a table written
//! from Binance's own download scripts and recorded URLs, not from bml's code:
//!
//! - binance/binance-public-data `python/utility.py` `get_path`:
//!   `data/futures/{um}/{daily|monthly}/{kind}/{SYMBOL}/[{interval}/]`;
//! - `download-kline.py`, `download-futures-markPriceKlines.py`,
//!   `download-futures-indexPriceKlines.py`, `download-futures-premiumIndexKlines.py`:
//!   file `{SYMBOL}-{interval}-{date}.zip` under `{kind}/{SYMBOL}/{interval}/`
//!   (the kind is in the folder only);
//! - `download-aggTrade.py`: `{SYMBOL}-aggTrades-{date}.zip` under `aggTrades/{SYMBOL}/`;
//! - `download-futures-fundingRates.py`: monthly `{SYMBOL}-fundingRate-{YYYY}-{MM}.zip`;
//! - metrics, bookTicker, bookDepth (no official script): URLs recorded from
//!   data.binance.vision by third-party downloaders (`docs/binance-fidelity.md`).
//!
//! Every archive answers 404 here: the test is about what is asked for.

mod support;

use support::{bml, text, VisionServer};

const PREFIX: &str = "/data/futures/um/";

/// (kind, path under the USD-M base) for BTCUSDT on 2024-03-01.
const EXPECTED: [(&str, &str); 9] = [
    (
        "klines",
        "daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
    ),
    (
        "markPriceKlines",
        "daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
    ),
    (
        "indexPriceKlines",
        "daily/indexPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
    ),
    (
        "premiumIndexKlines",
        "daily/premiumIndexKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
    ),
    (
        "aggTrades",
        "daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip",
    ),
    (
        "bookTicker",
        "daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-03-01.zip",
    ),
    (
        "metrics",
        "daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-03-01.zip",
    ),
    (
        "bookDepth",
        "daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2024-03-01.zip",
    ),
    (
        "fundingRate",
        "monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip",
    ),
];

#[test]
fn every_kind_is_asked_for_at_the_url_binance_publishes_it_under() {
    let empty = tempfile::tempdir().unwrap();
    let server = VisionServer::start(empty.path());
    let base_url = server.base_url();
    for (kind, path) in EXPECTED {
        let data = tempfile::tempdir().unwrap();
        let before = server.paths().len();
        let args = support::vision_ingest_args("2024-03-01", &base_url, &["--kinds", kind]);
        let out = bml(data.path(), &args);
        // The server has nothing, so nothing of the symbol exists: exit 2.
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", text(&out));
        let asked: Vec<String> = server.paths()[before..].to_vec();
        // The checksum is asked for first; a 404 on it means the archive is missing.
        assert_eq!(
            asked,
            vec![format!("{PREFIX}{path}.CHECKSUM")],
            "{kind}: bml asked for other URLs"
        );
        assert!(text(&out).contains("1 missing"), "{kind}: {}", text(&out));
        // Logs to a pipe carry no colour codes.
        assert!(!text(&out).contains('\u{1b}'), "{kind}: {}", text(&out));
    }
}

/// An exchange that cannot be reached: the error says why, down to the cause
/// (the connection refused), not only "error sending request".
#[test]
fn an_unreachable_vision_names_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let data = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/data/futures/um/");
    let args = support::vision_ingest_args("2024-03-01", &base, &["--kinds", "metrics"]);
    let out = bml(data.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Connection refused"), "{}", text(&out));
}
