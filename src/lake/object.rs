//! The lake on S3-compatible object storage (`s3://bucket/prefix`), through
//! the `object_store` crate.
//!
//! Atomic: a partition is one PUT of the whole object, which S3 makes visible
//! whole or not at all; nothing is staged under another name, so a killed
//! writer leaves nothing behind. Requests that fail on a 5xx, a 429, a timeout
//! or a dropped connection are retried with exponential backoff; a PUT is
//! idempotent (the same key, the same bytes), so retrying one that may have
//! landed is safe.
//!
//! Credentials come from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), else the
//! profile of the shared AWS files (`profile`), else instance or container
//! credentials; never from the URL, and nothing here prints them: the store
//! is shown as its URL only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::Listed;

/// The retries of one request: 100 ms doubling to 10 s, at most 8 times and
/// 2 minutes, so that a store that stays down fails the run in bounded time.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(120),
    }
}

/// A lake in a bucket, under a prefix.
#[derive(Clone)]
pub(super) struct Object {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// No leading or trailing `/`; may be empty.
    prefix: String,
    /// Runs the store's requests: the materializer's workers are plain
    /// threads, and some callers already run inside another runtime.
    runtime: Arc<Runtime>,
}

/// A runtime that may be dropped anywhere: inside another runtime, dropping
/// a tokio runtime the usual way panics, so it is shut down in the background.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

impl Object {
    /// The store `url` (`s3://bucket[/prefix]`) names; `endpoint` (else
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the AWS profile's) points at
    /// an S3-compatible server instead of AWS.
    pub fn open(url: &str, endpoint: Option<&str>) -> anyhow::Result<Object> {
        let Some(rest) = url.strip_prefix("s3://") else {
            bail!("{url}: not an s3:// URL");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url}: the URL names no bucket");
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry())
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(60)),
            );
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let profile = super::profile::read()?.unwrap_or_default();
        // The environment's keys win over the profile's, as in AWS's tools.
        if var("AWS_ACCESS_KEY_ID").is_none() {
            if let (Some(id), Some(secret)) = (&profile.access_key_id, &profile.secret_access_key) {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &profile.session_token {
                    builder = builder.with_token(token);
                }
            }
        }
        if let (None, None, Some(region)) = (
            var("AWS_REGION"),
            var("AWS_DEFAULT_REGION"),
            &profile.region,
        ) {
            builder = builder.with_region(region);
        }
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or(profile.endpoint);
        if let Some(endpoint) = endpoint {
            // A plain-HTTP endpoint is one the user named: a server on their
            // own network (or 127.0.0.1 in the tests).
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the object store for {url}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bml-lake")
            .enable_all()
            .build()
            .context("starting the object store's runtime")?;
        Ok(Object {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            runtime: Arc::new(Runtime(Some(runtime))),
        })
    }

    /// The URL, as the ledger records it and messages name it.
    pub fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// One PUT of the whole object; returns its ETag.
    pub fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<Option<String>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let payload = PutPayload::from(bytes.to_vec());
        let put = self.run(async move { store.put(&path, payload).await });
        Ok(put
            .with_context(|| format!("writing {}", self.url(key)))?
            .e_tag)
    }

    /// A PUT with `If-None-Match: *`: false if the object exists.
    pub fn create(&self, key: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let payload = PutPayload::from(bytes.to_vec());
        let created = self.run(async move {
            let options = PutOptions::from(PutMode::Create);
            match store.put_opts(&path, payload, options).await {
                Ok(_) => Ok(true),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(false),
                Err(e) => Err(e),
            }
        });
        created.with_context(|| format!("creating {}", self.url(key)))
    }

    pub fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let got = self.run(async move {
            match store.get(&path).await {
                Ok(got) => got.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.with_context(|| format!("reading {}", self.url(key)))
    }

    /// Deleting a key that is not there is no error (S3 cannot tell).
    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let deleted = self.run(async move {
            match store.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        });
        deleted.with_context(|| format!("removing {}", self.url(key)))
    }

    /// Every object under the directory `dir` of the prefix (one paged
    /// LIST), with its size and ETag.
    pub fn list(&self, dir: &str) -> anyhow::Result<Vec<Listed>> {
        let store = self.store.clone();
        let under = [self.prefix.as_str(), dir]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let prefix = (!under.is_empty())
            .then(|| Path::parse(&under))
            .transpose()
            .with_context(|| format!("{}/{dir}: not a valid key prefix", self.location()))?;
        let listed =
            self.run(async move { store.list(prefix.as_ref()).try_collect::<Vec<_>>().await });
        let listed = listed.with_context(|| format!("listing {}", self.url(dir)))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.as_ref().strip_prefix(&strip)?.to_owned();
                Some(Listed {
                    key,
                    size: meta.size,
                    etag: meta.e_tag,
                })
            })
            .collect())
    }

    fn path(&self, key: &str) -> anyhow::Result<Path> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).with_context(|| format!("{}: not a valid object key", self.url(key)))
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.location())
    }

    /// Runs `future` on the store's runtime and waits for it, from any
    /// thread (inside another runtime too: nothing here enters this one).
    fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.0.as_ref().expect("taken only when dropped");
        runtime.spawn(async move {
            // The receiver waits below until this sends.
            let _ = tx.send(future.await);
        });
        rx.recv()
            .expect("the object store's runtime runs every request it is given")
    }
}
