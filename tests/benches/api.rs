//! Latency and throughput of the api component under meshcert-host, over loopback HTTP/1.1.
//!
//! Loads the repository's spin.toml, registers one fake cluster and seeds certificates through
//! `POST /api/v1/certificates`. Then it measures three phases with concurrent clients, each on
//! its own keep-alive connection. The phases are `GET /api/v1/certificates/{ns}/{name}` of
//! random seeded certificates, one create per client (which includes the sync to the fake
//! cluster), and `GET /healthz` as a floor. Prints a table and each component's .wasm size.
//!
//! Build the components first, then run:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p api -p sync-webhook -p expiry-cron
//! cargo bench -p meshcert-host --bench api
//! ```
//!
//! Sizes come from environment variables: `MESHCERT_BENCH_CERTIFICATES` (seeded certificates,
//! default 1000), `MESHCERT_BENCH_CLIENTS` (concurrent clients, default 200) and
//! `MESHCERT_BENCH_REQUESTS` (GET requests per client, default 20). Latencies cover 2xx
//! responses only. The run fails after printing when any response is not 2xx, any request
//! fails, or the fake cluster is missing a Secret.
//!
//! The host, the fake cluster and the clients share one process and its CPUs, so the figures
//! are those of the whole loop on one machine, not of the api alone.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use common::{percentile, run_phase, Authority, Client, PhaseRequest, PhaseResult, Settings};
use meshcert_fake_kube::{FakeCluster, FakeClusterConfig};
use meshcert_host::{App, AppConfig};
use rand::Rng as _;
use serde_json::{json, Value};

const API_TOKEN: &str = "admin-token-for-benchmarks";
const NAMESPACE: &str = "istio-system";
const CLUSTER: &str = "bench";

/// Concurrent clients while seeding; seeding is setup, not a measured phase.
const SEED_CLIENTS: usize = 8;

fn main() -> Result<()> {
    let settings = Settings::from_env(1000, 200)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(settings))
}


async fn run(settings: Settings) -> Result<()> {
    // Other processes on the machine slow every phase, so the report shows how busy it was.
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|load| load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = repository.join("spin.toml");

    // The app, as the end-to-end tests load it, and one registered fake cluster.
    let state = tempfile::tempdir().context("failed to create the state directory")?;
    let encryption_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let config = AppConfig::new(&manifest)
        .state_dir(state.path())
        .read_env(false)
        .variable("api_token", API_TOKEN)
        .variable("webhook_secret", "webhook-secret-for-benchmarks")
        .variable("encryption_key", encryption_key)
        .variable("extra_cluster_hosts", "http://127.0.0.1:*");
    let app = App::load(config)?;
    let server = app.serve("127.0.0.1:0".parse()?).await?;
    let addr = server.addr();
    let cluster = FakeCluster::start(FakeClusterConfig::new(CLUSTER, "bench-cluster-token")).await?;
    let mut client = Client::connect(addr).await?;
    let registration = json!({ "id": CLUSTER, "api_server": cluster.url(), "token": cluster.token() });
    let (status, body) = client.send("POST", "/api/v1/clusters", Some(API_TOKEN), Some(&registration)).await?;
    if status != 201 {
        bail!("registering the fake cluster returned {status}: {}", String::from_utf8_lossy(&body));
    }

    // Certificates for the seed and for the create phase, generated before any timing.
    let generating = Instant::now();
    let authority = Authority::new()?;
    let seeded: Vec<Value> = (0..settings.certificates).map(|i| authority.create_body(&format!("seed-{i:05}"))).collect::<Result<_>>()?;
    let created: Vec<Value> = (0..settings.clients).map(|i| authority.create_body(&format!("new-{i:05}"))).collect::<Result<_>>()?;
    eprintln!("generated {} certificates in {:.1} s", seeded.len() + created.len(), generating.elapsed().as_secs_f64());

    // Seed.
    let seed_clients = SEED_CLIENTS.min(settings.certificates);
    let seed_requests: Vec<Vec<PhaseRequest>> = (0..seed_clients)
        .map(|client| seeded.iter().skip(client).step_by(seed_clients).map(|body| PhaseRequest::create(body, Some(API_TOKEN))).collect())
        .collect();
    let seed = run_phase(seed_requests.into_iter().map(|list| (addr, list)).collect(), CLUSTER).await?;
    eprintln!("seeded {} certificates in {:.1} s", settings.certificates, seed.elapsed.as_secs_f64());

    // Reads of random seeded certificates.
    let read_requests: Vec<Vec<PhaseRequest>> = {
        let mut rng = rand::thread_rng();
        (0..settings.clients)
            .map(|_| {
                (0..settings.requests_per_client)
                    .map(|_| PhaseRequest::get(format!("/api/v1/certificates/{NAMESPACE}/seed-{:05}", rng.gen_range(0..settings.certificates)), Some(API_TOKEN)))
                    .collect()
            })
            .collect()
    };
    let reads = run_phase(read_requests.into_iter().map(|list| (addr, list)).collect(), CLUSTER).await?;

    // One create per client, each synced to the cluster before its response.
    let create_requests: Vec<Vec<PhaseRequest>> = created.iter().map(|body| vec![PhaseRequest::create(body, Some(API_TOKEN))]).collect();
    let creates = run_phase(create_requests.into_iter().map(|list| (addr, list)).collect(), CLUSTER).await?;

    // The floor: a route that reads two variables and touches no store.
    let health_requests: Vec<Vec<PhaseRequest>> = (0..settings.clients)
        .map(|_| (0..settings.requests_per_client).map(|_| PhaseRequest::get("/healthz".into(), None)).collect())
        .collect();
    let health = run_phase(health_requests.into_iter().map(|list| (addr, list)).collect(), CLUSTER).await?;

    // Report.
    println!();
    println!(
        "meshcert api benchmark: {} seeded certificates, {} clients, {} GETs per client, {} CPUs, one process",
        settings.certificates,
        settings.clients,
        settings.requests_per_client,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if let Some(load) = &load_before {
        println!("load average before the run (1, 5, 15 min): {load}");
    }
    println!();
    println!("{:<34} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}", "phase", "requests", "non-2xx", "failed", "p50 ms", "p99 ms", "max ms", "req/s");
    seed.print(&format!("seed POST ({seed_clients} clients)"));
    reads.print("GET certificate");
    creates.print("POST certificate, with sync");
    health.print("GET /healthz");
    println!();
    println!("{:<34} {:>12}", "component", "wasm bytes");
    for (id, path) in component_sources(&manifest)? {
        let size = std::fs::metadata(repository.join(&path)).with_context(|| format!("failed to read the size of {}", path.display()))?.len();
        println!("{:<34} {:>12}", id, size);
    }
    let (keys, largest_key, largest_bytes) = store_statistics(&state.path().join(meshcert_host::DEFAULT_KEY_VALUE_FILE))?;
    println!();
    println!("key-value store after the run: {keys} keys, largest value {largest_key:?} with {largest_bytes} bytes");
    println!();

    // Checks: every request succeeded, every create was synced, the cluster contains every Secret.
    let phases = [("seed", &seed), ("GET certificate", &reads), ("POST certificate", &creates), ("GET /healthz", &health)];
    let mut problems = Vec::new();
    for (name, phase) in phases {
        if phase.non_success > 0 || !phase.failures.is_empty() {
            problems.push(format!(
                "{name}: {} non-2xx responses (first: {}), {} failed requests (first: {})",
                phase.non_success,
                phase.first_non_success.as_deref().unwrap_or("none"),
                phase.failures.len(),
                phase.failures.first().map_or("none", String::as_str)
            ));
        }
    }
    let unsynced = seed.unsynced + creates.unsynced;
    if unsynced > 0 {
        problems.push(format!("{unsynced} creates returned 201 without a synced Secret in cluster {CLUSTER:?}"));
    }
    let secrets = cluster.secrets(NAMESPACE).len();
    let expected_secrets = settings.certificates + settings.clients;
    if secrets != expected_secrets {
        problems.push(format!("the fake cluster contains {secrets} Secrets in {NAMESPACE}, expected {expected_secrets}"));
    }
    if !problems.is_empty() {
        bail!("the benchmark saw errors, so its figures are not valid:\n{}", problems.join("\n"));
    }
    Ok(())
}

/// Returns each component's id and `source` from the manifest.
fn component_sources(manifest: &Path) -> Result<Vec<(String, PathBuf)>> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("failed to read {}", manifest.display()))?;
    let document: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let Some(components) = document.get("component").and_then(toml::Value::as_table) else {
        bail!("{} has no [component.*] tables", manifest.display());
    };
    let mut sources = Vec::new();
    for (id, component) in components {
        let Some(source) = component.get("source").and_then(toml::Value::as_str) else {
            bail!("[component.{id}] in {} has no string source", manifest.display());
        };
        sources.push((id.clone(), PathBuf::from(source)));
    }
    Ok(sources)
}

/// Returns the number of keys in the key-value database and its largest value's key and size.
/// Spin's key-value API guide allows values of up to 1 MB.
fn store_statistics(database: &Path) -> Result<(u64, String, u64)> {
    let connection = rusqlite::Connection::open(database).with_context(|| format!("failed to open {}", database.display()))?;
    let keys = connection.query_row("SELECT COUNT(*) FROM spin_key_value", [], |row| row.get(0))?;
    let (largest_key, largest_bytes) =
        connection.query_row("SELECT key, length(value) FROM spin_key_value ORDER BY length(value) DESC LIMIT 1", [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok((keys, largest_key, largest_bytes))
}

impl PhaseResult {
    fn print(&self, name: &str) {
        let requests = self.requests();
        let milliseconds = |duration: Option<&Duration>| duration.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1000.0));
        let rate = self.rate();
        println!(
            "{:<34} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9.0}",
            name,
            requests,
            self.non_success,
            self.failures.len(),
            milliseconds(percentile(&self.latencies, 50.0)),
            milliseconds(percentile(&self.latencies, 99.0)),
            milliseconds(self.latencies.last()),
            rate
        );
    }
}

