//! Integration tests of `validate_upload` with certificates that rcgen generates around a fixed
//! instant, so no assertion depends on the wall clock.
//!
//! rcgen 0.14 with its default ring backend generates ECDSA and Ed25519 keys but no RSA keys, so
//! RSA keys come from the rsa crate and reach rcgen as a SubjectPublicKeyInfo. Most leaves are
//! signed by an ECDSA P-256 intermediate, so a leaf key never signs anything and may be any size.
//! The signature tests give the intermediate other key types, and rcgen signs with an RSA key it is
//! handed. rcgen 0.14 cannot write RSASSA-PSS or SHA-1 signatures, so the tests build those themselves.
//! An RSA key takes seconds to generate in a debug build, so each RSA key is generated once per run.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use base64::Engine as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use meshcert_core::certificate;
use meshcert_core::key::KeySummary;
use meshcert_core::validate::{validate_upload, Field, UploadError, UploadInput, ValidatedUpload};
use p256::pkcs8::DecodePrivateKey as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber, SignatureAlgorithm, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PKCS_RSA_SHA384, PKCS_RSA_SHA512,
};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::rand_core::OsRng;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use sec1::der::Encode as _;
use sha2::{Digest as _, Sha256, Sha384};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const WARNING_DAYS: u32 = 30;
const ORGANIZATION: &str = "Meshcert Tests";
const ROOT_SUBJECT: &str = "CN=Meshcert Test Root,O=Meshcert Tests";
const INTERMEDIATE_SUBJECT: &str = "CN=Meshcert Test Intermediate,O=Meshcert Tests";
const LEAF_NAME: &str = "gateway.example.com";
const LEAF_SUBJECT: &str = "CN=gateway.example.com,O=Meshcert Tests";

/// Private key lines shorter than this are not searched for in error messages, because a short
/// final base64 line could occur in unrelated text by chance.
const MIN_KEY_LINE_LENGTH: usize = 16;

/// Returns the instant every test validates at, unless a test picks another one relative to it.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn days(count: i64) -> Duration {
    Duration::days(count)
}

fn to_offset(instant: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(instant.timestamp()).unwrap()
}

/// Encodes DER as PEM the way openssl writes it, with 64-character base64 lines and LF line endings.
fn pem_text(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Encodes the chain as `validate_upload` should store it, each certificate once with nothing between blocks.
fn canonical_chain(certificates: &[&[u8]]) -> String {
    certificates.iter().map(|der| pem_text("CERTIFICATE", der)).collect()
}

fn openssl_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Rsa2048,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

#[derive(Clone, Copy, Debug)]
enum KeyEncoding {
    /// `PRIVATE KEY`
    Pkcs8,
    /// `RSA PRIVATE KEY`
    Pkcs1,
    /// `EC PRIVATE KEY` with the curve named, as openssl writes it.
    Sec1,
    /// `EC PRIVATE KEY` without the curve, as RustCrypto's `to_sec1_pem` (elliptic-curve 0.13)
    /// writes it.
    Sec1WithoutCurve,
}

/// A generated private key with the SubjectPublicKeyInfo its certificate carries.
#[derive(Clone)]
struct TestKey {
    key_type: KeyType,
    pkcs8_der: Vec<u8>,
    spki_der: Vec<u8>,
    rsa: Option<RsaPrivateKey>,
}

static RSA_2048: OnceLock<TestKey> = OnceLock::new();
static RSA_2048_OTHER: OnceLock<TestKey> = OnceLock::new();
static RSA_2047: OnceLock<TestKey> = OnceLock::new();
static RSA_1024: OnceLock<TestKey> = OnceLock::new();

impl TestKey {
    fn generate(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Rsa2048 => Self::cached_rsa(&RSA_2048, 2048),
            KeyType::EcdsaP256 => Self::from_rcgen(key_type, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()),
            KeyType::EcdsaP384 => Self::from_rcgen(key_type, KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()),
            KeyType::Ed25519 => Self::from_rcgen(key_type, KeyPair::generate_for(&PKCS_ED25519).unwrap()),
        }
    }

    /// A second key of the same type, different from the one `generate` returns.
    fn generate_other(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Rsa2048 => Self::cached_rsa(&RSA_2048_OTHER, 2048),
            _ => Self::generate(key_type),
        }
    }

    fn cached_rsa(cell: &'static OnceLock<TestKey>, bits: usize) -> Self {
        cell.get_or_init(|| Self::from_rsa(RsaPrivateKey::new(&mut OsRng, bits).unwrap())).clone()
    }

    fn from_rsa(key: RsaPrivateKey) -> Self {
        Self {
            key_type: KeyType::Rsa2048,
            pkcs8_der: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            spki_der: key.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec(),
            rsa: Some(key),
        }
    }

    fn from_rcgen(key_type: KeyType, pair: KeyPair) -> Self {
        Self { key_type, pkcs8_der: pair.serialize_der(), spki_der: pair.subject_public_key_info(), rsa: None }
    }

    fn public_key(&self) -> SubjectPublicKeyInfo {
        SubjectPublicKeyInfo::from_der(&self.spki_der).unwrap()
    }

    fn pem(&self, encoding: KeyEncoding) -> String {
        match encoding {
            KeyEncoding::Pkcs8 => pem_text("PRIVATE KEY", &self.pkcs8_der),
            KeyEncoding::Pkcs1 => {
                let key = self.rsa.as_ref().expect("PKCS#1 encodes only RSA keys");
                key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
            }
            KeyEncoding::Sec1WithoutCurve => match self.key_type {
                KeyType::EcdsaP256 => {
                    let key = p256::SecretKey::from_pkcs8_der(&self.pkcs8_der).unwrap();
                    key.to_sec1_pem(LineEnding::LF).unwrap().to_string()
                }
                KeyType::EcdsaP384 => {
                    let key = p384::SecretKey::from_pkcs8_der(&self.pkcs8_der).unwrap();
                    key.to_sec1_pem(LineEnding::LF).unwrap().to_string()
                }
                other => panic!("SEC1 encodes only ECDSA keys, not {other:?}"),
            },
            KeyEncoding::Sec1 => {
                let curve = match self.key_type {
                    KeyType::EcdsaP256 => "1.2.840.10045.3.1.7",
                    KeyType::EcdsaP384 => "1.3.132.0.34",
                    other => panic!("SEC1 encodes only ECDSA keys, not {other:?}"),
                };
                let without_curve = self.pem(KeyEncoding::Sec1WithoutCurve);
                let (_, der) = sec1::der::pem::decode_vec(without_curve.as_bytes()).unwrap();
                let mut key = sec1::EcPrivateKey::try_from(der.as_slice()).unwrap();
                assert!(key.parameters.is_none(), "to_sec1_pem now names the curve");
                key.parameters = Some(sec1::EcParameters::NamedCurve(sec1::der::asn1::ObjectIdentifier::new_unwrap(curve)));
                pem_text("EC PRIVATE KEY", &key.to_der().unwrap())
            }
        }
    }

    fn pkcs8_pem(&self) -> String {
        self.pem(KeyEncoding::Pkcs8)
    }

    /// Returns the RSA key as an rcgen signing key for `algorithm`, such as `PKCS_RSA_SHA256`.
    fn rsa_signer(&self, algorithm: &'static SignatureAlgorithm) -> KeyPair {
        KeyPair::from_pkcs8_pem_and_sign_algo(&self.pkcs8_pem(), algorithm).unwrap()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::CommonName, common_name);
    name
}

fn ca_params(common_name: &str, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = to_offset(not_before);
    params.not_after = to_offset(not_after);
    params
}

/// Builds a leaf for `LEAF_NAME`, valid from 30 days before `now()` to 365 days after.
fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec![LEAF_NAME.to_string()]).unwrap();
    params.distinguished_name = name(LEAF_NAME);
    params.serial_number = Some(SerialNumber::from_slice(&[0x1F, 0x2E, 0x3D, 0x4C]));
    params.not_before = to_offset(now() - days(30));
    params.not_after = to_offset(now() + days(365));
    params
}

/// A root and an intermediate, both with ECDSA P-256 keys.
struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        Self::with_intermediate_validity(now() - days(365), now() + days(5 * 365))
    }

    fn with_intermediate_validity(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Self {
        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        Self::build(intermediate_key, not_before, not_after)
    }

    /// Builds a PKI whose intermediate signs leaves with `intermediate_key` and its algorithm.
    /// Every such PKI has the same names, so two of them make a genuine and a forged intermediate.
    fn with_intermediate_key(intermediate_key: KeyPair) -> Self {
        Self::build(intermediate_key, now() - days(365), now() + days(5 * 365))
    }

    fn build(intermediate_key: KeyPair, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Self {
        let root_params = ca_params("Meshcert Test Root", now() - days(3650), now() + days(3650));
        let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()).unwrap();
        let intermediate_params = ca_params("Meshcert Test Intermediate", not_before, not_after);
        let intermediate = CertifiedIssuer::signed_by(intermediate_params, intermediate_key, &*root).unwrap();
        Self { root, intermediate }
    }

    fn issue(&self, params: &CertificateParams, key: &TestKey) -> Certificate {
        params.signed_by(&key.public_key(), &*self.intermediate).unwrap()
    }

    fn root_der(&self) -> &[u8] {
        self.root.der()
    }

    fn intermediate_der(&self) -> &[u8] {
        self.intermediate.der()
    }
}

/// A leaf, its key and the PKI that issued it.
struct Fixture {
    pki: Pki,
    leaf: Certificate,
    key: TestKey,
}

impl Fixture {
    fn new(key_type: KeyType) -> Self {
        Self::with_leaf(TestKey::generate(key_type), &leaf_params())
    }

    fn with_leaf(key: TestKey, params: &CertificateParams) -> Self {
        Self::issued_by(Pki::new(), key, params)
    }

    fn issued_by(pki: Pki, key: TestKey, params: &CertificateParams) -> Self {
        let leaf = pki.issue(params, &key);
        Self { pki, leaf, key }
    }

    fn leaf_der(&self) -> &[u8] {
        self.leaf.der()
    }

    /// Returns the leaf and the intermediate as one PEM text.
    fn chain_pem(&self) -> String {
        self.leaf.pem() + &self.pki.intermediate.pem()
    }

    fn upload(&self) -> Upload {
        Upload::new(self.chain_pem(), self.key.pkcs8_pem())
    }
}

/// The request fields of one upload, and the key PEM texts no error message may quote.
struct Upload {
    certificate: Vec<u8>,
    private_key: Vec<u8>,
    ca_certificate: Option<Vec<u8>>,
    mtls: bool,
    allow_expired: bool,
    secrets: Vec<String>,
}

impl Upload {
    fn new(certificate: impl Into<Vec<u8>>, private_key: impl Into<String>) -> Self {
        let private_key = private_key.into();
        Self {
            certificate: certificate.into(),
            private_key: private_key.clone().into_bytes(),
            ca_certificate: None,
            mtls: false,
            allow_expired: false,
            secrets: vec![private_key],
        }
    }

    fn with_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.certificate = certificate.into();
        self
    }

    /// Replaces the private_key field. The key PEM it replaces stays in the secrets.
    fn with_private_key(mut self, private_key: impl Into<Vec<u8>>) -> Self {
        self.private_key = private_key.into();
        self
    }

    fn with_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(ca_pem.into());
        self
    }

    fn with_mtls(mut self) -> Self {
        self.mtls = true;
        self
    }

    fn with_allow_expired(mut self) -> Self {
        self.allow_expired = true;
        self
    }

    fn with_secret(mut self, key_pem: impl Into<String>) -> Self {
        self.secrets.push(key_pem.into());
        self
    }

    fn validate(&self, now: DateTime<Utc>) -> Result<ValidatedUpload, UploadError> {
        let input = UploadInput {
            certificate: &self.certificate,
            private_key: &self.private_key,
            ca_certificate: self.ca_certificate.as_deref(),
            mtls: self.mtls,
            allow_expired: self.allow_expired,
        };
        validate_upload(&input, now, WARNING_DAYS)
    }

    /// Collects the base64 lines of every private key block in the secrets and in both fields.
    fn key_lines(&self) -> Vec<String> {
        let fields = [&self.certificate, &self.private_key].map(|field| String::from_utf8_lossy(field).into_owned());
        self.secrets.iter().chain(fields.iter()).flat_map(|text| private_key_lines(text)).collect()
    }
}

fn private_key_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside_key = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            inside_key = line.contains("PRIVATE KEY");
        } else if line.starts_with("-----END") {
            inside_key = false;
        } else if inside_key && line.len() >= MIN_KEY_LINE_LENGTH && !line.contains(':') {
            lines.push(line.to_string());
        }
    }
    lines
}

fn accept(upload: &Upload, now: DateTime<Utc>) -> ValidatedUpload {
    match upload.validate(now) {
        Ok(validated) => validated,
        Err(error) => panic!("expected the upload to be accepted, got {}: {error}", error.code()),
    }
}

/// Validates an upload that must fail with `code`, and checks that the error quotes no key line.
fn reject(upload: &Upload, now: DateTime<Utc>, code: &str) -> UploadError {
    let error = match upload.validate(now) {
        Ok(_) => panic!("expected {code}, but the upload was accepted"),
        Err(error) => error,
    };
    assert_eq!(error.code(), code, "message: {error}");

    let message = error.to_string();
    let debug = format!("{error:?}");
    let key_lines = upload.key_lines();
    assert!(!key_lines.is_empty(), "the {code} case has no private key to look for");
    for line in &key_lines {
        assert!(!message.contains(line.as_str()), "the {code} message quotes the key line {line:?}: {message}");
        assert!(!debug.contains(line.as_str()), "the {code} Debug output quotes the key line {line:?}");
    }
    error
}

fn warning_codes(validated: &ValidatedUpload) -> Vec<&str> {
    validated.warnings.iter().map(|warning| warning.code.as_str()).collect()
}

/// AlgorithmIdentifier DER of sha256WithRSAEncryption, with NULL parameters as rcgen writes it.
const SHA256_WITH_RSA: &[u8] = &[0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B, 0x05, 0x00];
/// AlgorithmIdentifier DER of sha384WithRSAEncryption.
const SHA384_WITH_RSA: &[u8] = &[0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C, 0x05, 0x00];
/// AlgorithmIdentifier DER of sha1WithRSAEncryption.
const SHA1_WITH_RSA: &[u8] = &[0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x05, 0x05, 0x00];

/// Encodes one DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut element = vec![tag];
    if content.len() < 0x80 {
        element.push(content.len() as u8);
    } else {
        let length: Vec<u8> = content.len().to_be_bytes().into_iter().skip_while(|byte| *byte == 0).collect();
        element.push(0x80 | length.len() as u8);
        element.extend(length);
    }
    element.extend_from_slice(content);
    element
}

/// Returns the content of a DER element, after its tag and length.
fn der_content(element: &[u8]) -> &[u8] {
    let header = match element[1] {
        short if short < 0x80 => 2,
        long => 2 + usize::from(long & 0x7F),
    };
    &element[header..]
}

/// AlgorithmIdentifier DER of RSASSA-PSS with SHA-256, MGF1 over SHA-256 and a 32-byte salt
/// (RFC 4055 section 3.1), the parameters openssl writes for `-sigopt rsa_padding_mode:pss`.
fn rsassa_pss_sha256() -> Vec<u8> {
    let sha256 = der(0x30, &[der(0x06, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]), vec![0x05, 0x00]].concat());
    let mgf1 = der(0x30, &[der(0x06, &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08]), sha256.clone()].concat());
    let parameters = der(0x30, &[der(0xA0, &sha256), der(0xA1, &mgf1), der(0xA2, &der(0x02, &[32]))].concat());
    der(0x30, &[der(0x06, &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A]), parameters].concat())
}

/// Rebuilds a certificate whose TBSCertificate names `old_algorithm` so that it names
/// `new_algorithm` instead, signed by `sign` over the new TBSCertificate. The outer
/// signatureAlgorithm is `outer_algorithm`, which RFC 5280 requires to equal the inner one.
fn resign(certificate_der: &[u8], old_algorithm: &[u8], new_algorithm: &[u8], outer_algorithm: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let (_, certificate) = X509Certificate::from_der(certificate_der).unwrap();
    let mut tbs_content = der_content(certificate.tbs_certificate.as_ref()).to_vec();
    let position = tbs_content
        .windows(old_algorithm.len())
        .position(|window| window == old_algorithm)
        .expect("the TBSCertificate names the old signature algorithm");
    tbs_content.splice(position..position + old_algorithm.len(), new_algorithm.iter().copied());
    let tbs = der(0x30, &tbs_content);

    let mut signature = vec![0x00];
    signature.extend(sign(&tbs));
    der(0x30, &[tbs, outer_algorithm.to_vec(), der(0x03, &signature)].concat())
}

fn sign_pkcs1_sha256(key: &RsaPrivateKey, message: &[u8]) -> Vec<u8> {
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message)).unwrap()
}

#[test]
fn upload_accepts_rsa_leaf_with_intermediate() {
    let fixture = Fixture::new(KeyType::Rsa2048);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(validated.chain_pem, canonical_chain(&[fixture.leaf_der(), fixture.pki.intermediate_der()]));
    assert_eq!(validated.summary.leaf.subject, LEAF_SUBJECT);
    assert_eq!(validated.summary.intermediates.len(), 1);
    assert_eq!(validated.summary.intermediates[0].subject, INTERMEDIATE_SUBJECT);
    assert_eq!(validated.summary.intermediates[0].issuer, ROOT_SUBJECT);
    assert!(validated.summary.intermediates[0].is_ca);
    assert_eq!(validated.summary.ca, None);
    assert_eq!(validated.ca_pem, None);
    assert_eq!(warning_codes(&validated), Vec::<&str>::new());
}

#[test]
fn upload_accepts_chain_with_root() {
    let fixture = Fixture::new(KeyType::Rsa2048);
    let chain = fixture.chain_pem() + &fixture.pki.root.pem();

    let validated = accept(&fixture.upload().with_certificate(chain), now());

    let subjects: Vec<&str> = validated.summary.intermediates.iter().map(|summary| summary.subject.as_str()).collect();
    assert_eq!(subjects, [INTERMEDIATE_SUBJECT, ROOT_SUBJECT]);
    assert_eq!(
        validated.chain_pem,
        canonical_chain(&[fixture.leaf_der(), fixture.pki.intermediate_der(), fixture.pki.root_der()])
    );
    assert_eq!(warning_codes(&validated), Vec::<&str>::new());
}

#[test]
fn upload_accepts_each_key_encoding() {
    use KeyEncoding::{Pkcs1, Pkcs8, Sec1, Sec1WithoutCurve};
    use KeyType::{EcdsaP256, EcdsaP384, Ed25519, Rsa2048};
    // Key type, encoding, then the expected PEM label, algorithm, size in bits and curve, and the
    // warnings: older Envoy releases reject ECDSA keys on curves other than P-256.
    const P384_WARNING: &[&str] = &["ecdsa_curve_not_p256_may_be_rejected_by_older_envoy"];
    let cases = [
        (Rsa2048, Pkcs8, "PRIVATE KEY", "RSA", 2048, None, &[][..]),
        (Rsa2048, Pkcs1, "RSA PRIVATE KEY", "RSA", 2048, None, &[]),
        (EcdsaP256, Pkcs8, "PRIVATE KEY", "EC", 256, Some("P-256"), &[]),
        (EcdsaP256, Sec1, "EC PRIVATE KEY", "EC", 256, Some("P-256"), &[]),
        (EcdsaP256, Sec1WithoutCurve, "EC PRIVATE KEY", "EC", 256, Some("P-256"), &[]),
        (EcdsaP384, Pkcs8, "PRIVATE KEY", "EC", 384, Some("P-384"), P384_WARNING),
        (EcdsaP384, Sec1, "EC PRIVATE KEY", "EC", 384, Some("P-384"), P384_WARNING),
        (EcdsaP384, Sec1WithoutCurve, "EC PRIVATE KEY", "EC", 384, Some("P-384"), P384_WARNING),
        (Ed25519, Pkcs8, "PRIVATE KEY", "Ed25519", 256, None, &[]),
    ];

    for (key_type, encoding, pem_label, algorithm, size_bits, ec_curve, warnings) in cases {
        let label = format!("{key_type:?} in {encoding:?}");
        let fixture = Fixture::new(key_type);
        let key_pem = fixture.key.pem(encoding);
        let upload = fixture.upload().with_private_key(key_pem.clone()).with_secret(key_pem.clone());

        let validated = accept(&upload, now());

        let expected_key = KeySummary {
            pem_label: pem_label.into(),
            algorithm: algorithm.into(),
            size_bits,
            ec_curve: ec_curve.map(String::from),
        };
        assert_eq!(validated.summary.key, expected_key, "{label}");
        assert_eq!(validated.summary.leaf.key_algorithm, algorithm, "{label}");
        assert_eq!(validated.summary.leaf.key_size_bits, size_bits, "{label}");
        assert_eq!(validated.summary.leaf.ec_curve.as_deref(), ec_curve, "{label}");
        assert!(key_pem.starts_with(&format!("-----BEGIN {pem_label}-----\n")), "{label}");
        assert_eq!(validated.private_key_pem.expose(), key_pem, "{label}");
        assert_eq!(warning_codes(&validated), warnings, "{label}");
    }
}

#[test]
fn upload_summary_matches_generator() {
    let key = TestKey::generate(KeyType::EcdsaP256);
    let mut params = leaf_params();
    params.subject_alt_names = vec![
        SanType::DnsName(LEAF_NAME.try_into().unwrap()),
        SanType::DnsName("*.apps.example.com".try_into().unwrap()),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        SanType::URI("spiffe://cluster.local/ns/istio-system/sa/gateway".try_into().unwrap()),
        SanType::Rfc822Name("tls-admin@example.com".try_into().unwrap()),
    ];
    params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]));
    params.not_before = to_offset(now() - days(10));
    params.not_after = to_offset(now() + days(90));
    let fixture = Fixture::with_leaf(key, &params);

    let validated = accept(&fixture.upload(), now());

    let leaf = &validated.summary.leaf;
    assert_eq!(leaf.subject, LEAF_SUBJECT);
    assert_eq!(leaf.issuer, INTERMEDIATE_SUBJECT);
    assert_eq!(
        leaf.sans,
        [
            LEAF_NAME,
            "*.apps.example.com",
            "192.0.2.10",
            "spiffe://cluster.local/ns/istio-system/sa/gateway",
            "tls-admin@example.com"
        ]
    );
    assert_eq!(leaf.serial_hex, "123456789ABCDEF");
    assert_eq!(leaf.not_before, now() - days(10));
    assert_eq!(leaf.not_after, now() + days(90));
    assert_eq!(leaf.sha256_fingerprint, openssl_fingerprint(fixture.leaf_der()));
    assert_eq!(leaf.key_algorithm, "EC");
    assert_eq!(leaf.key_size_bits, 256);
    assert_eq!(leaf.ec_curve.as_deref(), Some("P-256"));
    assert!(!leaf.is_ca);
}

#[test]
fn upload_accepts_zero_serial() {
    let mut params = leaf_params();
    params.serial_number = Some(SerialNumber::from_slice(&[0x00]));
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(validated.summary.leaf.serial_hex, "0");
}

#[test]
fn upload_chain_pem_is_canonical() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let intermediate_pem = fixture.pki.intermediate.pem();
    let chain = format!(
        "subject=CN={LEAF_NAME}\n{}\nissuer=CN=Meshcert Test Intermediate\n{intermediate_pem}trailing note\n{intermediate_pem}",
        fixture.leaf.pem()
    );

    let validated = accept(&fixture.upload().with_certificate(chain), now());

    let expected = canonical_chain(&[fixture.leaf_der(), fixture.pki.intermediate_der()]);
    assert_eq!(validated.chain_pem, expected);
    assert_eq!(validated.chain_pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(!validated.chain_pem.contains("subject="));
    assert!(!validated.chain_pem.contains("trailing note"));
}

#[test]
fn upload_tolerates_pasted_text() {
    fn crlf(text: &str) -> String {
        text.replace('\n', "\r\n")
    }
    fn bom(text: &str) -> String {
        format!("\u{feff}{text}")
    }
    fn yaml_indentation(text: &str) -> String {
        let indented: String = text.lines().map(|line| format!("    {line}\n")).collect();
        format!("tls.pem: |\n{indented}")
    }
    fn bag_attributes(text: &str) -> String {
        // `openssl pkcs12 -nodes` output: attributes before each block.
        let attributes =
            "Bag Attributes\n    localKeyID: 7A 1F 33 0C\n    friendlyName: gateway\nsubject=CN = gateway.example.com\n";
        text.replace("-----BEGIN", &format!("{attributes}-----BEGIN"))
    }
    fn everything(text: &str) -> String {
        bom(&crlf(&yaml_indentation(&bag_attributes(text))))
    }
    type Transform = fn(&str) -> String;
    let cases: [(&str, Transform); 5] = [
        ("CRLF", crlf),
        ("byte order mark", bom),
        ("YAML indentation", yaml_indentation),
        ("Bag Attributes", bag_attributes),
        ("all of them", everything),
    ];
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let key_pem = fixture.key.pkcs8_pem();
    let expected_chain = canonical_chain(&[fixture.leaf_der(), fixture.pki.intermediate_der()]);

    for (case, transform) in cases {
        let upload = Upload::new(transform(&fixture.chain_pem()), transform(&key_pem));

        let validated = accept(&upload, now());

        assert_eq!(validated.chain_pem, expected_chain, "{case}");
        assert_eq!(validated.private_key_pem.expose(), key_pem, "{case}");
        assert!(!validated.chain_pem.contains("Bag Attributes"), "{case}");
        assert!(!validated.chain_pem.contains("localKeyID"), "{case}");
        assert!(!validated.private_key_pem.expose().contains("Bag Attributes"), "{case}");
    }
}

#[test]
fn upload_warns_on_expiring_leaf() {
    let mut params = leaf_params();
    params.not_after = to_offset(now() + days(10));
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(warning_codes(&validated), ["certificate_expiring"]);
    assert!(validated.warnings[0].message.contains("in 10 days"), "{}", validated.warnings[0].message);
}

#[test]
fn upload_accepts_leaf_at_not_after() {
    // RFC 5280 makes not_after inclusive: the leaf is still valid at that second.
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let not_after = now() + days(365);

    let validated = accept(&fixture.upload(), not_after);

    assert_eq!(warning_codes(&validated), ["certificate_expiring"]);
}

#[test]
fn upload_skips_warning_at_boundary() {
    let mut params = leaf_params();
    params.not_after = to_offset(now() + days(i64::from(WARNING_DAYS)));
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(warning_codes(&validated), Vec::<&str>::new());
}

#[test]
fn upload_warns_on_cn_only_leaf() {
    let mut params = leaf_params();
    params.subject_alt_names.clear();
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(validated.summary.leaf.sans, Vec::<String>::new());
    assert_eq!(warning_codes(&validated), ["no_subject_alt_name"]);
}

#[test]
fn upload_rejects_leaf_without_host_name() {
    let mut params = leaf_params();
    params.subject_alt_names.clear();
    params.distinguished_name = name("Gateway Certificate");
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    reject(&fixture.upload(), now(), "no_host_name");
}

#[test]
fn upload_drops_duplicate_certificate() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.chain_pem() + &fixture.pki.intermediate.pem();

    let validated = accept(&fixture.upload().with_certificate(chain), now());

    assert_eq!(warning_codes(&validated), ["duplicate_certificate_in_chain"]);
    assert!(validated.warnings[0].message.contains("block 3"), "{}", validated.warnings[0].message);
    assert_eq!(validated.summary.intermediates.len(), 1);
    assert_eq!(validated.chain_pem, canonical_chain(&[fixture.leaf_der(), fixture.pki.intermediate_der()]));
}

#[test]
fn upload_accepts_mtls_with_ca() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let upload = fixture.upload().with_ca(fixture.pki.root.pem()).with_mtls();

    let validated = accept(&upload, now());

    let ca = validated.summary.ca.as_ref().expect("the summary has the CA");
    assert_eq!(ca.subject, ROOT_SUBJECT);
    assert!(ca.is_ca);
    assert_eq!(validated.ca_pem.as_deref(), Some(pem_text("CERTIFICATE", fixture.pki.root_der()).as_str()));
    assert_eq!(warning_codes(&validated), Vec::<&str>::new());
}

#[test]
fn upload_warns_on_unused_ca() {
    let fixture = Fixture::new(KeyType::EcdsaP256);

    let validated = accept(&fixture.upload().with_ca(fixture.pki.root.pem()), now());

    assert_eq!(warning_codes(&validated), ["ca_certificate_unused"]);
}

#[test]
fn upload_rejects_mismatched_key() {
    let cases = [
        (KeyType::Rsa2048, KeyType::Rsa2048),
        (KeyType::EcdsaP256, KeyType::EcdsaP256),
        (KeyType::EcdsaP384, KeyType::EcdsaP384),
        (KeyType::Ed25519, KeyType::Ed25519),
        (KeyType::Rsa2048, KeyType::EcdsaP256),
        (KeyType::EcdsaP256, KeyType::EcdsaP384),
    ];

    for (leaf_type, key_type) in cases {
        let fixture = Fixture::new(leaf_type);
        // The key of another certificate for the same name, from the same intermediate.
        let other_key = TestKey::generate_other(key_type);
        let other_leaf = fixture.pki.issue(&leaf_params(), &other_key);
        assert_ne!(other_leaf.der().as_ref(), fixture.leaf_der(), "{leaf_type:?} leaf, {key_type:?} key");
        let upload = fixture.upload().with_private_key(other_key.pkcs8_pem()).with_secret(other_key.pkcs8_pem());

        let error = reject(&upload, now(), "key_mismatch");

        assert_eq!(error.field(), Field::PrivateKey, "{leaf_type:?} leaf, {key_type:?} key");
        assert!(error.to_string().contains(LEAF_SUBJECT), "{leaf_type:?} leaf, {key_type:?} key: {error}");
    }
}

#[test]
fn upload_rejects_rsa_1024_key() {
    let key = TestKey::cached_rsa(&RSA_1024, 1024);
    let fixture = Fixture::with_leaf(key.clone(), &leaf_params());

    for encoding in [KeyEncoding::Pkcs8, KeyEncoding::Pkcs1] {
        let key_pem = key.pem(encoding);
        let upload = fixture.upload().with_private_key(key_pem.clone()).with_secret(key_pem);

        let error = reject(&upload, now(), "key_too_small");

        assert!(matches!(error, UploadError::KeyTooSmall { bits: 1024 }), "{encoding:?}: {error:?}");
    }
}

#[test]
fn upload_rejects_rsa_2047_key() {
    // A 2047-bit modulus takes 256 bytes, as a 2048-bit one does.
    let key = TestKey::cached_rsa(&RSA_2047, 2047);
    let fixture = Fixture::with_leaf(key, &leaf_params());

    let error = reject(&fixture.upload(), now(), "key_too_small");

    assert!(matches!(error, UploadError::KeyTooSmall { bits: 2047 }), "{error:?}");
}

#[test]
fn certificate_summary_counts_rsa_2047_bits() {
    let key = TestKey::cached_rsa(&RSA_2047, 2047);
    let fixture = Fixture::with_leaf(key, &leaf_params());

    let parsed = certificate::parse_der(fixture.leaf_der()).unwrap();

    assert_eq!(parsed.summary.key_size_bits, 2047);
}

#[test]
fn upload_rejects_missing_private_key() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let public_key = pem_text("PUBLIC KEY", &fixture.key.spki_der);

    let error = reject(&fixture.upload().with_private_key(public_key), now(), "no_private_key");

    assert!(error.to_string().contains("\"PUBLIC KEY\""), "{error}");
}

#[test]
fn upload_rejects_two_private_keys() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let other_key = TestKey::generate(KeyType::EcdsaP256).pkcs8_pem();
    let keys = fixture.key.pkcs8_pem() + &other_key;

    let error = reject(&fixture.upload().with_private_key(keys).with_secret(other_key), now(), "multiple_private_keys");

    assert!(matches!(error, UploadError::MultiplePrivateKeys { count: 2 }), "{error:?}");
}

#[test]
fn upload_rejects_encrypted_private_key() {
    // Only the label or the Proc-Type header marks a key as encrypted, so the body here is the
    // plain key, which the message must not quote either.
    let fixture = Fixture::new(KeyType::Rsa2048);
    let pkcs8_encrypted = pem_text("ENCRYPTED PRIVATE KEY", &fixture.key.pkcs8_der);
    let pkcs1_encrypted = fixture.key.pem(KeyEncoding::Pkcs1).replace(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\n",
    );
    let cases = [
        ("ENCRYPTED PRIVATE KEY", pkcs8_encrypted, "\"ENCRYPTED PRIVATE KEY\""),
        ("Proc-Type", pkcs1_encrypted, "Proc-Type 4,ENCRYPTED"),
    ];

    for (case, key_pem, expected_text) in cases {
        let upload = fixture.upload().with_private_key(key_pem.clone()).with_secret(key_pem);

        let error = reject(&upload, now(), "encrypted_private_key");

        assert!(error.to_string().contains(expected_text), "{case}: {error}");
    }
}

#[test]
fn upload_rejects_key_in_certificate_field() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let certificate = fixture.chain_pem() + &fixture.key.pkcs8_pem();

    let error = reject(&fixture.upload().with_certificate(certificate), now(), "private_key_in_certificate_field");

    assert_eq!(error.field(), Field::Certificate);
    assert!(error.to_string().contains("block 3"), "{error}");
}

#[test]
fn upload_rejects_certificate_in_key_field() {
    let fixture = Fixture::new(KeyType::EcdsaP256);

    let error = reject(&fixture.upload().with_private_key(fixture.leaf.pem()), now(), "certificate_in_private_key_field");

    assert_eq!(error.field(), Field::PrivateKey);
}

#[test]
fn upload_rejects_der_input() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let cases = [
        (Field::Certificate, fixture.upload().with_certificate(fixture.leaf_der().to_vec())),
        (Field::PrivateKey, fixture.upload().with_private_key(fixture.key.pkcs8_der.clone())),
    ];

    for (field, upload) in cases {
        let error = reject(&upload, now(), "not_pem");

        assert_eq!(error.field(), field);
    }
}

#[test]
fn upload_rejects_base64_of_pem() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let encode = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let cases = [
        (Field::Certificate, fixture.upload().with_certificate(encode(fixture.chain_pem()))),
        (Field::PrivateKey, fixture.upload().with_private_key(encode(fixture.key.pkcs8_pem()))),
    ];

    for (field, upload) in cases {
        let error = reject(&upload, now(), "no_pem_block");

        assert_eq!(error.field(), field);
    }
}

#[test]
fn upload_rejects_missing_end_line() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.chain_pem().replace("-----END CERTIFICATE-----\n-----BEGIN", "-----BEGIN");
    let key = fixture.key.pkcs8_pem().replace("-----END PRIVATE KEY-----\n", "");
    let cases = [
        (Field::Certificate, fixture.upload().with_certificate(chain)),
        (Field::PrivateKey, fixture.upload().with_private_key(key)),
    ];

    for (field, upload) in cases {
        let error = reject(&upload, now(), "malformed_pem");

        assert_eq!(error.field(), field);
        assert!(matches!(error, UploadError::MalformedPem { position: 1, .. }), "{error:?}");
    }
}

#[test]
fn upload_rejects_corrupt_key_body() {
    let fixture = Fixture::new(KeyType::Rsa2048);
    let key_pem = fixture.key.pkcs8_pem();
    let body_line = key_pem.lines().nth(3).unwrap().to_string();
    let not_base64 = key_pem.replace(&body_line, &format!("%{}", &body_line[1..]));
    let truncated = pem_text("PRIVATE KEY", &fixture.key.pkcs8_der[..fixture.key.pkcs8_der.len() / 2]);
    // SEC1 ECPrivateKey (RFC 5915) with a 40-byte private key and no curve: neither P-256 nor P-384.
    let mut sec1_der = hex::decode("302d0201010428").unwrap();
    sec1_der.extend_from_slice(&[0x5A; 40]);
    let unknown_curve = pem_text("EC PRIVATE KEY", &sec1_der);
    let cases = [
        ("not base64", not_base64, "malformed_pem", "not valid base64"),
        ("truncated DER", truncated, "invalid_private_key", "not a PKCS#8 private key"),
        ("SEC1 without a curve", unknown_curve, "invalid_private_key", "40-byte private key"),
    ];

    for (case, key_pem, code, expected_text) in cases {
        let upload = fixture.upload().with_private_key(key_pem.clone()).with_secret(key_pem);

        let error = reject(&upload, now(), code);

        assert_eq!(error.field(), Field::PrivateKey, "{case}");
        assert!(error.to_string().contains(expected_text), "{case}: {error}");
    }
}

#[test]
fn upload_rejects_unsupported_key() {
    // PKCS#8 of an X25519 key (RFC 8410): key agreement only, no signatures.
    let mut x25519_der = hex::decode("302e020100300506032b656e04220420").unwrap();
    x25519_der.extend_from_slice(&[0x5A; 32]);
    let x25519 = pem_text("PRIVATE KEY", &x25519_der);
    let openssh = pem_text("OPENSSH PRIVATE KEY", &TestKey::generate(KeyType::Ed25519).pkcs8_der);
    let fixture = Fixture::new(KeyType::EcdsaP256);

    for key_pem in [x25519, openssh] {
        let upload = fixture.upload().with_private_key(key_pem.clone()).with_secret(key_pem);

        reject(&upload, now(), "unsupported_key");
    }
}

#[test]
fn upload_rejects_empty_fields() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let cases = [
        (Field::Certificate, fixture.upload().with_certificate(" \n")),
        (Field::PrivateKey, fixture.upload().with_private_key("")),
    ];

    for (field, upload) in cases {
        let error = reject(&upload, now(), "empty_input");

        assert_eq!(error.field(), field);
    }
}

#[test]
fn upload_rejects_intermediate_before_leaf() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.pki.intermediate.pem() + &fixture.leaf.pem();

    let error = reject(&fixture.upload().with_certificate(chain), now(), "chain_out_of_order");

    let message = error.to_string();
    assert!(matches!(error, UploadError::ChainOutOfOrder { position: 1, next_position: 2, .. }), "{error:?}");
    assert!(message.contains("certificate 1"), "{message}");
    assert!(message.contains("certificate 2"), "{message}");
}

#[test]
fn upload_rejects_missing_intermediate() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.leaf.pem() + &fixture.pki.root.pem();

    let error = reject(&fixture.upload().with_certificate(chain), now(), "chain_incomplete");

    let message = error.to_string();
    assert!(matches!(error, UploadError::ChainIncomplete { position: 1, next_position: 2, .. }), "{error:?}");
    assert!(message.contains("insert the intermediate"), "{message}");
}

#[test]
fn upload_rejects_expired_leaf() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    // The leaf expires 365 days after now(); the intermediate and the root are valid for longer.
    let later = now() + days(366);

    let error = reject(&fixture.upload(), later, "certificate_expired");

    // RFC 3339 in UTC with a `Z`, as the API's JSON writes times.
    assert!(error.to_string().contains(&later.format("%Y-%m-%dT%H:%M:%SZ").to_string()), "{error}");
}

#[test]
fn upload_accepts_expired_when_allowed() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let later = now() + days(366);

    let validated = accept(&fixture.upload().with_allow_expired(), later);

    assert_eq!(warning_codes(&validated), ["certificate_expired"]);
}

#[test]
fn upload_rejects_leaf_not_yet_valid() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    // The leaf starts 30 days before now(); the intermediate 365 days before.
    let earlier = now() - days(31);

    let error = reject(&fixture.upload(), earlier, "certificate_not_yet_valid");

    assert!(matches!(error, UploadError::CertificateNotYetValid { field: Field::Certificate, position: 1, .. }), "{error:?}");
}

#[test]
fn upload_rejects_expired_intermediate() {
    let pki = Pki::with_intermediate_validity(now() - days(400), now() - days(1));
    let fixture = Fixture::issued_by(pki, TestKey::generate(KeyType::EcdsaP256), &leaf_params());

    let error = reject(&fixture.upload(), now(), "intermediate_expired");

    assert!(matches!(error, UploadError::IntermediateExpired { field: Field::Certificate, position: 2, .. }), "{error:?}");
}

#[test]
fn upload_rejects_non_ca_for_mtls() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let upload = fixture.upload().with_ca(fixture.leaf.pem()).with_mtls();

    reject(&upload, now(), "ca_certificate_not_ca");
}

#[test]
fn upload_rejects_mtls_without_ca() {
    let fixture = Fixture::new(KeyType::EcdsaP256);

    let error = reject(&fixture.upload().with_mtls(), now(), "ca_certificate_required");

    assert_eq!(error.field(), Field::CaCertificate);
}

#[test]
fn upload_verifies_each_signature_algorithm() {
    // The intermediate's key and algorithm sign the leaf. The forged intermediate has the same
    // names and another key of the same type.
    let rsa = TestKey::generate(KeyType::Rsa2048);
    let other_rsa = TestKey::generate_other(KeyType::Rsa2048);
    let generate = |algorithm| KeyPair::generate_for(algorithm).unwrap();
    let cases = [
        ("ECDSA P-256 with SHA-256", generate(&PKCS_ECDSA_P256_SHA256), generate(&PKCS_ECDSA_P256_SHA256)),
        ("ECDSA P-384 with SHA-384", generate(&PKCS_ECDSA_P384_SHA384), generate(&PKCS_ECDSA_P384_SHA384)),
        ("Ed25519", generate(&PKCS_ED25519), generate(&PKCS_ED25519)),
        ("RSA PKCS#1 v1.5 with SHA-256", rsa.rsa_signer(&PKCS_RSA_SHA256), other_rsa.rsa_signer(&PKCS_RSA_SHA256)),
        ("RSA PKCS#1 v1.5 with SHA-384", rsa.rsa_signer(&PKCS_RSA_SHA384), other_rsa.rsa_signer(&PKCS_RSA_SHA384)),
        ("RSA PKCS#1 v1.5 with SHA-512", rsa.rsa_signer(&PKCS_RSA_SHA512), other_rsa.rsa_signer(&PKCS_RSA_SHA512)),
    ];

    for (algorithm, intermediate_key, forged_key) in cases {
        let fixture = Fixture::issued_by(Pki::with_intermediate_key(intermediate_key), TestKey::generate(KeyType::EcdsaP256), &leaf_params());
        let forged = Pki::with_intermediate_key(forged_key);
        let forged_chain = fixture.leaf.pem() + &forged.intermediate.pem();

        let validated = accept(&fixture.upload(), now());
        let error = reject(&fixture.upload().with_certificate(forged_chain), now(), "chain_signature_invalid");

        assert_eq!(warning_codes(&validated), Vec::<&str>::new(), "{algorithm}");
        assert!(matches!(error, UploadError::ChainSignatureInvalid { position: 1, issuer_position: 2, .. }), "{algorithm}: {error:?}");
        assert_eq!(error.field(), Field::Certificate, "{algorithm}");
    }
}

#[test]
fn upload_rejects_forged_intermediate() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    // Same subject and issuer names as the real intermediate, another key.
    let forged = Pki::new();
    assert_eq!(certificate::parse_der(forged.intermediate_der()).unwrap().summary.subject, INTERMEDIATE_SUBJECT);
    let chain = fixture.leaf.pem() + &forged.intermediate.pem();

    let error = reject(&fixture.upload().with_certificate(chain), now(), "chain_signature_invalid");

    let message = error.to_string();
    assert!(message.contains(&format!("certificate 1 ({LEAF_SUBJECT:?})")), "{message}");
    assert!(message.contains(&format!("certificate 2 ({INTERMEDIATE_SUBJECT:?})")), "{message}");
    assert!(message.contains("replace certificate 2"), "{message}");
}

#[test]
fn upload_rejects_forged_root() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.chain_pem() + &Pki::new().root.pem();

    let error = reject(&fixture.upload().with_certificate(chain), now(), "chain_signature_invalid");

    assert!(matches!(error, UploadError::ChainSignatureInvalid { position: 2, issuer_position: 3, .. }), "{error:?}");
}

#[test]
fn upload_verifies_rsassa_pss_signature() {
    // rcgen signs with PKCS#1 v1.5, so the test signs the same TBSCertificate again with RSASSA-PSS.
    let rsa = TestKey::generate(KeyType::Rsa2048);
    let other_rsa = TestKey::generate_other(KeyType::Rsa2048);
    let fixture = Fixture::issued_by(Pki::with_intermediate_key(rsa.rsa_signer(&PKCS_RSA_SHA256)), TestKey::generate(KeyType::EcdsaP256), &leaf_params());
    let pss = rsassa_pss_sha256();
    let pss_leaf = |signer: &TestKey| {
        let key = signer.rsa.as_ref().unwrap();
        let der = resign(fixture.leaf_der(), SHA256_WITH_RSA, &pss, &pss, |tbs| {
            key.sign_with_rng(&mut OsRng, Pss::new::<Sha256>(), &Sha256::digest(tbs)).unwrap()
        });
        pem_text("CERTIFICATE", &der) + &fixture.pki.intermediate.pem()
    };

    let validated = accept(&fixture.upload().with_certificate(pss_leaf(&rsa)), now());
    let error = reject(&fixture.upload().with_certificate(pss_leaf(&other_rsa)), now(), "chain_signature_invalid");

    assert_eq!(warning_codes(&validated), Vec::<&str>::new());
    assert!(error.to_string().contains("RSASSA-PSS"), "{error}");
}

#[test]
fn upload_warns_on_sha1_signature() {
    // meshcert does not verify SHA-1 at all, so the signature bytes can stay those of SHA-256.
    let rsa = TestKey::generate(KeyType::Rsa2048);
    let fixture = Fixture::issued_by(Pki::with_intermediate_key(rsa.rsa_signer(&PKCS_RSA_SHA256)), TestKey::generate(KeyType::EcdsaP256), &leaf_params());
    let key = rsa.rsa.as_ref().unwrap();
    let sha1_leaf = resign(fixture.leaf_der(), SHA256_WITH_RSA, SHA1_WITH_RSA, SHA1_WITH_RSA, |tbs| sign_pkcs1_sha256(key, tbs));
    let chain = pem_text("CERTIFICATE", &sha1_leaf) + &fixture.pki.intermediate.pem();

    let validated = accept(&fixture.upload().with_certificate(chain), now());

    assert_eq!(warning_codes(&validated), ["chain_signature_not_verified"]);
    let message = &validated.warnings[0].message;
    assert!(message.contains("sha1WithRSAEncryption"), "{message}");
    assert!(message.contains(&format!("certificate 1 ({LEAF_SUBJECT:?})")), "{message}");
    assert!(message.contains(&format!("certificate 2 ({INTERMEDIATE_SUBJECT:?})")), "{message}");
}

#[test]
fn upload_rejects_mismatched_signature_algorithms() {
    // RFC 5280 section 4.1.1.2: the TBSCertificate names the signature algorithm too, and both
    // must match. Here the inner one names SHA-256 and the outer one SHA-384, whose signature is valid.
    let rsa = TestKey::generate(KeyType::Rsa2048);
    let fixture = Fixture::issued_by(Pki::with_intermediate_key(rsa.rsa_signer(&PKCS_RSA_SHA256)), TestKey::generate(KeyType::EcdsaP256), &leaf_params());
    let key = rsa.rsa.as_ref().unwrap();
    let leaf = resign(fixture.leaf_der(), SHA256_WITH_RSA, SHA256_WITH_RSA, SHA384_WITH_RSA, |tbs| {
        key.sign(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(tbs)).unwrap()
    });
    let chain = pem_text("CERTIFICATE", &leaf) + &fixture.pki.intermediate.pem();

    let error = reject(&fixture.upload().with_certificate(chain), now(), "chain_signature_invalid");

    assert!(error.to_string().contains("differs"), "{error}");
}

#[test]
fn upload_rejects_issuer_not_ca() {
    // rcgen writes no basicConstraints for NoCa and CA:FALSE for ExplicitNoCa.
    for is_ca in [IsCa::NoCa, IsCa::ExplicitNoCa] {
        let label = format!("{is_ca:?}");
        let pki = Pki::new();
        let mut signer_params = ca_params("Meshcert Test Signer", now() - days(365), now() + days(5 * 365));
        signer_params.is_ca = is_ca;
        let signer = CertifiedIssuer::signed_by(signer_params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(), &*pki.intermediate).unwrap();
        let key = TestKey::generate(KeyType::EcdsaP256);
        let leaf = leaf_params().signed_by(&key.public_key(), &*signer).unwrap();
        let chain = leaf.pem() + &signer.pem() + &pki.intermediate.pem();

        let error = reject(&Upload::new(chain, key.pkcs8_pem()), now(), "issuer_not_ca");

        assert!(matches!(error, UploadError::IssuerNotCa { position: 1, issuer_position: 2, .. }), "{label}: {error:?}");
        assert_eq!(error.field(), Field::Certificate, "{label}");
        let message = error.to_string();
        assert!(message.contains("\"CN=Meshcert Test Signer,O=Meshcert Tests\""), "{label}: {message}");
        assert!(message.contains("CA:TRUE"), "{label}: {message}");
    }
}

#[test]
fn upload_names_key_of_misplaced_leaf() {
    let fixture = Fixture::new(KeyType::EcdsaP256);
    let chain = fixture.pki.intermediate.pem() + &fixture.leaf.pem();
    let other_key = TestKey::generate(KeyType::EcdsaP256).pkcs8_pem();

    let error = reject(&fixture.upload().with_certificate(chain.clone()), now(), "chain_out_of_order");
    let unknown_key = reject(
        &fixture.upload().with_certificate(chain).with_private_key(other_key.clone()).with_secret(other_key),
        now(),
        "chain_out_of_order",
    );

    assert!(matches!(error, UploadError::ChainOutOfOrder { key_position: Some(2), .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("the private key matches certificate 2"), "{message}");
    assert!(message.contains("must come first"), "{message}");
    assert!(matches!(unknown_key, UploadError::ChainOutOfOrder { key_position: None, .. }), "{unknown_key:?}");
    assert!(!unknown_key.to_string().contains("private key matches"), "{unknown_key}");
}

#[test]
fn upload_warns_on_long_serial() {
    // Serial number length in DER content octets, and whether the upload warns.
    let cases = [(20, false), (21, true)];

    for (octets, warns) in cases {
        let mut params = leaf_params();
        let mut serial = vec![0x5A; octets];
        serial[0] = 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

        let validated = accept(&fixture.upload(), now());

        let expected: &[&str] = if warns { &["serial_number_longer_than_20_octets"] } else { &[] };
        assert_eq!(warning_codes(&validated), expected, "{octets} octets");
        if warns {
            assert!(validated.warnings[0].message.contains("21 octets"), "{}", validated.warnings[0].message);
        }
    }
}

#[test]
fn upload_reads_generalized_time() {
    // RFC 5280 section 4.1.2.5: dates from 2050 on are GeneralizedTime, earlier ones UTCTime.
    let mut params = leaf_params();
    let not_after = Utc.with_ymd_and_hms(2051, 1, 1, 0, 0, 0).unwrap();
    params.not_after = to_offset(not_after);
    let fixture = Fixture::with_leaf(TestKey::generate(KeyType::EcdsaP256), &params);

    let validated = accept(&fixture.upload(), now());

    assert_eq!(validated.summary.leaf.not_after, not_after);
    assert_eq!(validated.summary.leaf.not_before, now() - days(30));
}
