//! Recorded WebSocket traffic, replayed: `bml sim serve --from-capture FILE…`
//! serves the messages of real captures over its WebSocket side at their
//! recorded pace (or `--speed`), byte for byte, and a recorded REST depth
//! snapshot over REST. Real bytes through the real client is how the live
//! path is proven (`../shared/data/binance/README.md` describes the files).
//!
//! Formats, told apart by their lines:
//! - hftbacktest: `<local receive time> <combined-stream JSON>`, gzip or not;
//!   the time in µs or ns (by its size); a line without `"stream"` is a REST
//!   depth snapshot.
//! - cryptofeed: a first line `<url> <-> <connect time>`, then
//!   `<local epoch seconds>: <combined-stream JSON>`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::tape::Message;

/// What the captures hold.
#[derive(Debug, Default)]
pub struct Capture {
    /// Every stream message, by local receive time (its `time`, ms).
    pub messages: Vec<Message>,
    /// The last REST depth snapshot recorded, as its body.
    pub depth_snapshot: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    stream: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Capture {
    /// Reads every file (in the order given; messages are then sorted by time).
    pub fn load(files: &[std::path::PathBuf]) -> anyhow::Result<Capture> {
        let mut capture = Capture::default();
        for file in files {
            capture
                .read(file)
                .with_context(|| format!("reading the capture {}", file.display()))?;
        }
        capture.messages.sort_by_key(|m| m.time);
        Ok(capture)
    }

    fn read(&mut self, file: &Path) -> anyhow::Result<()> {
        let raw = std::fs::File::open(file)?;
        let reader: Box<dyn Read> = if file.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        for (n, line) in BufReader::new(reader).lines().enumerate() {
            let line = line?;
            self.line(&line)
                .with_context(|| format!("line {}", n + 1))?;
        }
        Ok(())
    }

    fn line(&mut self, line: &str) -> anyhow::Result<()> {
        if line.trim().is_empty() || line.contains(" <-> ") {
            return Ok(()); // cryptofeed's connection line
        }
        let Some(brace) = line.find('{') else {
            bail!("no JSON in the line");
        };
        let (stamp, json) = (line[..brace].trim().trim_end_matches(':'), &line[brace..]);
        let time = receive_ms(stamp)?;
        if !json.contains("\"stream\"") {
            self.depth_snapshot = Some(json.to_owned());
            return Ok(());
        }
        let envelope: Envelope<'_> = serde_json::from_str(json)?;
        self.messages.push(Message {
            time,
            stream: envelope.stream.into(),
            data: envelope.data.get().to_owned(),
        });
        Ok(())
    }
}

impl Capture {
    /// The symbols its streams are about (upper case).
    pub fn symbols(&self) -> std::collections::BTreeSet<String> {
        self.messages
            .iter()
            .filter_map(|m| m.stream.split_once('@'))
            .map(|(symbol, _)| symbol.to_uppercase())
            .collect()
    }
}

/// A recorder's receive time in ms: float seconds (cryptofeed), or an integer
/// in µs or ns (hftbacktest, told by its size).
fn receive_ms(stamp: &str) -> anyhow::Result<i64> {
    if stamp.contains('.') {
        let seconds: f64 = stamp.parse().context("receive time")?;
        return Ok((seconds * 1000.0).round() as i64);
    }
    let n: i64 = stamp.parse().context("receive time")?;
    Ok(match n {
        n if n >= 100_000_000_000_000_000 => n / 1_000_000,
        n if n >= 100_000_000_000_000 => n / 1_000,
        n => n,
    })
}
