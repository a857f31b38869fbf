//! HTTPS for a fake cluster: a CA made at start, a server certificate signed by it for the loopback
//! names, and optional x509 client authentication as kube-apiserver does it with `--client-ca-file`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// How a fake cluster serves HTTPS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpsConfig {
    /// The CA that must have signed every client's certificate, or `None` to accept clients
    /// without a certificate. Requests still need the bearer token either way.
    pub client_ca: Option<ClientCa>,
}

/// The CA that signs the client certificates a fake cluster accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCa {
    /// A CA the cluster makes at start. [`crate::FakeCluster::issue_client_certificate`] signs
    /// client certificates with it.
    Generate,
    /// A CA certificate in PEM made elsewhere. The cluster cannot issue certificates for it.
    Pem(String),
}

/// A client certificate and its private key, both PEM, for `client_cert_file` and
/// `client_private_key_file` in a `[[client_tls]]` entry.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The certificate, signed by the cluster's client CA.
    pub certificate_pem: String,
    /// The PKCS#8 private key of the certificate.
    pub private_key_pem: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("certificate_pem", &self.certificate_pem)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// The TLS side of one running cluster.
pub(crate) struct ServerTls {
    pub acceptor: TlsAcceptor,
    pub ca_pem: String,
    pub client_ca_pem: Option<String>,
    /// The generated client CA, or `None` when the client CA was given as PEM or there is none.
    client_issuer: Option<CertifiedIssuer<'static, KeyPair>>,
}

impl ServerTls {
    /// Makes the CA, the server certificate for `localhost`, 127.0.0.1, ::1 and `bound_ip`, and the
    /// rustls server configuration.
    pub fn new(cluster_name: &str, bound_ip: IpAddr, config: &HttpsConfig) -> anyhow::Result<Self> {
        let server_ca =
            make_ca(&format!("fake-kube {cluster_name} server CA")).with_context(|| {
                format!("fake cluster {cluster_name}: failed to make the server CA")
            })?;

        let mut names = vec![
            "localhost".to_owned(),
            Ipv4Addr::LOCALHOST.to_string(),
            Ipv6Addr::LOCALHOST.to_string(),
        ];
        if !names.contains(&bound_ip.to_string()) {
            names.push(bound_ip.to_string());
        }
        let (server_chain, server_key) = issue(
            &server_ca,
            names,
            &format!("fake-kube {cluster_name}"),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .with_context(|| {
            format!("fake cluster {cluster_name}: failed to make the server certificate")
        })?;

        let (client_issuer, client_ca_der) = match &config.client_ca {
            None => (None, None),
            Some(ClientCa::Generate) => {
                let issuer =
                    make_ca(&format!("fake-kube {cluster_name} client CA")).with_context(|| {
                        format!("fake cluster {cluster_name}: failed to make the client CA")
                    })?;
                let der = vec![issuer.der().clone()];
                (Some(issuer), Some(der))
            }
            Some(ClientCa::Pem(pem)) => {
                let der = parse_ca_pem(pem).with_context(|| {
                    format!("fake cluster {cluster_name}: invalid client CA PEM")
                })?;
                (None, Some(der))
            }
        };
        let client_ca_pem = match (&config.client_ca, &client_issuer) {
            (Some(ClientCa::Pem(pem)), _) => Some(pem.clone()),
            (_, Some(issuer)) => Some(issuer.pem()),
            _ => None,
        };

        // The process-default crypto provider comes from rustls' one enabled backend, ring, as
        // in wasmtime-wasi-http's client.
        let builder = ServerConfig::builder();
        let builder = match client_ca_der {
            None => builder.with_no_client_auth(),
            Some(certificates) => {
                let mut roots = RootCertStore::empty();
                for certificate in certificates {
                    roots.add(certificate).with_context(|| {
                        format!("fake cluster {cluster_name}: the client CA is not a usable trust anchor")
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                        .build()
                        .with_context(|| {
                            format!("fake cluster {cluster_name}: failed to set up client certificate checks")
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server_config = builder
            .with_single_cert(server_chain, server_key)
            .with_context(|| {
                format!(
                    "fake cluster {cluster_name}: the server certificate does not match its key"
                )
            })?;
        // The server speaks HTTP/1.1 only, so a client that offers h2 must fall back.
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            ca_pem: server_ca.pem(),
            client_ca_pem,
            client_issuer,
        })
    }

    /// Issues a client certificate with `common_name` as its subject CN, which kube-apiserver
    /// would take as the user name.
    pub fn issue_client_certificate(
        &self,
        cluster_name: &str,
        common_name: &str,
    ) -> anyhow::Result<ClientCertificate> {
        let Some(issuer) = &self.client_issuer else {
            bail!("fake cluster {cluster_name} has no client CA of its own: start it with ClientCa::Generate to issue client certificates");
        };
        let key = KeyPair::generate().context("failed to generate a client key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&key, issuer)
            .with_context(|| format!("fake cluster {cluster_name}: failed to sign a client certificate for {common_name:?}"))?;
        Ok(ClientCertificate {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }
}

/// Makes a self-signed CA that may sign leaf certificates only.
fn make_ca(common_name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    Ok(CertifiedIssuer::self_signed(params, key)?)
}

/// Issues a leaf certificate for `names` (DNS names or IP addresses) and returns its chain and key.
fn issue(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let certificate = params.signed_by(&key, issuer)?;
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((vec![certificate.der().clone()], key))
}

/// Parses the CERTIFICATE blocks of a CA bundle, failing when there are none.
fn parse_ca_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the PEM text cannot be parsed")?;
    if certificates.is_empty() {
        bail!("the PEM text contains no CERTIFICATE block: give the client CA's certificate");
    }
    Ok(certificates)
}
