//! Why a source's piece of work (an archive, a REST range) failed, typed, so
//! that callers can branch on it (the planner retries the unreachable later and
//! reports bad data at once), with the message that names file, line or URL.

/// What kind of failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The exchange could not be reached or kept failing (transport errors,
    /// 5xx, answers cut short) until the retry policy gave up: try again later.
    Unreachable,
    /// The exchange answered no for good (a 4xx other than 404 and 429/418):
    /// the same request will not succeed.
    Refused,
    /// What came back is not what the exchange publishes: a checksum
    /// mismatch, a broken or unexpected zip, a malformed or misplaced row, an
    /// answer that never parses. Reported, not retried.
    BadData,
    /// This machine failed: the log could not take the records, a download
    /// could not be written (a full disk, …).
    Local,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Refused => "refused",
            FailureKind::BadData => "bad data",
            FailureKind::Local => "local",
        })
    }
}

/// A failure: its kind and the whole message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// What happened, naming the file, line, field or URL.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`, as an error to return from where it is found.
    pub fn error(kind: FailureKind, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            kind,
            message: message.into(),
        })
    }

    /// The failure an error stands for: the kind its origin gave it (the first
    /// [`Failure`] in its chain); else `Local` when the log or the file system
    /// failed; else `BadData` (parsing and checking is all that is left). The
    /// message is the whole chain.
    pub fn of(error: &anyhow::Error) -> Failure {
        let typed = error
            .chain()
            .find_map(|c| c.downcast_ref::<Failure>().map(|f| f.kind));
        let local = || {
            error
                .chain()
                .any(|c| c.is::<bml_wal::Error>() || c.is::<std::io::Error>())
        };
        let kind = typed.unwrap_or(if local() {
            FailureKind::Local
        } else {
            FailureKind::BadData
        });
        Failure {
            kind,
            message: format!("{error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_given_where_it_was_found_survives_context() {
        let e = Err::<(), _>(Failure::error(FailureKind::Unreachable, "GET u: gave up"))
            .context("fetching BTCUSDT-1m-2024-03-01.zip")
            .unwrap_err();
        let f = Failure::of(&e);
        assert_eq!(f.kind, FailureKind::Unreachable);
        assert_eq!(
            f.message,
            "fetching BTCUSDT-1m-2024-03-01.zip: GET u: gave up"
        );
        let io = anyhow::Error::new(std::io::Error::other("disk full")).context("appending");
        assert_eq!(Failure::of(&io).kind, FailureKind::Local);
        assert_eq!(
            Failure::of(&anyhow::anyhow!("line 3: bad price")).kind,
            FailureKind::BadData
        );
    }
}
