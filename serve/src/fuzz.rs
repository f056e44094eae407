//! Fuzzing what a client controls on stable Rust: request bodies (into the row
//! parsers) and Authorization headers (into token verification), as arbitrary bytes
//! and as structure-aware inputs (JSON with the fields the parsers know, tokens with
//! every header an attacker tries: `alg: none`, algorithm confusion, `crit`, `kid`
//! paths, huge claims). Properties: no panic; a body is parsed or refused naming a
//! field; a token without the secret is never accepted; no message quotes more than a
//! brief slice of the input.
//!
//! Bounded for CI by `PROPTEST_CASES` (default 256 per property); a longer run:
//! `PROPTEST_CASES=200000 cargo test --workspace --release --lib fuzz`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use crate::auth::{Auth, Denied};
use crate::rows::{self, MAX_QUOTE_CHARS};

const BODY_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\"rows\"",
    "\"market\"",
    "\"title\"",
    "\"month\"",
    "\"quantity\"",
    "\"top\"",
    "\"guest\"",
    "null",
    "true",
    "1e400",
    "-1",
    "13",
    "0.5",
    "\"DE\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\u{FFFD}",
    " ",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        6 => prop::sample::select(BODY_TOKENS).prop_map(|t| t.as_bytes().to_vec()),
        1 => "[a-z]{300,400}".prop_map(|s| format!("\"{s}\"").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

const SECRET: &[u8] = b"fuzz-secret-of-at-least-thirty-two-bytes";

const HEADERS: &[&str] = &[
    r#"{"alg":"none"}"#,
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"RS256"}"#,
    r#"{"alg":"ES256"}"#,
    r#"{"alg":"HS256","crit":["exp"]}"#,
    r#"{"alg":"HS256","kid":"../../../../etc/passwd"}"#,
    r#"{"alg":"HS512"}"#,
    r#"{"alg":"hs256"}"#,
    r#"{}"#,
    r#"[]"#,
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(HEADERS).prop_map(|h| URL_SAFE_NO_PAD.encode(h)),
        r#"\{"sub":"[a-z]{0,400}","exp":[0-9]{1,12},"scope":"predict:\*"\}"#
            .prop_map(|c| URL_SAFE_NO_PAD.encode(c)),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "[A-Za-z0-9_=+/.-]{0,40}",
    ]
}

fn quoted_briefly(why: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        why.chars().count() <= 2 * MAX_QUOTE_CHARS,
        "a message of {} characters",
        why.chars().count()
    );
    Ok(())
}

proptest! {

    #[test]
    fn fuzz_request_bodies(bytes in prop_oneof![body(), prop::collection::vec(any::<u8>(), 0..300)]) {
        for parsed in [rows::price_inputs(&bytes).map(|r| r.len()), rows::titles(&bytes).map(|r| r.len())] {
            match parsed {
                Ok(n) => prop_assert!(n > 0),
                Err(bad) => {
                    quoted_briefly(&bad.why)?;
                    quoted_briefly(&bad.field)?;
                }
            }
        }
    }

    #[test]
    fn fuzz_authorization_headers(
        parts in prop::collection::vec(segment(), 0..5),
        scheme in prop::sample::select(vec!["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
    ) {
        let auth = Auth::hs256(SECRET).unwrap();
        let header = format!("{scheme}{}", parts.join("."));
        match auth.verify(Some(&header)) {
            Ok(grant) => prop_assert!(false, "accepted a forged token for {}", grant.sub),
            Err(Denied::Unauthenticated(why)) => quoted_briefly(&why)?,
            Err(Denied::Forbidden(why)) => prop_assert!(false, "verify never forbids: {why}"),
        }
    }
}
