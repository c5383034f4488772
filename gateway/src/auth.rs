//! JWT verification and minting.
//!
//! Only the configured algorithm is accepted (so `alg: none` and algorithm-confusion tokens are
//! refused), `exp` is required and enforced with no leeway beyond a few seconds of clock skew,
//! and `nbf`, when present, is enforced with the same leeway (a token is not valid before it).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{JwtAlgorithm, JwtKey};

/// Allowed clock skew when checking `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims a token carries, as the original design signed them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id; `sub` is used when absent.
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Standard subject claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `user` (default) or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// The identity behind an authenticated socket or HTTP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `userId` (or `sub`).
    pub user_id: String,
    /// `username` (defaults to the user id).
    pub username: String,
    /// `role` (defaults to `user`).
    pub role: String,
}

impl Identity {
    /// A user whose name is its id, with the default role (what a token with only `userId`
    /// gives).
    pub fn user(user_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            username: user_id.to_owned(),
            role: "user".to_owned(),
        }
    }

    /// Whether the role is `admin`.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// Why a token was refused. The `Display` texts are the contract's `connect_error` messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token in `auth.token` nor in the `Authorization` header.
    #[error("Authentication error: No token provided")]
    NoToken,
    /// Bad signature, wrong algorithm, malformed, expired, or no user id.
    #[error("Authentication error: Invalid token")]
    InvalidToken,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// Only a shared secret can sign.
    #[error("tokens can only be minted with an HS256 secret (JWT_SECRET or --dev)")]
    NotASecret,
    /// The signer failed.
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Verifies tokens with one key and one algorithm.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a verifier could not be built from the configured key.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT verification key: {0}")]
pub struct KeyError(#[from] jsonwebtoken::errors::Error);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenVerifier {
    /// A verifier for the configured key and algorithm.
    pub fn new(key: &JwtKey, algorithm: JwtAlgorithm) -> Result<Self, KeyError> {
        let (decoding, alg, secret) = match (key, algorithm) {
            (JwtKey::Secret(s), _) => (
                DecodingKey::from_secret(s),
                Algorithm::HS256,
                Some(s.clone()),
            ),
            (JwtKey::PublicPem(pem), JwtAlgorithm::Es256) => {
                (DecodingKey::from_ec_pem(pem)?, Algorithm::ES256, None)
            }
            (JwtKey::PublicPem(pem), _) => {
                (DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256, None)
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Self {
            key: decoding,
            validation,
            secret,
        })
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::NoToken);
        }
        let data = jsonwebtoken::decode::<Claims>(token.as_bytes(), &self.key, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "token refused");
                AuthError::InvalidToken
            })?;
        let c = data.claims;
        let user_id = c
            .user_id
            .or(c.sub)
            .filter(|u| !u.is_empty())
            .ok_or(AuthError::InvalidToken)?;
        Ok(Identity {
            username: c
                .username
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| user_id.clone()),
            role: c
                .role
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "user".to_owned()),
            user_id,
        })
    }

    /// Signs a token for `identity`, valid for `ttl_secs` (HS256 secrets only).
    pub fn mint(&self, identity: &Identity, ttl_secs: u64) -> Result<String, MintError> {
        let secret = self.secret.as_ref().ok_or(MintError::NotASecret)?;
        let now = now_secs();
        let claims = Claims {
            user_id: Some(identity.user_id.clone()),
            sub: Some(identity.user_id.clone()),
            username: Some(identity.username.clone()),
            role: Some(identity.role.clone()),
            exp: now + ttl_secs,
            iat: Some(now),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )?)
    }
}

/// The token of a handshake: `auth.token`, else `Authorization: Bearer <jwt>`.
pub fn token_from(auth_token: Option<&str>, authorization: Option<&str>) -> Option<String> {
    auth_token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            authorization
                .and_then(|h| {
                    let (scheme, rest) = h.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
                })
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64_url_free::b64;

    /// Minimal base64url without padding, enough to hand-craft hostile tokens.
    mod base64_url_free {
        pub fn b64(data: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in data.chunks(3) {
                let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                    << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    fn verifier(secret: &str) -> TokenVerifier {
        TokenVerifier::new(
            &JwtKey::Secret(secret.as_bytes().to_vec()),
            JwtAlgorithm::Hs256,
        )
        .unwrap()
    }

    fn alice() -> Identity {
        Identity {
            user_id: "u1".into(),
            username: "alice".into(),
            role: "admin".into(),
        }
    }

    #[test]
    fn round_trip() {
        let v = verifier("s3cret");
        let t = v.mint(&alice(), 60).unwrap();
        assert_eq!(v.verify(&t).unwrap(), alice());
    }

    #[test]
    fn bad_signature_is_invalid() {
        let t = verifier("one").mint(&alice(), 60).unwrap();
        assert_eq!(verifier("two").verify(&t), Err(AuthError::InvalidToken));
    }

    #[test]
    fn alg_none_is_invalid() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(format!(r#"{{"userId":"u1","exp":{}}}"#, now_secs() + 60).as_bytes());
        let t = format!("{header}.{claims}.");
        assert_eq!(verifier("s").verify(&t), Err(AuthError::InvalidToken));
    }

    #[test]
    fn other_algorithm_is_invalid() {
        let claims = Claims {
            user_id: Some("u1".into()),
            sub: None,
            username: None,
            role: None,
            exp: now_secs() + 60,
            iat: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(verifier("s").verify(&t), Err(AuthError::InvalidToken));
    }

    #[test]
    fn expired_is_invalid() {
        let v = verifier("s");
        let claims = Claims {
            user_id: Some("u1".into()),
            sub: None,
            username: None,
            role: None,
            exp: now_secs() - 3600,
            iat: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(v.verify(&t), Err(AuthError::InvalidToken));
    }

    fn signed(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap()
    }

    #[test]
    fn not_yet_valid_is_invalid() {
        let v = verifier("s");
        let now = now_secs();
        let future =
            signed(&serde_json::json!({ "userId": "u1", "exp": now + 7200, "nbf": now + 3600 }));
        assert_eq!(v.verify(&future), Err(AuthError::InvalidToken));
        // Within the clock-skew leeway, as for `exp`.
        let skewed = signed(
            &serde_json::json!({ "userId": "u1", "exp": now + 60, "nbf": now + LEEWAY_SECS - 1 }),
        );
        assert!(v.verify(&skewed).is_ok());
        let past = signed(&serde_json::json!({ "userId": "u1", "exp": now + 60, "nbf": now - 10 }));
        assert!(v.verify(&past).is_ok());
        // A malformed `nbf` is refused rather than ignored.
        let bad = signed(&serde_json::json!({ "userId": "u1", "exp": now + 60, "nbf": "soon" }));
        assert_eq!(v.verify(&bad), Err(AuthError::InvalidToken));
    }

    #[test]
    fn missing_claims() {
        let v = verifier("s");
        // No exp: refused.
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "userId": "u1" }),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(v.verify(&t), Err(AuthError::InvalidToken));
        // No user id at all: refused.
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "exp": now_secs() + 60 }),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(v.verify(&t), Err(AuthError::InvalidToken));
        // sub stands in for userId; role and username default.
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": "u9", "exp": now_secs() + 60 }),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        let id = v.verify(&t).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.username.as_str(), id.role.as_str()),
            ("u9", "u9", "user")
        );
    }

    #[test]
    fn malformed_and_empty() {
        let v = verifier("s");
        assert_eq!(v.verify(""), Err(AuthError::NoToken));
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::InvalidToken));
        assert_eq!(v.verify("garbage"), Err(AuthError::InvalidToken));
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            token_from(Some("a"), Some("Bearer b")).as_deref(),
            Some("a")
        );
        assert_eq!(token_from(None, Some("Bearer b")).as_deref(), Some("b"));
        assert_eq!(
            token_from(Some(" "), Some("bearer  b ")).as_deref(),
            Some("b")
        );
        assert_eq!(token_from(None, Some("Basic x")), None);
        assert_eq!(token_from(None, None), None);
    }

    #[test]
    fn error_texts_are_the_contract() {
        assert_eq!(
            AuthError::NoToken.to_string(),
            "Authentication error: No token provided"
        );
        assert_eq!(
            AuthError::InvalidToken.to_string(),
            "Authentication error: Invalid token"
        );
    }
}
