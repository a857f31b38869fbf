//! Private keys: decoding every supported encoding and deriving the public key to match the leaf.

use pkcs8::der::Decode as _;
use pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};

use crate::pem_blocks::PemBlock;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The public facts of a private key that the API shows, never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    /// The PEM label the key was uploaded with: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1)
    /// or `EC PRIVATE KEY` (SEC1).
    pub pem_label: String,
    /// `RSA`, `EC` (an ECDSA key) or `Ed25519`, spelled as in [`CertificateSummary::key_algorithm`].
    ///
    /// [`CertificateSummary::key_algorithm`]: crate::certificate::CertificateSummary::key_algorithm
    pub algorithm: String,
    /// Key size in bits.
    pub size_bits: u32,
    /// Named curve of an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec_curve: Option<String>,
}

/// A decoded private key, reduced to what validation needs: its summary and the DER of the
/// SubjectPublicKeyInfo it implies.
pub struct DecodedKey {
    /// Algorithm, size and encoding.
    pub summary: KeySummary,
    /// DER of the matching SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

/// The reason a private key block cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The block is encrypted with a passphrase.
    #[error("the private key is encrypted")]
    Encrypted,
    /// The key type or curve is not one Istio gateways serve.
    #[error("{0}")]
    Unsupported(String),
    /// The block does not decode as the encoding its label names.
    #[error("{0}")]
    Invalid(String),
}

/// Decodes a private key block of any supported encoding.
///
/// # Errors
///
/// [`KeyError::Encrypted`] for `ENCRYPTED PRIVATE KEY` or a `Proc-Type: 4,ENCRYPTED` header,
/// [`KeyError::Unsupported`] for other algorithms or curves, [`KeyError::Invalid`] when the DER
/// does not decode. Messages never contain key material.
pub fn decode(block: &PemBlock) -> Result<DecodedKey, KeyError> {
    let encrypted_header = block
        .headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("Proc-Type") && value.contains("ENCRYPTED"));
    if block.label == "ENCRYPTED PRIVATE KEY" || encrypted_header {
        return Err(KeyError::Encrypted);
    }

    match block.label.as_str() {
        "RSA PRIVATE KEY" => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(&block.der)
                .map_err(|error| KeyError::Invalid(format!("not a PKCS#1 RSA private key ({error})")))?;
            rsa_key(&block.label, &key)
        }
        "EC PRIVATE KEY" => decode_sec1(&block.label, &block.der),
        "PRIVATE KEY" => decode_pkcs8(&block.label, &block.der),
        other => Err(KeyError::Unsupported(format!("PEM label {other:?} is not a supported private key encoding"))),
    }
}

fn decode_pkcs8(label: &str, der: &[u8]) -> Result<DecodedKey, KeyError> {
    let info = pkcs8::PrivateKeyInfo::from_der(der)
        .map_err(|error| KeyError::Invalid(format!("not a PKCS#8 private key ({error})")))?;
    let algorithm = info.algorithm.oid.to_string();

    match algorithm.as_str() {
        OID_RSA => {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map_err(|error| KeyError::Invalid(format!("not a valid RSA private key ({error})")))?;
            rsa_key(label, &key)
        }
        OID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::Invalid("the ECDSA key does not name its curve".into()))?
                .to_string();
            match curve.as_str() {
                OID_P256 => {
                    let key = p256::SecretKey::from_pkcs8_der(der)
                        .map_err(|error| KeyError::Invalid(format!("not a valid P-256 private key ({error})")))?;
                    ec_key(label, "P-256", 256, key.public_key().to_public_key_der())
                }
                OID_P384 => {
                    let key = p384::SecretKey::from_pkcs8_der(der)
                        .map_err(|error| KeyError::Invalid(format!("not a valid P-384 private key ({error})")))?;
                    ec_key(label, "P-384", 384, key.public_key().to_public_key_der())
                }
                other => Err(KeyError::Unsupported(format!(
                    "ECDSA curve {other} is not supported; use P-256 or P-384"
                ))),
            }
        }
        OID_ED25519 => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map_err(|error| KeyError::Invalid(format!("not a valid Ed25519 private key ({error})")))?;
            let public_key_der = key
                .verifying_key()
                .to_public_key_der()
                .map_err(|error| KeyError::Invalid(format!("cannot encode the Ed25519 public key ({error})")))?;
            Ok(DecodedKey {
                summary: KeySummary { pem_label: label.into(), algorithm: "Ed25519".into(), size_bits: 256, ec_curve: None },
                public_key_der: public_key_der.as_bytes().to_vec(),
            })
        }
        other => Err(KeyError::Unsupported(format!(
            "private key algorithm {other} is not supported; use RSA, ECDSA P-256/P-384 or Ed25519"
        ))),
    }
}

fn decode_sec1(label: &str, der: &[u8]) -> Result<DecodedKey, KeyError> {
    let key = sec1::EcPrivateKey::from_der(der)
        .map_err(|error| KeyError::Invalid(format!("not a SEC1 EC private key ({error})")))?;
    let curve = key.parameters.and_then(|parameters| parameters.named_curve()).map(|oid| oid.to_string());
    // RFC 5915 requires the curve, but RustCrypto's `SecretKey::to_sec1_der` (elliptic-curve 0.13)
    // leaves it out. The private key length then names the curve among those supported, and the
    // leaf match rejects the key if that guess is wrong.
    let private_key_length = key.private_key.len();
    let curve = curve.or_else(|| match private_key_length {
        32 => Some(OID_P256.to_string()),
        48 => Some(OID_P384.to_string()),
        _ => None,
    });

    match curve.as_deref() {
        Some(OID_P256) => {
            let key = p256::SecretKey::from_sec1_der(der)
                .map_err(|error| KeyError::Invalid(format!("not a valid P-256 private key ({error})")))?;
            ec_key(label, "P-256", 256, key.public_key().to_public_key_der())
        }
        Some(OID_P384) => {
            let key = p384::SecretKey::from_sec1_der(der)
                .map_err(|error| KeyError::Invalid(format!("not a valid P-384 private key ({error})")))?;
            ec_key(label, "P-384", 384, key.public_key().to_public_key_der())
        }
        Some(other) => Err(KeyError::Unsupported(format!("ECDSA curve {other} is not supported; use P-256 or P-384"))),
        None => Err(KeyError::Invalid(format!(
            "the SEC1 key names no curve, and its {private_key_length}-byte private key fits neither P-256 nor P-384"
        ))),
    }
}

fn rsa_key(label: &str, key: &rsa::RsaPrivateKey) -> Result<DecodedKey, KeyError> {
    let public_key_der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|error| KeyError::Invalid(format!("cannot encode the RSA public key ({error})")))?;
    Ok(DecodedKey {
        summary: KeySummary {
            pem_label: label.into(),
            algorithm: "RSA".into(),
            // The modulus bit length: `size()` rounds up to whole bytes, so a 2047-bit key would
            // read as 2048 and pass the minimum.
            size_bits: key.n().bits() as u32,
            ec_curve: None,
        },
        public_key_der: public_key_der.as_bytes().to_vec(),
    })
}

fn ec_key(label: &str, curve: &str, bits: u32, public_key_der: pkcs8::spki::Result<pkcs8::Document>) -> Result<DecodedKey, KeyError> {
    let public_key_der =
        public_key_der.map_err(|error| KeyError::Invalid(format!("cannot encode the {curve} public key ({error})")))?;
    Ok(DecodedKey {
        summary: KeySummary {
            pem_label: label.into(),
            algorithm: "EC".into(),
            size_bits: bits,
            ec_curve: Some(curve.into()),
        },
        public_key_der: public_key_der.as_bytes().to_vec(),
    })
}
