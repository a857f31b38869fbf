//! A full sync of many certificates to many slow clusters, against what an operator's script
//! does today: send the same server-side apply requests one at a time.
//!
//! Loads the repository's spin.toml with `sync_concurrency` set, registers fake clusters that
//! respond after a fixed latency, and stores certificates through the api. Then every cluster
//! loses its Secrets, and one signed `POST /hooks/sync` puts them back: the measured wall time.
//! A sequential client then sends one server-side apply per (certificate, cluster), one at a
//! time, to the same clusters. The run prints both times, the concurrency-bound limit (latency
//! × ⌈requests ÷ sync_concurrency⌉, counting every request the sync made, LISTs included) and
//! the two ratios.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p api -p sync-webhook -p expiry-cron
//! cargo bench -p meshcert-host --bench sync
//! ```
//!
//! Sizes come from the environment: `MESHCERT_BENCH_CERTIFICATES` (default 1000),
//! `MESHCERT_BENCH_CLUSTERS` (10), `MESHCERT_BENCH_LATENCY_MS` (20) and
//! `MESHCERT_BENCH_CONCURRENCY` (32). `MESHCERT_BENCH_SEQUENTIAL` sends only that many of the
//! sequential client's requests (default all), and the time is then extrapolated and marked as
//! such. The run fails after printing when the sync reports a failure or a cluster lacks a
//! Secret.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use common::{env_count, Authority, Client};
use http_body_util::Full;
use meshcert_core::kube::{self, TlsSecret};
use meshcert_core::secret::SecretString;
use meshcert_fake_kube::{FakeCluster, FakeClusterConfig};
use meshcert_host::{App, AppConfig};
use serde_json::{json, Value};

const API_TOKEN: &str = "admin-token-for-benchmarks";
const WEBHOOK_SECRET: &str = "webhook-secret-for-benchmarks";
const NAMESPACE: &str = "istio-system";

/// Concurrent clients while storing the certificates; that is setup, not measured.
const SEED_CLIENTS: usize = 8;

struct Settings {
    certificates: usize,
    clusters: usize,
    latency: Duration,
    concurrency: usize,
    sequential: Option<usize>,
}

fn main() -> Result<()> {
    let settings = Settings {
        certificates: env_count("MESHCERT_BENCH_CERTIFICATES", 1000)?,
        clusters: env_count("MESHCERT_BENCH_CLUSTERS", 10)?,
        latency: Duration::from_millis(env_count("MESHCERT_BENCH_LATENCY_MS", 20)? as u64),
        concurrency: env_count("MESHCERT_BENCH_CONCURRENCY", 32)?,
        sequential: std::env::var("MESHCERT_BENCH_SEQUENTIAL").is_ok().then(|| env_count("MESHCERT_BENCH_SEQUENTIAL", 1)).transpose()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    let load_before = std::fs::read_to_string("/proc/loadavg").ok().map(|load| load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");

    // The app and the clusters, registered while no certificate exists, so registration is free.
    let state = tempfile::tempdir().context("failed to create the state directory")?;
    let config = AppConfig::new(&manifest)
        .state_dir(state.path())
        .read_env(false)
        .variable("api_token", API_TOKEN)
        .variable("webhook_secret", WEBHOOK_SECRET)
        .variable("encryption_key", base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
        .variable("extra_cluster_hosts", "http://127.0.0.1:*")
        .variable("sync_concurrency", settings.concurrency.to_string());
    let app = App::load(config)?;
    let server = app.serve("127.0.0.1:0".parse()?).await?;
    let addr = server.addr();
    let mut client = Client::connect(addr).await?;
    let mut clusters = Vec::new();
    for index in 0..settings.clusters {
        let cluster = FakeCluster::start(FakeClusterConfig::new(format!("bench-{index}"), format!("bench-token-{index}"))).await?;
        let registration = json!({ "id": cluster.name(), "api_server": cluster.url(), "token": cluster.token() });
        let (status, body) = client.send("POST", "/api/v1/clusters", Some(API_TOKEN), Some(&registration)).await?;
        if status != 201 {
            bail!("registering {} returned {status}: {}", cluster.name(), String::from_utf8_lossy(&body));
        }
        clusters.push(cluster);
    }

    // The certificates, each synced to every cluster as it is stored, without latency.
    let authority = Authority::new()?;
    let bodies: Vec<Value> = (0..settings.certificates).map(|i| authority.create_body(&format!("cert-{i:05}"))).collect::<Result<_>>()?;
    let seeding = Instant::now();
    common::seed(addr, API_TOKEN, &bodies, SEED_CLIENTS).await?;
    eprintln!("stored {} certificates in {:.1} s", bodies.len(), seeding.elapsed().as_secs_f64());

    // Every cluster loses its Secrets; one sync puts them back.
    for cluster in &clusters {
        empty(cluster);
        cluster.set_latency(settings.latency);
        cluster.clear_requests();
        cluster.reset_max_in_flight();
    }
    let started = Instant::now();
    let report = signed_sync(&mut client, "{}").await?;
    let wall = started.elapsed();
    let requests: usize = clusters.iter().map(|cluster| cluster.requests().len()).sum();
    let busiest = clusters.iter().map(FakeCluster::max_in_flight).max().unwrap_or(0);
    let missing: Vec<String> = clusters
        .iter()
        .filter(|cluster| cluster.secrets(NAMESPACE).len() != settings.certificates)
        .map(|cluster| format!("{} holds {} Secrets after the sync, expected {}", cluster.name(), cluster.secrets(NAMESPACE).len(), settings.certificates))
        .collect();

    // The sequential client, on one keep-alive connection per cluster, against emptied clusters.
    let applies = apply_requests(&bodies, &clusters)?;
    for cluster in &clusters {
        empty(cluster);
    }
    let sample = settings.sequential.unwrap_or(applies.len()).min(applies.len());
    let mut connections = Vec::new();
    for cluster in &clusters {
        connections.push(Client::connect(cluster.addr()).await?);
    }
    let started = Instant::now();
    for (cluster, request) in applies.into_iter().take(sample) {
        let (status, body) = connections[cluster].send_request(request).await?;
        if !(200..300).contains(&status) {
            bail!("the sequential client's apply returned {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    let measured = started.elapsed();
    let targets = settings.certificates * settings.clusters;
    let sequential = measured.mul_f64(targets as f64 / sample as f64);

    // Report.
    let limit = settings.latency * u32::try_from(requests.div_ceil(settings.concurrency))?;
    println!();
    println!(
        "meshcert sync benchmark: {} certificates × {} clusters = {targets} Secrets, latency {} ms, sync_concurrency {}, {} CPUs, one process",
        settings.certificates,
        settings.clusters,
        settings.latency.as_millis(),
        settings.concurrency,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if let Some(load) = &load_before {
        println!("load average before the run (1, 5, 15 min): {load}");
    }
    println!();
    println!("sync wall time                 {:>10.2} s  ({requests} requests: {} LISTs and writes; at most {busiest} in flight per cluster)", wall.as_secs_f64(), report["requests"]);
    let extrapolated = if sample < targets { format!(" (extrapolated from {sample} requests in {:.2} s)", measured.as_secs_f64()) } else { String::new() };
    println!("sequential client              {:>10.2} s  ({targets} server-side applies one at a time{extrapolated})", sequential.as_secs_f64());
    println!("concurrency-bound limit        {:>10.2} s  ({} ms × ⌈{requests} ÷ {}⌉)", limit.as_secs_f64(), settings.latency.as_millis(), settings.concurrency);
    println!();
    println!("speed-up over the sequential client: {:>6.1}×   (goal: at least 20×)", sequential.as_secs_f64() / wall.as_secs_f64());
    println!("wall time over the limit:            {:>6.2}×   (goal: at most 1.5×)", wall.as_secs_f64() / limit.as_secs_f64());
    println!();

    // The figures count only when the sync did all of its work.
    let mut problems = missing;
    if report["applied"] != json!(targets) || report["failed"] != json!(0) {
        problems.push(format!("the sync applied {} and failed {}, expected {targets} and 0", report["applied"], report["failed"]));
    }
    if !problems.is_empty() {
        bail!("the benchmark saw errors, so its figures are not valid:\n{}", problems.join("\n"));
    }
    Ok(())
}


/// Removes every Secret of the benchmark's namespace from `cluster`.
fn empty(cluster: &FakeCluster) {
    for secret in cluster.secrets(NAMESPACE) {
        if let Some(name) = secret["metadata"]["name"].as_str() {
            cluster.remove_secret(NAMESPACE, name);
        }
    }
}

/// Sends a signed `POST /hooks/sync` and returns its report.
async fn signed_sync(client: &mut Client, body: &str) -> Result<Value> {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = meshcert_core::signing::sign(WEBHOOK_SECRET.as_bytes(), timestamp, body.as_bytes());
    let request = http::Request::builder()
        .method("POST")
        .uri("/hooks/sync")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header(meshcert_core::signing::TIMESTAMP_HEADER, timestamp.to_string())
        .header(meshcert_core::signing::SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(body.to_string())))?;
    let (status, response) = client.send_request(request).await?;
    if status != 200 {
        bail!("the sync returned {status}: {}", String::from_utf8_lossy(&response));
    }
    Ok(serde_json::from_slice(&response)?)
}

/// Builds the server-side apply of every (certificate, cluster) as the sync builds it, with the
/// index of its cluster.
fn apply_requests(bodies: &[Value], clusters: &[FakeCluster]) -> Result<Vec<(usize, http::Request<Full<Bytes>>)>> {
    let mut requests = Vec::new();
    for body in bodies {
        let (name, chain) = (body["name"].as_str().unwrap_or_default(), body["certificate"].as_str().unwrap_or_default());
        let key = SecretString::new(body["private_key"].as_str().unwrap_or_default());
        let content = TlsSecret { namespace: NAMESPACE, name, chain_pem: chain, private_key_pem: &key, ca_pem: None, version: 1 };
        for (index, cluster) in clusters.iter().enumerate() {
            let request = kube::apply_secret_request(&cluster.url(), &SecretString::new(cluster.token()), &content.tls_secret(), None)?;
            let (mut parts, body) = request.into_parts();
            parts.uri = parts.uri.path_and_query().map(|path| path.as_str()).unwrap_or("/").parse()?;
            parts.headers.insert("host", cluster.addr().to_string().parse()?);
            requests.push((index, http::Request::from_parts(parts, Full::new(Bytes::from(body)))));
        }
    }
    Ok(requests)
}
