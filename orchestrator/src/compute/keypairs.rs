//! Key pairs: SSH public keys a user names and hands to servers (config drive `public_keys`).
//! A key pair made without a public key is generated here (Ed25519); the private half is
//! returned once and never stored.

use base64::Engine;
use md5::{Digest, Md5};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The public key is not an OpenSSH public key line.
    #[error("Keypair data is invalid: {0}")]
    Invalid(String),
    /// Generating or encoding a key failed.
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
}

/// One stored key pair.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Keypair {
    /// Integer id (nova shows one).
    pub seq: i64,
    /// Owner.
    pub user_id: String,
    /// Name, unique per user.
    pub name: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// MD5 fingerprint, colon-separated hex (as nova computes it).
    pub fingerprint: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// Parses an OpenSSH public key line; returns it trimmed and its MD5 fingerprint.
pub fn check_public_key(line: &str) -> Result<(String, String), KeyError> {
    let line = line.trim();
    let key = PublicKey::from_openssh(line).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let blob = key
        .to_bytes()
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok((line.to_string(), md5_fingerprint(&blob)))
}

fn md5_fingerprint(blob: &[u8]) -> String {
    let digest = Md5::digest(blob);
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A fresh Ed25519 key pair: (OpenSSH private key PEM, public key line, fingerprint).
pub fn generate(comment: &str) -> Result<(String, String, String), KeyError> {
    let gen_err = |e: ssh_key::Error| KeyError::Generate(e.to_string());
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).map_err(gen_err)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(gen_err)?.to_string();
    let public = key.public_key().to_openssh().map_err(gen_err)?;
    let (public, fp) = check_public_key(&public)?;
    Ok((private, public, fp))
}

/// `base64` of raw bytes (user data travels base64-encoded).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const COLS: &str = "SELECT seq, user_id, name, public_key, fingerprint, created_at FROM keypairs";

impl Store {
    /// Stores a key pair; `Conflict` when the user has one with this name.
    pub async fn create_keypair(
        &self,
        user_id: &str,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<Keypair, StoreError> {
        sqlx::query(
            "INSERT INTO keypairs (user_id, name, public_key, fingerprint, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id)
        .bind(name)
        .bind(public_key)
        .bind(fingerprint)
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::conflict_or(e, || format!("Key pair '{name}' already exists")))?;
        self.get_keypair(user_id, name).await
    }

    /// The user's key pair with this name.
    pub async fn get_keypair(&self, user_id: &str, name: &str) -> Result<Keypair, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{COLS} WHERE user_id = $1 AND name = $2"
        )))
        .bind(user_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found("keypair", name))
    }

    /// The user's key pairs by name.
    pub async fn list_keypairs(&self, user_id: &str) -> Result<Vec<Keypair>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{COLS} WHERE user_id = $1 ORDER BY name"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes the user's key pair.
    pub async fn delete_keypair(&self, user_id: &str, name: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM keypairs WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "keypair", name)
    }

    /// How many key pairs the user has (the `key_pairs` quota).
    pub async fn count_keypairs(&self, user_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(self.pool())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_fingerprints_match_ssh_keygen_format() {
        let (private, public, fp) = generate("k1").unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert_eq!(fp.len(), 47, "{fp}");
        assert_eq!(check_public_key(&public).unwrap().1, fp);
        let parsed = PrivateKey::from_openssh(&private).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), public);
    }

    #[test]
    fn garbage_public_keys_are_refused() {
        for bad in ["", "ssh-rsa", "ssh-ed25519 !!!", "hello world"] {
            assert!(check_public_key(bad).is_err(), "{bad:?}");
        }
    }
}
