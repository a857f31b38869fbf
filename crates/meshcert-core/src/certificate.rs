//! X.509 certificate details: what the API shows and what the expiry scan reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The facts about one certificate that meshcert stores and shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// Subject distinguished name, as `CN=..., O=...`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject alternative names: DNS names, IP addresses, URIs and e-mail addresses.
    pub sans: Vec<String>,
    /// Serial number magnitude in uppercase hex, with a leading `-` when negative.
    pub serial_hex: String,
    /// Start of validity (inclusive).
    pub not_before: DateTime<Utc>,
    /// End of validity (inclusive, RFC 5280 section 4.1.2.5).
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER encoding, uppercase hex pairs separated by colons as openssl prints it.
    pub sha256_fingerprint: String,
    /// Public key algorithm: `RSA`, `EC` (an elliptic-curve key, named as in openssl's `genpkey
    /// -algorithm EC`), `Ed25519` or the OID of another algorithm.
    pub key_algorithm: String,
    /// Public key size in bits.
    pub key_size_bits: u32,
    /// Named curve of an EC key (`P-256`, `P-384`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec_curve: Option<String>,
    /// Whether basicConstraints sets `CA:TRUE`.
    pub is_ca: bool,
}

/// A parsed certificate with its DER, kept together so that checks can reach both.
pub struct ParsedCertificate {
    /// The DER encoding as uploaded.
    pub der: Vec<u8>,
    /// The details of the certificate.
    pub summary: CertificateSummary,
    /// Length of the serial number's DER content octets, sign byte included, which RFC 5280
    /// section 4.1.2.2 limits to 20.
    pub serial_octets: usize,
}

/// The reason a DER block is not a usable certificate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertificateParseError(String);

/// Parses one DER certificate into its summary.
///
/// # Errors
///
/// Returns the parser's reason when the DER is not an X.509 certificate or has trailing bytes.
pub fn parse_der(der: &[u8]) -> Result<ParsedCertificate, CertificateParseError> {
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|error| CertificateParseError(format!("not an X.509 certificate ({error})")))?;
    if !rest.is_empty() {
        return Err(CertificateParseError(format!("{} unexpected bytes after the certificate", rest.len())));
    }
    let summary = summarize(&certificate)?;
    Ok(ParsedCertificate { der: der.to_vec(), summary, serial_octets: certificate.raw_serial().len() })
}

fn summarize(certificate: &X509Certificate<'_>) -> Result<CertificateSummary, CertificateParseError> {
    let validity = certificate.validity();
    let not_before = timestamp(validity.not_before.timestamp())?;
    let not_after = timestamp(validity.not_after.timestamp())?;

    let mut sans = Vec::new();
    let san_extension = certificate
        .subject_alternative_name()
        .map_err(|error| CertificateParseError(format!("invalid subjectAltName extension ({error})")))?;
    if let Some(extension) = san_extension {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_string()),
                GeneralName::IPAddress(bytes) => sans.push(ip_to_string(bytes)),
                GeneralName::URI(uri) => sans.push((*uri).to_string()),
                GeneralName::RFC822Name(email) => sans.push((*email).to_string()),
                _ => {}
            }
        }
    }

    let spki = certificate.public_key();
    let key_size_bits = match spki.parsed() {
        // x509-parser 0.18 drops the first modulus byte as if it were a 0x00 sign byte, so it
        // reads a 2047-bit modulus as 2040 bits and a 2049-bit one as 2048.
        Ok(PublicKey::RSA(rsa)) => significant_bits(rsa.modulus),
        Ok(key) => key.key_size() as u32,
        Err(_) => 0,
    };
    let algorithm = &spki.algorithm.algorithm;
    let (key_algorithm, ec_curve) = if *algorithm == OID_PKCS1_RSAENCRYPTION {
        ("RSA".to_string(), None)
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|parameters| parameters.as_oid().ok());
        let curve = match curve {
            Some(oid) if oid == OID_EC_P256 => "P-256".to_string(),
            Some(oid) if oid == OID_NIST_EC_P384 => "P-384".to_string(),
            Some(oid) => oid.to_id_string(),
            None => "unknown".to_string(),
        };
        ("EC".to_string(), Some(curve))
    } else if *algorithm == OID_SIG_ED25519 {
        ("Ed25519".to_string(), None)
    } else {
        (algorithm.to_id_string(), None)
    };
    let key_size_bits = if key_algorithm == "Ed25519" { 256 } else { key_size_bits };

    Ok(CertificateSummary {
        subject: rfc4514(certificate.subject()),
        issuer: rfc4514(certificate.issuer()),
        sans,
        serial_hex: serial_hex(certificate.raw_serial()),
        not_before,
        not_after,
        sha256_fingerprint: fingerprint(certificate.as_raw()),
        key_algorithm,
        key_size_bits,
        ec_curve,
        is_ca: certificate.is_ca(),
    })
}

/// Formats a distinguished name as RFC 4514 does (and `openssl -nameopt RFC2253`): the last
/// RDN first, RDNs joined by `,`, attributes of one RDN by `+`, special characters escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let short = x509_parser::objects::oid2abbrev(oid, registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| oid.to_id_string());
                    let value = attribute.as_str().map(escape_rfc4514).unwrap_or_else(|_| format!("#{}", hex::encode(attribute.as_slice())));
                    format!("{short}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc4514(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let leading = index == 0 && (character == ' ' || character == '#');
        let trailing = index + 1 == value.chars().count() && character == ' ';
        if leading || trailing || matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Returns whether a DER INTEGER's content bytes encode a negative number (two's complement).
pub fn is_negative_serial(raw_serial: &[u8]) -> bool {
    raw_serial.first().is_some_and(|first| first & 0x80 != 0)
}

/// SHA-256 of `der` as uppercase hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

/// Returns the subject's common name when it has exactly one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let mut names = certificate.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?.to_string();
    names.next().is_none().then_some(name)
}

fn serial_hex(raw: &[u8]) -> String {
    if is_negative_serial(raw) {
        // Two's complement magnitude: invert and add one.
        let mut magnitude: Vec<u8> = raw.iter().map(|byte| !byte).collect();
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        return format!("-{}", hex_trimmed(&magnitude));
    }
    hex_trimmed(raw)
}

fn hex_trimmed(bytes: &[u8]) -> String {
    let digits = hex::encode_upper(bytes);
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return "0".to_string();
    }
    trimmed.to_string()
}

/// Counts the bits of an unsigned big-endian integer, such as an RSA modulus, from its highest set bit.
fn significant_bits(bytes: &[u8]) -> u32 {
    let start = bytes.iter().position(|&byte| byte != 0).unwrap_or(bytes.len());
    match bytes[start..].first() {
        Some(first) => (bytes.len() - start - 1) as u32 * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

fn timestamp(seconds: i64) -> Result<DateTime<Utc>, CertificateParseError> {
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| CertificateParseError(format!("validity time {seconds} is out of range")))
}

fn ip_to_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_handles_zero_and_negative() {
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[0x01]), "1");
        assert_eq!(serial_hex(&[0x30, 0x01]), "3001");
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial_hex(&[0xff]), "-1");
        assert_eq!(serial_hex(&[0x80, 0x00]), "-8000");
    }

    #[test]
    fn fingerprint_is_openssl_style() {
        let value = fingerprint(b"abc");

        assert!(value.starts_with("BA:78:16:BF"));
        assert_eq!(value.len(), 32 * 3 - 1);
    }
}
