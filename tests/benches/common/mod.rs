//! What the benchmarks share: sizes from the environment, generated certificates, and an
//! HTTP/1.1 client.

// Each benchmark compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};

/// Reads a positive whole number from the environment, or `default` when the variable is unset.
pub fn env_count(name: &str, default: usize) -> Result<usize> {
    let Ok(value) = std::env::var(name) else {
        return Ok(default);
    };
    match value.trim().parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => bail!("{name} is {value:?}; set it to a whole number of at least 1, or unset it for {default}"),
    }
}

/// A CA with an ECDSA P-256 key that signs the leaf certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    pub fn new() -> Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "meshcert benchmark CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(365);
        let key = KeyPair::generate()?;
        Ok(Authority { issuer: Issuer::new(params, key) })
    }

    /// Builds the body of `POST /api/v1/certificates` for a new ECDSA P-256 leaf named
    /// `{name}.example.test` in namespace `istio-system`, valid from now for 90 days.
    pub fn create_body(&self, name: &str) -> Result<Value> {
        let host = format!("{name}.example.test");
        let mut params = CertificateParams::new(vec![host.clone()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(90);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(json!({ "name": name, "namespace": "istio-system", "certificate": certificate.pem(), "private_key": key.serialize_pem() }))
    }
}

/// An HTTP/1.1 client on one keep-alive connection, which reconnects after a failed request.
pub struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client> {
        let mut client = Client { addr, sender: None };
        client.sender = Some(client.handshake().await?);
        Ok(client)
    }

    async fn handshake(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.with_context(|| format!("failed to connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake failed")?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<(u16, Bytes)> {
        let mut request = http::Request::builder().method(method).uri(path).header("host", self.addr.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body)?)
            }
            None => Bytes::new(),
        };
        self.send_request(request.body(Full::new(body))?).await
    }

    /// Sends a prepared request, which names its own `host`, and reads the whole response.
    pub async fn send_request(&mut self, request: http::Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
        let mut sender = match self.sender.take() {
            Some(sender) => sender,
            None => self.handshake().await?,
        };

        // hyper rejects a request sent before the connection is ready for the next one.
        sender.ready().await.context("the connection closed")?;
        let response = sender.send_request(request).await.context("the request failed")?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.context("failed to read the response body")?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }
}

/// Stores certificates through the api with `token`, `clients` requests at a time.
pub async fn seed(addr: SocketAddr, token: &'static str, bodies: &[Value], clients: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for offset in 0..clients.min(bodies.len()) {
        let mine: Vec<Value> = bodies.iter().skip(offset).step_by(clients).cloned().collect();
        let mut client = Client::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            for body in mine {
                let (status, response) = client.send("POST", "/api/v1/certificates", Some(token), Some(&body)).await?;
                if status != 201 {
                    bail!("storing {} returned {status}: {}", body["name"], String::from_utf8_lossy(&response));
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a seeding task panicked")??;
    }
    Ok(())
}
