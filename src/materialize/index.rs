//! The offset index: for each symbol-hour, the log offsets of every record that
//! can change its rows. `materialize --from N` re-derives the hours whose entry
//! holds an offset ≥ N, reading exactly the records their entries list.
//!
//! A record reaches the hours of its market facts (with their look-back, see
//! [`Reach`](super::collect::Reach)), and through coverage facts:
//! - a Vision marker reaches every hour its file's rows reach, since it makes
//!   them visible (the rows come before it in the log; their hours are kept per
//!   file in the ledger, so an index built in several runs equals one built in
//!   one);
//! - a live-stream record that stretches its connection's span (the times the
//!   stream is known to have been up) reaches every hour whose coverage that
//!   changes: the hours it grew over, and the hours of the span's old ends.
//!
//! Offsets a repair declared lost reach no hour; they are kept in the ledger,
//! and any Vision file whose range they touch stops counting (a repair gives
//! the log a new id, so the ledger is rebuilt and every hour re-derived).
//!
//! The index grows with the log, from the ledger's `indexed_to` to the log's end,
//! and commits with it, so a crash never leaves an offset indexed twice or never.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;

use super::collect::hours_reached_by_run;
use crate::event::{
    Envelope, Event, Record, RecordClass, Source, HEARTBEAT_GAP_MS, HEARTBEAT_STREAM_SUFFIX,
};
use crate::eventlog::{self, ScannedEnvelope};
use crate::ledger::{Batch, Ledger, LogBinding, StreamSpan, VisionMarker};
use crate::time::{HOUR_MS, MINUTE_MS};

/// Commit the index this often (records), so memory stays bounded on a long log.
const RECORDS_PER_COMMIT: u64 = 200_000;

/// How far a stream status's own time may stray from its arrival time.
const CLOCK_SLACK_MS: i64 = MINUTE_MS;

/// What extending the index did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extended {
    /// Records indexed.
    pub records: u64,
    /// The log's end (the next offset to be appended).
    pub head: u64,
}

/// Indexes the records from the ledger's `indexed_to` to the log's end, or
/// to `end` (the log as it stood then). `progress` is told each offset
/// indexed.
pub fn extend(
    data_dir: &Path,
    ledger: &Ledger,
    end: Option<u64>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Extended> {
    let start = ledger.indexed_to()?;
    // The end is fixed before the scan, so that the index ends there even
    // when the last records before it were compacted (a scan skips them).
    let head = eventlog::head(data_dir)?;
    let end = end.map_or(head, |end| end.min(head)).max(start);
    let mut state = Pending::default();
    // One write transaction at a time: redb's `begin_write` waits forever for
    // a transaction its own thread holds, so a batch is committed before the
    // next one begins.
    let mut batch = Some(ledger.batch()?);
    let mut done = Extended {
        records: 0,
        head: start,
    };
    eventlog::scan_envelopes(data_dir, start..end, needs_events, |scanned| {
        let open = batch.as_mut().context("no ledger batch open")?;
        let offset = match scanned {
            ScannedEnvelope::Record(offset, envelope, record) => {
                state.add(open, offset, &envelope, record.as_deref())?;
                done.records += 1;
                offset
            }
            ScannedEnvelope::Lost(lost) => {
                let last = lost.end - 1;
                state.lost.push(lost);
                last
            }
        };
        done.head = offset + 1;
        progress(offset);
        if done.head.is_multiple_of(RECORDS_PER_COMMIT) {
            state.write(open, done.head)?;
            open.set_log_binding(&binding(data_dir, done.head)?)?;
            if let Some(full) = batch.take() {
                full.commit_lazily()?;
            }
            batch = Some(ledger.batch()?);
        }
        Ok(())
    })?;
    let mut batch = batch.context("no ledger batch open")?;
    done.head = end;
    state.write(&mut batch, done.head)?;
    batch.set_log_binding(&binding(data_dir, done.head)?)?;
    batch.commit()?;
    Ok(done)
}

/// The binding of an index that ends at `head`: the log's id and the last
/// indexed record's fingerprint.
fn binding(data_dir: &Path, head: u64) -> anyhow::Result<LogBinding> {
    let fingerprint = match head.checked_sub(1) {
        None => [0; 32],
        Some(last) => eventlog::fingerprint(data_dir, last)?
            .with_context(|| format!("the log ends before offset {last}, just indexed"))?,
    };
    Ok(LogBinding {
        log_id: eventlog::log_id(data_dir)?,
        indexed_to: head,
        fingerprint,
    })
}

/// Why the ledger of `data_dir` does not describe its log, if it does not: it
/// was derived from another log, or from a longer one, or from one whose record
/// at the index's end differs (a log cut back and appended to again reuses the
/// offsets). Such a ledger must be rebuilt, never used. Reads only.
pub fn stale_reason(data_dir: &Path, ledger: &Ledger) -> anyhow::Result<Option<String>> {
    let (indexed_to, checkpoint) = (ledger.indexed_to()?, ledger.checkpoint()?);
    let Some(bound) = ledger.log_binding()? else {
        return Ok((indexed_to > 0 || checkpoint > 0).then(|| {
            "it does not say which log it was derived from (an older bml wrote it)".to_string()
        }));
    };
    let log_id = eventlog::existing_log_id(data_dir)?;
    if log_id.as_deref() != Some(bound.log_id.as_str()) {
        return Ok(Some(format!(
            "it was derived from log {}, and the log here is {}",
            bound.log_id,
            log_id.as_deref().unwrap_or("one without an id")
        )));
    }
    if bound.indexed_to != indexed_to || checkpoint > indexed_to {
        return Ok(Some(format!(
            "its index end ({indexed_to}), binding ({}) and checkpoint ({checkpoint}) disagree",
            bound.indexed_to
        )));
    }
    let Some(last) = indexed_to.checked_sub(1) else {
        return Ok(None);
    };
    Ok(match eventlog::fingerprint(data_dir, last)? {
        None => Some(format!(
            "it indexed the log up to offset {indexed_to}, and the log now ends before that \
             (a lost tail, or a log restored from an older copy)"
        )),
        Some(f) if f != bound.fingerprint => Some(format!(
            "the record at offset {last} is not the one it indexed (the log was cut back \
             and appended to again, or restored from another copy)"
        )),
        Some(_) => None,
    })
}

/// Whether indexing a record takes its events, not just its envelope: its
/// coverage facts (markers, stream statuses, unfillable ranges), and the
/// heartbeats of a stream that has them.
fn needs_events(class: RecordClass, envelope: &Envelope) -> bool {
    class == RecordClass::Coverage
        || matches!(&envelope.source, Source::WebSocket { stream, .. }
            if stream.ends_with(HEARTBEAT_STREAM_SUFFIX))
}

/// The starts of the hours a record reaches through its facts: its market
/// facts' (from the envelope's runs) and its unfillable ranges'.
fn hours_reached_by(envelope: &Envelope, record: Option<&Record>) -> BTreeSet<i64> {
    let runs = envelope
        .runs
        .iter()
        .filter_map(|run| hours_reached_by_run(run, &envelope.source));
    let unfillable = record
        .into_iter()
        .flat_map(|r| &r.events)
        .filter_map(|e| match e {
            Event::Unfillable(u) => u.hours(),
            _ => None,
        });
    let mut hours = BTreeSet::new();
    for (first, last) in runs.chain(unfillable) {
        hours.extend((first..=last).step_by(HOUR_MS as usize));
    }
    hours
}

/// Index changes not yet written to the ledger.
#[derive(Default)]
struct Pending {
    offsets: BTreeMap<(String, i64), Vec<u64>>,
    file_hours: HashMap<(String, String), BTreeSet<i64>>,
    markers: Vec<(String, u64, VisionMarker)>,
    spans: HashMap<(String, String, u64), StreamSpan>,
    /// Heartbeat times per (symbol, connection), joined into stretches on write.
    heartbeats: HashMap<(String, u64), Vec<i64>>,
    lost: Vec<std::ops::Range<u64>>,
}

impl Pending {
    /// Indexes the record at `offset`: its envelope, and its events when
    /// [`needs_events`] said so.
    fn add(
        &mut self,
        batch: &Batch,
        offset: u64,
        envelope: &Envelope,
        record: Option<&Record>,
    ) -> anyhow::Result<()> {
        let mut hours = hours_reached_by(envelope, record);
        let events = record.map_or(&[][..], |r| &r.events);
        let symbol = &envelope.symbol;
        match &envelope.source {
            Source::Vision { file, .. } => {
                let markers: Vec<_> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::VisionFileIngested(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                if !hours.is_empty() || !markers.is_empty() {
                    let known = self.file_hours(batch, symbol, file)?;
                    known.extend(hours.iter().copied());
                    if !markers.is_empty() {
                        hours.extend(known.iter().copied());
                    }
                }
                for m in markers {
                    self.markers.push((
                        m.file.clone(),
                        offset,
                        VisionMarker {
                            sha256: m.sha256,
                            first_offset: m.first_offset,
                            replaces: m.replaces,
                        },
                    ));
                }
            }
            Source::WebSocket { stream, connection } => {
                let key = (symbol.clone(), stream.clone(), *connection);
                self.stretch_span(batch, key, envelope.received_ms(), events, &mut hours)?;
                if stream.ends_with(HEARTBEAT_STREAM_SUFFIX) {
                    self.add_heartbeats(symbol, events, *connection, &mut hours);
                }
            }
            Source::Rest { .. } | Source::Planner => {}
        }
        for hour in hours {
            self.offsets
                .entry((symbol.clone(), hour))
                .or_default()
                .push(offset);
        }
        Ok(())
    }

    /// Stretches the span of a stream connection (`key`: symbol, stream,
    /// connection) over a record's times (its arrival, and a status's own
    /// time within the clock slack), adding to `hours` those whose coverage
    /// that changes.
    fn stretch_span(
        &mut self,
        batch: &Batch,
        key: (String, String, u64),
        received: i64,
        events: &[Event],
        hours: &mut BTreeSet<i64>,
    ) -> anyhow::Result<()> {
        // A status time far from the arrival is a bad clock: it must not
        // stretch the span over days the stream was not seen.
        let times = events.iter().filter_map(|e| match e {
            Event::StreamConnected(s) | Event::StreamDisconnected(s) => Some(
                s.time
                    .clamp(received - CLOCK_SLACK_MS, received + CLOCK_SLACK_MS),
            ),
            _ => None,
        });
        let (first, last) = times
            .chain([received])
            .fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        let old = match self.spans.get(&key) {
            Some(span) => Some(*span),
            None => batch.stream_span(&key.0, &key.1, key.2)?,
        };
        let new = old.map_or(StreamSpan { first, last }, |o| StreamSpan {
            first: o.first.min(first),
            last: o.last.max(last),
        });
        if old != Some(new) {
            // The hours whose coverage changes: those the span grew over,
            // including the ones its old ends were in.
            let grown = match old {
                None => vec![(new.first, new.last)],
                Some(o) => vec![(new.first, o.first), (o.last, new.last)],
            };
            for (from, to) in grown {
                if from < to || old.is_none() {
                    let (a, b) = (from.div_euclid(HOUR_MS), to.div_euclid(HOUR_MS));
                    hours.extend((a..=b).map(|h| h * HOUR_MS));
                }
            }
            self.spans.insert(key, new);
        }
        Ok(())
    }

    /// Queues the heartbeats of a record; a heartbeat changes the coverage of
    /// minutes up to a gap away, so the hours that far away are reached too.
    fn add_heartbeats(
        &mut self,
        symbol: &str,
        events: &[Event],
        connection: u64,
        hours: &mut BTreeSet<i64>,
    ) {
        let key = (symbol.to_string(), connection);
        for event in events {
            if let Event::MarkPrice(m) = event {
                let t = m.event_time;
                self.heartbeats.entry(key.clone()).or_default().push(t);
                for near in [t - HEARTBEAT_GAP_MS, t + HEARTBEAT_GAP_MS] {
                    hours.insert(near.div_euclid(HOUR_MS) * HOUR_MS);
                }
            }
        }
    }

    /// The hours known for a Vision file, loaded from the ledger on first use.
    fn file_hours(
        &mut self,
        batch: &Batch,
        symbol: &str,
        file: &str,
    ) -> anyhow::Result<&mut BTreeSet<i64>> {
        let key = (symbol.to_string(), file.to_string());
        if !self.file_hours.contains_key(&key) {
            let known = batch.file_hours(symbol, file)?.into_iter().collect();
            self.file_hours.insert(key.clone(), known);
        }
        Ok(self.file_hours.get_mut(&key).expect("just inserted"))
    }

    /// Writes everything pending into `batch`, with the new `indexed_to`.
    fn write(&mut self, batch: &mut Batch, indexed_to: u64) -> anyhow::Result<()> {
        for ((symbol, hour), offsets) in std::mem::take(&mut self.offsets) {
            batch.index_add(&symbol, hour, &offsets)?;
        }
        for ((symbol, file), hours) in self.file_hours.drain() {
            batch.set_file_hours(&symbol, &file, &hours.into_iter().collect::<Vec<_>>())?;
        }
        for (file, offset, marker) in self.markers.drain(..) {
            batch.add_vision_marker(&file, offset, &marker)?;
        }
        for ((symbol, stream, connection), span) in self.spans.drain() {
            batch.set_stream_span(&symbol, &stream, connection, span)?;
        }
        for ((symbol, connection), mut times) in self.heartbeats.drain() {
            times.sort_unstable();
            let mut stretch: Option<(i64, i64)> = None;
            for t in times {
                stretch = match stretch {
                    Some((first, last)) if t - last <= HEARTBEAT_GAP_MS => Some((first, t)),
                    Some(done) => {
                        batch.add_heartbeats(&symbol, connection, done, HEARTBEAT_GAP_MS)?;
                        Some((t, t))
                    }
                    None => Some((t, t)),
                };
            }
            if let Some(done) = stretch {
                batch.add_heartbeats(&symbol, connection, done, HEARTBEAT_GAP_MS)?;
            }
        }
        for lost in self.lost.drain(..) {
            batch.add_lost(lost)?;
        }
        batch.set_indexed_to(indexed_to)
    }
}
