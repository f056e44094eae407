//! Every key the registry reads or writes, in one place: the `models/` area of the
//! store.
//!
//! ```text
//! models/<name>/<version>/manifest.json      a bundle version (and the files it lists)
//! models/<name>/aliases/<alias>.json         pointer to a version (Alias)
//! models/<name>/history/<seq>.json           one promotion or rollback (Promotion)
//! ```

/// The alias services load and training promotes to.
pub const CHAMPION: &str = "champion";

const MODELS: &str = "models";
const MANIFEST: &str = "manifest.json";
const ALIASES: &str = "aliases";
const HISTORY: &str = "history";

/// Whether a model, version or alias name is safe in a key: one or more of
/// `[A-Za-z0-9._-]`, at most 128 long, and never `..` (so no name reaches outside
/// its model's folder, and every name reads the same in every store).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `models/<name>/`: everything of one model.
pub fn model_prefix(name: &str) -> String {
    format!("{MODELS}/{name}/")
}

/// `models/<name>/<version>/`: the files of one bundle version.
pub fn version_prefix(name: &str, version: &str) -> String {
    format!("{MODELS}/{name}/{version}/")
}

/// `models/<name>/<version>/manifest.json`, written last (a version is whole once
/// it exists).
pub fn manifest_key(name: &str, version: &str) -> String {
    format!("{}{MANIFEST}", version_prefix(name, version))
}

pub fn aliases_prefix(name: &str) -> String {
    format!("{MODELS}/{name}/{ALIASES}/")
}

pub fn alias_key(name: &str, alias: &str) -> String {
    format!("{}{alias}.json", aliases_prefix(name))
}

pub fn history_prefix(name: &str) -> String {
    format!("{MODELS}/{name}/{HISTORY}/")
}

/// Zero-padded so keys sort in sequence order.
pub fn history_key(name: &str, seq: u64) -> String {
    format!("{}{seq:010}.json", history_prefix(name))
}

/// The version a manifest key (or a URI ending in one) names:
/// `…models/<name>/<version>/manifest.json` → `<version>`.
pub fn version_of_manifest(key: &str, name: &str) -> Option<String> {
    let rest = key.rsplit_once(&model_prefix(name))?.1;
    let version = rest.strip_suffix(&format!("/{MANIFEST}"))?;
    (!version.contains('/')).then(|| version.to_string())
}

/// The alias an alias key names: `models/<name>/aliases/<alias>.json` → `<alias>`.
pub fn alias_of_key(key: &str, name: &str) -> Option<String> {
    key.strip_prefix(&aliases_prefix(name))?
        .strip_suffix(".json")
        .filter(|a| !a.contains('/'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_their_inverses_agree() {
        let m = manifest_key("pricing", "20261201T000000Z-ab12");
        assert_eq!(m, "models/pricing/20261201T000000Z-ab12/manifest.json");
        assert_eq!(
            version_of_manifest(&m, "pricing").as_deref(),
            Some("20261201T000000Z-ab12")
        );
        assert_eq!(
            version_of_manifest(&format!("s3://b/p/{m}"), "pricing").as_deref(),
            Some("20261201T000000Z-ab12"),
            "a URI ending in the key"
        );
        assert_eq!(version_of_manifest(&m, "categorize"), None);
        assert_eq!(
            version_of_manifest("models/pricing/v1/report/manifest.json", "pricing"),
            None,
            "a file inside a version is not a version"
        );
        let a = alias_key("pricing", CHAMPION);
        assert_eq!(a, "models/pricing/aliases/champion.json");
        assert_eq!(alias_of_key(&a, "pricing").as_deref(), Some(CHAMPION));
        assert_eq!(
            history_key("pricing", 7),
            "models/pricing/history/0000000007.json"
        );
    }

    #[test]
    fn names_that_could_leave_their_folder_are_invalid() {
        for good in ["pricing", "champion", "20261201T000000Z-ab12", "team_a.v-2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../../../../etc",
            "a b",
            "team/x",
            "a..b",
            "é",
            "x\0",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"a".repeat(129)));
    }
}
