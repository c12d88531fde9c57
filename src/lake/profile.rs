//! The AWS shared config and credentials files, read for one profile, since
//! `object_store` reads only the environment and instance or container
//! credentials.
//!
//! The format is AWS's (<https://docs.aws.amazon.com/sdkref/latest/guide/file-format.html>):
//! INI files, `~/.aws/config` (else `AWS_CONFIG_FILE`) with sections
//! `[default]` and `[profile NAME]`, and `~/.aws/credentials` (else
//! `AWS_SHARED_CREDENTIALS_FILE`) with sections `[NAME]`, where a setting of
//! the credentials file wins over the config file's. The profile is
//! `AWS_PROFILE`, else `default`. A setting with an empty value opens nested
//! settings on the indented lines below it (`s3 =` then `  endpoint_url = …`).
//!
//! Read: static keys, a session token, the region and the endpoint. A profile
//! that gets its credentials another way (SSO, an assumed role, a process) is
//! refused with the way around it rather than used without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The settings of one profile that bml uses.
#[derive(Default, Clone, PartialEq, Eq)]
pub(super) struct Profile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    /// The S3 endpoint (`s3 = endpoint_url`), else the profile's own.
    pub endpoint: Option<String>,
}

/// Settings that name credentials bml does not fetch itself.
const INDIRECT: [&str; 5] = [
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

impl std::fmt::Debug for Profile {
    /// The profile without its secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The profile of this environment; `None` if no file has it and none was
/// asked for by name.
pub(super) fn read() -> anyhow::Result<Option<Profile>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let home = var("HOME").map(PathBuf::from);
    let file = |variable: &str, name: &str| {
        var(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let config = file("AWS_CONFIG_FILE", "config");
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let named = var("AWS_PROFILE");
    let name = named.clone().unwrap_or_else(|| "default".to_owned());
    let mut settings = BTreeMap::new();
    let mut found = false;
    let config_section = match name.as_str() {
        "default" => vec!["default".to_owned(), "profile default".to_owned()],
        _ => vec![format!("profile {name}")],
    };
    for (path, wanted) in [
        (&config, config_section),
        (&credentials, vec![name.clone()]),
    ] {
        let Some(path) = path else { continue };
        let Some(text) = read_if_there(path)? else {
            continue;
        };
        let sections = sections(&text);
        for section in wanted {
            if let Some(values) = sections.get(&section) {
                found = true;
                settings.extend(values.clone());
            }
        }
    }
    if !found {
        if named.is_some() {
            bail!(
                "AWS_PROFILE={name}: no such profile in {} or {}",
                shown(config.as_deref()),
                shown(credentials.as_deref())
            );
        }
        return Ok(None);
    }
    let profile = Profile {
        name,
        access_key_id: settings.remove("aws_access_key_id"),
        secret_access_key: settings.remove("aws_secret_access_key"),
        session_token: settings.remove("aws_session_token"),
        region: settings.remove("region"),
        endpoint: settings
            .remove("s3.endpoint_url")
            .or_else(|| settings.remove("endpoint_url")),
    };
    if profile.access_key_id.is_none() {
        if let Some(setting) = INDIRECT.iter().find(|s| settings.contains_key(**s)) {
            bail!(
                "AWS profile {}: its credentials come by {setting}, which bml does not \
                 follow; give them in the environment instead: \
                 eval \"$(aws configure export-credentials --profile {} --format env)\"",
                profile.name,
                profile.name
            );
        }
    }
    Ok(Some(profile))
}

fn read_if_there(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn shown(path: Option<&Path>) -> String {
    path.map_or("(no HOME)".to_owned(), |p| p.display().to_string())
}

/// The sections of an INI file: name → setting → value, nested settings
/// as `parent.setting`. Comments start a line with `#` or `;`.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
            parent = None;
            continue;
        }
        let (Some(section), Some((key, value))) = (&section, trimmed.split_once('=')) else {
            continue;
        };
        let (key, value) = (key.trim().to_owned(), value.trim().to_owned());
        let indented = line.starts_with([' ', '\t']);
        let key = match (&parent, indented) {
            (Some(parent), true) => format!("{parent}.{key}"),
            _ => {
                parent = value.is_empty().then(|| key.clone());
                key
            }
        };
        out.entry(section.clone()).or_default().insert(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sections;

    #[test]
    fn sections_settings_comments_and_nested_settings() {
        let text = "# a comment\n\
                    [default]\n\
                    region = eu-west-2\n\
                    ; another\n\
                    [profile   lake]\n\
                    region=us-east-1\n\
                    s3 =\n  endpoint_url = http://127.0.0.1:9000\n  addressing_style = path\n\
                    output = json\n\
                    \n\
                    [lake]\n\
                    aws_access_key_id = AKID\n\
                    aws_secret_access_key = se=cret\n";
        let all = sections(text);
        assert_eq!(all["default"]["region"], "eu-west-2");
        let lake = &all["profile lake"];
        assert_eq!(lake["region"], "us-east-1");
        assert_eq!(lake["s3.endpoint_url"], "http://127.0.0.1:9000");
        assert_eq!(lake["s3.addressing_style"], "path");
        assert_eq!(lake["output"], "json");
        assert!(!lake.contains_key("endpoint_url"));
        assert_eq!(all["lake"]["aws_secret_access_key"], "se=cret");
    }

    #[test]
    fn lines_outside_a_section_or_without_a_setting_are_ignored() {
        let all = sections("stray = 1\n[a]\nnot a setting\nb = 2\n");
        assert_eq!(all.len(), 1);
        assert_eq!(all["a"].len(), 1);
    }
}
