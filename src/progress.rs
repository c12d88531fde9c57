//! How a stage says how far it has got, without knowing who watches: the CLI
//! draws bars on a terminal (indicatif), quiet runs and tests watch nothing
//! ([`Silent`]). Stages never draw anything themselves.

use std::io::Read;

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Things, named in the plural ("archives", "hours").
    Items(&'static str),
    /// Bytes.
    Bytes,
}

/// Someone watching a stage's work.
pub trait Progress: Sync {
    /// A new bar for a piece of work of `total` units, shown under `label`
    /// (a stage, a kind). It goes away when dropped.
    fn bar(&self, label: &str, total: u64, unit: Unit) -> Box<dyn Bar>;
}

/// One piece of work under way.
pub trait Bar: Send + Sync {
    /// `n` more units done.
    fn inc(&self, n: u64);
    /// The total became known, or changed.
    fn set_total(&self, total: u64);
    /// A short status beside the bar (the file, the hour, a running count).
    fn note(&self, text: &str);
}

/// Nobody watching.
pub struct Silent;

impl Progress for Silent {
    fn bar(&self, _: &str, _: u64, _: Unit) -> Box<dyn Bar> {
        Box::new(Silent)
    }
}

impl Bar for Silent {
    fn inc(&self, _: u64) {}
    fn set_total(&self, _: u64) {}
    fn note(&self, _: &str) {}
}

/// A reader that counts the bytes read through it on a [`Bar`].
pub struct CountingRead<'a, R> {
    inner: R,
    bar: &'a dyn Bar,
}

impl<'a, R> CountingRead<'a, R> {
    /// Counts `inner`'s bytes on `bar`.
    pub fn new(inner: R, bar: &'a dyn Bar) -> CountingRead<'a, R> {
        CountingRead { inner, bar }
    }
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
