//! The object store every step reads and writes: a local directory or an S3 bucket.
//!
//! The trait is the small set of operations both can do atomically: whole-object
//! get and put, conditional puts (create-only, compare-and-swap on the ETag), list
//! by prefix, delete, move. Keys are `/`-separated paths relative to the store root.

mod local;
/// Untrusted photo URIs read from the images directory or a bucket.
#[cfg(feature = "photos")]
pub mod photos;
#[cfg(feature = "s3")]
mod s3;

pub use local::LocalStore;
#[cfg(feature = "s3")]
pub use s3::{MAX_ATTEMPTS, MULTIPART_THRESHOLD, S3Options, S3Store};

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Hex SHA-256 of bytes: the checksum recorded in manifests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// [`sha256_hex`] of a file, streamed rather than read whole.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{uri}: precondition failed ({reason})")]
    PreconditionFailed { uri: String, reason: String },
    #[error("{uri}: not found")]
    NotFound { uri: String },
    #[error("{uri}: {source}")]
    Io {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid key `{0}`: keys are relative `/`-separated paths without `..`")]
    InvalidKey(String),
    #[error("{uri}: {message}")]
    S3 { uri: String, message: String },
}

/// A stored object's bytes and its entity tag (changes whenever the bytes change).
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// What [`Store::get_bounded`] found.
#[derive(Debug, Clone)]
pub enum Bounded {
    Object(Object),
    /// The object is larger than asked; its bytes were not read.
    TooLarge {
        bytes: u64,
    },
}

/// When a put may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Create-only (S3 `If-None-Match: *`): fails if the key exists.
    IfAbsent,
    /// Compare-and-swap (S3 `If-Match`): fails unless the current ETag is this one.
    IfMatch(String),
}

pub trait Store: Send + Sync {
    /// How the key is shown to people and recorded in manifests.
    fn uri(&self, key: &str) -> String;

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;

    /// Reads the object only if it is at most `max_bytes` long, never holding more
    /// than that: for objects someone else sized (a listing's photo), so their size
    /// cannot decide the memory a step takes.
    fn get_bounded(&self, key: &str, max_bytes: u64) -> Result<Option<Bounded>, StoreError>;

    /// Writes the whole object atomically: readers see the old bytes or the new ones.
    /// Returns the new ETag.
    fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<String, StoreError>;

    /// Every key under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes a key; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Moves an object to a new key, replacing what is there.
    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Copies an object to a new key, replacing what is there atomically, without
    /// the bytes passing through this process where the store can avoid it (a hard
    /// link on disk, a server-side copy on S3).
    fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// A filesystem path for the key when the store is local, so polars can scan
    /// files lazily instead of loading them whole.
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }

    /// Removes the store's own temporary files older than `older_than` (left by a
    /// process killed between writing and renaming); returns how many. Stores whose
    /// writes leave nothing behind (S3's are atomic) have none.
    fn sweep_temporary(&self, _older_than: std::time::Duration) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Opens a store from its URI: `s3://bucket/prefix`, or a directory path (or
/// `file://` URL).
#[cfg(feature = "s3")]
pub fn open(uri: &str, s3: &S3Options) -> Result<Box<dyn Store>, StoreError> {
    if uri.starts_with("s3://") {
        return Ok(Box::new(S3Store::open(uri, s3)?));
    }
    open_local(uri)
}

/// Opens a local store from a directory path or `file://` URL; an `s3://` URI is an
/// error naming the missing feature.
pub fn open_local(uri: &str) -> Result<Box<dyn Store>, StoreError> {
    if uri.starts_with("s3://") {
        return Err(StoreError::S3 {
            uri: uri.to_string(),
            message: "this build has no S3 support (sgml-registry's `s3` feature)".into(),
        });
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    Ok(Box::new(LocalStore::new(path)?))
}

/// A listing prefix: empty (the whole store), or a key, or a key's folder ending in
/// `/`; never a path that climbs out of the store.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    match prefix.strip_suffix('/').unwrap_or(prefix) {
        "" if prefix.is_empty() => Ok(()),
        folder => check_key(folder).map_err(|_| StoreError::InvalidKey(prefix.to_string())),
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(StoreError::InvalidKey(key.to_string()))
    } else {
        Ok(())
    }
}
