//! Signature checks of an uploaded chain: whether a certificate is signed by the key of the
//! certificate that follows it (RFC 5280 section 6.1.3 (a)(1)).
//!
//! Only RustCrypto code verifies signatures, so that this builds for wasm32-wasip2 without C:
//! RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256, SHA-384 or SHA-512 (the `rsa` crate), ECDSA with
//! those hashes over P-256 and P-384 keys (`p256`, `p384`), and Ed25519 (`ed25519-dalek`). Any
//! other algorithm, such as a SHA-1 signature or a P-521 key, is reported as not verified, and
//! the caller decides what that means.
//!
//! **This module checks one signature. It does not build paths, check validity dates, key
//! usage, path length constraints or revocation.**

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rsa::pkcs1::der::Decode as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";
const OID_ED25519: &str = "1.3.101.112";

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// RSA moduli up to this size are verified, above the `rsa` crate's default limit of 4096 bits,
/// so that a CA with a larger key is still checked. Verifying with a small public exponent stays
/// cheap at this size.
const MAX_RSA_BITS: usize = 8192;

/// The outcome of checking that one certificate is signed by another's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The issuer's public key verifies the signature.
    Valid,
    /// The signature does not verify with the issuer's public key, for the reason given.
    Invalid(String),
    /// The signature algorithm, or the issuer's key type, is one this module does not verify. The
    /// value names it, such as `sha1WithRSAEncryption`.
    NotVerified(String),
}

/// Checks that the certificate `certificate_der` is signed by the public key of the certificate
/// `issuer_der`: the signature over its TBSCertificate bytes, with the algorithm it names.
///
/// **It does not check either certificate's names, validity or CA flag.**
pub fn verify_signed_by(certificate_der: &[u8], issuer_der: &[u8]) -> SignatureCheck {
    let (certificate, issuer) = match (X509Certificate::from_der(certificate_der), X509Certificate::from_der(issuer_der)) {
        (Ok((_, certificate)), Ok((_, issuer))) => (certificate, issuer),
        _ => return SignatureCheck::Invalid("a certificate of the pair is not valid DER".into()),
    };
    let message: &[u8] = certificate.tbs_certificate.as_ref();
    let signature: &[u8] = &certificate.signature_value.data;
    let algorithm = &certificate.signature_algorithm;
    let issuer_key = issuer.public_key();

    // RFC 5280 section 4.1.1.2: the signed TBSCertificate names the algorithm too (MUST match),
    // so that the unsigned outer field cannot be swapped.
    if certificate.tbs_certificate.signature != *algorithm {
        return SignatureCheck::Invalid(format!(
            "the signature algorithm inside the certificate, {}, differs from the one outside it, {}",
            oid_name(&certificate.tbs_certificate.signature.algorithm),
            oid_name(&algorithm.algorithm)
        ));
    }

    match algorithm.algorithm.to_id_string().as_str() {
        OID_SHA256_WITH_RSA => verify_rsa_pkcs1(issuer_key, Hash::Sha256, message, signature),
        OID_SHA384_WITH_RSA => verify_rsa_pkcs1(issuer_key, Hash::Sha384, message, signature),
        OID_SHA512_WITH_RSA => verify_rsa_pkcs1(issuer_key, Hash::Sha512, message, signature),
        OID_RSASSA_PSS => {
            let parameters = algorithm.parameters.as_ref().and_then(|parameters| RsaSsaPssParams::try_from(parameters).ok());
            match parameters {
                Some(parameters) => verify_rsa_pss(issuer_key, &parameters, message, signature),
                None => SignatureCheck::Invalid("the RSASSA-PSS parameters do not decode".into()),
            }
        }
        OID_ECDSA_WITH_SHA256 => verify_ecdsa(issuer_key, Hash::Sha256, message, signature),
        OID_ECDSA_WITH_SHA384 => verify_ecdsa(issuer_key, Hash::Sha384, message, signature),
        OID_ECDSA_WITH_SHA512 => verify_ecdsa(issuer_key, Hash::Sha512, message, signature),
        OID_ED25519 => verify_ed25519(issuer_key, message, signature),
        _ => SignatureCheck::NotVerified(oid_name(&algorithm.algorithm)),
    }
}

/// The hash functions whose signatures are verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &Oid<'_>) -> Option<Hash> {
        match oid.to_id_string().as_str() {
            OID_SHA256 => Some(Hash::Sha256),
            OID_SHA384 => Some(Hash::Sha384),
            OID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "SHA-256",
            Hash::Sha384 => "SHA-384",
            Hash::Sha512 => "SHA-512",
        }
    }
}

fn verify_rsa_pkcs1(issuer_key: &SubjectPublicKeyInfo<'_>, hash: Hash, message: &[u8], signature: &[u8]) -> SignatureCheck {
    let key = match rsa_public_key(issuer_key) {
        Ok(key) => key,
        Err(check) => return check,
    };
    let scheme = match hash {
        Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
        Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
        Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
    };
    match key.verify(scheme, &hash.digest(message), signature) {
        Ok(()) => SignatureCheck::Valid,
        Err(_) => SignatureCheck::Invalid(format!("the RSA PKCS#1 v1.5 signature with {} does not verify", hash.name())),
    }
}

/// RFC 4055 section 3.1: RSASSA-PSS names its hash, its mask generation function (MGF1 with a
/// hash), the salt length and a trailer field that must be 1.
fn verify_rsa_pss(issuer_key: &SubjectPublicKeyInfo<'_>, parameters: &RsaSsaPssParams<'_>, message: &[u8], signature: &[u8]) -> SignatureCheck {
    let hash_oid = parameters.hash_algorithm_oid();
    let Some(hash) = Hash::from_oid(hash_oid) else {
        return SignatureCheck::NotVerified(format!("RSASSA-PSS with {}", oid_name(hash_oid)));
    };
    // The `rsa` crate generates the mask with the signature's own hash, so a different MGF1 hash
    // cannot be verified here.
    match parameters.mask_gen_algorithm() {
        Ok(mask) if mask.mgf.to_id_string() == OID_MGF1 && Hash::from_oid(&mask.hash) == Some(hash) => {}
        Ok(mask) => {
            return SignatureCheck::NotVerified(format!(
                "RSASSA-PSS with {} and mask generation {} over {}",
                hash.name(),
                oid_name(&mask.mgf),
                oid_name(&mask.hash)
            ))
        }
        Err(_) => return SignatureCheck::Invalid("the RSASSA-PSS mask generation parameters do not decode".into()),
    }
    if parameters.trailer_field() != 1 {
        return SignatureCheck::Invalid(format!("the RSASSA-PSS trailer field is {}, not 1", parameters.trailer_field()));
    }

    let key = match rsa_public_key(issuer_key) {
        Ok(key) => key,
        Err(check) => return check,
    };
    let salt_length = parameters.salt_length() as usize;
    let scheme = match hash {
        Hash::Sha256 => rsa::Pss::new_with_salt::<Sha256>(salt_length),
        Hash::Sha384 => rsa::Pss::new_with_salt::<Sha384>(salt_length),
        Hash::Sha512 => rsa::Pss::new_with_salt::<Sha512>(salt_length),
    };
    match key.verify(scheme, &hash.digest(message), signature) {
        Ok(()) => SignatureCheck::Valid,
        Err(_) => SignatureCheck::Invalid(format!("the RSASSA-PSS signature with {} does not verify", hash.name())),
    }
}

/// Reads an RSA public key from a SubjectPublicKeyInfo, or returns why the signature fails.
fn rsa_public_key(issuer_key: &SubjectPublicKeyInfo<'_>) -> Result<rsa::RsaPublicKey, SignatureCheck> {
    // RFC 4055 section 1.2: an RSASSA-PSS key (id-RSASSA-PSS) contains the same RSAPublicKey.
    let key_algorithm = issuer_key.algorithm.algorithm.to_id_string();
    if key_algorithm != OID_RSA_ENCRYPTION && key_algorithm != OID_RSASSA_PSS {
        return Err(SignatureCheck::Invalid(format!(
            "the signature is an RSA signature, but the issuer's public key is {}",
            oid_name(&issuer_key.algorithm.algorithm)
        )));
    }
    let key = rsa::pkcs1::RsaPublicKey::from_der(&issuer_key.subject_public_key.data)
        .map_err(|error| SignatureCheck::Invalid(format!("the issuer's RSA public key does not decode ({error})")))?;
    let modulus = rsa::BigUint::from_bytes_be(key.modulus.as_bytes());
    let exponent = rsa::BigUint::from_bytes_be(key.public_exponent.as_bytes());
    rsa::RsaPublicKey::new_with_max_size(modulus, exponent, MAX_RSA_BITS).map_err(|error| {
        SignatureCheck::NotVerified(format!("an RSA key that the rsa crate does not accept ({error})"))
    })
}

fn verify_ecdsa(issuer_key: &SubjectPublicKeyInfo<'_>, hash: Hash, message: &[u8], signature: &[u8]) -> SignatureCheck {
    if issuer_key.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
        return SignatureCheck::Invalid(format!(
            "the signature is an ECDSA signature, but the issuer's public key is {}",
            oid_name(&issuer_key.algorithm.algorithm)
        ));
    }
    let curve = issuer_key.algorithm.parameters.as_ref().and_then(|parameters| parameters.as_oid().ok());
    let point: &[u8] = &issuer_key.subject_public_key.data;
    // FIPS 186-5 section 6.4: a hash longer than the curve order is cut to its leftmost bits,
    // which `verify_prehash` does, so every listed hash works with either curve.
    let prehash = hash.digest(message);

    let verified = match curve.as_ref().map(Oid::to_id_string).as_deref() {
        Some(OID_P256) => {
            let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
                return SignatureCheck::Invalid("the issuer's P-256 public key is not a valid curve point".into());
            };
            let Ok(signature) = p256::ecdsa::Signature::from_der(signature) else {
                return SignatureCheck::Invalid("the ECDSA signature is not a valid DER Ecdsa-Sig-Value".into());
            };
            key.verify_prehash(&prehash, &signature).is_ok()
        }
        Some(OID_P384) => {
            let Ok(key) = p384::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
                return SignatureCheck::Invalid("the issuer's P-384 public key is not a valid curve point".into());
            };
            let Ok(signature) = p384::ecdsa::Signature::from_der(signature) else {
                return SignatureCheck::Invalid("the ECDSA signature is not a valid DER Ecdsa-Sig-Value".into());
            };
            key.verify_prehash(&prehash, &signature).is_ok()
        }
        Some(_) | None => {
            let curve_name = curve.as_ref().map(oid_name).unwrap_or_else(|| "an unnamed curve".into());
            return SignatureCheck::NotVerified(format!("ECDSA with {} on {curve_name}", hash.name()));
        }
    };
    if verified {
        SignatureCheck::Valid
    } else {
        SignatureCheck::Invalid(format!("the ECDSA signature with {} does not verify", hash.name()))
    }
}

fn verify_ed25519(issuer_key: &SubjectPublicKeyInfo<'_>, message: &[u8], signature: &[u8]) -> SignatureCheck {
    if issuer_key.algorithm.algorithm.to_id_string() != OID_ED25519 {
        return SignatureCheck::Invalid(format!(
            "the signature is an Ed25519 signature, but the issuer's public key is {}",
            oid_name(&issuer_key.algorithm.algorithm)
        ));
    }
    let Ok(key_bytes) = <[u8; 32]>::try_from(&issuer_key.subject_public_key.data[..]) else {
        return SignatureCheck::Invalid("the issuer's Ed25519 public key is not 32 bytes long".into());
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes) else {
        return SignatureCheck::Invalid("the issuer's Ed25519 public key is not a valid curve point".into());
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return SignatureCheck::Invalid("the Ed25519 signature is not 64 bytes long".into());
    };
    match key.verify_strict(message, &signature) {
        Ok(()) => SignatureCheck::Valid,
        Err(_) => SignatureCheck::Invalid("the Ed25519 signature does not verify".into()),
    }
}

/// Names an OID as openssl does, such as `sha1WithRSAEncryption`, or returns its dotted form.
fn oid_name(oid: &Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}
