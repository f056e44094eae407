//! A store in an S3 bucket under a prefix (`s3://bucket/prefix`), through aws-sdk-s3.
//!
//! Region and credentials come from the standard AWS chain (environment, profile,
//! instance role). An endpoint override (`AWS_ENDPOINT_URL`, or `--s3-endpoint`)
//! points it at any S3-compatible server; with an override, requests use path-style
//! addressing, which such servers expect.
//!
//! Atomicity comes from S3 itself: a PUT replaces the whole object at once;
//! create-only writes send `If-None-Match: *` and compare-and-swap sends `If-Match`
//! with the ETag read (S3 answers 412 when the condition fails). Objects over
//! [`MULTIPART_THRESHOLD`] go up in parts, and the condition rides on the completing
//! request, so they are just as atomic. Throttling, 5xx answers and dropped
//! connections are retried with exponential backoff by the SDK's standard retry
//! strategy ([`MAX_ATTEMPTS`] attempts) before an error reaches the caller.
//!
//! The store is synchronous like the trait: it owns a small tokio runtime and blocks
//! on each request. Do not call it from inside another async runtime's worker thread
//! (use `spawn_blocking`).

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{Bounded, Condition, Object, Store, StoreError, check_key};

/// Objects at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part (S3's minimum is 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Attempts per request, the first included, before an error is returned.
pub const MAX_ATTEMPTS: u32 = 5;

pub struct S3Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    /// Key prefix inside the bucket, empty or ending in `/`.
    prefix: String,
}

/// Where to find the S3 service; everything else comes from the AWS chain.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Overrides `AWS_ENDPOINT_URL` (an S3-compatible server).
    pub endpoint: Option<String>,
}

impl S3Store {
    /// Opens `s3://bucket/prefix`. Makes no request: a missing bucket or bad
    /// credentials surface on the first operation, naming the key.
    pub fn open(uri: &str, options: &S3Options) -> Result<S3Store, StoreError> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| StoreError::S3 {
            uri: uri.to_string(),
            message: "not an s3:// URI".into(),
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::S3 {
                uri: uri.to_string(),
                message: "no bucket: use s3://bucket/prefix".into(),
            });
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io {
                uri: uri.to_string(),
                source: e,
            })?;
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let shared = runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(MAX_ATTEMPTS)
                        .with_initial_backoff(Duration::from_millis(200)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .operation_attempt_timeout(Duration::from_secs(300))
                        .build(),
                )
                .load(),
        );
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            // S3-compatible servers ignore the region, and AWS redirects a wrong one;
            // the SDK still needs one to sign with.
            config = config.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            runtime,
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The client and bucket, for callers that need requests the trait lacks
    /// (tests creating a bucket on a local server).
    pub fn client(&self) -> (&Client, &str) {
        (&self.client, &self.bucket)
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        key: &str,
        e: SdkError<E>,
    ) -> StoreError {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_string);
        if status == Some(412) || code.as_deref() == Some("PreconditionFailed") {
            return StoreError::PreconditionFailed {
                uri: self.uri(key),
                reason: "the object changed or exists (S3 answered 412)".into(),
            };
        }
        if status == Some(409) || code.as_deref() == Some("ConditionalRequestConflict") {
            return StoreError::PreconditionFailed {
                uri: self.uri(key),
                reason: "a concurrent conditional write won (S3 answered 409)".into(),
            };
        }
        StoreError::S3 {
            uri: self.uri(key),
            message: match (status, code) {
                (Some(s), Some(c)) => format!("HTTP {s} {c}: {}", e.message().unwrap_or("")),
                (Some(s), None) => format!("HTTP {s}"),
                _ => format!(
                    "no answer after {MAX_ATTEMPTS} attempts: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        bytes: &[u8],
        condition: &Condition,
    ) -> Result<String, StoreError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        let id = upload.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in bytes.chunks(PART_SIZE).enumerate() {
                let n = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| self.error(key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            let mut complete = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                );
            complete = match condition {
                Condition::Always => complete,
                Condition::IfAbsent => complete.if_none_match("*"),
                Condition::IfMatch(etag) => complete.if_match(etag),
            };
            let done = complete.send().await.map_err(|e| self.error(key, e))?;
            Ok(done.e_tag().unwrap_or_default().to_string())
        }
        .await;
        if result.is_err() {
            // Parts of an abandoned upload cost storage until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&id)
                .send()
                .await;
        }
        result
    }
}

impl Store for S3Store {
    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        // One request path: an unbounded read is a bounded one that never refuses.
        Ok(match self.get_bounded(key, u64::MAX)? {
            Some(Bounded::Object(o)) => Some(o),
            Some(Bounded::TooLarge { .. }) => unreachable!("no object exceeds u64::MAX bytes"),
            None => None,
        })
    }

    fn get_bounded(&self, key: &str, max_bytes: u64) -> Result<Option<Bounded>, StoreError> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            let mut out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(self.error(key, e)),
            };
            // Dropping the body unread closes the connection: a large object is
            // refused from its header.
            let declared = out.content_length().unwrap_or(0).max(0) as u64;
            if declared > max_bytes {
                return Ok(Some(Bounded::TooLarge { bytes: declared }));
            }
            let etag = out.e_tag().unwrap_or_default().to_string();
            // A server may send more than it declared: count as the bytes arrive.
            let mut bytes = Vec::with_capacity(declared as usize);
            while let Some(chunk) = out.body.try_next().await.map_err(|e| StoreError::S3 {
                uri: self.uri(key),
                message: format!("reading the body: {e}"),
            })? {
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Ok(Some(Bounded::TooLarge {
                        bytes: (bytes.len() + chunk.len()) as u64,
                    }));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(Bounded::Object(Object { bytes, etag })))
        })
    }

    fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<String, StoreError> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            if bytes.len() >= MULTIPART_THRESHOLD {
                return self.put_multipart(key, &full, bytes, &condition).await;
            }
            let mut put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .body(ByteStream::from(bytes.to_vec()));
            put = match &condition {
                Condition::Always => put,
                Condition::IfAbsent => put.if_none_match("*"),
                Condition::IfMatch(etag) => put.if_match(etag),
            };
            let out = put.send().await.map_err(|e| self.error(key, e))?;
            Ok(out.e_tag().unwrap_or_default().to_string())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        super::check_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.prefix);
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error(prefix, e))?;
                for object in page.contents() {
                    if let Some(k) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                        keys.push(k.to_string());
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| self.error(key, e))?;
            Ok(())
        })
    }

    /// S3 has no rename: a server-side copy, then a delete of the source. A crash in
    /// between leaves both (the runner's commit tolerates that: the staged copy is
    /// cleaned by the next run of the step).
    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.copy(from, to)?;
        self.delete(from)
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.full_key(from)?, self.full_key(to)?);
        self.runtime.block_on(async {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(&dst)
                .copy_source(format!("{}/{}", self.bucket, urlencode(&src)))
                .send()
                .await
                .map_err(|e| self.error(to, e))?;
            Ok::<(), StoreError>(())
        })
    }
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved
/// characters and `/`).
fn urlencode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_prefix() {
        let s = S3Store::open(
            "s3://bucket/some/prefix/",
            &S3Options {
                endpoint: Some("http://127.0.0.1:1".into()),
            },
        )
        .unwrap();
        assert_eq!(s.bucket, "bucket");
        assert_eq!(s.prefix, "some/prefix/");
        assert_eq!(s.uri("a/b.json"), "s3://bucket/some/prefix/a/b.json");
        let bare = S3Store::open("s3://bucket", &S3Options::default()).unwrap();
        assert_eq!(bare.prefix, "");
        assert!(S3Store::open("s3:///x", &S3Options::default()).is_err());
        assert!(s.full_key("../x").is_err());
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            urlencode("raw/dt=2026-01-01/p q.parquet"),
            "raw/dt%3D2026-01-01/p%20q.parquet"
        );
    }
}
