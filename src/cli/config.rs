//! `bml.toml`, the configuration file, and `bml config show`.
//!
//! Every key of the file is the long option of the same name (`rest_base` is
//! `--rest-base`), so a value means the same wherever it is set, and the
//! precedence is clap's own: a flag beats its `BML_*` environment variable,
//! which beats the file, which beats the built-in default. The file works by
//! becoming the options' defaults before the command line is parsed; each of
//! its values is checked by the option's own parser first, so that a bad one
//! is named as the file's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::parser::ValueSource;

use super::{exit, Outcome};

/// The file read when neither `--config` nor `BML_CONFIG` names one (in the
/// working directory; none is fine).
pub(super) const DEFAULT_FILE: &str = "bml.toml";

/// The keys the file may set: the long options the commands that keep the
/// lake share. Each is documented in docs/operations.md, and each has its
/// `BML_<KEY>` variable.
const KEYS: [&str; 22] = [
    "data_dir",
    "lake_dir",
    "lake_url",
    "s3_endpoint",
    "layout",
    "day_settle_hours",
    "symbols",
    "rest_base",
    "vision_base",
    "ws_base",
    "concurrency",
    "jobs",
    "lookback_days",
    "poll_seconds",
    "lake_check_minutes",
    "redundancy",
    "streams",
    "metrics_addr",
    "max_missing_hours",
    "vision_recheck_minutes",
    "vision_recent_days",
    "statistics_settle_minutes",
];

/// The configuration file as read: each key's values, as the command line
/// would give them.
#[derive(Debug, Default)]
pub(super) struct Config {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    values: BTreeMap<String, Vec<String>>,
}

impl Config {
    /// Reads the file `args` name (`--config FILE`, else `BML_CONFIG`), or
    /// `./bml.toml` if it exists. A file named but missing is an error.
    pub fn load(args: &[OsString]) -> anyhow::Result<Config> {
        let named = config_flag(args).or_else(|| std::env::var_os("BML_CONFIG").map(PathBuf::from));
        let path = match named {
            Some(path) => path,
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let values = parse(&text).with_context(|| format!("{}", path.display()))?;
        Ok(Config {
            path: Some(path),
            values,
        })
    }

    /// `command` with the file's values as its options' defaults (in every
    /// subcommand that has the option), each checked by the option's parser.
    pub fn apply(&self, command: clap::Command) -> anyhow::Result<clap::Command> {
        let file = self
            .path
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string());
        self.apply_to(command, &file)
    }

    fn apply_to(&self, mut command: clap::Command, file: &str) -> anyhow::Result<clap::Command> {
        let ids: Vec<String> = command
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| self.values.contains_key(id))
            .collect();
        for id in ids {
            let values = &self.values[&id];
            if let Some(arg) = command.get_arguments().find(|a| a.get_id() == id.as_str()) {
                check(arg, values).map_err(|e| anyhow::anyhow!("{file}: {id}: {e}"))?;
            }
            let values = values.clone();
            command = command.mut_arg(id, |a| a.required(false).default_values(values));
        }
        let names: Vec<String> = command
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            let mut failed = None;
            command = command.mut_subcommand(name, |s| match self.apply_to(s.clone(), file) {
                Ok(s) => s,
                Err(e) => {
                    failed = Some(e);
                    s
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(command)
    }

    fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.values.get(key)
    }
}

/// Each of `values` through `arg`'s own parser (in a command of its own, so
/// that nothing else of the command line is needed).
fn check(arg: &clap::Arg, values: &[String]) -> Result<(), String> {
    let probe = clap::Command::new("bml.toml").no_binary_name(true).arg(
        clap::Arg::new("value")
            .long("value")
            .value_parser(arg.get_value_parser().clone()),
    );
    for value in values {
        probe
            .clone()
            .try_get_matches_from(["--value", value.as_str()])
            .map_err(|e| {
                let text = e.to_string();
                first_line(&text).replace(" for '--value <value>'", "")
            })?;
    }
    Ok(())
}

/// The value of `--config FILE` / `--config=FILE` in `args`, read before
/// clap parses them (the file decides the defaults clap parses with).
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            return None;
        }
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The file's keys and values as option values; unknown keys and values that
/// are not strings, numbers, booleans or lists of them are refused.
fn parse(text: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let table: toml::Table = text.parse()?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !KEYS.contains(&key.as_str()) {
            bail!("unknown key `{key}` (known: {})", KEYS.join(", "));
        }
        let list = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(&key, v))
                .collect::<anyhow::Result<Vec<_>>>()?,
            other => vec![scalar(&key, other)?],
        };
        values.insert(key, list);
    }
    Ok(values)
}

fn scalar(key: &str, value: toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!(
            "{key}: a {} is not a value (strings, numbers, booleans or lists of them)",
            other.type_str()
        ),
    })
}

fn first_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or(text)
        .trim_start_matches("error: ")
}

/// Prints every key: its effective value and where it came from (flag, its
/// environment variable, the file, the built-in default), credentials
/// redacted. `pristine` is the command line before the file was applied;
/// `matches` what was parsed.
pub(super) fn show(
    config: &Config,
    pristine: &clap::Command,
    matches: &clap::ArgMatches,
    out: &mut dyn Write,
) -> Outcome {
    match &config.path {
        Some(path) => writeln!(out, "configuration file  {}", path.display())?,
        None => writeln!(
            out,
            "configuration file  none (--config FILE, BML_CONFIG, or {DEFAULT_FILE} here)"
        )?,
    }
    writeln!(out, "{:<26} {:<48} from", "key", "value")?;
    for key in KEYS {
        let Some(arg) = find_arg(pristine, key) else {
            continue;
        };
        let from_flag = matches
            .try_get_raw(key)
            .ok()
            .flatten()
            .filter(|_| matches.value_source(key) == Some(ValueSource::CommandLine));
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let env_value = env
            .as_ref()
            .and_then(std::env::var_os)
            .filter(|v| !v.is_empty());
        let (value, from) = if let Some(raw) = from_flag {
            (
                join(raw.map(|v| v.to_string_lossy().into_owned())),
                "flag".to_string(),
            )
        } else if let (Some(name), Some(value)) = (&env, env_value) {
            (value.to_string_lossy().into_owned(), format!("env {name}"))
        } else if let Some(values) = config.get(key) {
            (values.join(","), "file".to_string())
        } else {
            let defaults = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned());
            let value = join(defaults);
            let value = if value.is_empty() {
                "-".to_string()
            } else {
                value
            };
            (value, "default".to_string())
        };
        let value = redact(&value);
        writeln!(out, "{key:<26} {value:<48} {from}")?;
    }
    Ok(exit::OK)
}

fn join(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(",")
}

/// The first option with this id anywhere in the command tree.
fn find_arg<'a>(command: &'a clap::Command, id: &str) -> Option<&'a clap::Arg> {
    command
        .get_arguments()
        .find(|a| a.get_id() == id)
        .or_else(|| command.get_subcommands().find_map(|s| find_arg(s, id)))
}

/// `text` with the credentials of every URL in it hidden: the user-info part
/// (`scheme://user:password@host` becomes `scheme://***@host`). Applied to
/// `config show` and to every log line and error bml prints.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_nothing_else() {
        assert_eq!(
            redact("GET https://me:s3cret@fapi.example/x?y=1 failed"),
            "GET https://***@fapi.example/x?y=1 failed"
        );
        assert_eq!(
            redact("s3://key@bucket/a and ws://h:1/b"),
            "s3://***@bucket/a and ws://h:1/b"
        );
        assert_eq!(redact("mail me@example.com"), "mail me@example.com");
        assert_eq!(redact("http://h/p@x"), "http://h/p@x");
    }

    #[test]
    fn the_file_accepts_known_keys_and_names_unknown_ones() {
        let values = parse("symbols = [\"BTCUSDT\", \"ETHUSDT\"]\npoll_seconds = 15\n").unwrap();
        assert_eq!(values["symbols"], ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(values["poll_seconds"], ["15"]);
        let e = parse("pol_seconds = 15").unwrap_err().to_string();
        assert!(e.contains("unknown key `pol_seconds`"), "{e}");
        let e = parse("symbols = { a = 1 }").unwrap_err().to_string();
        assert!(e.contains("symbols: a table"), "{e}");
    }

    #[test]
    fn every_key_is_an_option_with_its_bml_variable() {
        let command = super::super::command();
        for key in KEYS {
            let arg = find_arg(&command, key).unwrap_or_else(|| panic!("no option {key}"));
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(format!("BML_{}", key.to_uppercase())), "{key}");
        }
    }

    #[test]
    fn the_config_flag_is_found_before_parsing() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_flag(&args(&["bml", "run-once", "--config", "x.toml"])),
            Some(PathBuf::from("x.toml"))
        );
        assert_eq!(
            config_flag(&args(&["bml", "--config=y.toml", "status"])),
            Some(PathBuf::from("y.toml"))
        );
        assert_eq!(config_flag(&args(&["bml", "--", "--config", "z"])), None);
    }
}
