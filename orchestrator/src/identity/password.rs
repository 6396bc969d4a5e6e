//! Password hashing with argon2id (the `argon2` crate's defaults, PHC strings in the database).
//! Hashing costs tens of milliseconds by design, so the async callers run it on the blocking pool.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::store::StoreError;

/// Errors of password hashing.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// argon2 refused to hash (it should not with default parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The stored hash is not a PHC string argon2 understands (a damaged database).
    #[error("stored password hash is malformed: {0}")]
    Malformed(String),
    /// The blocking task running argon2 died.
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// The PHC string (`$argon2id$v=19$...`) of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (parameters are read from the hash).
pub fn verify_password(password: &str, hash: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|e| PasswordError::Malformed(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Spends the time of one verification against a fixed hash, so that an unknown user name
/// takes as long to refuse as a wrong password (no user enumeration by timing).
pub fn burn_verification(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(hash) = DUMMY.get_or_init(|| hash_password("virga-dummy-password").ok()) {
        let _ = verify_password(password, hash);
    }
}

pub(crate) async fn hash_password_blocking(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
        .map_err(StoreError::from)
}

pub(crate) async fn verify_password_blocking(
    password: String,
    hash: String,
) -> Result<bool, StoreError> {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("s3cret", &a).unwrap());
        assert!(!verify_password("S3cret", &a).unwrap());
    }

    #[test]
    fn malformed_hash_is_an_error() {
        assert!(matches!(
            verify_password("x", "not-a-phc-string"),
            Err(PasswordError::Malformed(_))
        ));
    }
}
