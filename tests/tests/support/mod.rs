//! Shared setup of the end-to-end tests: the app of the repository's spin.toml in meshcert-host,
//! fake clusters on loopback, an HTTP client, webhook signing and openssl.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use meshcert_fake_kube::{FakeCluster, FakeClusterConfig};
use meshcert_host::{App, AppConfig, Server};
use serde_json::Value;

pub const API_TOKEN: &str = "admin-token-for-tests";
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";

/// Returns the path of the repository's spin.toml, which names the release .wasm files.
pub fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml")
}

/// A running app with its state in a temporary directory.
pub struct TestApp {
    pub app: App,
    pub server: Server,
    pub state: tempfile::TempDir,
}

impl TestApp {
    /// Loads spin.toml with test variables and plain-HTTP loopback clusters allowed.
    pub async fn start() -> TestApp {
        Self::start_with(&[]).await
    }

    /// Like [`TestApp::start`], with some variables replaced.
    pub async fn start_with(variables: &[(&str, &str)]) -> TestApp {
        Self::start_in(tempfile::tempdir().expect("temporary state directory"), variables).await
    }

    /// Stops this app and starts it again on the same state, as a restart of `spin up` with new
    /// variables would.
    pub async fn restart_with(self, variables: &[(&str, &str)]) -> TestApp {
        let TestApp { app, server, state } = self;
        drop(server);
        drop(app);
        Self::start_in(state, variables).await
    }

    /// Like [`TestApp::start_with`], with a runtime config file, as `spin up
    /// --runtime-config-file` takes it.
    pub async fn start_with_runtime_config(variables: &[(&str, &str)], runtime_config: &Path) -> TestApp {
        let state = tempfile::tempdir().expect("temporary state directory");
        Self::start_in_with_runtime_config(state, variables, Some(runtime_config)).await
    }

    async fn start_in(state: tempfile::TempDir, variables: &[(&str, &str)]) -> TestApp {
        Self::start_in_with_runtime_config(state, variables, None).await
    }

    async fn start_in_with_runtime_config(state: tempfile::TempDir, variables: &[(&str, &str)], runtime_config: Option<&Path>) -> TestApp {
        let encryption_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        // The scan's resync goes to self_url, so it must be this app, not whatever else listens
        // on the default port.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free loopback port");
        let mut config = AppConfig::new(manifest())
            .state_dir(state.path())
            .read_env(false)
            .variable("api_token", API_TOKEN)
            .variable("webhook_secret", WEBHOOK_SECRET)
            .variable("encryption_key", encryption_key)
            .variable("extra_cluster_hosts", "http://127.0.0.1:*")
            .variable("self_url", format!("http://{addr}"));
        for (name, value) in variables {
            config = config.variable(*name, *value);
        }
        if let Some(path) = runtime_config {
            config = config.runtime_config(path);
        }
        let app = App::load(config).unwrap_or_else(|error| {
            panic!("failed to load spin.toml ({error:#}); build the components first with scripts/test.sh")
        });
        let server = app.serve(addr).await.expect("serve on loopback");
        TestApp { app, server, state }
    }

    /// Sends a request with the admin token and extra headers, such as `If-Match`.
    pub async fn call_with_headers(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (u16, Value) {
        let mut all = vec![("authorization".to_string(), format!("Bearer {API_TOKEN}"))];
        all.extend(headers.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        let body = body.map(|body| serde_json::to_vec(body).unwrap()).unwrap_or_default();
        let (status, bytes) = send(self.server.addr(), method, path, &all, body).await;
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// Sends a request with the admin token.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_with_token(method, path, Some(API_TOKEN), body).await
    }

    /// Sends a request with any token, or none.
    pub async fn call_with_token(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("authorization".to_string(), format!("Bearer {token}")));
        }
        let body = body.map(|body| serde_json::to_vec(body).unwrap()).unwrap_or_default();
        let (status, bytes) = send(self.server.addr(), method, path, &headers, body).await;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Sends a signed `POST /hooks/sync`. A JSON object body gets a unique `nonce`, because the
    /// hook accepts each signature once and tests send the same body within one second.
    pub async fn signed_sync(&self, body: &str) -> (u16, Value) {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let body = match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(mut object)) => {
                let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                object.insert("nonce".into(), Value::String(format!("test-{nonce}")));
                Value::Object(object).to_string()
            }
            _ => body.to_string(),
        };
        let body = body.as_str();
        let timestamp = self.app.clock().unix_seconds() as i64;
        let headers = vec![
            ("x-meshcert-timestamp".to_string(), timestamp.to_string()),
            ("x-meshcert-signature".to_string(), sign(WEBHOOK_SECRET, timestamp, body.as_bytes())),
        ];
        let (status, bytes) = send(self.server.addr(), "POST", "/hooks/sync", &headers, body.as_bytes().to_vec()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Registers a fake cluster through the API.
    pub async fn register(&self, cluster: &FakeCluster) -> Value {
        self.register_with_labels(cluster, serde_json::json!({})).await
    }

    /// Registers a fake cluster with labels through the API.
    pub async fn register_with_labels(&self, cluster: &FakeCluster, labels: Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/clusters",
                Some(&serde_json::json!({ "id": cluster.name(), "api_server": cluster.url(), "token": cluster.token(), "labels": labels })),
            )
            .await;
        assert_eq!(status, 201, "registering {}: {body}", cluster.name());
        body
    }

    /// Reads every value in the key-value store, as text.
    pub fn stored_values(&self) -> Vec<(String, String)> {
        let database = self.state.path().join(meshcert_host::DEFAULT_KEY_VALUE_FILE);
        let connection = rusqlite::Connection::open(database).expect("open the key-value database");
        let mut statement = connection.prepare("SELECT key, value FROM spin_key_value").unwrap();
        statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, String::from_utf8_lossy(&row.get::<_, Vec<u8>>(1)?).into_owned())))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Returns every component's captured output.
    pub fn all_output(&self) -> String {
        ["api", "sync-webhook", "expiry-cron"].iter().map(|id| self.app.output(id)).collect::<Vec<_>>().join("\n")
    }
}

/// Starts a fake cluster holding `istio-system`.
pub async fn fake_cluster(name: &str) -> FakeCluster {
    FakeCluster::start(FakeClusterConfig::new(name, format!("{name}-token-for-tests"))).await.expect("start the fake cluster")
}

/// Starts a fake cluster holding `istio-system`, with the settings that `configure` changes, such
/// as `FakeClusterConfig::https`.
pub async fn fake_cluster_with(name: &str, configure: impl FnOnce(FakeClusterConfig) -> FakeClusterConfig) -> FakeCluster {
    let config = configure(FakeClusterConfig::new(name, format!("{name}-token-for-tests")));
    FakeCluster::start(config).await.expect("start the fake cluster")
}

/// Sends one HTTP/1.1 request over a new loopback connection.
pub async fn send(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, Vec<u8>) {
    let (status, _, body) = send_full(addr, method, path, headers, body).await;
    (status, body)
}

/// Like [`send`], and also returns the response headers.
pub async fn send_full(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the host");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
    tokio::spawn(connection);

    let mut request = http::Request::builder().method(method).uri(path).header("host", addr.to_string());
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = sender.send_request(request).await.expect("send the request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("read the body").to_bytes().to_vec();
    (status, headers, body)
}

/// `sha256=` and the hex HMAC-SHA256 of `timestamp.body`, written here independently of the
/// core's signing code so that the test checks the documented format.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs openssl in `dir`, failing the test with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (install it)");
    assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The PEM files of the walkthrough: a root CA and server certificates signed by it.
pub struct Certificates {
    pub dir: tempfile::TempDir,
}

impl Certificates {
    /// Creates the root CA `example.test` as the walkthrough does.
    pub fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req", "-x509", "-sha256", "-nodes", "-days", "365", "-newkey", "rsa:2048",
                "-subj", "/O=example Inc./CN=example.test", "-keyout", "example.test.key", "-out", "example.test.crt",
            ],
        );
        Certificates { dir }
    }

    /// Creates `{host}.key` and `{host}.crt`, valid for `days`, serial 0, no SAN.
    pub fn server(&self, host: &str, days: u32) {
        let (key, csr, crt) = (format!("{host}.key"), format!("{host}.csr"), format!("{host}.crt"));
        openssl(
            self.dir.path(),
            &["req", "-out", &csr, "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-subj", &format!("/CN={host}/O=meshcert test")],
        );
        openssl(
            self.dir.path(),
            &[
                "x509", "-req", "-sha256", "-days", &days.to_string(), "-CA", "example.test.crt", "-CAkey", "example.test.key",
                "-set_serial", "0", "-in", &csr, "-out", &crt,
            ],
        );
    }

    /// Reads the text of a file in the directory.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap()
    }
}

/// Builds the body of `POST /api/v1/certificates` for `{host}.crt` with `{key_host}.key`.
pub fn upload(certificates: &Certificates, name: &str, host: &str, key_host: &str) -> Value {
    serde_json::json!({
        "name": name,
        "certificate": certificates.read(&format!("{host}.crt")),
        "private_key": certificates.read(&format!("{key_host}.key")),
    })
}

/// Builds a `kubernetes.io/tls` Secret that someone other than meshcert created: no managed-by label,
/// and `theirs` in both data entries.
pub fn foreign_tls_secret(namespace: &str, name: &str) -> Value {
    let theirs = base64::engine::general_purpose::STANDARD.encode("theirs");
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": namespace },
        "type": "kubernetes.io/tls",
        "data": { "tls.crt": theirs, "tls.key": theirs },
    })
}

/// Decoded `data` entry of a Secret object.
pub fn secret_entry(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or_else(|| panic!("Secret has no data {key:?}: {secret}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

/// The base64 lines of a PEM body, which must never appear outside the Secret.
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines().filter(|line| !line.starts_with("-----") && line.len() > 20).map(str::to_string).collect()
}

/// A `meshcert-host up` process, killed when the test ends, also on failure.
pub struct Runner {
    child: std::process::Child,
    /// The loopback address it serves.
    pub addr: std::net::SocketAddr,
    /// Its stdout and stderr.
    pub log_path: PathBuf,
}

impl Runner {
    /// Starts `meshcert-host up` for `manifest` on a free loopback port, with its state and log in
    /// `dir` and the test variables, plus `runtime_config` when given, and waits until it listens.
    pub async fn start(dir: &Path, manifest: &Path, runtime_config: Option<&Path>) -> Runner {
        Self::start_with_env(dir, manifest, runtime_config, &[]).await
    }

    /// Like [`Runner::start`], with extra environment variables such as `SPIN_VARIABLE_<NAME>`,
    /// which are set after the test variables and so replace them.
    pub async fn start_with_env(dir: &Path, manifest: &Path, runtime_config: Option<&Path>, extra_env: &[(&str, &str)]) -> Runner {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_path = dir.join("runner.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshcert-host"));
        command
            .args(["up", "--from"])
            .arg(manifest)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(dir.join("state"))
            .env("SPIN_VARIABLE_API_TOKEN", API_TOKEN)
            .env("SPIN_VARIABLE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("SPIN_VARIABLE_ENCRYPTION_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (name, value) in extra_env {
            command.env(name, value);
        }
        if let Some(runtime_config) = runtime_config {
            command.arg("--runtime-config-file").arg(runtime_config);
        }
        let child = command.spawn().expect("start meshcert-host up");
        let runner = Runner { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), log_path };

        // The HTTP trigger accepts connections once the app is loaded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(runner.addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "meshcert-host did not listen on {}: {}", runner.addr, runner.log());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        runner
    }

    /// Returns what the runner printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
