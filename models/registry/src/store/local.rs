//! A store in a local directory. Writes go to a temporary file beside the target
//! and are renamed into place, so a reader never sees a partial object; create-only
//! puts use `link`, which fails atomically when the target exists; compare-and-swap
//! holds an exclusive lock on the store while it compares and renames.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::{Bounded, Condition, Object, Store, StoreError, check_key, sha256_hex};

const TMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".sgml-store.lock";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl AsRef<Path>) -> Result<LocalStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            uri: root.display().to_string(),
            source,
        })?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, key: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        let uri = self.uri(key);
        move |source| StoreError::Io { uri, source }
    }

    fn write_tmp(&self, key: &str, path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let dir = path.parent().expect("keys have a parent under the root");
        fs::create_dir_all(dir).map_err(self.io(key))?;
        let name = path
            .file_name()
            .expect("keys name a file")
            .to_string_lossy();
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", rand::random::<u64>()));
        let mut f = File::create(&tmp).map_err(self.io(key))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(self.io(key))?;
        Ok(tmp)
    }
}

/// A local object's ETag is its SHA-256, so it changes exactly when the bytes do.
fn etag(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

impl Store for LocalStore {
    fn uri(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(Object {
                etag: etag(&bytes),
                bytes,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key)(e)),
        }
    }

    fn get_bounded(&self, key: &str, max_bytes: u64) -> Result<Option<Bounded>, StoreError> {
        let file = match File::open(self.path(key)?) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(key)(e)),
        };
        let len = file.metadata().map_err(self.io(key))?.len();
        if len > max_bytes {
            return Ok(Some(Bounded::TooLarge { bytes: len }));
        }
        // The file may grow between the size check and the read: read one byte past
        // the limit at most, and refuse if it is there.
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(self.io(key))?;
        if bytes.len() as u64 > max_bytes {
            return Ok(Some(Bounded::TooLarge {
                bytes: bytes.len() as u64,
            }));
        }
        Ok(Some(Bounded::Object(Object {
            etag: etag(&bytes),
            bytes,
        })))
    }

    fn put(&self, key: &str, bytes: &[u8], condition: Condition) -> Result<String, StoreError> {
        let path = self.path(key)?;
        let tmp = self.write_tmp(key, &path, bytes)?;
        let result = match &condition {
            Condition::Always => fs::rename(&tmp, &path).map_err(self.io(key)),
            Condition::IfAbsent => {
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        Err(StoreError::PreconditionFailed {
                            uri: self.uri(key),
                            reason: "the key exists and writes to it are create-only".into(),
                        })
                    }
                    other => other.map_err(self.io(key)),
                }
            }
            Condition::IfMatch(expected) => {
                let lock = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.root.join(LOCK_FILE))
                    .map_err(self.io(key))?;
                lock.lock().map_err(self.io(key))?;
                let current = self.get(key)?.map(|o| o.etag);
                let outcome = if current.as_deref() == Some(expected.as_str()) {
                    fs::rename(&tmp, &path).map_err(self.io(key))
                } else {
                    Err(StoreError::PreconditionFailed {
                        uri: self.uri(key),
                        reason: format!(
                            "expected ETag {expected}, found {}",
                            current.as_deref().unwrap_or("no object")
                        ),
                    })
                };
                let _ = lock.unlock();
                outcome
            }
        };
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|_| etag(bytes))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        super::check_prefix(prefix)?;
        let mut keys = Vec::new();
        let start = self.root.join(prefix.trim_end_matches('/'));
        let mut stack = vec![start.clone()];
        // A prefix may end inside a name ("raw/ord"), so walk its parent and filter.
        if !start.is_dir() {
            stack = vec![
                start
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(self.root.clone()),
            ];
        }
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(prefix)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(self.io(prefix))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) || name == LOCK_FILE {
                    continue;
                }
                if entry.file_type().map_err(self.io(prefix))?.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn sweep_temporary(&self, older_than: std::time::Duration) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("")(e)),
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= older_than);
                // A younger one may be a live writer's, between write and rename.
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                    && old
                    && fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                // Tidy empty partition directories so listings stay short.
                let mut dir = path.parent();
                while let Some(d) = dir {
                    if d == self.root || fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(key)(e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if !src.exists() {
            return Err(StoreError::NotFound {
                uri: self.uri(from),
            });
        }
        fs::create_dir_all(dst.parent().expect("keys have a parent")).map_err(self.io(to))?;
        fs::rename(&src, &dst).map_err(self.io(to))?;
        self.delete(from)
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if !src.exists() {
            return Err(StoreError::NotFound {
                uri: self.uri(from),
            });
        }
        let dir = dst.parent().expect("keys have a parent");
        fs::create_dir_all(dir).map_err(self.io(to))?;
        // Objects are never modified in place (every write is a new file renamed
        // over the key), so a hard link is a copy; linked to a temporary name first
        // so the key is replaced atomically.
        let name = dst.file_name().expect("keys name a file").to_string_lossy();
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", rand::random::<u64>()));
        fs::hard_link(&src, &tmp).map_err(self.io(to))?;
        fs::rename(&tmp, &dst).map_err(self.io(to))
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path()).unwrap();
        (dir, s)
    }

    /// A copy is its own object: it survives the source's removal, and a later write
    /// to the source does not reach it.
    #[test]
    fn copy_is_independent_of_its_source() {
        let (_d, s) = store();
        s.put("parts/a.bin", b"one", Condition::Always).unwrap();
        s.put("raw/b.bin", b"old", Condition::Always).unwrap();
        s.copy("parts/a.bin", "raw/b.bin").unwrap();
        assert_eq!(s.get("raw/b.bin").unwrap().unwrap().bytes, b"one");
        s.put("parts/a.bin", b"two", Condition::Always).unwrap();
        assert_eq!(s.get("raw/b.bin").unwrap().unwrap().bytes, b"one");
        s.delete("parts/a.bin").unwrap();
        assert_eq!(s.get("raw/b.bin").unwrap().unwrap().bytes, b"one");
        assert!(matches!(
            s.copy("parts/a.bin", "raw/c.bin"),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.list("").unwrap(), ["raw/b.bin"]);
    }

    #[test]
    fn put_get_list_delete() {
        let (_d, s) = store();
        let tag = s.put("a/b/c.json", b"{}", Condition::Always).unwrap();
        assert_eq!(s.get("a/b/c.json").unwrap().unwrap().etag, tag);
        s.put("a/d.json", b"1", Condition::Always).unwrap();
        assert_eq!(s.list("a/").unwrap(), vec!["a/b/c.json", "a/d.json"]);
        assert_eq!(s.list("a/b").unwrap(), vec!["a/b/c.json"]);
        s.delete("a/b/c.json").unwrap();
        assert!(s.get("a/b/c.json").unwrap().is_none());
        assert_eq!(s.list("").unwrap(), vec!["a/d.json"]);
    }

    #[test]
    fn bounded_reads_refuse_large_objects_unread() {
        let (_d, s) = store();
        s.put("photos/a.jpg", &[7u8; 100], Condition::Always)
            .unwrap();
        match s.get_bounded("photos/a.jpg", 100).unwrap() {
            Some(Bounded::Object(o)) => assert_eq!(o.bytes.len(), 100),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.get_bounded("photos/a.jpg", 99).unwrap(),
            Some(Bounded::TooLarge { bytes: 100 })
        ));
        assert!(s.get_bounded("photos/none.jpg", 99).unwrap().is_none());
        assert!(matches!(
            s.get_bounded("../outside.jpg", 99),
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[test]
    fn listing_outside_the_store_is_refused() {
        let (d, s) = store();
        std::fs::write(d.path().join("inside.json"), b"{}").unwrap();
        for bad in [
            "../",
            "a/../../",
            "/etc/",
            "models/pricing/../../../../etc/",
            "/",
        ] {
            assert!(
                matches!(s.list(bad), Err(StoreError::InvalidKey(_))),
                "{bad}"
            );
        }
        assert_eq!(s.list("").unwrap(), vec!["inside.json"]);
    }

    #[test]
    fn create_only_refuses_existing_keys() {
        let (_d, s) = store();
        s.put("v/manifest.json", b"one", Condition::IfAbsent)
            .unwrap();
        let err = s
            .put("v/manifest.json", b"two", Condition::IfAbsent)
            .unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed { .. }));
        assert_eq!(s.get("v/manifest.json").unwrap().unwrap().bytes, b"one");
        assert_eq!(
            s.list("v/").unwrap().len(),
            1,
            "no temporary file left behind"
        );
    }

    #[test]
    fn compare_and_swap_needs_the_current_etag() {
        let (_d, s) = store();
        let t1 = s.put("alias.json", b"v1", Condition::Always).unwrap();
        let t2 = s
            .put("alias.json", b"v2", Condition::IfMatch(t1.clone()))
            .unwrap();
        assert!(s.put("alias.json", b"v3", Condition::IfMatch(t1)).is_err());
        assert_eq!(s.get("alias.json").unwrap().unwrap().etag, t2);
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let (_d, s) = store();
        assert!(matches!(
            s.put("../x", b"", Condition::Always),
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            s.get("/etc/passwd"),
            Err(StoreError::InvalidKey(_))
        ));
    }
}
