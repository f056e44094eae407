//! The model bundle: a directory (or a set of store objects) holding a model's files in
//! open formats plus `manifest.json`, which lists every file with its size and SHA-256.
//!
//! A bundle is only ever handed out verified: every listed file present with the listed
//! size and checksum, no file that the manifest does not list, no path that escapes the
//! bundle. Anything else is refused with an error naming the file — never half-loaded.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle has no {MANIFEST}")]
    MissingManifest,
    #[error("{MANIFEST} is not a valid manifest: {0}")]
    BadManifest(String),
    #[error("bundle file `{path}` is listed in the manifest but missing")]
    MissingFile { path: String },
    #[error("bundle file `{path}` is not listed in the manifest")]
    UnlistedFile { path: String },
    #[error("bundle file `{path}` has {found} bytes, the manifest says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "bundle file `{path}` has sha256 {found}, the manifest says {expected} (corrupt or tampered)"
    )]
    ChecksumMismatch {
        path: String,
        expected: String,
        found: String,
    },
    #[error("bundle path `{0}` is not a plain relative path")]
    BadPath(String),
    #[error("bundle is a `{found}` model, expected `{expected}`")]
    WrongKind { expected: String, found: String },
    #[error("bundle input schema does not match: {0}")]
    SchemaMismatch(String),
    #[error("reading bundle {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// One column a model reads or writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// `str`, `f64`, `i64`, `bool`, `date`, `timestamp`.
    pub dtype: String,
    pub nullable: bool,
}

/// Which metric decides promotion, and which way is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub metric: String,
    pub direction: Direction,
    /// Relative tolerance: a challenger may be this much worse and still pass.
    pub tolerance: f64,
}

/// Which way a gate metric improves. Serialized as `lower` / `higher`; any other
/// value makes the manifest invalid (a typo never silently means one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Errors (RMSE): smaller is better.
    Lower,
    /// Scores (macro-F1): larger is better.
    Higher,
}

impl Gate {
    /// Whether `new` passes against `old`, and the limit it was held to: at most
    /// `tolerance` (relative) worse than the champion.
    pub fn passes(&self, new: f64, old: f64) -> (bool, f64) {
        match self.direction {
            Direction::Higher => {
                let bound = old * (1.0 - self.tolerance);
                (new >= bound, bound)
            }
            Direction::Lower => {
                let bound = old * (1.0 + self.tolerance);
                (new <= bound, bound)
            }
        }
    }
}

/// One object a training run read, with its checksum (the training data's lineage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub uri: String,
    pub sha256: String,
    pub rows: usize,
}

/// How a time-split model divided its days (ISO dates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSplit {
    pub train_until: String,
    pub calibration_from: String,
    pub holdout_from: String,
}

/// What a version was trained on: the run, its inputs and how they were cut.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// The training run (`runs/<run_id>/manifest.json`).
    pub run_id: String,
    /// ISO date of the partition trained for.
    pub run_date: Option<String>,
    /// One hash over the keys and checksums of every input: equal for two trainings on
    /// the same data.
    pub fingerprint: String,
    pub inputs: Vec<InputRecord>,
    /// Rows per cut (`train`/`fit`, `calibration`, `holdout`).
    pub rows: BTreeMap<String, usize>,
    /// The days of each cut, for models split by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TimeSplit>,
    /// The champion whose score on this version's holdout the manifest records
    /// (`champion_<metric>`), so the gate compares both on the same rows.
    #[serde(default)]
    pub champion_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub created_at: String,
    pub code_version: String,
    pub parameters: serde_json::Value,
    pub seed: u64,
    pub training_data: TrainingData,
    pub input_schema: Vec<Field>,
    pub output_schema: Vec<Field>,
    pub metrics: BTreeMap<String, f64>,
    /// Statistics of the training inputs, for drift checks.
    pub baseline: serde_json::Value,
    pub gate: Gate,
    pub files: Vec<FileEntry>,
}

/// A verified bundle: its manifest and the bytes of every listed file.
#[derive(Debug, Clone)]
pub struct Bundle {
    manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_path(path: &str) -> Result<(), BundleError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(BundleError::BadPath(path.to_string()))
    } else {
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSSZ-<12 hex of the content hash>`: versions sort by time and differ
/// whenever the content does.
pub fn version_id(created_compact_utc: &str, content: &[u8]) -> String {
    format!("{created_compact_utc}-{}", &sha256_hex(content)[..12])
}

impl Bundle {
    /// Builds a bundle from files: the manifest's `files` list is computed here.
    pub fn new(
        mut manifest: Manifest,
        files: BTreeMap<String, Vec<u8>>,
    ) -> Result<Bundle, BundleError> {
        for path in files.keys() {
            check_path(path)?;
            if path == MANIFEST {
                return Err(BundleError::BadPath(path.clone()));
            }
        }
        manifest.files = files
            .iter()
            .map(|(path, bytes)| FileEntry {
                path: path.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect();
        Ok(Bundle { manifest, files })
    }

    /// Verifies and opens a bundle from its objects (manifest.json included).
    pub fn from_files(mut objects: BTreeMap<String, Vec<u8>>) -> Result<Bundle, BundleError> {
        let manifest_bytes = objects
            .remove(MANIFEST)
            .ok_or(BundleError::MissingManifest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| BundleError::BadManifest(e.to_string()))?;
        for entry in &manifest.files {
            check_path(&entry.path)?;
            let bytes = objects
                .get(&entry.path)
                .ok_or_else(|| BundleError::MissingFile {
                    path: entry.path.clone(),
                })?;
            if bytes.len() as u64 != entry.size {
                return Err(BundleError::SizeMismatch {
                    path: entry.path.clone(),
                    expected: entry.size,
                    found: bytes.len() as u64,
                });
            }
            let found = sha256_hex(bytes);
            if found != entry.sha256 {
                return Err(BundleError::ChecksumMismatch {
                    path: entry.path.clone(),
                    expected: entry.sha256.clone(),
                    found,
                });
            }
        }
        if let Some(extra) = objects
            .keys()
            .find(|p| !manifest.files.iter().any(|e| &e.path == *p))
        {
            return Err(BundleError::UnlistedFile {
                path: extra.clone(),
            });
        }
        Ok(Bundle {
            manifest,
            files: objects,
        })
    }

    /// Verifies and opens a bundle directory.
    pub fn load_dir(dir: &Path) -> Result<Bundle, BundleError> {
        let mut objects = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| BundleError::Io { path, source }
        };
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(io(&d))? {
                let p = entry.map_err(io(&d))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(dir)
                        .expect("below the bundle")
                        .to_string_lossy()
                        .replace('\\', "/");
                    objects.insert(rel, std::fs::read(&p).map_err(io(&p))?);
                }
            }
        }
        Bundle::from_files(objects)
    }

    /// Every object to write, the manifest last: a reader that finds the manifest
    /// finds every file it lists.
    pub fn to_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = self
            .files
            .iter()
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect();
        out.push((MANIFEST.to_string(), self.manifest_bytes()));
        out
    }

    pub fn manifest_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.manifest).expect("a manifest serializes")
    }

    /// What an alias points at and an event carries.
    pub fn manifest_sha256(&self) -> String {
        sha256_hex(&self.manifest_bytes())
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    pub fn expect_kind(&self, kind: &str) -> Result<(), BundleError> {
        if self.manifest.kind == kind {
            Ok(())
        } else {
            Err(BundleError::WrongKind {
                expected: kind.to_string(),
                found: self.manifest.kind.clone(),
            })
        }
    }

    /// Refuses a bundle whose input schema lacks a field the caller will provide, or
    /// has it with another type.
    pub fn expect_inputs(&self, fields: &[Field]) -> Result<(), BundleError> {
        for want in fields {
            match self
                .manifest
                .input_schema
                .iter()
                .find(|f| f.name == want.name)
            {
                None => {
                    return Err(BundleError::SchemaMismatch(format!(
                        "no input `{}`",
                        want.name
                    )));
                }
                Some(f) if f.dtype != want.dtype => {
                    return Err(BundleError::SchemaMismatch(format!(
                        "input `{}` is {} in the bundle, {} expected",
                        want.name, f.dtype, want.dtype
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A manifest for a model family's bundle round-trip tests.
#[cfg(test)]
pub(crate) fn test_manifest(name: &str, kind: &str, gate: Gate) -> Manifest {
    Manifest {
        name: name.into(),
        version: "v1".into(),
        kind: kind.into(),
        created_at: "2026-11-25T12:00:00Z".into(),
        code_version: "test".into(),
        parameters: serde_json::json!({}),
        seed: 42,
        training_data: TrainingData::default(),
        input_schema: vec![],
        output_schema: vec![],
        metrics: BTreeMap::new(),
        baseline: serde_json::json!({}),
        gate,
        files: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "pricing".into(),
            version: "20261125T120000Z-abc".into(),
            kind: "pricing-linear".into(),
            created_at: "2026-11-25T12:00:00Z".into(),
            code_version: "test".into(),
            parameters: serde_json::json!({"alpha": 0.1}),
            seed: 42,
            training_data: TrainingData::default(),
            input_schema: vec![Field {
                name: "category".into(),
                dtype: "str".into(),
                nullable: true,
            }],
            output_schema: vec![Field {
                name: "price".into(),
                dtype: "f64".into(),
                nullable: false,
            }],
            metrics: BTreeMap::from([("rmse_log".into(), 0.3)]),
            baseline: serde_json::json!({}),
            gate: Gate {
                metric: "rmse_log".into(),
                direction: Direction::Lower,
                tolerance: 0.005,
            },
            files: vec![],
        }
    }

    fn bundle() -> Bundle {
        let files = BTreeMap::from([
            ("model.json".to_string(), b"{\"weights\": [1, 2]}".to_vec()),
            ("lookups/category.json".to_string(), b"{\"a\": 1}".to_vec()),
        ]);
        Bundle::new(manifest(), files).unwrap()
    }

    fn objects(b: &Bundle) -> BTreeMap<String, Vec<u8>> {
        b.to_files().into_iter().collect()
    }

    #[test]
    fn round_trip_through_files_and_a_directory() {
        let b = bundle();
        let again = Bundle::from_files(objects(&b)).unwrap();
        assert_eq!(again.manifest(), b.manifest());
        assert_eq!(again.manifest_sha256(), b.manifest_sha256());
        assert_eq!(again.file("model.json"), b.file("model.json"));
        let dir = std::env::temp_dir().join(format!("sgml-bundle-test-{}", std::process::id()));
        for (path, bytes) in b.to_files() {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let loaded = Bundle::load_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.manifest(), b.manifest());
        assert_eq!(loaded.manifest().files.len(), 2);
    }

    #[test]
    fn a_gate_direction_that_is_not_lower_or_higher_is_refused() {
        let mut m = serde_json::to_value(manifest()).unwrap();
        m["gate"]["direction"] = "lowre".into();
        assert!(serde_json::from_value::<Manifest>(m).is_err());
        let g = manifest().gate;
        assert_eq!(g.passes(0.3, 0.3), (true, 0.3 * 1.005));
        assert!(!g.passes(0.31, 0.3).0, "lower: a worse RMSE fails");
        let higher = Gate {
            direction: Direction::Higher,
            ..g
        };
        assert!(higher.passes(0.31, 0.3).0, "higher: a better score passes");
        assert!(!higher.passes(0.29, 0.3).0);
    }

    /// Fuzzing the manifest on stable Rust (bounded by `PROPTEST_CASES`, default
    /// 256): whatever bytes replace it, or however its JSON is cut or its bytes
    /// flipped, loading refuses by type or yields a bundle whose every listed file
    /// verifies; never a panic.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        const JSON_TOKENS: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"files\"",
            "\"path\"",
            "\"../x\"",
            "\"/etc/passwd\"",
            "\"sha256\"",
            "\"bytes\"",
            "18446744073709551615",
            "-1",
            "null",
            "\"model.json\"",
            "\"gate\"",
            "\"direction\"",
            "\"lower\"",
            "1e999",
            "\"\\u0000\"",
        ];

        proptest! {

            #[test]
            fn fuzz_manifests(
                flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
                cut in prop::option::of(any::<prop::sample::Index>()),
                replacement in prop::option::of(prop::collection::vec(prop::sample::select(JSON_TOKENS), 0..60)),
            ) {
                let mut o = objects(&bundle());
                let m = o.get_mut(MANIFEST).unwrap();
                if let Some(tokens) = replacement {
                    *m = tokens.concat().into_bytes();
                }
                for (at, mask) in flips {
                    if !m.is_empty() {
                        let i = at.index(m.len());
                        m[i] ^= mask;
                    }
                }
                if let Some(cut) = cut {
                    let len = cut.index(m.len() + 1);
                    m.truncate(len);
                }
                if let Ok(b) = Bundle::from_files(o) {
                    for f in &b.manifest().files {
                        prop_assert!(b.file(&f.path).is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn tampering_is_refused_naming_the_file() {
        let mut o = objects(&bundle());
        o.get_mut("model.json").unwrap()[3] ^= 1;
        let err = Bundle::from_files(o).unwrap_err();
        assert!(
            matches!(&err, BundleError::ChecksumMismatch { path, .. } if path == "model.json"),
            "{err}"
        );

        let mut o = objects(&bundle());
        o.get_mut("lookups/category.json").unwrap().push(b' ');
        assert!(matches!(
            Bundle::from_files(o),
            Err(BundleError::SizeMismatch { .. })
        ));

        let mut o = objects(&bundle());
        o.remove("model.json");
        assert!(matches!(
            Bundle::from_files(o),
            Err(BundleError::MissingFile { .. })
        ));

        let mut o = objects(&bundle());
        o.insert("extra.bin".into(), vec![0]);
        assert!(matches!(
            Bundle::from_files(o),
            Err(BundleError::UnlistedFile { .. })
        ));

        let mut o = objects(&bundle());
        o.remove(MANIFEST);
        assert!(matches!(
            Bundle::from_files(o),
            Err(BundleError::MissingManifest)
        ));
    }

    #[test]
    fn manifest_cannot_point_outside_the_bundle() {
        let mut o = objects(&bundle());
        let mut m: Manifest = serde_json::from_slice(&o[MANIFEST]).unwrap();
        m.files[0].path = "../../etc/passwd".into();
        o.insert(MANIFEST.into(), serde_json::to_vec(&m).unwrap());
        assert!(matches!(
            Bundle::from_files(o),
            Err(BundleError::BadPath(_))
        ));
        let files = BTreeMap::from([("/abs".to_string(), vec![1])]);
        assert!(matches!(
            Bundle::new(manifest(), files),
            Err(BundleError::BadPath(_))
        ));
    }

    #[test]
    fn kind_and_schema_checks() {
        let b = bundle();
        assert!(b.expect_kind("pricing-linear").is_ok());
        assert!(matches!(
            b.expect_kind("pricing-gbdt"),
            Err(BundleError::WrongKind { .. })
        ));
        let want = |dtype: &str| {
            vec![Field {
                name: "category".into(),
                dtype: dtype.into(),
                nullable: true,
            }]
        };
        assert!(b.expect_inputs(&want("str")).is_ok());
        assert!(matches!(
            b.expect_inputs(&want("f64")),
            Err(BundleError::SchemaMismatch(_))
        ));
    }

    #[test]
    fn versions_sort_by_time_and_track_content() {
        let a = version_id("20261125T120000Z", b"one");
        assert_eq!(a.len(), "20261125T120000Z-".len() + 12);
        assert_ne!(a, version_id("20261125T120000Z", b"two"));
        assert!(version_id("20261124T235959Z", b"z") < a);
    }
}
