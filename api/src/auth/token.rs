//! Self-contained tokens, checked by any host holding the same keys and no database.
//!
//! A token is `base64url(version || nonce || XChaCha20-Poly1305(key, nonce, claims, aad=version))`,
//! like a Fernet token but with an AEAD: the claims (user, scope, roles, methods, issue and expiry
//! times, audit ids) are encrypted and authenticated, so a client can neither read nor forge them.
//! Keys are files `0`, `1`, ... in the key directory, each 32 random bytes in base64url; the
//! highest number signs new tokens and every key is tried when checking, so a new key can be
//! spread to every host before it becomes the primary (rotation without a flag day).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Tokens longer than this are refused before any decoding (header abuse).
const MAX_TOKEN_LEN: usize = 8192;

/// Errors of token keys and tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key directory could not be read or written.
    #[error("token key directory {path}: {source}")]
    KeyIo {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file does not hold 32 bytes of base64url.
    #[error("token key file {0} is not 32 bytes of base64url")]
    BadKey(PathBuf),
    /// The system random source failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The token is not one of ours (bad encoding, unknown key, tampered).
    #[error("the token is malformed or was not issued by this cloud")]
    Invalid,
    /// The token's lifetime is over.
    #[error("the token expired")]
    Expired,
}

/// One role as carried in a token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRole {
    /// Role id.
    #[serde(rename = "i")]
    pub id: String,
    /// Role name (policy checks use names).
    #[serde(rename = "n")]
    pub name: String,
}

/// What a token says. Short field names keep the token short.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    #[serde(rename = "u")]
    pub user_id: String,
    /// Project scope, if project-scoped.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Domain scope, if domain-scoped.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    /// Effective roles on the scope (empty when unscoped).
    #[serde(rename = "r", default)]
    pub roles: Vec<TokenRole>,
    /// Authentication methods (`password`, `token`).
    #[serde(rename = "m")]
    pub methods: Vec<String>,
    /// Issue time, microseconds since the epoch.
    #[serde(rename = "t")]
    pub issued_at: i64,
    /// Expiry, microseconds since the epoch.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// This token's audit id, then the audit id of the token it was rescoped from.
    #[serde(rename = "a")]
    pub audit_ids: Vec<String>,
}

impl Claims {
    /// Whether the token carries a role of this name.
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.name == name)
    }
}

/// The token keys of this host.
pub struct TokenKeys {
    /// Primary first, then the others (newest first).
    ciphers: Vec<XChaCha20Poly1305>,
}

impl TokenKeys {
    /// Loads every key in `dir`, creating the directory and a first key when there is none.
    pub fn load_or_create(dir: &Path) -> Result<TokenKeys, TokenError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TokenError::KeyIo { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        set_mode(dir, 0o700).map_err(io(dir))?;
        let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                numbered.push((n, entry.path()));
            }
        }
        if numbered.is_empty() {
            let path = dir.join("0");
            let key = random_bytes::<KEY_LEN>()?;
            write_private(&path, URL_SAFE_NO_PAD.encode(key).as_bytes()).map_err(io(&path))?;
            tracing::info!(path = %path.display(), "created a token key");
            numbered.push((0, path));
        }
        numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let mut ciphers = Vec::with_capacity(numbered.len());
        for (_, path) in numbered {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let key = URL_SAFE_NO_PAD
                .decode(text.trim())
                .map_err(|_| TokenError::BadKey(path.clone()))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&key)
                .map_err(|_| TokenError::BadKey(path.clone()))?;
            ciphers.push(cipher);
        }
        Ok(TokenKeys { ciphers })
    }

    /// Keys from raw bytes, primary first (for tests and benchmarks).
    pub fn from_raw(keys: &[[u8; KEY_LEN]]) -> TokenKeys {
        TokenKeys {
            ciphers: keys
                .iter()
                .map(|k| XChaCha20Poly1305::new(k.into()))
                .collect(),
        }
    }

    /// Seals `claims` into a token with the primary key.
    pub fn seal(&self, claims: &Claims) -> Result<String, TokenError> {
        let cipher = self.ciphers.first().ok_or(TokenError::Invalid)?;
        let plain = serde_json::to_vec(claims).map_err(|_| TokenError::Invalid)?;
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let nonce = XNonce::from(nonce_bytes);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &[VERSION],
                },
            )
            .map_err(|_| TokenError::Invalid)?;
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        raw.push(VERSION);
        raw.extend_from_slice(&nonce_bytes);
        raw.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens a token: authentic, ours and not expired at `now` (microseconds).
    pub fn open(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| TokenError::Invalid)?;
        if raw.len() < 1 + NONCE_LEN + 16 || raw[0] != VERSION {
            return Err(TokenError::Invalid);
        }
        let nonce = XNonce::try_from(&raw[1..1 + NONCE_LEN]).map_err(|_| TokenError::Invalid)?;
        let body = &raw[1 + NONCE_LEN..];
        let plain = self
            .ciphers
            .iter()
            .find_map(|c| {
                c.decrypt(
                    &nonce,
                    Payload {
                        msg: body,
                        aad: &[VERSION],
                    },
                )
                .ok()
            })
            .ok_or(TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&plain).map_err(|_| TokenError::Invalid)?;
        if claims.expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// A fresh audit id: 16 random bytes in base64url (22 characters, as keystone's).
pub fn new_audit_id() -> Result<String, TokenError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(buf)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes a file only its owner can read, via a temporary name and a rename.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: i64) -> Claims {
        Claims {
            user_id: "u1".into(),
            project_id: Some("p1".into()),
            domain_id: None,
            roles: vec![TokenRole {
                id: "r1".into(),
                name: "member".into(),
            }],
            methods: vec!["password".into()],
            issued_at: 1,
            expires_at,
            audit_ids: vec![new_audit_id().unwrap()],
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = TokenKeys::from_raw(&[[7; 32]]);
        let c = claims(1000);
        let t = keys.seal(&c).unwrap();
        assert_eq!(keys.open(&t, 999).unwrap(), c);
        assert!(matches!(keys.open(&t, 1000), Err(TokenError::Expired)));
    }

    #[test]
    fn tampered_foreign_and_garbage_tokens_are_invalid() {
        let keys = TokenKeys::from_raw(&[[7; 32]]);
        let t = keys.seal(&claims(1000)).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let bad = URL_SAFE_NO_PAD.encode(raw);
        assert!(matches!(keys.open(&bad, 0), Err(TokenError::Invalid)));
        let other = TokenKeys::from_raw(&[[8; 32]]);
        assert!(matches!(other.open(&t, 0), Err(TokenError::Invalid)));
        for junk in ["", "!!!", "AAAA", &"A".repeat(9000)] {
            assert!(
                matches!(keys.open(junk, 0), Err(TokenError::Invalid)),
                "{junk:.10}"
            );
        }
    }

    #[test]
    fn older_keys_still_open_tokens_after_rotation() {
        let old = TokenKeys::from_raw(&[[1; 32]]);
        let t = old.seal(&claims(1000)).unwrap();
        let rotated = TokenKeys::from_raw(&[[2; 32], [1; 32]]);
        assert!(rotated.open(&t, 0).is_ok());
    }

    #[test]
    fn key_directory_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kd = dir.path().join("keys");
        let a = TokenKeys::load_or_create(&kd).unwrap();
        let t = a.seal(&claims(1000)).unwrap();
        let b = TokenKeys::load_or_create(&kd).unwrap();
        assert!(b.open(&t, 0).is_ok());
        let mode = std::fs::metadata(kd.join("0"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(kd.join("1"), "short").unwrap();
        assert!(matches!(
            TokenKeys::load_or_create(&kd),
            Err(TokenError::BadKey(_))
        ));
    }
}
