//! meshcert on Redis at scale: API throughput with one and with two replicas on one Redis
//! server, the expiry scan of a large fleet, and a full sync of that fleet to one cluster.
//!
//! Starts its own `redis-server` on 127.0.0.1 and two hosts of the repository's spin.toml in
//! this process (the replicas). A runtime config puts each replica's `default` key-value store
//! on database 0 of that server. The run stores the certificates through
//! `POST /api/v1/certificates` on both replicas before any cluster is registered, so each
//! create's sync has no target. Then it measures, in this order:
//!
//! 1. The expiry scan: the cron handler runs twice on the first replica. The first run rebuilds
//!    the expiry index from every head, and the second reads the index of the unchanged fleet.
//!    The resync after each scan goes to a listener that closes every connection, so it fails
//!    at once and the times are the scan's.
//! 2. A full sync to one fake cluster. The cluster is registered while its port is closed, so
//!    the sync that follows the registration records every target as failed. Then it listens,
//!    and two signed `POST /hooks/sync` run: the first creates every Secret, the second finds
//!    every Secret unchanged and sends only the LIST.
//! 3. API throughput: the same load on one replica, then spread over both, one after the other.
//!    The load is `GET /api/v1/certificates/{ns}/{name}` of random stored certificates, then one
//!    create per client, which includes the sync of the new certificate to the fake cluster.
//!    That sync reads the new certificate's two Secrets by name. The output is requests/s, p50
//!    and p99 per replica count, and the ratio.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p api -p sync-webhook -p expiry-cron
//! cargo bench -p meshcert-host --bench scale
//! ```
//!
//! Needs `redis-server` on PATH (Debian's package). Sizes come from environment variables:
//! `MESHCERT_BENCH_CERTIFICATES` (stored certificates, default 10000), `MESHCERT_BENCH_CLIENTS`
//! (concurrent clients of the throughput phases, default 16) and `MESHCERT_BENCH_REQUESTS`
//! (GET requests per client, default 20). Latencies cover 2xx responses only. The run fails
//! after printing when any response is not 2xx, a request fails, a sync or scan reports other
//! counts than expected, or the fake cluster lacks a Secret.
//!
//! With 10,000 certificates a run took 34 s on 2 CPUs, storing the fleet 17 s of it.
//!
//! The replicas, the fake cluster and the clients share this process and its tokio worker
//! threads, and Redis runs beside them, so all of them share the machine's CPUs. A second
//! replica on the same machine adds no CPU: a ratio near 1 shows that one replica already uses
//! what the machine has, not that a second replica on its own machine would not help.

mod common;

// The host crate's Redis helper for tests. This benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../src/test_redis.rs"]
mod test_redis;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use common::{percentile, run_phase, Authority, Client, PhaseRequest, PhaseResult, Settings};
use http_body_util::Full;
use meshcert_fake_kube::{FakeCluster, FakeClusterConfig};
use meshcert_host::{App, AppConfig, Server};
use rand::Rng as _;
use serde_json::{json, Value};
use test_redis::RedisServer;

const API_TOKEN: &str = "admin-token-for-benchmarks";
const WEBHOOK_SECRET: &str = "webhook-secret-for-benchmarks";
const NAMESPACE: &str = "istio-system";
const CLUSTER: &str = "bench";

/// Concurrent clients while storing the fleet, spread over both replicas. Storing is setup, but
/// its rate is printed because it is the create rate without a sync target.
const SEED_CLIENTS: usize = 8;

fn main() -> Result<()> {
    let settings = Settings::from_env(10_000, 16)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(settings))
}


/// One replica: a host of the app with its own state directory, on the shared Redis database.
struct Replica {
    app: App,
    server: Server,
    _state: tempfile::TempDir,
}

impl Replica {
    async fn start(manifest: &Path, runtime_config: &Path, self_url: &str) -> Result<Replica> {
        let state = tempfile::tempdir().context("failed to create a state directory")?;
        let config = AppConfig::new(manifest)
            .state_dir(state.path())
            .runtime_config(runtime_config)
            .read_env(false)
            .variable("api_token", API_TOKEN)
            .variable("webhook_secret", WEBHOOK_SECRET)
            .variable("encryption_key", base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .variable("extra_cluster_hosts", "http://127.0.0.1:*")
            .variable("self_url", self_url);
        let app = App::load(config).context("failed to load spin.toml; build the components first")?;
        let server = app.serve("127.0.0.1:0".parse()?).await?;
        Ok(Replica { app, server, _state: state })
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

async fn run(settings: Settings) -> Result<()> {
    let whole_run = Instant::now();
    let load_before = load_average();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");

    // Redis and the two replicas. The resync after each cron scan goes to a listener that
    // closes every connection, so it fails at once and the scan's times contain no sync work.
    // A closed port is not enough: the kernel may hand it out as the local port of another
    // connection.
    let redis = RedisServer::start();
    let config_dir = tempfile::tempdir().context("failed to create a directory for the runtime config")?;
    let runtime_config = config_dir.path().join("runtime-config.toml");
    std::fs::write(&runtime_config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", redis.url(0)))?;
    let refuser = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let self_url = format!("http://{}", refuser.local_addr()?);
    tokio::spawn(async move {
        while let Ok((connection, _)) = refuser.accept().await {
            drop(connection);
        }
    });
    let replicas = [Replica::start(&manifest, &runtime_config, &self_url).await?, Replica::start(&manifest, &runtime_config, &self_url).await?];
    let addrs = [replicas[0].addr(), replicas[1].addr()];

    // Every certificate is generated before any timing: the fleet, and one create per client
    // for each of the two throughput phases.
    let generating = Instant::now();
    let authority = Authority::new()?;
    let fleet: Vec<Value> = (0..settings.certificates).map(|i| authority.create_body(&format!("cert-{i:05}"))).collect::<Result<_>>()?;
    let creates_one: Vec<Value> = (0..settings.clients).map(|i| authority.create_body(&format!("new-one-{i:05}"))).collect::<Result<_>>()?;
    let creates_two: Vec<Value> = (0..settings.clients).map(|i| authority.create_body(&format!("new-two-{i:05}"))).collect::<Result<_>>()?;
    eprintln!("generated {} certificates in {:.1} s", fleet.len() + 2 * settings.clients, generating.elapsed().as_secs_f64());

    // The fleet, stored while no cluster is registered.
    let seed_clients = SEED_CLIENTS.min(settings.certificates);
    let seed_requests: Vec<(SocketAddr, Vec<PhaseRequest>)> = (0..seed_clients)
        .map(|client| (addrs[client % 2], fleet.iter().skip(client).step_by(seed_clients).map(|body| PhaseRequest::create(body, Some(API_TOKEN))).collect()))
        .collect();
    let seed = run_phase(seed_requests, CLUSTER).await?;
    eprintln!("stored {} certificates in {:.1} s", settings.certificates, seed.elapsed.as_secs_f64());
    let mut problems = seed.problems("storing the fleet", false);

    // 1. The expiry scan: a rebuild of the index, then a scan of the index.
    let mut client = Client::connect(addrs[0]).await?;
    let started = Instant::now();
    replicas[0].app.run_cron("expiry-cron").await?;
    let rebuild = started.elapsed();
    let rebuild_record = last_scan(&mut client).await?;
    let started = Instant::now();
    replicas[0].app.run_cron("expiry-cron").await?;
    let scan = started.elapsed();
    let scan_record = last_scan(&mut client).await?;
    eprintln!("scanned twice in {:.1} s", (rebuild + scan).as_secs_f64());
    for (name, record, rebuilt) in [("the first scan", &rebuild_record, true), ("the second scan", &scan_record, false)] {
        if record["certificates"] != json!(settings.certificates) || record["rebuilt_index"] != json!(rebuilt) {
            problems.push(format!(
                "{name} recorded certificates {} and rebuilt_index {}, expected {} and {rebuilt}",
                record["certificates"], record["rebuilt_index"], settings.certificates
            ));
        }
    }

    // 2. The full sync. The cluster is registered while down, so that the first signed sync is
    // the one that creates every Secret.
    let cluster = FakeCluster::start(FakeClusterConfig::new(CLUSTER, "bench-cluster-token")).await?;
    cluster.set_down(true).await?;
    let registration = json!({ "id": CLUSTER, "api_server": cluster.url(), "token": cluster.token() });
    let started = Instant::now();
    let (status, body) = client.send("POST", "/api/v1/clusters", Some(API_TOKEN), Some(&registration)).await?;
    let registering = started.elapsed();
    if status != 201 {
        bail!("registering the fake cluster returned {status}: {}", String::from_utf8_lossy(&body));
    }
    cluster.set_down(false).await?;
    eprintln!("registered the cluster, down, in {:.1} s", registering.as_secs_f64());

    let first_sync = timed_sync(&mut client, &cluster).await?;
    let secrets_after_sync = cluster.secrets(NAMESPACE).len();
    let second_sync = timed_sync(&mut client, &cluster).await?;
    eprintln!("synced twice in {:.1} s", (first_sync.wall + second_sync.wall).as_secs_f64());
    problems.extend(first_sync.problems("the first sync", settings.certificates, 0));
    problems.extend(second_sync.problems("the second sync", 0, settings.certificates));
    if secrets_after_sync != settings.certificates {
        problems.push(format!("the fake cluster contains {secrets_after_sync} Secrets in {NAMESPACE} after the first sync, expected {}", settings.certificates));
    }

    // 3. Throughput: the same clients and requests on one replica, then on two. Before each
    // measured phase, every replica serves a few requests, so that no phase pays for a first
    // connection to Redis or a cold instance.
    let load_before_throughput = load_average();
    for addr in addrs {
        let mut warm = Client::connect(addr).await?;
        for _ in 0..10 {
            warm.send("GET", &format!("/api/v1/certificates/{NAMESPACE}/cert-00000"), Some(API_TOKEN), None).await?;
        }
    }
    let gets = |replica_count: usize| -> Vec<(SocketAddr, Vec<PhaseRequest>)> {
        let mut rng = rand::thread_rng();
        (0..settings.clients)
            .map(|client| {
                let requests = (0..settings.requests_per_client)
                    .map(|_| PhaseRequest::get(format!("/api/v1/certificates/{NAMESPACE}/cert-{:05}", rng.gen_range(0..settings.certificates)), Some(API_TOKEN)))
                    .collect();
                (addrs[client % replica_count], requests)
            })
            .collect()
    };
    let creates = |bodies: &[Value], replica_count: usize| -> Vec<(SocketAddr, Vec<PhaseRequest>)> {
        bodies.iter().enumerate().map(|(client, body)| (addrs[client % replica_count], vec![PhaseRequest::create(body, Some(API_TOKEN))])).collect()
    };
    let reads_one = run_phase(gets(1), CLUSTER).await?;
    let reads_two = run_phase(gets(2), CLUSTER).await?;
    let creates_on_one = run_phase(creates(&creates_one, 1), CLUSTER).await?;
    let creates_on_two = run_phase(creates(&creates_two, 2), CLUSTER).await?;
    let load_after = load_average();

    // Report.
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "meshcert scale benchmark on Redis: {} certificates, {} clients, {} GETs per client, {cpus} CPUs, two replicas in one process, one redis-server",
        settings.certificates, settings.clients, settings.requests_per_client
    );
    println!("load average (1, 5, 15 min): before the run {load_before}, before the throughput phases {load_before_throughput}, after them {load_after}");
    println!();
    println!("storing the fleet ({seed_clients} clients over both replicas, no cluster): {} creates in {:.1} s, {:.1} creates/s", seed.requests(), seed.elapsed.as_secs_f64(), seed.rate());
    println!();
    println!("expiry scan (cron handler)");
    println!("  first scan, rebuilds the index from every head  {:>9.3} s", rebuild.as_secs_f64());
    println!("  second scan, reads the index                    {:>9.3} s", scan.as_secs_f64());
    println!();
    println!("full sync to one fake cluster (signed POST /hooks/sync)");
    println!("  registration while the cluster is down          {:>9.3} s", registering.as_secs_f64());
    first_sync.print("first sync, creates every Secret");
    second_sync.print("second sync, every Secret unchanged");
    println!();
    println!("{:<30} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}", "throughput phase", "replicas", "requests", "p50 ms", "p99 ms", "max ms", "req/s");
    reads_one.print("GET certificate", 1);
    reads_two.print("GET certificate", 2);
    creates_on_one.print("POST certificate, with sync", 1);
    creates_on_two.print("POST certificate, with sync", 2);
    println!();
    println!("two replicas over one, requests/s: GET {:.2}×, POST with sync {:.2}×", reads_two.rate() / reads_one.rate(), creates_on_two.rate() / creates_on_one.rate());
    let statistics = redis_statistics(&redis.url(0)).await?;
    let largest: Vec<String> = statistics.largest.iter().map(|(key, bytes)| format!("{key:?} {bytes} bytes")).collect();
    println!("Redis after the run: {} keys in database 0, used_memory {}; largest values: {}", statistics.keys, statistics.used_memory, largest.join(", "));
    println!("whole run {:.0} s", whole_run.elapsed().as_secs_f64());
    println!();

    // Checks: every request succeeded, every create was synced, the cluster contains every Secret.
    for (name, phase) in [("GET, one replica", &reads_one), ("GET, two replicas", &reads_two)] {
        problems.extend(phase.problems(name, false));
    }
    for (name, phase) in [("POST, one replica", &creates_on_one), ("POST, two replicas", &creates_on_two)] {
        problems.extend(phase.problems(name, true));
    }
    let secrets = cluster.secrets(NAMESPACE).len();
    let expected_secrets = settings.certificates + 2 * settings.clients;
    if secrets != expected_secrets {
        problems.push(format!("the fake cluster contains {secrets} Secrets in {NAMESPACE}, expected {expected_secrets}"));
    }
    if !problems.is_empty() {
        bail!("the benchmark saw errors, so its figures are not valid:\n{}", problems.join("\n"));
    }
    Ok(())
}

/// Returns the 1, 5 and 15 minute load averages, because other processes on the machine slow
/// every phase.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|load| load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Reads `GET /api/v1/scans/last`.
async fn last_scan(client: &mut Client) -> Result<Value> {
    let (status, body) = client.send("GET", "/api/v1/scans/last", Some(API_TOKEN), None).await?;
    if status != 200 {
        bail!("GET /api/v1/scans/last returned {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// One signed sync of every certificate to every cluster, with the requests the cluster saw.
struct SyncRun {
    wall: Duration,
    report: Value,
    cluster_requests: usize,
}

impl SyncRun {
    fn print(&self, name: &str) {
        println!(
            "  {name:<47} {:>9.3} s  ({} requests to the cluster; applied {}, unchanged {}, failed {})",
            self.wall.as_secs_f64(),
            self.cluster_requests,
            self.report["applied"],
            self.report["unchanged"],
            self.report["failed"]
        );
    }

    fn problems(&self, name: &str, applied: usize, unchanged: usize) -> Vec<String> {
        let report = &self.report;
        if report["applied"] == json!(applied) && report["unchanged"] == json!(unchanged) && report["failed"] == json!(0) {
            return Vec::new();
        }
        vec![format!(
            "{name} applied {}, left {} unchanged and failed {}, expected {applied}, {unchanged} and 0",
            report["applied"], report["unchanged"], report["failed"]
        )]
    }
}

/// Sends a signed `POST /hooks/sync` of everything and times it.
async fn timed_sync(client: &mut Client, cluster: &FakeCluster) -> Result<SyncRun> {
    cluster.clear_requests();
    let started = Instant::now();
    let report = signed_hook(client, "/hooks/sync").await?;
    let wall = started.elapsed();
    let cluster_requests = cluster.requests().len();
    cluster.clear_requests();
    Ok(SyncRun { wall, report, cluster_requests })
}

/// Sends a signed `POST` to a hook with an empty scope and returns its report. The body carries a
/// unique nonce, because the hook accepts each signature only once.
async fn signed_hook(client: &mut Client, path: &str) -> Result<Value> {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let body = json!({ "nonce": format!("bench-{}", NONCE.fetch_add(1, Ordering::Relaxed)) }).to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = meshcert_core::signing::sign(WEBHOOK_SECRET.as_bytes(), timestamp, body.as_bytes());
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header(meshcert_core::signing::TIMESTAMP_HEADER, timestamp.to_string())
        .header(meshcert_core::signing::SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(body)))?;
    let (status, response) = client.send_request(request).await?;
    if status != 200 {
        bail!("POST {path} returned {status}: {}", String::from_utf8_lossy(&response));
    }
    Ok(serde_json::from_slice(&response)?)
}

/// What Redis stores after the run.
struct RedisStatistics {
    keys: usize,
    /// The server's `used_memory_human`.
    used_memory: String,
    /// The largest values as (key, bytes), largest first.
    largest: Vec<(String, u64)>,
}

/// Reads the keys of `url`'s database and the size of each value.
async fn redis_statistics(url: &str) -> Result<RedisStatistics> {
    let mut connection = redis::Client::open(url)?.get_multiplexed_async_connection().await.context("failed to connect to redis-server")?;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await?;
    let mut pipeline = redis::pipe();
    for key in &keys {
        pipeline.cmd("STRLEN").arg(key);
    }
    let lengths: Vec<u64> = pipeline.query_async(&mut connection).await?;
    let mut largest: Vec<(String, u64)> = keys.iter().cloned().zip(lengths).collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1));
    largest.truncate(3);
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut connection).await?;
    let used_memory = info.lines().find_map(|line| line.strip_prefix("used_memory_human:")).unwrap_or("unknown").trim().to_string();
    Ok(RedisStatistics { keys: keys.len(), used_memory, largest })
}

impl PhaseResult {
    fn print(&self, name: &str, replicas: usize) {
        let milliseconds = |duration: Option<&Duration>| duration.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1000.0));
        println!(
            "{:<30} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9.1}",
            name,
            replicas,
            self.requests(),
            milliseconds(percentile(&self.latencies, 50.0)),
            milliseconds(percentile(&self.latencies, 99.0)),
            milliseconds(self.latencies.last()),
            self.rate()
        );
    }

    /// Describes what went wrong in the phase. The list is empty when every request succeeded
    /// and, with `synced`, every create reported its Secret as synced.
    fn problems(&self, name: &str, synced: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.non_success > 0 || !self.failures.is_empty() {
            problems.push(format!(
                "{name}: {} non-2xx responses (first: {}), {} failed requests (first: {})",
                self.non_success,
                self.first_non_success.as_deref().unwrap_or("none"),
                self.failures.len(),
                self.failures.first().map_or("none", String::as_str)
            ));
        }
        if synced && self.unsynced > 0 {
            problems.push(format!("{name}: {} creates returned 201 without a synced Secret in cluster {CLUSTER:?}", self.unsynced));
        }
        problems
    }
}

