//! Where an hour's inputs came from, and how its sources agreed: what the
//! materializer records beside each partition for `bml audit`'s coverage and
//! reconciliation (docs/audit.md). Minutes are bits of a `u64`: bit `i` is
//! the hour's minute `i`.

use serde::{Deserialize, Serialize};

use crate::schema::{Class, ColumnClass};

/// The sources facts come from, in precedence order: the index of each in
/// [`ClassCoverage::by_source`] and the bits of [`Tally::sources`].
pub const SOURCES: [&str; 3] = ["vision", "rest", "live"];

/// Why an uncovered minute of a live-only class is uncovered, when the
/// planner named no reason.
pub const NO_COLLECTOR: &str = "no live collector covered it";
/// Why an uncovered minute of a history class is uncovered, when the planner
/// named no reason.
pub const NOT_FETCHED: &str = "no source in the log yet";

/// One symbol-hour's provenance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Per column class (every class, in [`ColumnClass::ALL`] order).
    pub coverage: Vec<ClassCoverage>,
    /// Per kind of fact and set of sources that both held it.
    pub reconciliation: Vec<Tally>,
}

/// The minutes of one column class each source covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCoverage {
    /// The class.
    pub class: ColumnClass,
    /// Per source ([`SOURCES`]): minutes it holds the class's input for (an
    /// event in the minute; for as-of classes, a point recent enough for
    /// the minute; for liquidations, a live connection proven up).
    #[serde(with = "compact::three")]
    pub by_source: [u64; 3],
    /// Minutes known to need nothing: aggTrades where the trade kline counts
    /// no trade.
    #[serde(with = "compact")]
    pub quiet: u64,
    /// Minutes the planner recorded no source can fill (`unfillable`).
    #[serde(with = "compact")]
    pub unfillable: u64,
    /// Why, for those minutes (empty when none).
    pub reason: String,
}

impl ClassCoverage {
    /// An empty record of `class`.
    pub fn new(class: ColumnClass) -> ClassCoverage {
        ClassCoverage {
            class,
            by_source: [0; 3],
            quiet: 0,
            unfillable: 0,
            reason: String::new(),
        }
    }

    /// Minutes some source holds, or that need nothing.
    pub fn covered(&self) -> u64 {
        self.by_source.iter().fold(self.quiet, |all, m| all | m)
    }

    /// The hour's uncovered minutes, by reason: the planner's where it
    /// recorded them unfillable, else [`NO_COLLECTOR`] for a live-only class
    /// and [`NOT_FETCHED`] for the others.
    pub fn gaps(&self) -> Vec<(String, u64)> {
        let open = !self.covered() & ((1 << 60) - 1);
        let otherwise = if self.class.support() == Class::LiveOnly {
            NO_COLLECTOR
        } else {
            NOT_FETCHED
        };
        [
            (self.reason.clone(), open & self.unfillable),
            (otherwise.to_string(), open & !self.unfillable),
        ]
        .into_iter()
        .filter(|(_, bits)| *bits != 0)
        .collect()
    }
}

/// Facts of one kind that two or more sources held, in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The kind of fact (`kline`, `markPriceKline`, `aggTrade`, `funding`, …).
    pub kind: String,
    /// The sources that held it: bit `i` is [`SOURCES`]`[i]`.
    pub sources: u8,
    /// Facts whose copies were all equal.
    pub equal: u64,
    /// Facts whose copies disagreed (the best source's was kept).
    pub conflicting: u64,
}

impl Tally {
    /// The sources' names, best first, joined by `+`.
    pub fn source_names(&self) -> String {
        SOURCES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.sources & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Minute sets as the ledger stores them: mostly all or none of an hour, so a
/// set of more than half the minutes is stored as its complement, a bit
/// saying which. Both then take one byte of postcard's varint, not nine: an
/// hour's provenance is about a hundred bytes.
mod compact {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const HOUR: u64 = (1 << 60) - 1;

    fn encode(minutes: u64) -> u64 {
        if minutes.count_ones() > 30 {
            ((!minutes & HOUR) << 1) | 1
        } else {
            minutes << 1
        }
    }

    fn decode(stored: u64) -> u64 {
        if stored & 1 == 1 {
            !(stored >> 1) & HOUR
        } else {
            stored >> 1
        }
    }

    pub fn serialize<S: Serializer>(minutes: &u64, s: S) -> Result<S::Ok, S::Error> {
        encode(*minutes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d).map(decode)
    }

    /// The same for the three sources' sets.
    pub mod three {
        use super::*;

        pub fn serialize<S: Serializer>(minutes: &[u64; 3], s: S) -> Result<S::Ok, S::Error> {
            minutes.map(encode).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 3], D::Error> {
            <[u64; 3]>::deserialize(d).map(|stored| stored.map(decode))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_minute_set_comes_back_and_whole_hours_take_a_byte() {
            let mut rng = fastrand::Rng::with_seed(5);
            for minutes in [0, HOUR, 1, HOUR - 1, 1 << 59, HOUR >> 30, HOUR >> 29]
                .into_iter()
                .chain((0..1000).map(|_| rng.u64(..) & HOUR))
            {
                assert_eq!(decode(encode(minutes)), minutes, "{minutes:#x}");
            }
            for whole in [0, HOUR] {
                assert_eq!(postcard::to_stdvec(&encode(whole)).unwrap().len(), 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical hour (every history class from Vision, no live collector,
    /// one reconciliation count) stays small in the ledger.
    #[test]
    fn an_hour_of_provenance_is_about_a_hundred_bytes() {
        let coverage = ColumnClass::ALL
            .map(|class| {
                let mut c = ClassCoverage::new(class);
                if class.support() != Class::LiveOnly {
                    c.by_source[0] = (1 << 60) - 1;
                }
                c
            })
            .to_vec();
        let provenance = Provenance {
            coverage,
            reconciliation: vec![Tally {
                kind: "kline".into(),
                sources: 0b11,
                equal: 60,
                conflicting: 0,
            }],
        };
        let bytes = postcard::to_stdvec(&provenance).unwrap();
        assert!(bytes.len() <= 100, "{} bytes", bytes.len());
        assert_eq!(
            postcard::from_bytes::<Provenance>(&bytes).unwrap(),
            provenance
        );
    }
}
