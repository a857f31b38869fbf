//! A fake Kubernetes API server for meshcert's tests.
//!
//! Each [`FakeCluster`] is its own HTTP/1.1 server on a loopback port with its own bearer token,
//! so a test can run a fleet of clusters and check what each of them would hold. It serves the
//! parts of the Kubernetes API that meshcert uses, with the real JSON shapes:
//!
//! - `GET /version`, `GET /api/v1/namespaces` and `GET /api/v1/namespaces/{ns}`;
//! - core/v1 Secrets under `/api/v1/namespaces/{ns}/secrets`: GET, LIST with `labelSelector` and
//!   `fieldSelector` (also across namespaces at `/api/v1/secrets`), POST, PUT with resourceVersion
//!   preconditions, DELETE, server-side apply (`PATCH` with `application/apply-patch+yaml`, JSON
//!   bodies only) and JSON merge patch;
//! - Istio Gateways (`networking.istio.io`, served at `v1` and `v1beta1` unless
//!   [`FakeClusterConfig::gateway_versions`] sets other versions) under
//!   `/apis/networking.istio.io/{version}/namespaces/{ns}/gateways`: GET, LIST (also across
//!   namespaces at `.../{version}/gateways`), POST, PUT, DELETE, JSON merge patch and server-side
//!   apply, with resourceVersion preconditions, `metadata.generation`, the checks of Istio's
//!   validating webhook, and API discovery at `/apis` and `/apis/networking.istio.io`;
//! - read-only core/v1 Pods at `/api/v1/pods` and `/api/v1/namespaces/{ns}/pods`, which tests add
//!   with [`FakeCluster::put_pod`];
//! - `metadata.uid`, `creationTimestamp`, `managedFields` (Secrets only) and a cluster-wide
//!   resourceVersion counter that every write increments;
//! - validation as kube-apiserver does it: `type` is immutable, data keys and values are checked,
//!   the data of a Secret is at most 1 MiB, `kubernetes.io/tls` needs `tls.crt` and `tls.key`;
//! - label selectors with `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)` and `k notin (a,b)` on
//!   every list;
//! - errors as Kubernetes `Status` objects with `reason`, `details` and `code`.
//!
//! Tests change faults at runtime: the cluster can go down (connections refused) and come back on
//! the same port, respond with a fixed status code, add latency, stream bodies slowly or drop
//! connections. Every request is logged, and the number of requests in flight is tracked with its
//! maximum, so tests can measure client concurrency.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use meshcert_fake_kube::{FakeCluster, FakeClusterConfig, StatusFault};
//!
//! let east = FakeCluster::start(FakeClusterConfig::new("east", "east-token")).await?;
//! println!("API server at {}", east.url());
//! east.set_status_fault(Some(StatusFault::new(503).times(2)));
//! # Ok(())
//! # }
//! ```
//!
//! A cluster speaks plain HTTP unless its config sets HTTPS ([`FakeClusterConfig::https`]).
//! Then it makes its own CA at start, serves a certificate signed by it for `localhost`,
//! 127.0.0.1 and ::1, and can require client certificates signed by a client CA
//! ([`FakeClusterConfig::require_client_certificate`]), as kube-apiserver's x509 client
//! authentication does. Faults, request records and in-flight counts work the same over both.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use meshcert_fake_kube::{ClientCa, FakeCluster, FakeClusterConfig};
//!
//! let config = FakeClusterConfig::new("east", "east-token").require_client_certificate(ClientCa::Generate);
//! let east = FakeCluster::start(config).await?;
//! std::fs::write("east-ca.pem", east.ca_pem().expect("an HTTPS cluster has a CA"))?;
//! let client = east.issue_client_certificate("meshcert")?;
//! println!("API server at {}", east.url());
//! # Ok(())
//! # }
//! ```
//!
//! The server binds only loopback addresses, because it is a test tool.

mod api;
mod cli;
mod faults;
mod gateway;
mod pod;
mod secret;
mod selector;
mod server;
mod status;
mod tls;
mod util;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use cli::{cli_main, run_cli};
pub use faults::{DropFault, RequestRecord, SlowBody, StatusFault};
pub use secret::MAX_SECRET_BYTES;
pub use tls::{ClientCa, ClientCertificate, HttpsConfig};

use api::ClusterState;
use server::{lock, Shared};

/// The settings of one fake cluster.
#[derive(Debug, Clone)]
pub struct FakeClusterConfig {
    /// A name for logs and error messages, such as `east`.
    pub name: String,
    /// The bearer token every request must carry.
    pub token: String,
    /// The namespaces that exist at start.
    pub namespaces: Vec<String>,
    /// The loopback address to bind, or `None` for 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
    /// The `gitVersion` that `GET /version` returns, such as `v1.31.0`.
    pub git_version: String,
    /// Whether to print one line per request to stderr.
    pub log_requests: bool,
    /// HTTPS settings, or `None` to serve plain HTTP.
    pub https: Option<HttpsConfig>,
    /// The versions of `networking.istio.io` whose Gateways the cluster serves, such as `v1`.
    /// Empty means Istio's CRDs are not installed.
    pub gateway_versions: Vec<String>,
}

impl FakeClusterConfig {
    /// A config with the namespace `istio-system`, a free port, version v1.31.0 and Gateways at
    /// `networking.istio.io/v1` and `v1beta1`.
    pub fn new(name: impl Into<String>, token: impl Into<String>) -> Self {
        FakeClusterConfig {
            name: name.into(),
            token: token.into(),
            namespaces: vec!["istio-system".to_owned()],
            listen: None,
            git_version: "v1.31.0".to_owned(),
            log_requests: false,
            https: None,
            gateway_versions: gateway::DEFAULT_VERSIONS
                .iter()
                .map(|v| v.to_string())
                .collect(),
        }
    }

    /// Sets the versions of `networking.istio.io` whose Gateways the cluster serves, such as
    /// `&["v1beta1"]` for an Istio older than 1.22, or `&[]` for a cluster without Istio. A request
    /// to another version gets a 404, as for a resource the cluster does not have.
    pub fn gateway_versions(mut self, versions: &[&str]) -> Self {
        self.gateway_versions = versions.iter().map(|v| v.to_string()).collect();
        self
    }

    /// Serves HTTPS with a CA made at start and accepts clients without a certificate. A client
    /// CA set earlier stays.
    pub fn https(mut self) -> Self {
        self.https.get_or_insert_with(HttpsConfig::default);
        self
    }

    /// Serves HTTPS and rejects, in the TLS handshake, every client whose certificate `client_ca`
    /// did not sign.
    pub fn require_client_certificate(mut self, client_ca: ClientCa) -> Self {
        self.https
            .get_or_insert_with(HttpsConfig::default)
            .client_ca = Some(client_ca);
        self
    }
}

/// A running fake Kubernetes API server. Dropping it stops the server and closes its connections.
pub struct FakeCluster {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The accept loop while the cluster is up, or `None` while it is down.
    server: Mutex<Option<JoinHandle<()>>>,
}

impl FakeCluster {
    /// Binds the listen address and starts serving. Must run inside a Tokio runtime.
    ///
    /// Fails when the address is not loopback (127.0.0.0/8 or ::1), the token is empty, a
    /// namespace name is not a DNS-1123 label, a Gateway version is not a Kubernetes version name
    /// such as `v1` or `v1beta1`, a given client CA is not a CA certificate in PEM, or the address
    /// cannot be bound.
    pub async fn start(config: FakeClusterConfig) -> anyhow::Result<FakeCluster> {
        let listen = config
            .listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        check_loopback(listen)?;
        if config.token.is_empty() {
            bail!(
                "fake cluster {}: the token is empty; set a bearer token",
                config.name
            );
        }

        let mut state = ClusterState::default();
        for namespace in &config.namespaces {
            check_namespace_name(namespace)?;
            state.add_namespace(namespace);
        }
        for version in &config.gateway_versions {
            if !gateway::is_version_name(version) {
                bail!("fake cluster {}: invalid Gateway version {version:?}: expected a Kubernetes API version such as v1, v1beta1 or v1alpha3", config.name);
            }
            if !state.gateway_versions.contains(version) {
                state.gateway_versions.push(version.clone());
            }
        }
        gateway::sort_versions(&mut state.gateway_versions);

        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("fake cluster {}: failed to bind {listen}", config.name))?;
        let addr = listener
            .local_addr()
            .context("failed to read the bound address")?;

        let tls = match &config.https {
            Some(https) => Some(tls::ServerTls::new(&config.name, addr.ip(), https)?),
            None => None,
        };

        let shared = Arc::new(Shared {
            tls,
            version: version_json(&config.git_version),
            name: config.name,
            token: config.token,
            log_requests: config.log_requests,
            state: Mutex::new(state),
            faults: Mutex::new(faults::Faults::default()),
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let handle = tokio::spawn(server::accept_loop(shared.clone(), listener));
        Ok(FakeCluster {
            shared,
            addr,
            server: Mutex::new(Some(handle)),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Returns the bound address, which stays the same across [`FakeCluster::set_down`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the base URL of the API server, such as `http://127.0.0.1:41234`, or
    /// `https://127.0.0.1:41234` when it serves HTTPS.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Returns the PEM of the CA that signed the server certificate, for a client's trusted roots
    /// (`ca_roots_file` in Spin's `[[client_tls]]`, `curl --cacert`), or `None` for plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|tls| tls.ca_pem.as_str())
    }

    /// Returns the PEM of the CA that client certificates must be signed by, or `None` when the
    /// cluster does not require client certificates.
    pub fn client_ca_pem(&self) -> Option<&str> {
        self.shared
            .tls
            .as_ref()
            .and_then(|tls| tls.client_ca_pem.as_deref())
    }

    /// Issues a client certificate that this cluster accepts, with `common_name` as its subject
    /// CN. Fails unless the cluster was started with [`ClientCa::Generate`].
    pub fn issue_client_certificate(&self, common_name: &str) -> anyhow::Result<ClientCertificate> {
        let Some(tls) = &self.shared.tls else {
            bail!("fake cluster {} serves plain HTTP, so it has no client CA: start it with require_client_certificate(ClientCa::Generate)", self.shared.name);
        };
        tls.issue_client_certificate(&self.shared.name, common_name)
    }

    /// Takes the server down or brings it back. Down, the port is closed, so clients get
    /// "connection refused", and open connections are closed. Up, it listens on the same port
    /// again, which fails only if another process took the port in between.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        if down {
            let handle = lock(&self.server).take();
            if let Some(handle) = handle {
                handle.abort();
                // Awaiting the aborted task makes sure the listener is closed on return.
                let _ = handle.await;
            }
            return Ok(());
        }
        if lock(&self.server).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await.with_context(|| {
            format!(
                "fake cluster {}: failed to bind {} again",
                self.shared.name, self.addr
            )
        })?;
        let handle = tokio::spawn(server::accept_loop(self.shared.clone(), listener));
        let mut server = lock(&self.server);
        match server.as_ref() {
            // A concurrent set_down(false) won the race, so its listener stays.
            Some(_) => handle.abort(),
            None => *server = Some(handle),
        }
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        lock(&self.server).is_none()
    }

    /// Stops the server and waits until its port is closed.
    pub async fn shutdown(self) {
        // Errors cannot happen when taking the server down.
        let _ = self.set_down(true).await;
    }

    /// Adds a namespace. Adding an existing one does nothing.
    pub fn add_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        check_namespace_name(namespace)?;
        lock(&self.shared.state).add_namespace(namespace);
        Ok(())
    }

    /// Removes a namespace and its Secrets, Gateways and Pods at once, where a real cluster would
    /// finalize them first. Returns whether the namespace existed.
    pub fn remove_namespace(&self, namespace: &str) -> bool {
        let mut state = lock(&self.shared.state);
        if state.namespaces.remove(namespace).is_none() {
            return false;
        }
        state.secrets.retain(|(ns, _), _| ns != namespace);
        state.gateways.retain(|(ns, _), _| ns != namespace);
        state.pods.retain(|(ns, _), _| ns != namespace);
        state.next_resource_version();
        true
    }

    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.shared.state)
            .namespaces
            .keys()
            .cloned()
            .collect()
    }

    /// Returns the Secret as a GET would, or `None` when absent.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        let state = lock(&self.shared.state);
        state
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| s.to_json(true))
    }

    /// Returns the decoded `data` of a Secret, or `None` when absent.
    pub fn secret_data(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let state = lock(&self.shared.state);
        state
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| s.data.clone())
    }

    /// Returns the Secrets of a namespace, sorted by name, each as a GET would.
    pub fn secrets(&self, namespace: &str) -> Vec<Value> {
        let state = lock(&self.shared.state);
        state
            .secrets
            .values()
            .filter(|s| s.namespace == namespace)
            .map(|s| s.to_json(true))
            .collect()
    }

    /// Inserts or overwrites a Secret directly, without validation, to set up a state such as an
    /// unmanaged Secret or drifted data. `secret` has the API form (`data` in base64, `stringData`
    /// allowed). Its `metadata.name` is required and `metadata.namespace` is ignored.
    ///
    /// The value's `metadata.managedFields` entries are kept. Without them, the field manager
    /// `fake-kube-test` owns every field, as if a person had created the Secret with kubectl. The
    /// `uid` and `creationTimestamp` of the value are kept, and new ones are generated when absent.
    /// The write increments the resourceVersion. Returns the stored Secret, and fails when the
    /// namespace does not exist or the value is not a Secret.
    pub fn put_secret(&self, namespace: &str, secret: Value) -> anyhow::Result<Value> {
        let mut state = lock(&self.shared.state);
        if !state.namespaces.contains_key(namespace) {
            bail!("fake cluster {}: namespace {namespace:?} does not exist, so add it first with add_namespace", self.shared.name);
        }
        let mut stored =
            secret::stored_from_json(namespace, &secret, "fake-kube-test").map_err(|message| {
                anyhow::anyhow!(
                    "fake cluster {}: invalid Secret: {message}",
                    self.shared.name
                )
            })?;
        stored.resource_version = state.next_resource_version();
        let json = stored.to_json(true);
        state
            .secrets
            .insert((namespace.to_owned(), stored.name.clone()), stored);
        Ok(json)
    }

    /// Deletes a Secret directly and returns whether it existed.
    pub fn remove_secret(&self, namespace: &str, name: &str) -> bool {
        let mut state = lock(&self.shared.state);
        let removed = state
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some();
        if removed {
            state.next_resource_version();
        }
        removed
    }

    /// Stores a Gateway directly, creating or replacing it, to set up a state without the API.
    /// `gateway` has the API form, with `metadata.name` required and `metadata.namespace` ignored,
    /// and is stored as it is, unknown fields and `status` included. It must pass the same
    /// validation as a POST. The namespace is created if it is missing, and must be a DNS-1123
    /// label.
    ///
    /// The `uid` and `creationTimestamp` of the value are kept, else those of the replaced
    /// Gateway, else new ones are generated. The write increments the resourceVersion, and the
    /// generation when `spec` changes. Returns the stored Gateway at the preferred served version.
    pub fn put_gateway(&self, namespace: &str, gateway: Value) -> anyhow::Result<Value> {
        check_namespace_name(namespace)?;
        let mut state = lock(&self.shared.state);
        let mut stored =
            gateway::build_for_test(&state, namespace, &gateway).map_err(|message| {
                anyhow::anyhow!(
                    "fake cluster {}: invalid Gateway: {message}",
                    self.shared.name
                )
            })?;

        state.add_namespace(namespace);
        stored.resource_version = state.next_resource_version();
        state
            .gateways
            .insert((namespace.to_owned(), stored.name.clone()), stored.clone());
        Ok(stored.to_json(gateway::preferred_version(&state.gateway_versions)))
    }

    /// Returns the Gateway at the preferred served version (`v1` when none is served), or `None`
    /// when absent.
    pub fn gateway(&self, namespace: &str, name: &str) -> Option<Value> {
        let state = lock(&self.shared.state);
        let version = gateway::preferred_version(&state.gateway_versions);
        state
            .gateways
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|g| g.to_json(version))
    }

    /// Returns the Gateways of all namespaces, sorted by namespace and name, each as
    /// [`FakeCluster::gateway`] returns it.
    pub fn gateways(&self) -> Vec<Value> {
        let state = lock(&self.shared.state);
        let version = gateway::preferred_version(&state.gateway_versions);
        state
            .gateways
            .values()
            .map(|g| g.to_json(version))
            .collect()
    }

    /// Deletes a Gateway directly and returns whether it existed.
    pub fn remove_gateway(&self, namespace: &str, name: &str) -> bool {
        let mut state = lock(&self.shared.state);
        let removed = state
            .gateways
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some();
        if removed {
            state.next_resource_version();
        }
        removed
    }

    /// Adds or replaces a running Pod with `labels`, for a Gateway's selector to find. The
    /// namespace is created if it is missing. A replaced Pod keeps its uid. The write increments
    /// the resourceVersion. Fails when the namespace is not a DNS-1123 label, the name is not a
    /// DNS-1123 subdomain or a label is invalid.
    pub fn put_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        check_namespace_name(namespace)?;
        if let Err(detail) = secret::check_dns_subdomain(name) {
            bail!("invalid pod name {name:?}: {detail}");
        }
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut causes = Vec::new();
        secret::validate_labels(&labels, &mut causes);
        if let Some(cause) = causes.first() {
            bail!(
                "invalid labels for pod {name:?}: {}: {}",
                cause.field,
                cause.message
            );
        }

        let mut state = lock(&self.shared.state);
        state.add_namespace(namespace);
        let key = (namespace.to_owned(), name.to_owned());
        let (uid, creation_timestamp) = match state.pods.get(&key) {
            Some(pod) => (pod.uid.clone(), pod.creation_timestamp.clone()),
            None => (util::new_uid(), util::now_rfc3339()),
        };
        let resource_version = state.next_resource_version();
        state.pods.insert(
            key,
            pod::StoredPod {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid,
                resource_version,
                creation_timestamp,
                labels,
            },
        );
        Ok(())
    }

    /// Deletes a Pod directly and returns whether it existed.
    pub fn remove_pod(&self, namespace: &str, name: &str) -> bool {
        let mut state = lock(&self.shared.state);
        let removed = state
            .pods
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some();
        if removed {
            state.next_resource_version();
        }
        removed
    }

    /// Returns the cluster-wide resourceVersion counter, which is the version of the latest write.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.state).resource_version
    }

    /// Sets or clears the status-code fault.
    pub fn set_status_fault(&self, fault: Option<StatusFault>) {
        lock(&self.shared.faults).status = fault;
    }

    /// Sets or clears the fault that drops connections without a response.
    pub fn set_drop_fault(&self, fault: Option<DropFault>) {
        lock(&self.shared.faults).drop = fault;
    }

    /// Delays every response by `latency` (zero for none), after the request body is read.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.faults).latency = latency;
    }

    /// Sets or clears slow streaming of response bodies.
    pub fn set_slow_body(&self, slow_body: Option<SlowBody>) {
        lock(&self.shared.faults).slow_body = slow_body;
    }

    /// Clears every fault except down, which [`FakeCluster::set_down`] controls.
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = faults::Faults::default();
    }

    /// Returns the requests received so far, oldest first, including failed and faulted ones.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Returns the number of requests being handled now. A request counts from receipt until the
    /// last byte of its response body is handed to the connection.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Returns the maximum of [`FakeCluster::in_flight`] since start or the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_max_in_flight(&self) {
        self.shared
            .max_in_flight
            .store(self.in_flight(), Ordering::SeqCst);
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        if let Some(handle) = lock(&self.server).take() {
            handle.abort();
        }
    }
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .finish()
    }
}

/// Rejects addresses outside 127.0.0.0/8 and ::1, so the test server is never reachable from
/// another host.
pub(crate) fn check_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        bail!("listen address {addr} is not a loopback address; the fake Kubernetes API is a test server and binds only 127.0.0.0/8 or ::1, e.g. 127.0.0.1:16443")
    }
}

/// Checks a namespace name, a DNS-1123 label: at most 63 lowercase alphanumerics or `-`,
/// starting and ending with an alphanumeric.
fn check_namespace_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.contains('.')
        && secret::check_dns_subdomain(name).is_ok();
    if valid {
        Ok(())
    } else {
        bail!("invalid namespace name {name:?}: a namespace must be a DNS-1123 label (at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit)")
    }
}

/// Builds the `GET /version` body (`version.Info`) for a gitVersion such as `v1.31.0`.
fn version_json(git_version: &str) -> Value {
    let mut numbers = git_version.trim_start_matches('v').split('.');
    let major = numbers.next().unwrap_or("1");
    let minor = numbers.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-08-13T07:28:49Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
