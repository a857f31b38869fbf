//! The same API, faults and counters over HTTPS, and x509 client authentication.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{assert_status, exchange, tls_secret, Reply, APPLY_PATH, TOKEN};
use crate::{
    ClientCa, ClientCertificate, DropFault, FakeCluster, FakeClusterConfig, SlowBody, StatusFault,
};

async fn start_https(config: FakeClusterConfig) -> FakeCluster {
    FakeCluster::start(config.https()).await.unwrap()
}

/// Builds a client that trusts `ca_pem` and presents `client` when given.
fn client_config(ca_pem: &str, client: Option<&ClientCertificate>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(client.certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(client.private_key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Sends one request over TLS to the cluster, checking its certificate for `server_name`.
async fn send_tls(
    cluster: &FakeCluster,
    config: Arc<ClientConfig>,
    server_name: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<Reply> {
    let stream = TcpStream::connect(cluster.addr()).await?;
    let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
    let stream = TlsConnector::from(config)
        .connect(server_name, stream)
        .await?;
    exchange(
        stream,
        cluster.addr(),
        method,
        path,
        Some(TOKEN),
        content_type,
        body,
    )
    .await
}

/// Sends a GET that trusts the cluster's CA and presents no client certificate.
async fn get_tls(cluster: &FakeCluster, path: &str) -> Reply {
    let config = client_config(cluster.ca_pem().unwrap(), None);
    send_tls(cluster, config, "127.0.0.1", "GET", path, None, b"")
        .await
        .unwrap()
}

/// Makes a CA outside the fake cluster, as an operator's own client CA would be.
fn external_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "external client CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn sign_client(issuer: &CertifiedIssuer<'static, KeyPair>, common_name: &str) -> ClientCertificate {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let certificate = params.signed_by(&key, issuer).unwrap();
    ClientCertificate {
        certificate_pem: certificate.pem(),
        private_key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn plain_cluster_has_no_ca() {
    let cluster = FakeCluster::start(FakeClusterConfig::new("east", TOKEN))
        .await
        .unwrap();
    assert!(
        cluster.url().starts_with("http://127.0.0.1:"),
        "{}",
        cluster.url()
    );
    assert_eq!(cluster.ca_pem(), None);
    assert_eq!(cluster.client_ca_pem(), None);
    assert!(cluster.issue_client_certificate("meshcert").is_err());
}

#[tokio::test]
async fn https_serves_api_with_own_ca() {
    let cluster = start_https(FakeClusterConfig::new("east", TOKEN)).await;
    assert_eq!(cluster.url(), format!("https://{}", cluster.addr()));
    assert!(cluster
        .ca_pem()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        cluster.client_ca_pem(),
        None,
        "no client certificate required"
    );

    let reply = get_tls(&cluster, "/version").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["gitVersion"], "v1.31.0");

    let config = client_config(cluster.ca_pem().unwrap(), None);
    let secret = tls_secret("east-tls", "a").to_string();
    let reply = send_tls(
        &cluster,
        config,
        "127.0.0.1",
        "PATCH",
        APPLY_PATH,
        Some(super::APPLY),
        secret.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(cluster.secret("istio-system", "east-tls").is_some());
    let paths: Vec<String> = cluster.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/version", APPLY_PATH]);
}

#[tokio::test]
async fn https_certificate_names_loopback() {
    let cluster = start_https(FakeClusterConfig::new("east", TOKEN)).await;
    let config = client_config(cluster.ca_pem().unwrap(), None);
    for name in ["127.0.0.1", "localhost"] {
        let reply = send_tls(&cluster, config.clone(), name, "GET", "/version", None, b"").await;
        assert_eq!(reply.unwrap().status, 200, "server name {name}");
    }
    let error = send_tls(
        &cluster,
        config,
        "example.com",
        "GET",
        "/version",
        None,
        b"",
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn https_rejected_by_untrusting_client() {
    let cluster = start_https(FakeClusterConfig::new("east", TOKEN)).await;
    let other = start_https(FakeClusterConfig::new("west", TOKEN)).await;
    let config = client_config(other.ca_pem().unwrap(), None);

    let error = send_tls(&cluster, config, "127.0.0.1", "GET", "/version", None, b"")
        .await
        .unwrap_err();

    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    assert!(cluster.requests().is_empty());
}

#[tokio::test]
async fn https_faults_and_counters() {
    let cluster = start_https(FakeClusterConfig::new("east", TOKEN)).await;
    let config = client_config(cluster.ca_pem().unwrap(), None);

    cluster.set_status_fault(Some(StatusFault::new(503).times(1)));
    assert_status(
        &get_tls(&cluster, "/version").await,
        503,
        "ServiceUnavailable",
    );
    assert_eq!(get_tls(&cluster, "/version").await.status, 200);

    cluster.set_drop_fault(Some(DropFault::new().times(1)));
    let result = send_tls(
        &cluster,
        config.clone(),
        "127.0.0.1",
        "GET",
        "/version",
        None,
        b"",
    )
    .await;
    assert!(result.is_err(), "expected no response");

    cluster.set_latency(Duration::from_millis(200));
    cluster.set_slow_body(Some(SlowBody {
        chunk_bytes: 64,
        delay: Duration::from_millis(20),
    }));
    let started = Instant::now();
    let request = || {
        send_tls(
            &cluster,
            config.clone(),
            "127.0.0.1",
            "GET",
            "/version",
            None,
            b"",
        )
    };
    let replies = tokio::join!(request(), request(), request());
    for reply in [replies.0, replies.1, replies.2] {
        assert_eq!(reply.unwrap().json()["gitVersion"], "v1.31.0");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "elapsed {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.max_in_flight(), 3);
    assert_eq!(cluster.in_flight(), 0);
    assert_eq!(
        cluster.requests().len(),
        6,
        "every request is recorded, the dropped one too"
    );
    cluster.clear_faults();

    cluster.set_down(true).await.unwrap();
    let error = TcpStream::connect(cluster.addr()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    cluster.set_down(false).await.unwrap();
    assert_eq!(
        get_tls(&cluster, "/version").await.status,
        200,
        "the same CA after the outage"
    );
}

#[tokio::test]
async fn client_certificate_required() {
    let config =
        FakeClusterConfig::new("east", TOKEN).require_client_certificate(ClientCa::Generate);
    let cluster = FakeCluster::start(config).await.unwrap();
    assert!(
        cluster.url().starts_with("https://"),
        "a client CA implies HTTPS"
    );
    assert!(cluster
        .client_ca_pem()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let ca_pem = cluster.ca_pem().unwrap();

    // Without a certificate: the server ends the handshake, so no request reaches the API.
    let without = send_tls(
        &cluster,
        client_config(ca_pem, None),
        "127.0.0.1",
        "GET",
        "/version",
        None,
        b"",
    )
    .await;
    assert!(
        without.is_err(),
        "a client without a certificate got a response"
    );

    // A certificate from another CA is rejected the same way.
    let stranger = sign_client(&external_ca(), "stranger");
    let config = client_config(ca_pem, Some(&stranger));
    let foreign = send_tls(&cluster, config, "127.0.0.1", "GET", "/version", None, b"").await;
    assert!(
        foreign.is_err(),
        "a client certificate from another CA got a response"
    );
    assert!(
        cluster.requests().is_empty(),
        "a rejected client reached the API"
    );

    let client = cluster.issue_client_certificate("meshcert").unwrap();
    assert!(
        !format!("{client:?}").contains("PRIVATE KEY"),
        "Debug shows the key"
    );
    let config = client_config(ca_pem, Some(&client));
    let reply = send_tls(&cluster, config, "127.0.0.1", "GET", "/version", None, b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(cluster.requests().len(), 1);
}

#[tokio::test]
async fn client_ca_given_as_pem() {
    let ca = external_ca();
    let config =
        FakeClusterConfig::new("east", TOKEN).require_client_certificate(ClientCa::Pem(ca.pem()));
    let cluster = FakeCluster::start(config).await.unwrap();
    assert_eq!(cluster.client_ca_pem(), Some(ca.pem().as_str()));
    let error = cluster.issue_client_certificate("meshcert").unwrap_err();
    assert!(error.to_string().contains("ClientCa::Generate"), "{error}");

    let client = sign_client(&ca, "meshcert");
    let config = client_config(cluster.ca_pem().unwrap(), Some(&client));
    let reply = send_tls(&cluster, config, "127.0.0.1", "GET", "/version", None, b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn client_ca_rejects_bad_pem() {
    let config = FakeClusterConfig::new("east", TOKEN)
        .require_client_certificate(ClientCa::Pem("not a CA".into()));
    let error = FakeCluster::start(config).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("no CERTIFICATE block"),
        "{error:#}"
    );
}

#[tokio::test]
async fn https_rejects_plain_http() {
    let cluster = start_https(FakeClusterConfig::new("east", TOKEN)).await;
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        super::send(cluster.addr(), "GET", "/version", Some(TOKEN), None, b""),
    )
    .await
    .expect("the server closes a connection that does not start with a TLS handshake");
    assert!(
        result.is_err(),
        "plain HTTP got a response from an HTTPS cluster"
    );
    assert!(cluster.requests().is_empty());
}
