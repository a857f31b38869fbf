//! Signatures of webhook calls: `X-Meshcert-Signature: sha256=<hex>` over `timestamp + "." + body`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header with the Unix time (seconds) at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "x-meshcert-timestamp";

/// Header with `sha256=` and the lowercase hex HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-meshcert-signature";

/// How far a timestamp may be from the receiver's clock, in seconds, either way.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// The reason a signed request is rejected. No variant carries the secret or the expected signature.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A header is absent.
    #[error("missing {0} header: sign the request as the README shows")]
    MissingHeader(&'static str),
    /// The timestamp is not a Unix time in seconds.
    #[error("{TIMESTAMP_HEADER} {0:?} is not a Unix time in seconds")]
    InvalidTimestamp(String),
    /// The timestamp is too far from now.
    #[error("{TIMESTAMP_HEADER} {timestamp} is {skew} s from the receiver's clock; the limit is {MAX_CLOCK_SKEW_SECONDS} s, so sign with the current time")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp: i64,
        /// Its distance from now in seconds.
        skew: i64,
    },
    /// The signature does not match.
    #[error("{SIGNATURE_HEADER} does not match the body: sign timestamp + \".\" + body with webhook_secret (HMAC-SHA256, lowercase hex, prefixed \"sha256=\")")]
    Mismatch,
}

/// Returns the signature header value for `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks the two headers of a request against `body` at the receiver's time `now`.
/// The comparison runs in constant time.
///
/// # Errors
///
/// The first failed check, as a [`SignatureError`].
pub fn verify(secret: &[u8], timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let timestamp_text = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp: i64 = timestamp_text
        .trim()
        .parse()
        .map_err(|_| SignatureError::InvalidTimestamp(timestamp_text.to_string()))?;
    let skew = (now - timestamp).abs();
    if skew > MAX_CLOCK_SKEW_SECONDS {
        return Err(SignatureError::StaleTimestamp { timestamp, skew });
    }

    let expected = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = new_mac(secret);
    mac.update(timestamp_text.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC accepts keys of any length, so this never fails.
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// Prefix of the records of recently seen signatures.
pub const SEEN_SIGNATURES_PREFIX: &str = "hooks/seen-signatures/";

/// Returns the key of the record that keeps `signature` once seen: one of 16 records, by the first
/// hex digit of the signature. Every hook call writes one, with compare-and-swap, so 16 records
/// spread the writes of calls at the same moment that would otherwise retry against each other.
pub fn seen_signatures_key(signature: &str) -> String {
    let shard = canonical(signature).chars().next().filter(char::is_ascii_hexdigit).unwrap_or('0');
    format!("{SEEN_SIGNATURES_PREFIX}{shard}")
}

/// Returns the spelling of a signature as [`SeenSignatures`] keeps it: lowercase hex without the prefix.
fn canonical(signature: &str) -> String {
    signature.trim().trim_start_matches("sha256=").to_ascii_lowercase()
}

/// Signatures accepted while their timestamp is still accepted, so that a captured request
/// cannot be sent again.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenSignatures {
    /// Signature, as lowercase hex without the `sha256=` prefix, to the last Unix second at which
    /// its timestamp is accepted: the timestamp plus [`MAX_CLOCK_SKEW_SECONDS`].
    #[serde(default)]
    pub until: std::collections::BTreeMap<String, i64>,
}

impl SeenSignatures {
    /// Forgets signatures whose timestamp is no longer accepted at `now`, then records
    /// `signature`, sent with `timestamp`. Returns `false`, recording nothing, when it was seen
    /// before. Hex case and the prefix do not matter, since [`verify`] accepts each spelling.
    pub fn record(&mut self, signature: &str, timestamp: i64, now: i64) -> bool {
        self.until.retain(|_, until| *until >= now);
        let canonical = canonical(signature);
        if self.until.contains_key(&canonical) {
            return false;
        }
        self.until.insert(canonical, timestamp + MAX_CLOCK_SKEW_SECONDS);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_signature_key_ignores_spelling() {
        assert_eq!(seen_signatures_key("sha256=Ab12"), "hooks/seen-signatures/a");
        assert_eq!(seen_signatures_key("ab12"), seen_signatures_key("sha256=AB12"));
        assert_eq!(seen_signatures_key("f0"), "hooks/seen-signatures/f");
        assert_eq!(seen_signatures_key(""), "hooks/seen-signatures/0");
    }

    #[test]
    fn seen_signature_is_rejected_within_the_window() {
        let mut seen = SeenSignatures::default();

        assert!(seen.record("sha256=aa", 1000, 1000));
        assert!(!seen.record("sha256=aa", 1000, 1000 + MAX_CLOCK_SKEW_SECONDS));
        assert!(!seen.record("sha256=AA", 1000, 1001));
        assert!(seen.record("sha256=bb", 1001, 1001));
        assert!(seen.record("sha256=aa", 1000, 1001 + MAX_CLOCK_SKEW_SECONDS));
        assert_eq!(seen.until.len(), 2);
    }

    #[test]
    fn future_timestamp_is_remembered_until_it_expires() {
        let mut seen = SeenSignatures::default();

        assert!(seen.record("sha256=aa", 1280, 1000));

        assert!(!seen.record("sha256=aa", 1280, 1000 + 310));
        assert!(seen.record("sha256=aa", 1280, 1280 + MAX_CLOCK_SKEW_SECONDS + 1));
    }

    #[test]
    fn verify_accepts_own_signature() {
        let signature = sign(b"secret", 1000, b"{}");

        assert_eq!(verify(b"secret", Some("1000"), Some(&signature), b"{}", 1100), Ok(()));
    }

    #[test]
    fn verify_rejects_each_fault() {
        let signature = sign(b"secret", 1000, b"{}");

        assert_eq!(verify(b"secret", None, Some(&signature), b"{}", 1000), Err(SignatureError::MissingHeader(TIMESTAMP_HEADER)));
        assert_eq!(verify(b"secret", Some("1000"), None, b"{}", 1000), Err(SignatureError::MissingHeader(SIGNATURE_HEADER)));
        assert_eq!(verify(b"other", Some("1000"), Some(&signature), b"{}", 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"secret", Some("1000"), Some(&signature), b"{ }", 1000), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(b"secret", Some("1000"), Some(&signature), b"{}", 1301),
            Err(SignatureError::StaleTimestamp { timestamp: 1000, skew: 301 })
        );
        assert!(matches!(verify(b"secret", Some("soon"), Some(&signature), b"{}", 1000), Err(SignatureError::InvalidTimestamp(_))));
    }

    #[test]
    fn sign_matches_openssl_format() {
        // echo -n '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let signature = sign(b"secret", 1_700_000_000, b"{}");

        assert_eq!(signature, "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
    }
}
