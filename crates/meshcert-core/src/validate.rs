//! Validation of an upload: a certificate chain, its private key and an optional mTLS CA.
//!
//! Every check has its own stable error code, returned by the API as `error.code`, and a message
//! that names the offending value and the fix. A rejected upload stores nothing; callers write
//! only what [`validate_upload`] returned.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::certificate::{self, CertificateSummary, ParsedCertificate};
use crate::chain::{self, SignatureCheck};
use crate::expiry::{self, ExpiryStatus};
use crate::key::{self, DecodedKey, KeyError, KeySummary};
use crate::pem_blocks::{self, PemBlock};
use crate::secret::SecretString;

/// The request field an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `certificate`: the PEM chain, leaf first.
    Certificate,
    /// `private_key`: the leaf's private key.
    PrivateKey,
    /// `ca_certificate`: the CA that verifies client certificates (mTLS).
    CaCertificate,
}

impl Field {
    /// Returns the JSON field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Certificate => "certificate",
            Field::PrivateKey => "private_key",
            Field::CaCertificate => "ca_certificate",
        }
    }
}

/// The reason an upload is rejected. [`UploadError::code`] is the stable API code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The field is empty or blank.
    #[error("{} is empty: paste the PEM text, starting with a \"-----BEGIN\" line", field.as_str())]
    EmptyInput {
        /// The request field.
        field: Field,
    },
    /// The field contains binary data such as DER.
    #[error("{} is not PEM text (it looks like binary DER): convert it with `openssl x509 -inform der -in FILE -out FILE.pem` (or `openssl pkey -inform der` for a key) and paste the PEM", field.as_str())]
    NotPem {
        /// The request field.
        field: Field,
    },
    /// The field is text without a BEGIN line.
    #[error("{} contains no PEM block: expected a line such as \"-----BEGIN CERTIFICATE-----\"; if this is base64 of a PEM file (as in a Kubernetes Secret's data), decode it first with `base64 -d`", field.as_str())]
    NoPemBlock {
        /// The request field.
        field: Field,
    },
    /// A PEM block is broken.
    #[error("{} block {position} is malformed: {reason}; paste the whole block again, from its BEGIN line to its END line", field.as_str())]
    MalformedPem {
        /// The request field.
        field: Field,
        /// Position of the block, starting at 1.
        position: usize,
        /// The problem with the block.
        reason: String,
    },
    /// The certificate field holds PEM blocks, but no certificate.
    #[error("{} contains no CERTIFICATE block (found {found}); paste the certificate chain, leaf first", field.as_str())]
    NoCertificate {
        /// The request field.
        field: Field,
        /// Labels of the blocks found.
        found: String,
    },
    /// A private key was pasted into a certificate field.
    #[error("{} contains a private key (block {position}, {label:?}): put the key in private_key and only certificates in {}", field.as_str(), field.as_str())]
    PrivateKeyInCertificateField {
        /// The request field.
        field: Field,
        /// Position of the key block.
        position: usize,
        /// Its PEM label.
        label: String,
    },
    /// A certificate was pasted into the private key field.
    #[error("private_key contains a certificate (block {position}), not a private key: put the certificate chain in certificate and the key (\"-----BEGIN PRIVATE KEY-----\") in private_key")]
    CertificateInKeyField {
        /// Position of the certificate block.
        position: usize,
    },
    /// No private key block.
    #[error("private_key contains no private key block (found {found}); paste the key that belongs to the leaf certificate")]
    NoPrivateKey {
        /// Labels of the blocks found.
        found: String,
    },
    /// More than one private key block.
    #[error("private_key contains {count} private keys; paste only the key of the leaf certificate")]
    MultiplePrivateKeys {
        /// Number of key blocks.
        count: usize,
    },
    /// The key is encrypted with a passphrase.
    #[error("private_key is encrypted ({label}); gateways need an unencrypted key: decrypt it with `openssl pkey -in key.pem -out key.decrypted.pem` and upload the output")]
    EncryptedPrivateKey {
        /// The PEM label, with the Proc-Type header when present.
        label: String,
    },
    /// The key type is not supported.
    #[error("private_key is not supported: {reason}")]
    UnsupportedKey {
        /// Why.
        reason: String,
    },
    /// The key does not decode.
    #[error("private_key is invalid: {reason}; export the key again with `openssl pkey -in key.pem -out key.pem`")]
    InvalidPrivateKey {
        /// Why.
        reason: String,
    },
    /// An RSA key under 2048 bits.
    #[error("private_key is a {bits}-bit RSA key; keys under 2048 bits are rejected: issue a new certificate with an RSA key of at least 2048 bits or an ECDSA P-256 key")]
    KeyTooSmall {
        /// Key size.
        bits: u32,
    },
    /// The key is not the leaf's.
    #[error("private_key does not match the leaf certificate {leaf_subject:?} (its public key differs): upload the key that was generated with this certificate's request")]
    KeyMismatch {
        /// Subject of the leaf.
        leaf_subject: String,
    },
    /// A certificate block is not a parsable X.509 certificate.
    #[error("{} block {position} is not a valid X.509 certificate: {reason}", field.as_str())]
    InvalidCertificate {
        /// The request field.
        field: Field,
        /// Position of the block.
        position: usize,
        /// Why.
        reason: String,
    },
    /// The chain is not leaf first with each certificate issued by the next.
    #[error("certificate chain is out of order: certificate {position} ({subject:?}) was issued by {issuer:?}, but certificate {next_position} is {next_subject:?}; {}", order_fix(*key_position))]
    ChainOutOfOrder {
        /// Position of the certificate whose issuer does not follow it.
        position: usize,
        /// Its subject.
        subject: String,
        /// Its issuer.
        issuer: String,
        /// Position of the certificate that follows it.
        next_position: usize,
        /// Subject of that certificate.
        next_subject: String,
        /// Position of the certificate whose public key matches the private key, which is the
        /// leaf, or `None` when the key does not decode or matches no certificate.
        key_position: Option<usize>,
    },
    /// A certificate's issuer is not in the chain, and something else follows it.
    #[error("certificate chain is incomplete: certificate {position} ({subject:?}) was issued by {issuer:?}, which is not in the chain, but certificate {next_position} ({next_subject:?}) follows it; insert the intermediate {issuer:?} after certificate {position}")]
    ChainIncomplete {
        /// Position of the certificate whose issuer is missing.
        position: usize,
        /// Its subject.
        subject: String,
        /// Its issuer.
        issuer: String,
        /// Position of the certificate that follows it.
        next_position: usize,
        /// Subject of that certificate.
        next_subject: String,
    },
    /// A certificate's signature does not verify with the public key of the certificate after it,
    /// although that certificate has the issuer's name: a forged or wrong intermediate.
    #[error("certificate chain has an invalid signature: certificate {position} ({subject:?}) is not signed by the key of certificate {issuer_position} ({issuer_subject:?}), although certificate {issuer_position} has its issuer's name ({reason}); replace certificate {issuer_position} with the intermediate that issued certificate {position}, as the CA publishes it")]
    ChainSignatureInvalid {
        /// Position of the signed certificate.
        position: usize,
        /// Its subject.
        subject: String,
        /// Position of the certificate whose key does not verify the signature.
        issuer_position: usize,
        /// Subject of that certificate.
        issuer_subject: String,
        /// The reason the signature does not verify.
        reason: String,
    },
    /// A certificate of the chain is signed by a certificate that is not a CA.
    #[error("certificate {issuer_position} ({issuer_subject:?}) signed certificate {position} ({subject:?}) but is not a CA certificate (basicConstraints CA:TRUE is missing), so TLS clients reject the chain; have certificate {position} issued by a CA, and upload that CA's intermediates after it")]
    IssuerNotCa {
        /// Position of the signed certificate.
        position: usize,
        /// Its subject.
        subject: String,
        /// Position of the signing certificate.
        issuer_position: usize,
        /// Subject of the signing certificate.
        issuer_subject: String,
    },
    /// A negative serial number (RFC 5280 section 4.1.2.2 requires a positive integer).
    #[error("{} block {position} ({subject:?}) has a negative serial number {serial}; RFC 5280 requires a positive serial, so reissue the certificate", field.as_str())]
    NegativeSerialNumber {
        /// The request field.
        field: Field,
        /// Position of the certificate.
        position: usize,
        /// Its subject.
        subject: String,
        /// The serial number.
        serial: String,
    },
    /// A certificate whose validity has not started.
    #[error("{} block {position} ({subject:?}) is not valid before {not_before} (now is {now}); check the issuer's clock or wait until then", field.as_str(), not_before = rfc3339(not_before), now = rfc3339(now))]
    CertificateNotYetValid {
        /// The request field.
        field: Field,
        /// Position of the certificate.
        position: usize,
        /// Its subject.
        subject: String,
        /// Its not_before.
        not_before: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// The leaf has expired.
    #[error("certificate {subject:?} expired at {not_after} (now is {now}); renew it, or set allow_expired: true to store it anyway", not_after = rfc3339(not_after), now = rfc3339(now))]
    CertificateExpired {
        /// Subject of the leaf.
        subject: String,
        /// Its not_after.
        not_after: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// An intermediate or the CA has expired.
    #[error("{} block {position} ({subject:?}) expired at {not_after} (now is {now}); get the current intermediate from the issuer, or set allow_expired: true to store it anyway", field.as_str(), not_after = rfc3339(not_after), now = rfc3339(now))]
    IntermediateExpired {
        /// The request field.
        field: Field,
        /// Position of the certificate.
        position: usize,
        /// Its subject.
        subject: String,
        /// Its not_after.
        not_after: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// The leaf names no host.
    #[error("certificate {subject:?} has no subjectAltName and its common name is not a host name, so no gateway host can match it; reissue it with a DNS subjectAltName")]
    NoHostName {
        /// Subject of the leaf.
        subject: String,
    },
    /// The mTLS CA certificate is not a CA.
    #[error("ca_certificate {subject:?} is not a CA certificate (basicConstraints CA:TRUE is missing); upload the CA that issues the client certificates")]
    CaCertificateNotCa {
        /// Its subject.
        subject: String,
    },
    /// mTLS without a CA certificate.
    #[error("mtls is true but ca_certificate is missing; add the CA that issues the client certificates, or set mtls: false")]
    CaCertificateRequired,
}

impl UploadError {
    /// Returns the stable error code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::EmptyInput { .. } => "empty_input",
            UploadError::NotPem { .. } => "not_pem",
            UploadError::NoPemBlock { .. } => "no_pem_block",
            UploadError::MalformedPem { .. } => "malformed_pem",
            UploadError::NoCertificate { .. } => "no_certificate",
            UploadError::PrivateKeyInCertificateField { .. } => "private_key_in_certificate_field",
            UploadError::CertificateInKeyField { .. } => "certificate_in_private_key_field",
            UploadError::NoPrivateKey { .. } => "no_private_key",
            UploadError::MultiplePrivateKeys { .. } => "multiple_private_keys",
            UploadError::EncryptedPrivateKey { .. } => "encrypted_private_key",
            UploadError::UnsupportedKey { .. } => "unsupported_key",
            UploadError::InvalidPrivateKey { .. } => "invalid_private_key",
            UploadError::KeyTooSmall { .. } => "key_too_small",
            UploadError::KeyMismatch { .. } => "key_mismatch",
            UploadError::InvalidCertificate { .. } => "invalid_certificate",
            UploadError::ChainOutOfOrder { .. } => "chain_out_of_order",
            UploadError::ChainIncomplete { .. } => "chain_incomplete",
            UploadError::ChainSignatureInvalid { .. } => "chain_signature_invalid",
            UploadError::IssuerNotCa { .. } => "issuer_not_ca",
            UploadError::NegativeSerialNumber { .. } => "negative_serial_number",
            UploadError::CertificateNotYetValid { .. } => "certificate_not_yet_valid",
            UploadError::CertificateExpired { .. } => "certificate_expired",
            UploadError::IntermediateExpired { .. } => "intermediate_expired",
            UploadError::NoHostName { .. } => "no_host_name",
            UploadError::CaCertificateNotCa { .. } => "ca_certificate_not_ca",
            UploadError::CaCertificateRequired => "ca_certificate_required",
        }
    }

    /// Returns the request field the error concerns.
    pub fn field(&self) -> Field {
        match self {
            UploadError::EmptyInput { field }
            | UploadError::NotPem { field }
            | UploadError::NoPemBlock { field }
            | UploadError::MalformedPem { field, .. }
            | UploadError::NoCertificate { field, .. }
            | UploadError::PrivateKeyInCertificateField { field, .. }
            | UploadError::InvalidCertificate { field, .. }
            | UploadError::NegativeSerialNumber { field, .. }
            | UploadError::CertificateNotYetValid { field, .. }
            | UploadError::IntermediateExpired { field, .. } => *field,
            UploadError::CertificateInKeyField { .. }
            | UploadError::NoPrivateKey { .. }
            | UploadError::MultiplePrivateKeys { .. }
            | UploadError::EncryptedPrivateKey { .. }
            | UploadError::UnsupportedKey { .. }
            | UploadError::InvalidPrivateKey { .. }
            | UploadError::KeyTooSmall { .. }
            | UploadError::KeyMismatch { .. } => Field::PrivateKey,
            UploadError::ChainOutOfOrder { .. }
            | UploadError::ChainIncomplete { .. }
            | UploadError::ChainSignatureInvalid { .. }
            | UploadError::IssuerNotCa { .. }
            | UploadError::CertificateExpired { .. }
            | UploadError::NoHostName { .. } => {
                Field::Certificate
            }
            UploadError::CaCertificateNotCa { .. } | UploadError::CaCertificateRequired => Field::CaCertificate,
        }
    }
}

/// A finding that does not reject the upload, returned in the API response's `warnings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Stable code, such as `no_subject_alt_name`.
    pub code: String,
    /// The finding and its meaning.
    pub message: String,
}

impl Warning {
    fn new(code: &str, message: String) -> Self {
        Self { code: code.into(), message }
    }
}

/// RFC 5280 section 4.1.2.2: the longest serial number, in DER content octets, that CAs may use.
const MAX_SERIAL_OCTETS: usize = 20;

/// The inputs of an upload, as bytes of the request fields.
pub struct UploadInput<'a> {
    /// PEM chain, leaf first.
    pub certificate: &'a [u8],
    /// PEM private key of the leaf.
    pub private_key: &'a [u8],
    /// PEM CA certificate for mTLS, if any.
    pub ca_certificate: Option<&'a [u8]>,
    /// Whether the gateway requires client certificates.
    pub mtls: bool,
    /// Whether an expired certificate may be stored (migration, alert tests).
    pub allow_expired: bool,
}

/// An upload that passed every check, in the canonical form meshcert stores and pushes.
#[derive(Debug)]
pub struct ValidatedUpload {
    /// The chain as PEM, leaf first, each certificate once, without text outside the blocks.
    pub chain_pem: String,
    /// The private key as PEM, in the encoding it was uploaded in.
    pub private_key_pem: SecretString,
    /// The CA certificate as PEM.
    pub ca_pem: Option<String>,
    /// Details of the leaf, each intermediate and the CA.
    pub summary: UploadSummary,
    /// Findings that did not reject the upload.
    pub warnings: Vec<Warning>,
}

/// Details of an accepted upload, stored with each version and in the certificate's head record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSummary {
    /// The leaf certificate.
    pub leaf: CertificateSummary,
    /// Intermediates (and a root, when included) after the leaf, in chain order.
    pub intermediates: Vec<CertificateSummary>,
    /// The mTLS CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateSummary>,
    /// The private key's algorithm, size and encoding.
    pub key: KeySummary,
}

/// Validates an upload at the instant `now`; an expiring leaf (fewer than `warning_days` days
/// left) is accepted with a warning.
///
/// # Errors
///
/// The first failed check, as an [`UploadError`] whose code, field and message the API returns.
pub fn validate_upload(input: &UploadInput<'_>, now: DateTime<Utc>, warning_days: u32) -> Result<ValidatedUpload, UploadError> {
    let mut warnings = Vec::new();

    // The chain: certificates only, each certificate once, leaf first, each signed by the next.
    // The key is decoded first so that a chain out of order can name the certificate the key
    // belongs to, but the key's own errors are reported after the chain's.
    let chain = parse_certificates(Field::Certificate, input.certificate, &mut warnings)?;
    let key = single_key_block(input.private_key).and_then(|block| decode_key(&block).map(|decoded| (block, decoded)));
    check_chain(&chain, key.as_ref().ok().map(|(_, decoded)| decoded), &mut warnings)?;
    let leaf = &chain[0];

    // The key: exactly one unencrypted key of a supported type that matches the leaf.
    let (key_block, decoded) = key?;
    if decoded.summary.algorithm == "RSA" && decoded.summary.size_bits < 2048 {
        return Err(UploadError::KeyTooSmall { bits: decoded.summary.size_bits });
    }
    if !public_keys_match(&decoded.public_key_der, &leaf.der) {
        return Err(UploadError::KeyMismatch { leaf_subject: leaf.summary.subject.clone() });
    }
    // Envoy releases from before P-384 support reject ECDSA certificates on any curve but P-256
    // with "only P-256 ECDSA certificates are supported".
    if leaf.summary.key_algorithm == "EC" && leaf.summary.ec_curve.as_deref() != Some("P-256") {
        warnings.push(Warning::new(
            "ecdsa_curve_not_p256_may_be_rejected_by_older_envoy",
            format!(
                "certificate {:?} has an ECDSA key on curve {}; Envoy releases without support for it reject the certificate with \"only P-256 ECDSA certificates are supported\", so check the Envoy version of your gateways or reissue the certificate with a P-256 key",
                leaf.summary.subject,
                leaf.summary.ec_curve.as_deref().unwrap_or("unknown")
            ),
        ));
    }

    // The mTLS CA certificate.
    let ca = match input.ca_certificate {
        Some(pem) => {
            let mut ca_certificates = parse_certificates(Field::CaCertificate, pem, &mut warnings)?;
            // NOTE: Only the first CA block is checked and pushed; bundles of several CAs are a
            // later addition.
            let ca = ca_certificates.remove(0);
            if !ca.summary.is_ca {
                return Err(UploadError::CaCertificateNotCa { subject: ca.summary.subject });
            }
            if !input.mtls {
                warnings.push(Warning::new(
                    "ca_certificate_unused",
                    "ca_certificate is stored but not pushed because mtls is false; set mtls: true to require client certificates".into(),
                ));
            }
            Some(ca)
        }
        None if input.mtls => return Err(UploadError::CaCertificateRequired),
        None => None,
    };

    // Dates: every certificate must have started; an expired one needs allow_expired.
    check_dates(&chain, ca.as_ref(), input.allow_expired, now, warning_days, &mut warnings)?;

    // Names: gateways match hosts against the SANs, and fall back to nothing.
    if leaf.summary.sans.is_empty() {
        match certificate::common_name(&leaf.der) {
            Some(cn) if is_host_name(&cn) => warnings.push(Warning::new(
                "no_subject_alt_name",
                format!(
                    "certificate {:?} has no subjectAltName; clients that follow RFC 6125 ignore the common name {cn:?}, so reissue it with a DNS subjectAltName",
                    leaf.summary.subject
                ),
            )),
            _ => return Err(UploadError::NoHostName { subject: leaf.summary.subject.clone() }),
        }
    }

    let chain_pem = chain.iter().map(|certificate| pem_blocks::encode("CERTIFICATE", &certificate.der)).collect();
    let private_key_pem = SecretString::new(pem_blocks::encode(&key_block.label, &key_block.der));
    let ca_pem = ca.as_ref().map(|ca| pem_blocks::encode("CERTIFICATE", &ca.der));
    let mut chain = chain.into_iter().map(|certificate| certificate.summary);
    let leaf = chain.next().ok_or(UploadError::NoCertificate { field: Field::Certificate, found: "nothing".into() })?;

    Ok(ValidatedUpload {
        chain_pem,
        private_key_pem,
        ca_pem,
        summary: UploadSummary { leaf, intermediates: chain.collect(), ca: ca.map(|ca| ca.summary), key: decoded.summary },
        warnings,
    })
}

/// Parses the certificate blocks of a field; drops repeated certificates with a warning.
fn parse_certificates(field: Field, input: &[u8], warnings: &mut Vec<Warning>) -> Result<Vec<ParsedCertificate>, UploadError> {
    let blocks = pem_blocks::parse(field, input)?;
    if let Some(key) = blocks.iter().find(|block| block.is_private_key()) {
        return Err(UploadError::PrivateKeyInCertificateField { field, position: key.position, label: key.label.clone() });
    }

    let mut certificates: Vec<ParsedCertificate> = Vec::new();
    for block in blocks.iter().filter(|block| block.is_certificate()) {
        let parsed = certificate::parse_der(&block.der).map_err(|error| UploadError::InvalidCertificate {
            field,
            position: block.position,
            reason: error.to_string(),
        })?;
        if certificates.iter().any(|existing| existing.der == parsed.der) {
            warnings.push(Warning::new(
                "duplicate_certificate_in_chain",
                format!(
                    "{} block {} ({:?}) repeats an earlier certificate and was dropped, so it is pushed once",
                    field.as_str(),
                    block.position,
                    parsed.summary.subject
                ),
            ));
            continue;
        }
        if parsed.summary.serial_hex.starts_with('-') {
            return Err(UploadError::NegativeSerialNumber {
                field,
                position: block.position,
                subject: parsed.summary.subject,
                serial: parsed.summary.serial_hex,
            });
        }
        // RFC 5280 section 4.1.2.2: CAs MUST NOT use serial numbers longer than 20 octets, but
        // certificate users SHOULD handle them gracefully, so such a certificate only warns.
        if parsed.serial_octets > MAX_SERIAL_OCTETS {
            warnings.push(Warning::new(
                "serial_number_longer_than_20_octets",
                format!(
                    "{} block {} ({:?}) has a serial number of {} octets ({}); RFC 5280 allows at most {MAX_SERIAL_OCTETS}, so strict TLS clients may reject it: ask the CA to reissue it",
                    field.as_str(),
                    block.position,
                    parsed.summary.subject,
                    parsed.serial_octets,
                    parsed.summary.serial_hex
                ),
            ));
        }
        certificates.push(parsed);
    }

    if certificates.is_empty() {
        return Err(UploadError::NoCertificate { field, found: labels(&blocks) });
    }
    Ok(certificates)
}

/// RFC 5280 section 6.1.3 (a): in a path, each certificate's issuer is the subject of the next,
/// and the next one's public key verifies its signature. Section 6.1.4 (k): that next certificate
/// is a CA (MUST). A self-signed root at the end of the chain signs nothing after it, so its own
/// signature is not checked.
fn check_chain(chain: &[ParsedCertificate], key: Option<&DecodedKey>, warnings: &mut Vec<Warning>) -> Result<(), UploadError> {
    for (index, pair) in chain.windows(2).enumerate() {
        let (certificate, next) = (&pair[0], &pair[1]);
        let (position, next_position) = (index + 1, index + 2);
        if certificate.summary.issuer != next.summary.subject {
            // The issuer is in the chain, or this certificate issued a later one: the order is
            // wrong. Otherwise the issuer is missing.
            let issuer_present = chain.iter().any(|other| other.summary.subject == certificate.summary.issuer && other.der != certificate.der);
            let issued_later = chain[index + 1..].iter().any(|later| later.summary.issuer == certificate.summary.subject);
            if !issuer_present && !issued_later {
                return Err(UploadError::ChainIncomplete {
                    position,
                    subject: certificate.summary.subject.clone(),
                    issuer: certificate.summary.issuer.clone(),
                    next_position,
                    next_subject: next.summary.subject.clone(),
                });
            }
            let key_position = key.and_then(|key| chain.iter().position(|member| public_keys_match(&key.public_key_der, &member.der)));
            return Err(UploadError::ChainOutOfOrder {
                position,
                subject: certificate.summary.subject.clone(),
                issuer: certificate.summary.issuer.clone(),
                next_position,
                next_subject: next.summary.subject.clone(),
                key_position: key_position.map(|index| index + 1),
            });
        }

        match chain::verify_signed_by(&certificate.der, &next.der) {
            SignatureCheck::Valid => {}
            SignatureCheck::NotVerified(algorithm) => warnings.push(Warning::new(
                "chain_signature_not_verified",
                format!(
                    "certificate {position} ({:?}) is signed with {algorithm}, which meshcert does not verify, so only its issuer name links it to certificate {next_position} ({:?}); to have the chain checked, reissue it with RSA or ECDSA (P-256, P-384) and SHA-256, or with Ed25519",
                    certificate.summary.subject, next.summary.subject
                ),
            )),
            SignatureCheck::Invalid(reason) => {
                return Err(UploadError::ChainSignatureInvalid {
                    position,
                    subject: certificate.summary.subject.clone(),
                    issuer_position: next_position,
                    issuer_subject: next.summary.subject.clone(),
                    reason,
                });
            }
        }
        if !next.summary.is_ca {
            return Err(UploadError::IssuerNotCa {
                position,
                subject: certificate.summary.subject.clone(),
                issuer_position: next_position,
                issuer_subject: next.summary.subject.clone(),
            });
        }
    }
    Ok(())
}

/// Returns the fix for a chain out of order, which names the leaf when the key matches a certificate.
fn order_fix(key_position: Option<usize>) -> String {
    match key_position {
        Some(position) => format!(
            "the private key matches certificate {position}, so certificate {position} is the leaf and must come first: order the chain leaf first, then each issuer"
        ),
        None => "order the chain leaf first, then each issuer".to_string(),
    }
}

/// Formats an instant as RFC 3339 in UTC with a `Z`, as the API's JSON writes it.
fn rfc3339(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn decode_key(block: &PemBlock) -> Result<DecodedKey, UploadError> {
    key::decode(block).map_err(|error| match error {
        KeyError::Encrypted => UploadError::EncryptedPrivateKey { label: encrypted_label(block) },
        KeyError::Unsupported(reason) => UploadError::UnsupportedKey { reason },
        KeyError::Invalid(reason) => UploadError::InvalidPrivateKey { reason },
    })
}

fn single_key_block(input: &[u8]) -> Result<PemBlock, UploadError> {
    let blocks = pem_blocks::parse(Field::PrivateKey, input)?;
    let mut keys: Vec<&PemBlock> = blocks.iter().filter(|block| block.is_private_key()).collect();
    match keys.len() {
        0 => match blocks.iter().find(|block| block.is_certificate()) {
            Some(certificate) => Err(UploadError::CertificateInKeyField { position: certificate.position }),
            None => Err(UploadError::NoPrivateKey { found: labels(&blocks) }),
        },
        1 => Ok(keys.remove(0).clone()),
        count => Err(UploadError::MultiplePrivateKeys { count }),
    }
}

fn check_dates(
    chain: &[ParsedCertificate],
    ca: Option<&ParsedCertificate>,
    allow_expired: bool,
    now: DateTime<Utc>,
    warning_days: u32,
    warnings: &mut Vec<Warning>,
) -> Result<(), UploadError> {
    let members = chain
        .iter()
        .enumerate()
        .map(|(index, certificate)| (Field::Certificate, index + 1, certificate))
        .chain(ca.map(|ca| (Field::CaCertificate, 1, ca)));

    for (field, position, certificate) in members {
        let summary = &certificate.summary;
        if now < summary.not_before {
            return Err(UploadError::CertificateNotYetValid {
                field,
                position,
                subject: summary.subject.clone(),
                not_before: summary.not_before,
                now,
            });
        }

        match expiry::classify(summary.not_after, now, warning_days) {
            ExpiryStatus::Expired if !allow_expired => {
                return Err(if field == Field::Certificate && position == 1 {
                    UploadError::CertificateExpired { subject: summary.subject.clone(), not_after: summary.not_after, now }
                } else {
                    UploadError::IntermediateExpired { field, position, subject: summary.subject.clone(), not_after: summary.not_after, now }
                });
            }
            ExpiryStatus::Expired => warnings.push(Warning::new(
                "certificate_expired",
                format!(
                    "{} block {position} ({:?}) expired at {}; it is stored because allow_expired is true, and alerted",
                    field.as_str(),
                    summary.subject,
                    rfc3339(&summary.not_after)
                ),
            )),
            ExpiryStatus::Expiring => warnings.push(Warning::new(
                "certificate_expiring",
                format!(
                    "{} block {position} ({:?}) expires at {}, in {} days; renew it soon",
                    field.as_str(),
                    summary.subject,
                    rfc3339(&summary.not_after),
                    expiry::days_left(summary.not_after, now)
                ),
            )),
            ExpiryStatus::Valid => {}
        }
    }
    Ok(())
}

/// Compares the key's SubjectPublicKeyInfo with the certificate's, by algorithm and key bits, so
/// that equivalent encodings of the algorithm parameters still match.
fn public_keys_match(key_spki_der: &[u8], certificate_der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

    let Ok((_, certificate)) = X509Certificate::from_der(certificate_der) else {
        return false;
    };
    let Ok((_, key_spki)) = SubjectPublicKeyInfo::from_der(key_spki_der) else {
        return false;
    };
    let certificate_spki = certificate.public_key();
    certificate_spki.algorithm.algorithm == key_spki.algorithm.algorithm
        && certificate_spki.subject_public_key.data == key_spki.subject_public_key.data
}

fn encrypted_label(block: &PemBlock) -> String {
    match block.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("Proc-Type")) {
        Some((_, value)) => format!("{:?} with Proc-Type {value}", block.label),
        None => format!("{:?}", block.label),
    }
}

fn labels(blocks: &[PemBlock]) -> String {
    blocks.iter().map(|block| format!("{:?}", block.label)).collect::<Vec<_>>().join(", ")
}

/// Returns whether `value` is a host name as gateways match it: dot-separated labels of letters, digits and `-`, with an
/// optional leading `*.` wildcard.
fn is_host_name(value: &str) -> bool {
    let name = value.strip_prefix("*.").unwrap_or(value);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
