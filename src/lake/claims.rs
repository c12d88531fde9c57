//! Which bml instance keeps which symbol of a lake: several instances, each
//! with its own log and ledger for a disjoint set of symbols, may write into
//! one lake (one bucket), and a reader needs nothing but the lake.
//!
//! Each symbol an instance writes is claimed by a small object,
//! `_bml/claims/SYMBOL.json` (outside `futures/`, so no dataset reader sees
//! it), created only if absent (S3's `If-None-Match: *`, a no-clobber rename
//! on disk): of two instances starting at once, one wins. An instance whose
//! claim is not its own is refused before it writes anything; the claim names
//! the instance that holds it, so that moving a symbol is a decision a person
//! takes (stop that instance, remove the claim).
//!
//! An instance is its data dir's `instance-id`, made once; unlike the log's
//! id, a repair of the log does not change it.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::Lake;

/// Where the claims are, under the lake root.
const CLAIMS: &str = "_bml/claims";

/// An instance, as its claims name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The data dir's `instance-id`.
    pub instance: String,
    /// The machine it ran on when it claimed.
    pub host: String,
    /// Its data dir there.
    pub data_dir: String,
    /// When it claimed (RFC 3339, UTC).
    pub since: String,
}

/// A symbol another instance keeps.
#[derive(Debug, thiserror::Error)]
#[error(
    "{symbol} in the lake {lake} is kept by another bml instance (instance {}, on {}, data dir \
     {}, since {}): each symbol of a lake is kept by one instance. If that instance is gone for \
     good, remove {lake}/{key} and run again",
    .holder.instance, .holder.host, .holder.data_dir, .holder.since
)]
pub struct Taken {
    /// The symbol.
    pub symbol: String,
    /// The lake.
    pub lake: String,
    /// The claim's key.
    pub key: String,
    /// Who holds it.
    pub holder: Claim,
}

/// This instance: the data dir's id (made on first use), the host, the dir.
pub fn instance(data_dir: &Path) -> anyhow::Result<Claim> {
    let path = crate::data_dir::instance_id(data_dir);
    let instance = match std::fs::read_to_string(&path) {
        Ok(id) => id.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:032x}", fastrand::u128(..));
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            id
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".into());
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    Ok(Claim {
        instance,
        host,
        data_dir: data_dir.display().to_string(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Claims `symbols` in `lake` for `me`, or names the first another holds.
pub fn claim<'a>(
    lake: &Lake,
    symbols: impl IntoIterator<Item = &'a str>,
    me: &Claim,
) -> anyhow::Result<()> {
    for symbol in symbols {
        let key = format!("{CLAIMS}/{symbol}.json");
        let holder = match read(lake, &key)? {
            Some(holder) => holder,
            None => {
                let json = serde_json::to_vec_pretty(me).context("encoding a claim")?;
                if lake.create(&key, &json)? {
                    tracing::info!(symbol, lake = %lake.location(), "claimed the symbol");
                    continue;
                }
                // Another instance created it first.
                read(lake, &key)?.with_context(|| format!("{key} vanished while claimed"))?
            }
        };
        if holder.instance != me.instance {
            return Err(Taken {
                symbol: symbol.to_owned(),
                lake: lake.location(),
                key,
                holder,
            }
            .into());
        }
    }
    Ok(())
}

/// The symbols of `lake` other instances than `me` hold: files of theirs
/// are neither orphans nor strays of this one.
pub fn others(lake: &Lake, me: &Claim) -> anyhow::Result<BTreeSet<String>> {
    let mut others = BTreeSet::new();
    for found in lake.list_under(CLAIMS)? {
        let Some(symbol) = found
            .key
            .strip_prefix(&format!("{CLAIMS}/"))
            .and_then(|name| name.strip_suffix(".json"))
        else {
            continue;
        };
        if read(lake, &found.key)?.is_some_and(|holder| holder.instance != me.instance) {
            others.insert(symbol.to_owned());
        }
    }
    Ok(others)
}

fn read(lake: &Lake, key: &str) -> anyhow::Result<Option<Claim>> {
    let Some(bytes) = lake.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("{}/{key} is not a bml claim", lake.location()))
}

/// The symbol of a partition's key (`…/symbol=S/…`).
pub fn symbol_of(key: &str) -> Option<&str> {
    key.split('/').find_map(|part| part.strip_prefix("symbol="))
}
