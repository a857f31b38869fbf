//! Encryption at rest of private keys and cluster tokens.
//!
//! ChaCha20-Poly1305 with a random 96-bit nonce per value, keyed by the `encryption_key`
//! variable (32 bytes, base64). Each sealed value records the id of its key, so values sealed
//! with `encryption_key_previous` still open after a key rotation. The record key the value
//! belongs to is the associated data, so a ciphertext copied into another record does not open.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

/// A secret as stored: key id, nonce and ciphertext, each base64 where binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Id of the encryption key: the first 8 bytes of SHA-256 of the key, in hex.
    pub key_id: String,
    /// The 12-byte nonce.
    pub nonce: String,
    /// Ciphertext with its 16-byte tag.
    pub ciphertext: String,
}

/// The reason a key could not be loaded or a value could not be sealed or opened. No variant carries
/// key material or plaintext.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The variable is not 32 bytes of base64.
    #[error("{variable} is not 32 bytes of standard base64 ({reason}); generate one with `openssl rand -base64 32`")]
    InvalidKey {
        /// Name of the variable.
        variable: &'static str,
        /// The problem with the value.
        reason: String,
    },
    /// The value was sealed with a key that is not configured.
    #[error("the value was encrypted with key id {key_id}, which is neither encryption_key nor encryption_key_previous; configure the key it was written with")]
    UnknownKeyId {
        /// The value's key id.
        key_id: String,
    },
    /// Authentication failed: the value was altered or belongs to another record.
    #[error("the encrypted value of {context} failed authentication: it was altered or copied from another record")]
    Corrupt {
        /// The record the value belongs to.
        context: String,
    },
    /// The system random number generator failed.
    #[error("the random number generator failed: {0}")]
    Random(String),
}

struct LoadedKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

/// The keys that seal and open secrets: the current one, and optionally the previous one.
pub struct Cipher {
    current: LoadedKey,
    previous: Option<LoadedKey>,
}

impl Cipher {
    /// Loads the current key and, when `previous` is non-empty, the previous one, both base64.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKey`] naming the variable when a key is not 32 bytes of base64.
    pub fn from_base64(current: &SecretString, previous: Option<&SecretString>) -> Result<Self, CryptoError> {
        let current = load_key("encryption_key", current)?;
        let previous = match previous {
            Some(previous) if !previous.expose().trim().is_empty() => Some(load_key("encryption_key_previous", previous)?),
            _ => None,
        };
        Ok(Self { current, previous })
    }

    /// Encrypts `secret` for the record `context` (such as `cluster/east`) with the current key.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] when no nonce can be drawn.
    pub fn seal(&self, secret: &SecretString, context: &str) -> Result<SealedSecret, CryptoError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|error| CryptoError::Random(error.to_string()))?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.expose().as_bytes(), aad: context.as_bytes() })
            .map_err(|_| CryptoError::Corrupt { context: context.to_string() })?;
        Ok(SealedSecret { key_id: self.current.id.clone(), nonce: BASE64.encode(nonce), ciphertext: BASE64.encode(ciphertext) })
    }

    /// Decrypts a value sealed for `context` with the current or the previous key.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownKeyId`] when neither key wrote it, [`CryptoError::Corrupt`] when it
    /// fails authentication.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<SecretString, CryptoError> {
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId { key_id: sealed.key_id.clone() })?;
        let corrupt = || CryptoError::Corrupt { context: context.to_string() };

        let nonce = BASE64.decode(&sealed.nonce).map_err(|_| corrupt())?;
        if nonce.len() != 12 {
            return Err(corrupt());
        }
        let ciphertext = BASE64.decode(&sealed.ciphertext).map_err(|_| corrupt())?;
        let plaintext = key
            .cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: context.as_bytes() })
            .map_err(|_| corrupt())?;
        let text = String::from_utf8(plaintext).map_err(|_| corrupt())?;
        Ok(SecretString::new(text))
    }

    /// Whether `sealed` was written with an older key and should be sealed again when next written.
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        sealed.key_id != self.current.id
    }
}

fn load_key(variable: &'static str, value: &SecretString) -> Result<LoadedKey, CryptoError> {
    let bytes = BASE64
        .decode(value.expose().trim())
        .map_err(|error| CryptoError::InvalidKey { variable, reason: error.to_string() })?;
    if bytes.len() != 32 {
        return Err(CryptoError::InvalidKey { variable, reason: format!("it decodes to {} bytes", bytes.len()) });
    }
    let id = hex::encode(&Sha256::digest(&bytes)[..8]);
    Ok(LoadedKey { id, cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretString {
        SecretString::new(BASE64.encode([byte; 32]))
    }

    #[test]
    fn seal_then_open_round_trips() {
        let cipher = Cipher::from_base64(&key(1), None).unwrap();

        let sealed = cipher.seal(&SecretString::new("token-1"), "cluster/east").unwrap();

        assert!(!sealed.ciphertext.contains("token-1"));
        assert_eq!(cipher.open(&sealed, "cluster/east").unwrap().expose(), "token-1");
    }

    #[test]
    fn open_rejects_other_context() {
        let cipher = Cipher::from_base64(&key(1), None).unwrap();
        let sealed = cipher.seal(&SecretString::new("token-1"), "cluster/east").unwrap();

        assert_eq!(cipher.open(&sealed, "cluster/west").unwrap_err(), CryptoError::Corrupt { context: "cluster/west".into() });
    }

    #[test]
    fn previous_key_still_opens() {
        let old = Cipher::from_base64(&key(1), None).unwrap();
        let sealed = old.seal(&SecretString::new("token-1"), "cluster/east").unwrap();

        let rotated = Cipher::from_base64(&key(2), Some(&key(1))).unwrap();
        let without_previous = Cipher::from_base64(&key(2), None).unwrap();

        assert_eq!(rotated.open(&sealed, "cluster/east").unwrap().expose(), "token-1");
        assert!(rotated.needs_reseal(&sealed));
        assert!(matches!(without_previous.open(&sealed, "cluster/east"), Err(CryptoError::UnknownKeyId { .. })));
    }

    #[test]
    fn invalid_key_names_variable() {
        let error = Cipher::from_base64(&SecretString::new("c2hvcnQ="), None).err().unwrap();

        assert!(error.to_string().starts_with("encryption_key is not 32 bytes"));
    }
}
