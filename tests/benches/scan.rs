//! The expiry scan over many certificates, against what an operator's script does today: parse
//! every PEM file with Python's `cryptography` package and classify it.
//!
//! Stores certificates through the api: ECDSA P-256 and RSA 2048 leaves, with not_after spread
//! from 10 days ago to 400 days ahead. Then it runs the cron handler twice. The first run rebuilds
//! the expiry index from every head, as a scan does once a day, and the second reads the index,
//! as every other scan does. It prints both wall times, the process's memory around the second,
//! and the times of `scan.py` over the same leaves as PEM files, in the same run.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p api -p sync-webhook -p expiry-cron
//! python3 -m pip install cryptography
//! cargo bench -p meshcert-host --bench scan
//! ```
//!
//! `MESHCERT_BENCH_CERTIFICATES` sets the number (default 10000). The scan's resync goes to a
//! closed loopback port, so that it fails at once and the figures are the scan's. The run fails
//! after printing when the scan's counts differ from the script's.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use common::{env_count, Client};
use meshcert_host::{App, AppConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256};
use serde_json::{json, Value};

const API_TOKEN: &str = "admin-token-for-benchmarks";
const SEED_CLIENTS: usize = 8;
const WARNING_DAYS: i64 = 30;

fn main() -> Result<()> {
    let certificates = env_count("MESHCERT_BENCH_CERTIFICATES", 10_000)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(certificates))
}

async fn run(count: usize) -> Result<()> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    let state = tempfile::tempdir()?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = AppConfig::new(&manifest)
        .state_dir(state.path())
        .read_env(false)
        .variable("api_token", API_TOKEN)
        .variable("webhook_secret", "webhook-secret-for-benchmarks")
        .variable("encryption_key", base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
        .variable("self_url", format!("http://{closed}"));
    let app = App::load(config)?;
    let server = app.serve("127.0.0.1:0".parse()?).await?;

    // Certificates, and the same leaves as PEM files for the script.
    let generating = Instant::now();
    let pem_dir = tempfile::tempdir()?;
    let bodies = generate(count, pem_dir.path())?;
    eprintln!("generated {count} certificates in {:.1} s", generating.elapsed().as_secs_f64());
    let seeding = Instant::now();
    common::seed(server.addr(), API_TOKEN, &bodies, SEED_CLIENTS).await?;
    eprintln!("stored them in {:.1} s", seeding.elapsed().as_secs_f64());

    // The scans: a rebuild of the index, then a scan of the index, each with the peak memory
    // of the process reset before it.
    let started = Instant::now();
    app.run_cron("expiry-cron").await?;
    let rebuild = started.elapsed();
    let resident_before = memory_kib("VmRSS:");
    reset_peak_memory();
    let started = Instant::now();
    app.run_cron("expiry-cron").await?;
    let scan = started.elapsed();
    let peak_during = memory_kib("VmHWM:");
    let mut client = Client::connect(server.addr()).await?;
    let (_, record) = client.send("GET", "/api/v1/scans/last", Some(API_TOKEN), None).await?;
    let record: Value = serde_json::from_slice(&record)?;

    // The script, over the same leaves at the same moment.
    let now = app.clock().unix_seconds();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scan.py");
    let started = Instant::now();
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(pem_dir.path())
        .arg(WARNING_DAYS.to_string())
        .arg(now.to_string())
        .output()
        .context("failed to run python3; install it and the cryptography package")?;
    let script_total = started.elapsed();
    if !output.status.success() {
        bail!("scan.py failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let counts: Value = serde_json::from_slice(&output.stdout)?;
    let script_loop = Duration::from_secs_f64(counts["seconds"].as_f64().unwrap_or_default());

    println!();
    println!("meshcert scan benchmark: {count} certificates, {} CPUs, one process", std::thread::available_parallelism().map_or(0, usize::from));
    println!();
    println!("scan (reads the index)              {:>8.3} s", scan.as_secs_f64());
    println!("daily rebuild (reads every head)    {:>8.3} s", rebuild.as_secs_f64());
    println!("python3 scan.py, whole process      {:>8.3} s", script_total.as_secs_f64());
    println!("python3 scan.py, parse and classify {:>8.3} s", script_loop.as_secs_f64());
    println!("host memory: resident before the scan {resident_before} KiB, peak during it {peak_during} KiB (whole process)");
    println!();
    println!("scan over the script's parse loop: {:.1}× faster (goal: at least 3×)", script_loop.as_secs_f64() / scan.as_secs_f64());
    println!("scan over the whole script:        {:.1}× faster", script_total.as_secs_f64() / scan.as_secs_f64());
    println!();

    let ours = (record["expired"].as_u64(), record["expiring"].as_u64(), record["certificates"].as_u64());
    let theirs = (counts["expired"].as_u64(), counts["expiring"].as_u64(), Some(count as u64));
    if ours != theirs {
        bail!("the scan counted (expired, expiring, certificates) {ours:?} and the script {theirs:?}: the figures are not comparable");
    }
    Ok(())
}

/// Generates `count` leaves under one CA, writes each leaf's PEM to `dir`, and returns the
/// create bodies. Every tenth leaf has an RSA key from a small pool, since generating RSA keys
/// is slow and the scan does not look at keys.
fn generate(count: usize, dir: &std::path::Path) -> Result<Vec<Value>> {
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "meshcert scan benchmark CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(800);
    ca.not_after = now + time::Duration::days(800);
    let issuer = Issuer::new(ca, KeyPair::generate()?);
    let rsa_keys = rsa_key_pool(4)?;

    let mut bodies = Vec::with_capacity(count);
    for index in 0..count {
        let name = format!("cert-{index:05}");
        let host = format!("{name}.example.test");
        let mut params = CertificateParams::new(vec![host.clone()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        // not_after from 10 days ago to 400 days ahead, spread evenly.
        let days_left = (index as i64 * 41) % 410 - 10;
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(12);
        let key = if index % 10 == 0 { KeyPair::from_pem_and_sign_algo(&rsa_keys[index % rsa_keys.len()], &PKCS_RSA_SHA256)? } else { KeyPair::generate()? };
        let certificate = params.signed_by(&key, &issuer)?;
        std::fs::write(dir.join(format!("{name}.pem")), certificate.pem())?;
        bodies.push(json!({ "name": name, "certificate": certificate.pem(), "private_key": key.serialize_pem(), "allow_expired": true }));
    }
    Ok(bodies)
}

/// RSA 2048 private keys in PKCS#8 PEM, made by the openssl command line.
fn rsa_key_pool(size: usize) -> Result<Vec<String>> {
    (0..size)
        .map(|_| {
            let output = std::process::Command::new("openssl").args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]).output()?;
            if !output.status.success() {
                bail!("openssl genpkey failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            Ok(String::from_utf8(output.stdout)?)
        })
        .collect()
}


/// Reads a memory line of /proc/self/status, such as `VmHWM:` (peak resident) or `VmRSS:`, in
/// KiB; 0 when unknown.
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find_map(|line| line.strip_prefix(field).map(|value| value.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))))
        .unwrap_or(0)
}

/// Resets the process's peak resident memory to its current value (Linux: `5` to clear_refs).
fn reset_peak_memory() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak memory ({error}); the peak shown includes the seeding");
    }
}
