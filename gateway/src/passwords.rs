//! Room passwords: stored only as salted argon2id hashes (PHC strings). Hashing is deliberately
//! slow, so callers run it off the async threads ([`hash_blocking`], [`verify_blocking`]).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes and verifications running at once. Each argon2 run takes about 19 MiB and a core for
/// a while; without a bound, a burst of `create room` / `join room` with passwords would fill the
/// blocking pool and the memory. Callers beyond the bound wait their turn.
const CONCURRENT_HASHES: usize = 4;

static HASH_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

/// A salted argon2id hash of `password`.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches `phc` (a malformed hash never matches).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> Result<String, HashError> {
    let _slot = HASH_SLOTS
        .acquire()
        .await
        .map_err(|e| HashError(e.to_string()))?;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| HashError(e.to_string()))?
}

/// [`verify`] on the blocking pool (a failed task counts as a mismatch).
pub async fn verify_blocking(password: String, phc: String) -> bool {
    let Ok(_slot) = HASH_SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let h = hash("open sesame").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("open sesame"));
        assert!(verify("open sesame", &h));
        assert!(!verify("open sesame!", &h));
        assert!(!verify("", &h));
    }

    #[test]
    fn salted_hashes_differ() {
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
    }

    #[test]
    fn malformed_hash_never_matches() {
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", ""));
    }

    #[tokio::test]
    async fn blocking_variants() {
        let h = hash_blocking("pw".into()).await.unwrap();
        assert!(verify_blocking("pw".into(), h.clone()).await);
        assert!(!verify_blocking("nope".into(), h).await);
    }
}
