//! Who may call `sgml serve`: a bearer JWT (HS256 with a shared secret, or RS256 with
//! the issuer's public key), and what its `scope` claim grants.
//!
//! Scopes are OAuth2-style and space-separated: `predict:<model>` (or `predict:*`) to
//! score a model, `admin:reload` to force a reload. The algorithm is fixed by the
//! server's configuration, never taken from the token, so `alg: none` and algorithm
//! confusion (an HS256 token signed with the RS256 public key) are refused.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the RS256 public key is not a PEM RSA public key: {0}")]
    BadKey(String),
    #[error(
        "the HS256 secret has {len} bytes; it needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2: as long as the hash)"
    )]
    ShortSecret { len: usize },
}

/// The shortest HS256 secret accepted: the hash's own length (RFC 7518 §3.2). A short
/// shared secret is guessed offline from any one token.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a request was refused: 401 (no valid token) or 403 (token lacks the scope).
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    Unauthenticated(String),
    Forbidden(String),
}

/// The token verifier, built once from the server's configuration.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub sub: String,
    scopes: Vec<String>,
}

impl Auth {
    pub fn hs256(secret: &[u8]) -> Result<Auth, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret { len: secret.len() });
        }
        Ok(Auth::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    pub fn rs256(public_key_pem: &[u8]) -> Result<Auth, AuthError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| AuthError::BadKey(e.to_string()))?;
        Ok(Auth::new(key, Algorithm::RS256))
    }

    fn new(key: DecodingKey, alg: Algorithm) -> Auth {
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token is not valid before its `nbf` (within the same leeway as `exp`).
        validation.validate_nbf = true;
        // Clock skew between the token issuer and this host.
        validation.leeway = 30;
        Auth { key, validation }
    }

    /// Verifies the `Authorization` header's bearer token.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Grant, Denied> {
        let unauthenticated = |why: String| Denied::Unauthenticated(why);
        let header = authorization
            .ok_or_else(|| unauthenticated("missing Authorization: Bearer <token>".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("Authorization is not a Bearer token".into()))?
            .trim();
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| unauthenticated(crate::rows::brief(&format!("invalid token: {e}"))))?;
        Ok(Grant {
            sub: data.claims.sub,
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }
}

impl Grant {
    /// Whether the token may score `model`.
    pub fn may_predict(&self, model: &str) -> Result<(), Denied> {
        let wanted = format!("predict:{model}");
        if self.scopes.iter().any(|s| *s == wanted || s == "predict:*") {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "token of {} lacks scope {wanted}",
                self.sub
            )))
        }
    }

    /// Whether the token may force a reload.
    pub fn may_reload(&self) -> Result<(), Denied> {
        if self.scopes.iter().any(|s| s == "admin:reload") {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "token of {} lacks scope admin:reload",
                self.sub
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn scopes_grant_exactly_what_they_name() {
        let auth = Auth::hs256(SECRET).unwrap();
        let t = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"sub": "svc", "exp": now() + 60, "scope": "predict:pricing"}),
        );
        let g = auth.verify(Some(&bearer(&t))).unwrap();
        assert_eq!(g.sub, "svc");
        assert!(g.may_predict("pricing").is_ok());
        assert!(matches!(
            g.may_predict("categorize"),
            Err(Denied::Forbidden(_))
        ));
        assert!(g.may_reload().is_err());
        let all = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"sub": "ops", "exp": now() + 60, "scope": "predict:* admin:reload"}),
        );
        let g = auth.verify(Some(&bearer(&all))).unwrap();
        assert!(g.may_predict("anything").is_ok() && g.may_reload().is_ok());
    }

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!";

    #[test]
    fn short_secrets_are_refused_and_nbf_is_honoured() {
        assert!(matches!(
            Auth::hs256(b"s3cret"),
            Err(AuthError::ShortSecret { len: 6 })
        ));
        assert!(matches!(
            Auth::hs256(b""),
            Err(AuthError::ShortSecret { len: 0 })
        ));
        let auth = Auth::hs256(SECRET).unwrap();
        let later = serde_json::json!({"sub": "svc", "exp": now() + 7200, "nbf": now() + 3600, "scope": "predict:*"});
        assert!(matches!(
            auth.verify(Some(&bearer(&token(Algorithm::HS256, SECRET, later)))),
            Err(Denied::Unauthenticated(_))
        ));
        let now_valid = serde_json::json!({"sub": "svc", "exp": now() + 7200, "nbf": now() - 10, "scope": "predict:*"});
        assert!(
            auth.verify(Some(&bearer(&token(Algorithm::HS256, SECRET, now_valid))))
                .is_ok()
        );
    }

    #[test]
    fn bad_tokens_are_unauthenticated() {
        let auth = Auth::hs256(SECRET).unwrap();
        let claims = serde_json::json!({"sub": "svc", "exp": now() + 60, "scope": "predict:*"});
        let unauth = |h: Option<&str>| matches!(auth.verify(h), Err(Denied::Unauthenticated(_)));
        assert!(unauth(None));
        assert!(unauth(Some("Basic dXNlcjpwYXNz")));
        assert!(unauth(Some(&bearer(&token(
            Algorithm::HS256,
            b"other",
            claims.clone()
        )))));
        assert!(unauth(Some(&bearer(&token(
            Algorithm::HS512,
            SECRET,
            claims.clone()
        )))));
        let expired = serde_json::json!({"sub": "svc", "exp": now() - 3600, "scope": "predict:*"});
        assert!(unauth(Some(&bearer(&token(
            Algorithm::HS256,
            SECRET,
            expired
        )))));
        let no_sub = serde_json::json!({"exp": now() + 60, "scope": "predict:*"});
        assert!(unauth(Some(&bearer(&token(
            Algorithm::HS256,
            SECRET,
            no_sub
        )))));
        assert!(matches!(
            Auth::rs256(b"not a key"),
            Err(AuthError::BadKey(_))
        ));
    }
}
