//! Where a listing's photo is read from. A product's `image_uri` is written by a
//! seller's export (or sent to the server by a client), so it is untrusted: it may
//! name a path in the images directory (relative, or `file://` inside it) or an
//! object in a bucket (`s3://bucket/key`, read through the same client and settings
//! as an S3 store), and nothing else — no path outside the images directory, no web
//! address fetched. Every read is bounded by size before the bytes arrive.
//!
//! Here, beside the stores it reads through, so that `sgml images` (sgml-pipelines)
//! and `sgml serve` (sgml-serve, which links no pipeline code) read photos the same
//! way.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use sgml_models::photo::PhotoRule;

use super::{Bounded, LocalStore, S3Options, S3Store, Store, StoreError};

/// A photo's location once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoUri {
    /// A `/`-separated path inside the images directory.
    Local(String),
    S3 {
        bucket: String,
        key: String,
    },
}

/// Why a photo could not be read. [`FetchError::rule`] names the quarantine rule.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Uri(&'static str),
    #[error("no such file or object")]
    Missing,
    #[error("{bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FetchError {
    /// The quarantine rule a photo that could not be read goes under.
    pub fn rule(&self) -> PhotoRule {
        match self {
            FetchError::Uri(_) => PhotoRule::Uri,
            FetchError::TooLarge { .. } => PhotoRule::Size,
            FetchError::Missing | FetchError::Store(_) => PhotoRule::Read,
        }
    }
}

/// Checks `uri` and says where it points. `images_dir` is where relative paths and
/// `file://` URIs must lie.
pub fn parse(uri: &str, images_dir: Option<&Path>) -> Result<PhotoUri, FetchError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(FetchError::Uri("empty image_uri"));
    }
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or(FetchError::Uri("s3:// URI without a key"))?;
        if bucket.is_empty() || key.is_empty() || key.split('/').any(|s| s == "..") {
            return Err(FetchError::Uri("s3:// URI without a bucket or a plain key"));
        }
        return Ok(PhotoUri::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        });
    }
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(FetchError::Uri(
            "web addresses are not fetched: put photos in a bucket (s3://) or the images directory",
        ));
    }
    let path = match uri.strip_prefix("file://") {
        Some(p) => Path::new(p),
        None if uri.contains("://") => {
            return Err(FetchError::Uri(
                "unknown scheme: image_uri is a path, file:// or s3://",
            ));
        }
        None => Path::new(uri),
    };
    let dir = images_dir.ok_or(FetchError::Uri(
        "a local photo path, but no images directory was given (--images-dir)",
    ))?;
    let relative = if path.is_absolute() {
        path.strip_prefix(dir).map_err(|_| {
            FetchError::Uri("a file:// or absolute path outside the images directory")
        })?
    } else {
        path
    };
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or(FetchError::Uri("a path that is not UTF-8"))?,
            ),
            Component::CurDir => {}
            _ => {
                return Err(FetchError::Uri(
                    "a path that climbs out of the images directory",
                ));
            }
        }
    }
    if parts.is_empty() {
        return Err(FetchError::Uri("a path naming no file"));
    }
    Ok(PhotoUri::Local(parts.join("/")))
}

/// Reads photos from the images directory and from buckets, keeping one client per
/// bucket.
pub struct PhotoSource {
    images_dir: Option<PathBuf>,
    local: Option<LocalStore>,
    s3: S3Options,
    buckets: Mutex<HashMap<String, Arc<S3Store>>>,
    max_bytes: u64,
}

impl PhotoSource {
    pub fn new(
        images_dir: Option<PathBuf>,
        s3: S3Options,
        max_bytes: u64,
    ) -> Result<PhotoSource, StoreError> {
        let local = match &images_dir {
            Some(dir) if !dir.is_dir() => {
                return Err(StoreError::NotFound {
                    uri: dir.display().to_string(),
                });
            }
            Some(dir) => Some(LocalStore::new(dir)?),
            None => None,
        };
        Ok(PhotoSource {
            images_dir,
            local,
            s3,
            buckets: Mutex::new(HashMap::new()),
            max_bytes,
        })
    }

    /// The bytes `uri` points at, at most the source's `max_bytes`.
    pub fn fetch(&self, uri: &str) -> Result<Vec<u8>, FetchError> {
        let found = match parse(uri, self.images_dir.as_deref())? {
            PhotoUri::Local(key) => self
                .local
                .as_ref()
                .expect("parse refuses local paths without a directory")
                .get_bounded(&key, self.max_bytes)?,
            PhotoUri::S3 { bucket, key } => {
                self.bucket(&bucket)?.get_bounded(&key, self.max_bytes)?
            }
        };
        match found {
            None => Err(FetchError::Missing),
            Some(Bounded::TooLarge { bytes }) => Err(FetchError::TooLarge {
                bytes,
                limit: self.max_bytes,
            }),
            Some(Bounded::Object(o)) => Ok(o.bytes),
        }
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<S3Store>, StoreError> {
        let mut open = self.buckets.lock().expect("no panics while held");
        if let Some(s) = open.get(bucket) {
            return Ok(s.clone());
        }
        let store = Arc::new(S3Store::open(&format!("s3://{bucket}"), &self.s3)?);
        open.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_stay_inside_the_images_directory() {
        let dir = Path::new("/data/export/images");
        let ok = |u: &str| parse(u, Some(dir)).unwrap();
        assert_eq!(ok("p1.jpg"), PhotoUri::Local("p1.jpg".into()));
        assert_eq!(ok("./a/p1.jpg"), PhotoUri::Local("a/p1.jpg".into()));
        assert_eq!(
            ok("file:///data/export/images/a/p1.jpg"),
            PhotoUri::Local("a/p1.jpg".into())
        );
        assert_eq!(
            ok("s3://photos/listings/p1.jpg"),
            PhotoUri::S3 {
                bucket: "photos".into(),
                key: "listings/p1.jpg".into()
            }
        );
        for bad in [
            "",
            "../secret.jpg",
            "a/../../secret.jpg",
            "/etc/passwd",
            "file:///etc/passwd",
            "file:///data/export/images/../secret.jpg",
            "https://example.com/p1.jpg",
            "HTTP://example.com/p1.jpg",
            "ftp://example.com/p1.jpg",
            "s3://bucket-only",
            "s3:///key",
            "s3://b/a/../../x",
        ] {
            let err = parse(bad, Some(dir)).unwrap_err();
            assert_eq!(err.rule(), PhotoRule::Uri, "{bad}: {err}");
        }
        assert_eq!(
            parse("p1.jpg", None).unwrap_err().rule(),
            PhotoRule::Uri,
            "a relative path needs an images directory"
        );
    }

    #[test]
    fn fetch_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small.jpg"), [1u8; 10]).unwrap();
        std::fs::write(dir.path().join("big.jpg"), [1u8; 11]).unwrap();
        let source = PhotoSource::new(Some(dir.path().into()), S3Options::default(), 10).unwrap();
        assert_eq!(source.fetch("small.jpg").unwrap().len(), 10);
        let big = source.fetch("big.jpg").unwrap_err();
        assert!(
            matches!(
                big,
                FetchError::TooLarge {
                    bytes: 11,
                    limit: 10
                }
            ),
            "{big}"
        );
        assert_eq!(big.rule(), PhotoRule::Size);
        assert_eq!(
            source.fetch("none.jpg").unwrap_err().rule(),
            PhotoRule::Read
        );
    }
}
