//! `[[client_tls]]` at run time: choosing the TLS client settings of an outbound HTTPS request,
//! and sending a request over TLS with them.
//!
//! Spin 4.0 picks the settings by component id and by the host of the request URL. The port plays
//! no part, and the first entry that lists a (component, host) pair wins. A request that matches
//! no entry keeps the host's default sender.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::outbound_http::{IoFuture, SendResult};
use crate::runtime_config::ClientTlsEntry;

/// The timeout of each phase when the component sets none, as in wasmtime-wasi-http's default
/// sender.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The rustls client configurations of the `[[client_tls]]` entries, by component id and host.
#[derive(Default)]
pub(crate) struct ClientTlsConfigs {
    by_component: HashMap<String, HashMap<String, Arc<ClientConfig>>>,
}

impl ClientTlsConfigs {
    /// Builds one rustls configuration per entry. Fails when a root is not a usable trust anchor
    /// or a client key does not match its certificate.
    pub(crate) fn new(entries: &[ClientTlsEntry]) -> Result<Self> {
        let mut platform_roots = None;
        let mut by_component: HashMap<String, HashMap<String, Arc<ClientConfig>>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let config = client_config(entry, &mut platform_roots)
                .with_context(|| format!("invalid [[client_tls]] entry {} (counting from 1 in file order)", index + 1))?;
            let config = Arc::new(config);
            for component_id in &entry.component_ids {
                let hosts = by_component.entry(component_id.clone()).or_default();
                for host in &entry.hosts {
                    hosts.entry(host.clone()).or_insert_with(|| config.clone());
                }
            }
        }
        Ok(Self { by_component })
    }

    /// Returns the configuration for an HTTPS request from `component_id` to `host`, the host of
    /// the request URL as `http::Uri::host` returns it (an IPv6 address in brackets), or `None`
    /// when no entry lists the pair.
    pub(crate) fn get(&self, component_id: &str, host: &str) -> Option<Arc<ClientConfig>> {
        self.by_component.get(component_id)?.get(host).cloned()
    }

    /// Returns the component ids that some entry lists.
    pub(crate) fn component_ids(&self) -> impl Iterator<Item = &str> {
        self.by_component.keys().map(String::as_str)
    }
}

/// Builds the rustls configuration of one entry. `platform_roots` caches the operating system's
/// roots, which are read once, and only when an entry uses them.
fn client_config(entry: &ClientTlsEntry, platform_roots: &mut Option<Vec<CertificateDer<'static>>>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in &entry.root_certificates {
        roots
            .add(certificate.clone())
            .context("a certificate in ca_roots_file cannot be used as a trust anchor: give the CA certificate in PEM")?;
    }
    if entry.use_webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if entry.use_platform_roots {
        let certificates = platform_roots.get_or_insert_with(read_platform_roots);
        roots.add_parsable_certificates(certificates.iter().cloned());
        // Spin's platform verifier fails the same way when it ends up with no roots at all.
        anyhow::ensure!(
            !roots.is_empty(),
            "the entry trusts the operating system's roots, but none were found: install the system CA bundle, set SSL_CERT_FILE, or give ca_roots_file"
        );
    }

    // The process-default crypto provider comes from rustls' one enabled backend, ring, as in
    // wasmtime-wasi-http's default sender.
    let builder = ClientConfig::builder().with_root_certificates(roots);
    match &entry.client_certificate {
        Some(client) => builder
            .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
            .context("the client certificate cannot be used with its key: client_private_key_file must hold the private key of the first certificate in client_cert_file"),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Reads the operating system's trusted roots. Spin 4.0 verifies with rustls-platform-verifier,
/// which on Linux reads the same roots with rustls-native-certs.
fn read_platform_roots() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for error in &result.errors {
        tracing::warn!("failed to read some of the operating system's trusted roots for [[client_tls]]: {error}");
    }
    result.certs
}

/// Sends `request` over a new TLS connection made with `config`, honouring the request's
/// connect, first-byte and between-bytes timeouts as wasmtime-wasi-http's default sender does.
/// The TLS handshake counts towards the connect timeout. Every handshake failure, such as an
/// untrusted server certificate or a rejected client certificate, reaches the component as
/// `TlsProtocolError`, as in Spin 4.0.
pub(crate) async fn send_request(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    config: Arc<ClientConfig>,
    component_id: &str,
) -> SendResult {
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes_timeout = options.and_then(|o| o.between_bytes_timeout).unwrap_or(DEFAULT_TIMEOUT);

    // Connect.
    let authority = request.uri().authority().ok_or(HttpError::HttpRequestUriInvalid)?.clone();
    let address = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(443));
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&address)).await {
        Ok(stream) => stream.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };

    // TLS handshake, checking the certificate against the URL's host as written.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.to_string())?,
    };
    let handshake = TlsConnector::from(config).connect(server_name, stream);
    let stream = match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::warn!(
                component = %component_id,
                destination = %authority,
                "TLS handshake failed: {error}; check the [[client_tls]] entry for this component and host"
            );
            return Err(HttpError::TlsProtocolError);
        }
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };

    // HTTP/1.1 on the encrypted stream, with the request in origin form.
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream));
    let (mut sender, connection) = match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(result) => result.map_err(HttpError::Hyper)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(|error| HttpError::InternalError(Some(format!("failed to rewrite the request URI: {error}"))))?;

    // Wait for the response head while the connection task moves the bytes. If the connection ends
    // first, the response is either already complete or lost with the connection's error.
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
    tokio::pin!(response);
    let mut connection = Box::pin(connection);
    let (response, connection) = tokio::select! {
        response = &mut response => (response, Some(connection)),
        finished = &mut connection => match finished {
            Ok(()) => (response.await, None),
            Err(error) => return Err(connection_error(error)),
        },
    };
    let response = response.map_err(|_| HttpError::ConnectionReadTimeout)?.map_err(HttpError::Hyper)?;

    let deadline = Box::pin(tokio::time::sleep(between_bytes_timeout));
    let response = response.map(|incoming| {
        TimedBody { incoming, between_bytes_timeout, deadline }.boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match connection {
            Some(connection) => connection.await.map_err(connection_error),
            None => Ok(()),
        }
    });
    Ok((response, io))
}

fn connection_error(error: hyper::Error) -> HttpError {
    if error.is_timeout() {
        HttpError::HttpResponseTimeout
    } else {
        HttpError::Hyper(error)
    }
}

/// A response body that fails with `ConnectionReadTimeout` when no frame arrives within
/// `between_bytes_timeout` of the response head or of the previous frame.
struct TimedBody {
    incoming: Incoming,
    between_bytes_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // A timeout too large for the clock never fires.
                if let Some(next) = Instant::now().checked_add(this.between_bytes_timeout) {
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(connection_error(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http_body_util::Empty;
    use meshcert_fake_kube::{FakeCluster, FakeClusterConfig, SlowBody};
    use rustls::pki_types::pem::PemObject as _;

    use super::*;
    use crate::runtime_config::RuntimeConfig;

    const TOKEN: &str = "east-token";

    async fn https_cluster() -> FakeCluster {
        FakeCluster::start(FakeClusterConfig::new("east", TOKEN).https()).await.unwrap()
    }

    /// Builds the client configuration of an entry that trusts `ca_pem` only.
    fn trusting(ca_pem: &str) -> Arc<ClientConfig> {
        let entry = ClientTlsEntry {
            component_ids: vec!["sync-webhook".into()],
            hosts: vec!["127.0.0.1".into()],
            use_platform_roots: false,
            use_webpki_roots: false,
            root_certificates: CertificateDer::pem_slice_iter(ca_pem.as_bytes()).collect::<Result<_, _>>().unwrap(),
            client_certificate: None,
        };
        Arc::new(client_config(&entry, &mut None).unwrap())
    }

    fn get_version(cluster: &FakeCluster) -> http::Request<WasiBody> {
        http::Request::get(format!("{}/version", cluster.url()))
            .header(http::header::HOST, cluster.addr().to_string())
            .header(http::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    fn timeouts(first_byte: Option<u64>, between_bytes: Option<u64>) -> Option<RequestOptions> {
        Some(RequestOptions {
            connect_timeout: None,
            first_byte_timeout: first_byte.map(Duration::from_millis),
            between_bytes_timeout: between_bytes.map(Duration::from_millis),
        })
    }

    #[tokio::test]
    async fn send_request_gets_response() {
        let cluster = https_cluster().await;
        let config = trusting(cluster.ca_pem().unwrap());

        let (response, io) = send_request(get_version(&cluster), None, config, "sync-webhook").await.unwrap();
        // wasi-http runs the connection future beside the response body, as this task does.
        let connection = tokio::spawn(Pin::from(io));

        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let version: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(version["gitVersion"], "v1.31.0");
        connection.await.unwrap().unwrap();
        assert_eq!(cluster.requests()[0].path, "/version", "the request line is in origin form");
    }

    #[tokio::test]
    async fn send_request_untrusted_certificate() {
        let cluster = https_cluster().await;
        let other = https_cluster().await;
        let config = trusting(other.ca_pem().unwrap());

        let error = send_request(get_version(&cluster), None, config, "sync-webhook").await.err().expect("an untrusted server fails");

        assert!(matches!(error, HttpError::TlsProtocolError), "{error:?}");
        assert!(cluster.requests().is_empty());
    }

    #[tokio::test]
    async fn send_request_first_byte_timeout() {
        let cluster = https_cluster().await;
        cluster.set_latency(Duration::from_secs(5));
        let config = trusting(cluster.ca_pem().unwrap());
        let started = std::time::Instant::now();

        let error = send_request(get_version(&cluster), timeouts(Some(200), None), config, "sync-webhook")
            .await
            .err()
            .expect("a silent server times out");

        assert!(matches!(error, HttpError::ConnectionReadTimeout), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn send_request_between_bytes_timeout() {
        let cluster = https_cluster().await;
        cluster.set_slow_body(Some(SlowBody { chunk_bytes: 16, delay: Duration::from_millis(500) }));
        let config = trusting(cluster.ca_pem().unwrap());

        let (response, io) = send_request(get_version(&cluster), timeouts(None, Some(100)), config, "sync-webhook")
            .await
            .unwrap();
        let _connection = tokio::spawn(Pin::from(io));
        let error = response.into_body().collect().await.err().expect("a stalled body times out");

        assert!(matches!(error, HttpError::ConnectionReadTimeout), "{error:?}");
    }

    /// Writes a CA and a client certificate with its key into a temporary directory.
    fn pem_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".to_string()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.crt"), client.cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("other.key"), other.signing_key.serialize_pem()).unwrap();
        dir
    }

    fn configs(text: &str, dir: &Path) -> Result<ClientTlsConfigs> {
        let runtime_config = RuntimeConfig::parse(text, dir)?;
        ClientTlsConfigs::new(&runtime_config.client_tls)
    }

    const TWO_ENTRIES: &str = r#"
[[client_tls]]
component_ids = ["sync-webhook"]
hosts = ["127.0.0.1", "k8s.example.com"]
ca_roots_file = "ca.pem"
client_cert_file = "client.crt"
client_private_key_file = "client.key"

[[client_tls]]
component_ids = ["sync-webhook", "api"]
hosts = ["127.0.0.1", "[::1]"]
ca_roots_file = "ca.pem"
"#;

    #[test]
    fn client_tls_matches_component_and_host() {
        let dir = pem_files();
        let configs = configs(TWO_ENTRIES, dir.path()).unwrap();

        let first = configs.get("sync-webhook", "127.0.0.1").expect("entry 1 matches");
        assert!(first.client_auth_cert_resolver.has_certs(), "entry 1, the first match, wins");
        assert!(configs.get("sync-webhook", "k8s.example.com").unwrap().client_auth_cert_resolver.has_certs());
        assert!(!configs.get("sync-webhook", "[::1]").unwrap().client_auth_cert_resolver.has_certs());
        assert!(!configs.get("api", "127.0.0.1").unwrap().client_auth_cert_resolver.has_certs());

        assert!(configs.get("api", "k8s.example.com").is_none(), "entry 1 does not list api");
        assert!(configs.get("expiry-cron", "127.0.0.1").is_none());
        assert!(configs.get("sync-webhook", "127.0.0.2").is_none());
        assert!(configs.get("sync-webhook", "K8S.example.com").is_none(), "hosts compare exactly, as in Spin");
        assert!(configs.get("sync-webhook", "::1").is_none(), "an IPv6 host is written in brackets");

        let mut ids: Vec<&str> = configs.component_ids().collect();
        ids.sort();
        assert_eq!(ids, ["api", "sync-webhook"]);
    }

    #[test]
    fn client_tls_rejects_mismatched_key() {
        let dir = pem_files();
        let text = "[[client_tls]]\ncomponent_ids = [\"api\"]\nhosts = [\"a.test\"]\nca_roots_file = \"ca.pem\"\nclient_cert_file = \"client.crt\"\nclient_private_key_file = \"other.key\"\n";
        let error = format!("{:#}", configs(text, dir.path()).err().expect("a mismatched key is rejected"));
        assert!(error.contains("entry 1"), "{error}");
        assert!(error.contains("client_private_key_file must hold the private key"), "{error}");
    }
}
