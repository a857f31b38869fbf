//! What the benchmarks share: sizes from the environment, generated certificates, an HTTP/1.1
//! client, and measured phases of concurrent clients.

// Each benchmark compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use tokio::sync::Barrier;

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

/// The sizes of a run of the API benchmarks: `MESHCERT_BENCH_CERTIFICATES` stored certificates,
/// `MESHCERT_BENCH_CLIENTS` concurrent clients, and `MESHCERT_BENCH_REQUESTS` GETs per client.
pub struct Settings {
    pub certificates: usize,
    pub clients: usize,
    pub requests_per_client: usize,
}

impl Settings {
    /// Reads the sizes from the environment, with these defaults and 20 GETs per client.
    pub fn from_env(certificates: usize, clients: usize) -> Result<Settings> {
        Ok(Settings {
            certificates: env_count("MESHCERT_BENCH_CERTIFICATES", certificates)?,
            clients: env_count("MESHCERT_BENCH_CLIENTS", clients)?,
            requests_per_client: env_count("MESHCERT_BENCH_REQUESTS", 20)?,
        })
    }
}

/// One request of a measured phase.
pub struct PhaseRequest {
    pub method: &'static str,
    pub path: String,
    pub token: Option<&'static str>,
    pub body: Option<Value>,
}

impl PhaseRequest {
    /// Builds a `GET` of `path` with `token`.
    pub fn get(path: String, token: Option<&'static str>) -> PhaseRequest {
        PhaseRequest { method: "GET", path, token, body: None }
    }

    /// Builds a `POST /api/v1/certificates` of `body` with `token`.
    pub fn create(body: &Value, token: Option<&'static str>) -> PhaseRequest {
        PhaseRequest { method: "POST", path: "/api/v1/certificates".into(), token, body: Some(body.clone()) }
    }
}

/// The outcome of one phase.
#[derive(Default)]
pub struct PhaseResult {
    /// Latencies of the 2xx responses, sorted.
    pub latencies: Vec<Duration>,
    pub non_success: usize,
    pub first_non_success: Option<String>,
    /// Requests that got no response, with the error.
    pub failures: Vec<String>,
    /// Creates whose 201 body does not report the Secret as synced to the phase's cluster.
    pub unsynced: usize,
    /// From the moment every client is connected until the last response.
    pub elapsed: Duration,
}

impl PhaseResult {
    /// Requests sent, failed ones included.
    pub fn requests(&self) -> usize {
        self.latencies.len() + self.non_success + self.failures.len()
    }

    /// Requests per second over the phase, failed ones included.
    pub fn rate(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Returns the nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], percent: f64) -> Option<&Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

/// Runs one list of requests per client, each client on its own connection to its address, all
/// starting together once every client has connected. A create counts as unsynced unless its
/// response reports the Secret synced to `cluster`.
pub async fn run_phase(clients: Vec<(SocketAddr, Vec<PhaseRequest>)>, cluster: &'static str) -> Result<PhaseResult> {
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let mut tasks = Vec::new();
    for (addr, list) in clients {
        let barrier = barrier.clone();
        let mut client = Client::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut result = PhaseResult::default();
            for request in list {
                let started = Instant::now();
                match client.send(request.method, &request.path, request.token, request.body.as_ref()).await {
                    Ok((status, body)) if (200..300).contains(&status) => {
                        result.latencies.push(started.elapsed());
                        if request.method == "POST" && !reports_synced(&body, cluster) {
                            result.unsynced += 1;
                        }
                    }
                    Ok((status, body)) => {
                        result.non_success += 1;
                        result.first_non_success.get_or_insert_with(|| {
                            format!("{status} on {} {}: {}", request.method, request.path, String::from_utf8_lossy(&body).trim())
                        });
                    }
                    Err(error) => result.failures.push(format!("{} {}: {error:#}", request.method, request.path)),
                }
            }
            result
        }));
    }

    barrier.wait().await;
    let started = Instant::now();
    let mut total = PhaseResult::default();
    for task in tasks {
        let result = task.await.context("a client task panicked")?;
        total.latencies.extend(result.latencies);
        total.non_success += result.non_success;
        if total.first_non_success.is_none() {
            total.first_non_success = result.first_non_success;
        }
        total.failures.extend(result.failures);
        total.unsynced += result.unsynced;
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    Ok(total)
}

/// Returns whether a create's response reports the Secret as synced to `cluster`.
fn reports_synced(body: &[u8], cluster: &str) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|details| details["sync"][cluster]["state"] == "synced")
}
