//! Anonymization applied at ingest, before anything is written.
//!
//! Customer ids become `customer_key = HMAC-SHA256(secret, id)`; direct identifiers
//! are dropped by the validator (they are not contract columns); free text is
//! scrubbed of e-mail addresses and phone numbers; a rejected value that could be
//! personal is shown masked in quarantine.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use rand::RngCore;
use regex::Regex;
use sha2::Sha256;

/// The demo key: used only for the bundled sample and generator output marked synthetic.
/// It is public, so keys made with it protect nothing; manifests say when it was used.
pub const DEMO_KEY: &[u8] = b"sgml-DEMO-KEY--public--synthetic-data-only";

/// The shortest secret accepted: HMAC-SHA256 keys below 128 bits are guessable.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the anonymization key is {0} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
}

/// The secret that turns customer ids into keys.
#[derive(Clone)]
pub struct AnonKey {
    secret: Vec<u8>,
    demo: bool,
}

impl std::fmt::Debug for AnonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AnonKey")
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl AnonKey {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<AnonKey, KeyError> {
        let secret: Vec<u8> = secret.into();
        let trimmed = secret.trim_ascii().to_vec();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(trimmed.len()));
        }
        Ok(AnonKey {
            secret: trimmed,
            demo: false,
        })
    }

    pub fn demo() -> AnonKey {
        AnonKey {
            secret: DEMO_KEY.to_vec(),
            demo: true,
        }
    }

    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// `hex(HMAC-SHA256(secret, id))` of the trimmed id. Ids that differ only in a
    /// trailing `.0` (a float export of an integer id) get the same key.
    pub fn customer_key(&self, customer_id: &str) -> String {
        let id = normalize_id(customer_id);
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn normalize_id(id: &str) -> &str {
    let id = id.trim();
    match id.strip_suffix(".0") {
        Some(int) if !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) => int,
        _ => id,
    }
}

/// A fresh key with no link to anything: what a deleted customer's key becomes.
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The key a deleted customer's key becomes under `salt`: a random key that several
/// processes agree on while they share the salt (the parts of a split ingest), and
/// that nothing links back once the salt is gone.
pub fn salted_key(salt: &[u8; 32], key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.+-]+@[\w-]+(\.[\w-]+)+").expect("valid regex"));
// A phone number: optional +country code, then at least three digit groups split by
// space, dot, dash or parentheses, 8+ digits in all. Model numbers ("RTX 4090",
// "2x 1000mAh") and single long codes (EAN) do not match.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\+\d{1,3}[\s.-]?)?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,5}\b")
        .expect("valid regex")
});

/// Replaces e-mail addresses and phone numbers in free text.
pub fn scrub_free_text(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[email]");
    PHONE
        .replace_all(&text, |c: &regex::Captures| {
            let digits = c[0].bytes().filter(u8::is_ascii_digit).count();
            if digits >= 8 {
                "[phone]".to_string()
            } else {
                c[0].to_string()
            }
        })
        .into_owned()
}

/// Masks a value that may be personal, keeping only its shape: `jane@shop.com` →
/// `j***@***.com`, anything else → first character and `***`.
pub fn mask(value: &str) -> String {
    let first: String = value.chars().take(1).collect();
    match value.rsplit_once('@') {
        Some((_, domain)) => {
            let tld = domain.rsplit_once('.').map(|(_, t)| t).unwrap_or("");
            format!("{first}***@***.{tld}")
        }
        None => format!("{first}***"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> AnonKey {
        AnonKey::new("0123456789abcdef-test-key").unwrap()
    }

    #[test]
    fn customer_key_is_hmac_sha256() {
        // Expected value from Python: hmac.new(b"0123456789abcdef", b"42", sha256).
        let k = AnonKey::new("0123456789abcdef").unwrap();
        assert_eq!(
            k.customer_key("42"),
            "8d24a2a526d5f556469db8b6280e3a7b877a41155ca536be3a1f2a9d2be0eacd"
        );
        assert_eq!(k.customer_key("42").len(), 64);
        assert_eq!(k.customer_key("17850.0"), k.customer_key("17850"));
        assert_ne!(k.customer_key("17850.5"), k.customer_key("17850"));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(AnonKey::new("short").unwrap_err(), KeyError::TooShort(5));
    }

    #[test]
    fn scrub_removes_contacts_but_keeps_model_numbers() {
        let s = scrub_free_text(
            "Call +44 20 7946 0958 or mail jane.doe@example.co.uk: RTX 4090 24GB, EAN 4006381333931",
        );
        assert!(!s.contains("jane"), "{s}");
        assert!(!s.contains("7946"), "{s}");
        assert!(s.contains("RTX 4090 24GB"), "{s}");
        assert!(s.contains("4006381333931"), "{s}");
    }

    #[test]
    fn mask_hides_all_but_shape() {
        assert_eq!(mask("jane@shop.com"), "j***@***.com");
        assert_eq!(mask("Jane Doe"), "J***");
        assert_eq!(mask(""), "***");
    }

    proptest! {
        #[test]
        fn keys_are_deterministic_and_never_contain_the_id(id in "[0-9A-Za-z]{4,20}") {
            let k = key();
            let a = k.customer_key(&id);
            prop_assert_eq!(&a, &k.customer_key(&id));
            prop_assert_eq!(a.len(), 64);
            prop_assert!(!a.contains(&id.to_lowercase()) || id.len() < 6);
            let other = AnonKey::new("another-secret-of-16+").unwrap();
            prop_assert_ne!(a, other.customer_key(&id));
        }

        #[test]
        fn scrubbed_text_has_no_email(user in "[a-z]{1,10}", domain in "[a-z]{2,10}", pre in "[A-Za-z ]{0,20}") {
            let text = format!("{pre} {user}@{domain}.com {pre}");
            let scrubbed = scrub_free_text(&text);
            let needle = format!("{user}@{domain}");
            prop_assert!(!scrubbed.contains(&needle));
        }

        #[test]
        fn masked_value_reveals_at_most_first_char(v in "\\PC{0,40}") {
            let m = mask(&v);
            let rest: String = v.chars().skip(1).collect();
            if rest.chars().count() > 4 && !m.contains('@') {
                prop_assert!(!m.contains(&rest));
            }
        }
    }
}
