//! One sync run: load what is in scope, read each cluster's Secrets with one LIST per namespace,
//! plan and write each (certificate, cluster) target concurrently, record the outcomes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use meshcert_core::api::{ProbeReport, SyncReport, SyncRequest, SyncScope, TargetReport};
use meshcert_core::kube::{self, ApplyOutcome, DesiredSecret, LiveSecret, PlannedAction, TlsSecret};
use meshcert_core::records::{self, CertificateHead, CertificateState, CertificateVersion, ClusterRecord, ClusterSyncState, StoreKey, SyncError, SyncRecord, SyncState};
use meshcert_core::secret::SecretString;
use meshcert_core::selector::LabelSelector;
use meshcert_spin::{cipher, now, variable, Change, Store};

use crate::client::{Client, Sent};

/// The default of `sync_concurrency`.
const DEFAULT_CONCURRENCY: usize = 16;

/// The `kind` of the error recorded for a Secret that meshcert does not manage.
const UNMANAGED_SECRET: &str = "unmanaged_secret";

/// A cluster with its token decrypted for this run.
pub(crate) struct Cluster {
    pub(crate) id: String,
    pub(crate) api_server: String,
    pub(crate) token: SecretString,
    pub(crate) labels: BTreeMap<String, String>,
    /// The connection failure that ended a request after its retries. The cluster's remaining
    /// targets fail with it at once, so that an unreachable cluster does not take the request
    /// slots of the others for the rest of the run.
    unreachable: std::cell::RefCell<Option<SyncError>>,
}

/// A certificate in scope, with the Secrets it wants in each selected cluster.
struct Certificate {
    namespace: String,
    name: String,
    /// `namespace/name`.
    id: String,
    /// The current version; 0 for a certificate being deleted.
    version: u32,
    selector: LabelSelector,
    /// Being deleted: every cluster loses its Secrets.
    deleting: bool,
    /// The Secrets to write: the `kubernetes.io/tls` one, and the separate CA one when enabled.
    wanted: Vec<DesiredSecret>,
    /// Names of meshcert's Secrets of this certificate to remove where they exist: both names
    /// when it is being deleted or not selected, and `{name}-cacert` when it is not wanted.
    unwanted: Vec<String>,
    /// The clusters (ids, or `*`) where a same-named Secret that meshcert does not manage is
    /// adopted instead of reported as a conflict. Only an import sets it.
    adopt: Vec<String>,
    /// The reason its current version cannot be read, such as a private key sealed with a key
    /// that neither `encryption_key` nor `encryption_key_previous` is. Each of its targets then fails
    /// with this error, and the other certificates sync.
    unreadable: Option<SyncError>,
}

impl Certificate {
    fn adopts_in(&self, cluster: &str) -> bool {
        self.adopt.iter().any(|adopted| adopted == "*" || adopted == cluster)
    }
}

/// The reason for a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    /// The selector matches the cluster: write the wanted Secrets.
    Apply,
    /// The certificate is being deleted.
    Delete,
    /// The selector no longer matches the cluster, and meshcert's Secret is still there.
    Unselect,
}

/// The live Secrets meshcert manages in one namespace of one cluster, by name, or why the LIST
/// failed.
type Listing = Result<HashMap<String, LiveSecret>, SyncError>;

struct Outcome {
    certificate: Arc<Certificate>,
    cluster: String,
    kind: TargetKind,
    /// The action taken, or with `dry_run` planned.
    action: Option<PlannedAction>,
    /// The resourceVersion of the Secret after the write, or the failure.
    result: Result<Option<String>, SyncError>,
    /// The maximum attempts any request of this target took, its namespace's LIST included.
    attempts: u32,
    /// Requests sent for this target.
    requests: usize,
}

/// Applies the certificates in `request.scope` to the clusters in scope and records each outcome
/// in `sync/{namespace}/{name}`.
///
/// Guarantees: one cluster's failure never stops the others, and neither does a certificate whose
/// private key cannot be decrypted. Every target in scope gets a recorded state. A Secret that
/// meshcert does not manage is never written or deleted. Two runs at once (two replicas) merge
/// their clusters' states into the sync record.
///
/// # Errors
///
/// A store failure, or a missing or invalid `encryption_key`. Cluster failures are not errors:
/// they are recorded and reported per target.
pub async fn run(request: SyncRequest) -> anyhow::Result<SyncReport> {
    let started = Instant::now();
    let store = Store::open()?;

    let (certificate_filter, cluster_filter) = match &request.scope {
        Some(SyncScope::Certificate(id)) => (Some(id.as_str()), None),
        Some(SyncScope::Cluster(id)) => (None, Some(id.as_str())),
        None => (None, None),
    };
    let clusters = load_clusters(&store, cluster_filter)?;
    let adopt = if certificate_filter.is_some() { request.adopt.clone() } else { Vec::new() };
    let certificates = load_certificates(&store, certificate_filter, adopt)?;

    // Every cluster at once; within a cluster, one LIST per namespace and then every target.
    // The client's limit caps the requests in flight across all of them.
    let client = Client::new(concurrency());
    let mode = Mode { dry_run: request.dry_run, purge: request.purge };
    let runs = clusters.iter().map(|cluster| sync_cluster(&client, cluster, &certificates, mode));
    let (outcomes, list_requests): (Vec<Vec<Outcome>>, Vec<usize>) = futures::future::join_all(runs).await.into_iter().unzip();
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();

    if request.dry_run {
        let mut report = plan_report(outcomes, started);
        report.requests += list_requests.iter().sum::<usize>();
        crate::log_summary(&report);
        return Ok(report);
    }
    let mut report = record(&store, &clusters, outcomes, request.purge, started)?;
    report.requests += list_requests.iter().sum::<usize>();
    // Only a run over every cluster can confirm that no cluster still stores the Secret.
    if cluster_filter.is_none() {
        for certificate in certificates.iter().filter(|certificate| certificate.deleting) {
            finish_delete(&store, certificate, &mut report)?;
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    crate::log_summary(&report);
    Ok(report)
}

/// Loads every cluster, or the one `filter` names. One cluster is read by its key, since listing
/// the keys reads every key of the store.
pub(crate) fn load_clusters(store: &Store, filter: Option<&str>) -> anyhow::Result<Vec<Cluster>> {
    let cipher = cipher()?;
    let keys = match filter {
        Some(id) => vec![records::cluster_key(id)],
        None => meshcert_spin::clusters::ids(store)?.iter().map(|id| records::cluster_key(id)).collect(),
    };
    let mut clusters = Vec::new();
    for key in keys {
        let Some(record) = store.get::<ClusterRecord>(&key)? else {
            continue;
        };
        let token = cipher.open(&record.token, &key).with_context(|| format!("failed to decrypt the token of cluster {:?}", record.id))?;
        clusters.push(Cluster { id: record.id, api_server: record.api_server, token, labels: record.labels, unreachable: Default::default() });
    }
    Ok(clusters)
}

/// Loads every certificate, or the one `filter` names (`namespace/name`), read by its key.
fn load_certificates(store: &Store, filter: Option<&str>, adopt: Vec<String>) -> anyhow::Result<Vec<Arc<Certificate>>> {
    let cipher = cipher()?;
    let keys = match filter {
        Some(id) => id.split_once('/').map(|(namespace, name)| records::certificate_key(namespace, name)).into_iter().collect(),
        None => store.keys("cert/")?,
    };
    let mut certificates = Vec::new();
    for key in keys {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        let id = format!("{namespace}/{name}");
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        // The api validated the selector on upload, so a stored one parses.
        let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default())
            .map_err(|error| anyhow::anyhow!("certificate {id} has an invalid cluster selector: {error}"))?;
        let both_names = vec![name.clone(), kube::ca_secret_name(&name)];
        if head.state == CertificateState::Deleting {
            certificates.push(Arc::new(Certificate {
                namespace,
                name,
                id,
                version: 0,
                selector,
                deleting: true,
                wanted: Vec::new(),
                unwanted: both_names,
                adopt: Vec::new(),
                unreadable: None,
            }));
            continue;
        }

        let version_key = records::version_key(&namespace, &name, head.version);
        let version: CertificateVersion = store
            .get(&version_key)?
            .with_context(|| format!("certificate {id} points to version {} but {version_key:?} is missing", head.version))?;
        let private_key = match cipher.open(&version.private_key, &version_key) {
            Ok(private_key) => private_key,
            Err(error) => {
                let message = format!(
                    "the private key of version {} of {id} cannot be decrypted ({error}); a replica with another encryption_key wrote it: give every replica the same encryption_key, then rotate this certificate",
                    head.version
                );
                tracing::error!(certificate = %id, version = head.version, error = %error, "certificate skipped: its private key cannot be decrypted");
                let unreadable = Some(SyncError { kind: "unreadable_record".into(), message, status: None });
                // Its Secrets can still be removed where the selector no longer matches.
                let unwanted = vec![name.clone(), kube::ca_secret_name(&name)];
                certificates.push(Arc::new(Certificate { id, version: head.version, selector, deleting: false, wanted: Vec::new(), unwanted, namespace, name, adopt: Vec::new(), unreadable }));
                continue;
            }
        };
        let content = TlsSecret {
            namespace: &namespace,
            name: &name,
            chain_pem: &version.chain_pem,
            private_key_pem: &private_key,
            ca_pem: version.ca_pem.as_deref().filter(|_| version.mtls),
            version: version.version,
        };
        let mut wanted = vec![content.tls_secret_in(head.secret_format.as_ref())];
        let mut unwanted = Vec::new();
        match content.ca_secret().filter(|_| head.separate_ca_secret) {
            Some(ca_secret) => wanted.push(ca_secret),
            None => unwanted.push(kube::ca_secret_name(&name)),
        }
        let adopt = adopt.clone();
        certificates.push(Arc::new(Certificate { id, version: version.version, selector, deleting: false, wanted, unwanted, namespace, name, adopt, unreadable: None }));
    }
    Ok(certificates)
}

/// Sends `GET /version` to cluster `id` once, with its stored token.
///
/// # Errors
///
/// A store failure, a missing cluster, or a token that cannot be decrypted.
pub async fn probe(id: &str) -> anyhow::Result<ProbeReport> {
    let store = Store::open()?;
    let cluster = load_clusters(&store, Some(id))?.pop().with_context(|| format!("cluster {id:?} does not exist"))?;
    let started = Instant::now();

    let result = match kube::version_request(&cluster.api_server, &cluster.token) {
        Ok(request) => Client::new(1).send_once(&request).await,
        Err(error) => Err(error.into_sync_error()),
    };

    let duration_ms = started.elapsed().as_millis() as u64;
    let report = match result {
        Ok(response) if *response.status() == 200 => {
            let server_version = serde_json::from_slice::<serde_json::Value>(response.body())
                .ok()
                .and_then(|version| version["gitVersion"].as_str().map(str::to_string));
            ProbeReport { reachable: true, status: Some(200), server_version, error: None, duration_ms }
        }
        Ok(response) => {
            let error = kube::status_error(*response.status(), response.body());
            ProbeReport { reachable: false, status: Some(*response.status()), server_version: None, error: Some(error), duration_ms }
        }
        Err(error) => ProbeReport { reachable: false, status: None, server_version: None, error: Some(error), duration_ms },
    };
    tracing::info!(cluster = %id, reachable = report.reachable, status = ?report.status, duration_ms, "cluster probed");
    Ok(report)
}

/// The treatment of targets in a run.
#[derive(Clone, Copy)]
struct Mode {
    /// Plan only.
    dry_run: bool,
    /// Remove meshcert's Secrets from the clusters in scope instead of applying.
    purge: bool,
}

/// Syncs every certificate to one cluster: one LIST per namespace, then each target. A sync of one
/// certificate reads its Secrets by name instead.
async fn sync_cluster(client: &Client, cluster: &Cluster, certificates: &[Arc<Certificate>], mode: Mode) -> (Vec<Outcome>, usize) {
    let dry_run = mode.dry_run;
    let (listings, list_requests): (HashMap<&str, (Listing, u32)>, usize) = match certificates {
        [certificate] => {
            let (listing, attempts, requests) = read_secrets(client, cluster, certificate).await;
            (HashMap::from([(certificate.namespace.as_str(), (listing, attempts))]), requests)
        }
        _ => {
            let namespaces: BTreeSet<&str> = certificates.iter().map(|certificate| certificate.namespace.as_str()).collect();
            let lists = namespaces.into_iter().map(|namespace| async move { (namespace, list_secrets(client, cluster, namespace).await) });
            let listings: HashMap<&str, (Listing, u32)> = futures::future::join_all(lists).await.into_iter().collect();
            let requests = listings.values().map(|(_, attempts)| *attempts as usize).sum();
            (listings, requests)
        }
    };

    let targets = certificates.iter().filter_map(|certificate| {
        let (listing, list_attempts) = &listings[certificate.namespace.as_str()];
        let kind = if certificate.deleting {
            TargetKind::Delete
        } else if !mode.purge && certificate.selector.matches(&cluster.labels) {
            TargetKind::Apply
        } else {
            // Not selected, or purged: a target only when meshcert's Secret is there, left from
            // before the selector changed. A purge must not pass over a cluster it cannot read.
            let live = match listing {
                Ok(live) => live,
                // Only a certificate that goes to this cluster can have a Secret there.
                Err(_) if mode.purge && certificate.selector.matches(&cluster.labels) => {
                    return Some(sync_target(client, cluster, certificate.clone(), TargetKind::Unselect, listing, *list_attempts, dry_run));
                }
                Err(_) => return None,
            };
            let present = certificate.unwanted.iter().chain(certificate.wanted.iter().map(|secret| &secret.name)).any(|name| {
                live.get(name).is_some_and(|secret| secret.managed_for(&certificate.id))
            });
            if !present {
                return None;
            }
            TargetKind::Unselect
        };
        Some(sync_target(client, cluster, certificate.clone(), kind, listing, *list_attempts, dry_run))
    });
    let outcomes = futures::future::join_all(targets).await;

    for outcome in &outcomes {
        match &outcome.result {
            Ok(_) => tracing::debug!(certificate = %outcome.certificate.id, cluster = %cluster.id, action = ?outcome.action, dry_run, "Secret checked"),
            Err(error) => tracing::warn!(
                certificate = %outcome.certificate.id,
                cluster = %cluster.id,
                kind = %error.kind,
                attempts = outcome.attempts,
                error = %error.message,
                "Secret sync failed"
            ),
        }
    }
    (outcomes, list_requests)
}

/// Reads the Secrets meshcert manages in `namespace` with one LIST. A namespace that does not
/// exist lists empty, as the API server responds.
async fn list_secrets(client: &Client, cluster: &Cluster, namespace: &str) -> (Listing, u32) {
    let request = match kube::list_secrets_request(&cluster.api_server, &cluster.token, namespace) {
        Ok(request) => request,
        Err(error) => return (Err(error.into_sync_error()), 0),
    };
    let Sent { result, attempts } = client.send(&request).await;
    let listing = result.and_then(|response| {
        let status = *response.status();
        if status != 200 {
            return Err(kube::status_error(status, response.body()));
        }
        let items = LiveSecret::parse_list(response.body()).ok_or_else(|| SyncError {
            kind: "unexpected_response".into(),
            message: format!("the API server responded to the LIST of Secrets in namespace {namespace:?} with a body that is not a SecretList"),
            status: Some(status),
        })?;
        Ok(items.into_iter().map(|secret| (secret.name.clone(), secret)).collect())
    });
    (listing, attempts)
}

/// Reads the Secrets of one certificate by name, its own and `{name}-cacert`, where a LIST would
/// read every Secret of meshcert in the namespace: a rotation's sync then costs the same in a
/// fleet of any size. As in the LIST by meshcert's label, a Secret that meshcert does not manage
/// is left out. The reads go one after the other, and the first failure ends them. Returns the
/// listing, the most attempts of one read, and the requests sent.
async fn read_secrets(client: &Client, cluster: &Cluster, certificate: &Certificate) -> (Listing, u32, usize) {
    let names: BTreeSet<&String> = certificate.wanted.iter().map(|secret| &secret.name).chain(&certificate.unwanted).collect();
    let (mut live, mut most_attempts, mut requests) = (HashMap::new(), 0, 0);
    for name in names {
        let request = match kube::get_secret_request(&cluster.api_server, &cluster.token, &certificate.namespace, name) {
            Ok(request) => request,
            Err(error) => return (Err(error.into_sync_error()), most_attempts, requests),
        };
        let Sent { result, attempts } = client.send(&request).await;
        most_attempts = most_attempts.max(attempts);
        requests += attempts as usize;

        let read = result.and_then(|response| match *response.status() {
            200 => LiveSecret::parse(response.body()).map(Some).ok_or_else(|| unexpected(200)),
            // No such Secret, or no such namespace, which a LIST reads as empty too.
            404 => Ok(None),
            status => Err(kube::status_error(status, response.body())),
        });
        match read {
            Ok(Some(secret)) if secret.managed => {
                live.insert(secret.name.clone(), secret);
            }
            Ok(_) => {}
            Err(error) => return (Err(error), most_attempts, requests),
        }
    }
    (Ok(live), most_attempts, requests)
}

/// How often a write that found its Secret changed since the read reads it and plans again. Two
/// syncs at once change a Secret at most once each, so a third change means that someone else
/// keeps writing it. The target then fails with the conflict, and the next sync retries.
const STALE_READ_ATTEMPTS: u32 = 3;

/// The requests of one target, counted as they are sent.
struct Target<'a> {
    client: &'a Client,
    cluster: &'a Cluster,
    certificate: &'a Certificate,
    attempts: u32,
    requests: usize,
    /// Whether a write took over a Secret that meshcert did not manage.
    adopted: bool,
}

impl Target<'_> {
    async fn send(&mut self, request: Result<http::Request<Vec<u8>>, kube::RequestError>) -> Result<spin_sdk::http::Response, SyncError> {
        let request = request.map_err(kube::RequestError::into_sync_error)?;
        if let Some(error) = self.cluster.unreachable.borrow().clone() {
            return Err(error);
        }

        let Sent { result, attempts } = self.client.send(&request).await;
        self.attempts = self.attempts.max(attempts);
        self.requests += attempts as usize;
        if let Err(error) = &result {
            if matches!(error.kind.as_str(), "timeout" | "connection_refused" | "connection_failed" | "tls_failed") {
                self.cluster.unreachable.borrow_mut().get_or_insert_with(|| error.clone());
            }
        }
        result
    }

    /// Reads the Secret `name`; `None` when there is none.
    async fn read(&mut self, name: &str) -> Result<Option<LiveSecret>, SyncError> {
        let request = kube::get_secret_request(&self.cluster.api_server, &self.cluster.token, &self.certificate.namespace, name);
        let response = self.send(request).await?;
        match *response.status() {
            200 => LiveSecret::parse(response.body()).map(Some).ok_or_else(|| unexpected(200)),
            404 => Ok(None),
            status => Err(kube::status_error(status, response.body())),
        }
    }

    /// Plans the write of `desired` over `live`, the Secret as it was read. A newer version there
    /// stays only when the certificate's head moved past this sync's version: then a sync that
    /// read the newer head wrote it. Otherwise it is a leftover of a deleted certificate of the
    /// same name, and is written over.
    fn plan(&self, live: Option<&LiveSecret>, desired: &DesiredSecret) -> PlannedAction {
        match kube::plan_apply(live, desired) {
            PlannedAction::Superseded if !self.head_moved_past(desired.version) => PlannedAction::Update,
            action => action,
        }
    }

    /// Reads whether the stored head of this certificate is past `version`. A failed read counts
    /// as not, so the sync writes the version it has, as it did before heads moved under it.
    fn head_moved_past(&self, version: u32) -> bool {
        let key = records::certificate_key(&self.certificate.namespace, &self.certificate.name);
        match Store::open().and_then(|store| store.get::<CertificateHead>(&key)) {
            Ok(head) => head.is_some_and(|head| head.version > version),
            Err(error) => {
                tracing::warn!(certificate = %self.certificate.id, error = format!("{error:#}"), "head not read again; writing this sync's version");
                false
            }
        }
    }

    /// Writes `desired` as `action` planned from `live`, and returns the action taken and the new
    /// resourceVersion. When the Secret changed after it was read (409 on the resourceVersion
    /// precondition, such as a write by a sync on another replica), it is read and planned again,
    /// up to [`STALE_READ_ATTEMPTS`] times.
    async fn write(&mut self, desired: &DesiredSecret, live: Option<&LiveSecret>, action: PlannedAction) -> Result<(PlannedAction, Option<String>), SyncError> {
        let (mut live, mut action) = (live.cloned(), action);
        for _ in 1..STALE_READ_ATTEMPTS {
            match self.write_as_planned(desired, live.as_ref(), action).await {
                Err(error) if error.kind == "conflict" && error.status == Some(409) => {
                    live = self.read(&desired.name).await?;
                    action = self.plan(live.as_ref(), desired);
                    tracing::info!(certificate = %self.certificate.id, cluster = %self.cluster.id, secret = %desired.name, action = ?action, "Secret changed since it was read; planned again");
                }
                written => return written.map(|resource_version| (action, resource_version)),
            }
        }
        self.write_as_planned(desired, live.as_ref(), action).await.map(|resource_version| (action, resource_version))
    }

    /// Sends the write of `desired` as `action` planned from `live`, and returns the new
    /// resourceVersion.
    async fn write_as_planned(&mut self, desired: &DesiredSecret, live: Option<&LiveSecret>, action: PlannedAction) -> Result<Option<String>, SyncError> {
        let (api_server, token) = (&self.cluster.api_server, &self.cluster.token);
        match (action, live) {
            (PlannedAction::Unchanged | PlannedAction::Superseded, _) => Ok(live.and_then(|live| live.resource_version.clone())),
            (PlannedAction::Conflict, _) => Err(self.unmanaged(desired)),
            (PlannedAction::Recreate, Some(live)) => {
                // `type` cannot change in place: delete the old Secret, if it is still the one
                // that was read, then create the new one.
                self.delete(&desired.name, live).await?;
                self.create(desired).await
            }
            (PlannedAction::Update | PlannedAction::Drifted, Some(live)) => {
                let stale = live.stale_keys(desired);
                let request = if stale.is_empty() {
                    kube::apply_secret_request(api_server, token, desired, live.resource_version.as_deref())
                } else {
                    let resource_version = live.resource_version.as_deref().unwrap_or_default();
                    kube::replace_data_request(api_server, token, desired, &stale, resource_version)
                };
                let response = self.send(request).await?;
                written(&response)
            }
            _ => self.create(desired).await,
        }
    }

    /// Creates `desired`. A Secret of that name that appeared after the LIST is read: one that
    /// meshcert does not manage is a conflict, and one that it manages is written over.
    async fn create(&mut self, desired: &DesiredSecret) -> Result<Option<String>, SyncError> {
        let request = kube::create_secret_request(&self.cluster.api_server, &self.cluster.token, desired);
        let response = self.send(request).await?;
        if !kube::is_already_exists(*response.status(), response.body()) {
            return written(&response);
        }

        let Some(live) = self.read(&desired.name).await? else {
            // Deleted again in between: the next sync creates it.
            return Err(kube::status_error(404, b""));
        };
        match self.plan(Some(&live), desired) {
            PlannedAction::Conflict if self.certificate.adopts_in(&self.cluster.id) => self.adopt(desired, &live).await,
            PlannedAction::Conflict => Err(self.unmanaged(desired)),
            PlannedAction::Unchanged | PlannedAction::Superseded => Ok(live.resource_version),
            PlannedAction::Recreate => {
                self.delete(&desired.name, &live).await?;
                let request = kube::create_secret_request(&self.cluster.api_server, &self.cluster.token, desired);
                let response = self.send(request).await?;
                written(&response)
            }
            _ => {
                let stale = live.stale_keys(desired);
                let resource_version = live.resource_version.as_deref().unwrap_or_default();
                let request = kube::replace_data_request(&self.cluster.api_server, &self.cluster.token, desired, &stale, resource_version);
                let response = self.send(request).await?;
                written(&response)
            }
        }
    }

    /// Takes over `live`, a Secret that meshcert does not manage, for an import: a merge patch at
    /// the resourceVersion that was read adds meshcert's label and annotations and writes the
    /// certificate's entries. A Secret of another `type` is deleted at that resourceVersion and
    /// created again, since `type` cannot change in place.
    async fn adopt(&mut self, desired: &DesiredSecret, live: &LiveSecret) -> Result<Option<String>, SyncError> {
        self.adopted = true;
        let resource_version = live.resource_version.as_deref().unwrap_or_default();
        if live.secret_type.as_deref() != Some(desired.secret_type.as_str()) {
            self.delete(&desired.name, live).await?;
            let request = kube::create_secret_request(&self.cluster.api_server, &self.cluster.token, desired);
            let response = self.send(request).await?;
            return written(&response);
        }
        let stale = live.stale_keys(desired);
        let request = kube::replace_data_request(&self.cluster.api_server, &self.cluster.token, desired, &stale, resource_version);
        let response = self.send(request).await?;
        written(&response)
    }

    /// Deletes the Secret `name` at the resourceVersion it was read with: a Secret replaced in
    /// between by someone else is kept (409). One already gone counts as deleted.
    async fn delete(&mut self, name: &str, live: &LiveSecret) -> Result<(), SyncError> {
        let resource_version = live.resource_version.as_deref().unwrap_or_default();
        let request = kube::delete_secret_request(&self.cluster.api_server, &self.cluster.token, &self.certificate.namespace, name, resource_version);
        let response = self.send(request).await?;
        match *response.status() {
            200..=299 | 404 => Ok(()),
            status => Err(kube::status_error(status, response.body())),
        }
    }

    fn unmanaged(&self, desired: &DesiredSecret) -> SyncError {
        SyncError {
            kind: UNMANAGED_SECRET.into(),
            message: format!(
                "Secret {}/{} exists in cluster {} and meshcert does not manage it (no label {}={}), so it was left unchanged: to let meshcert replace it, add that label to it or delete it there, then resync; to keep its content instead, delete this certificate and adopt the Secret with POST /api/v1/imports",
                desired.namespace,
                desired.name,
                self.cluster.id,
                kube::MANAGED_BY_LABEL,
                kube::MANAGED_BY_VALUE
            ),
            status: None,
        }
    }
}

/// Plans and, unless `dry_run`, takes the actions of one target against the listed Secrets.
async fn sync_target(client: &Client, cluster: &Cluster, certificate: Arc<Certificate>, kind: TargetKind, listing: &Listing, list_attempts: u32, dry_run: bool) -> Outcome {
    let mut target = Target { client, cluster, certificate: &certificate, attempts: list_attempts, requests: 0, adopted: false };
    let result = match (listing, &certificate.unreadable) {
        // Nothing of it can be written; a removal needs no content, so it goes on.
        (_, Some(error)) if kind == TargetKind::Apply => Err((None, error.clone())),
        (Ok(live), _) => take_actions(&mut target, kind, live, dry_run).await,
        (Err(error), _) => Err((None, error.clone())),
    };
    let (action, result) = match result {
        Ok((action, resource_version)) => (Some(action), Ok(resource_version)),
        Err((action, error)) => (action, Err(error)),
    };
    let (attempts, requests) = (target.attempts.max(1), target.requests);
    Outcome { cluster: cluster.id.clone(), kind, action, result, attempts, requests, certificate }
}

type TargetResult = Result<(PlannedAction, Option<String>), (Option<PlannedAction>, SyncError)>;

/// Writes the wanted Secrets, then removes the unwanted ones. Returns the action that describes
/// the target ([`combine`]) and the resourceVersion of its `kubernetes.io/tls` Secret.
async fn take_actions(target: &mut Target<'_>, kind: TargetKind, live: &HashMap<String, LiveSecret>, dry_run: bool) -> TargetResult {
    let certificate = target.certificate;
    let mut actions = Vec::new();
    let mut resource_version = None;

    let (wanted, unwanted): (&[DesiredSecret], Vec<&String>) = match kind {
        TargetKind::Apply => (&certificate.wanted, certificate.unwanted.iter().collect()),
        TargetKind::Delete | TargetKind::Unselect => (&[], certificate.unwanted.iter().chain(certificate.wanted.iter().map(|secret| &secret.name)).collect()),
    };
    for desired in wanted {
        let current = live.get(&desired.name);
        let mut action = target.plan(current, desired);
        if dry_run && action == PlannedAction::Create {
            // The LIST shows only meshcert's Secrets. A plan must also show a Secret of that name
            // that belongs to someone else, because the create would find it.
            if let Some(found) = target.read(&desired.name).await.map_err(|error| (None, error))? {
                action = match target.plan(Some(&found), desired) {
                    PlannedAction::Conflict if certificate.adopts_in(&target.cluster.id) => PlannedAction::Adopt,
                    action => action,
                };
            }
        }
        actions.push(action);
        if action == PlannedAction::Conflict {
            return Err((Some(PlannedAction::Conflict), target.unmanaged(desired)));
        }
        if dry_run {
            continue;
        }
        let (taken, written) = target.write(desired, current, action).await.map_err(|error| {
            // A create that found a foreign Secret ends as a conflict, whatever was planned.
            let action = if error.kind == UNMANAGED_SECRET { PlannedAction::Conflict } else { combine(&actions) };
            (Some(action), error)
        })?;
        *actions.last_mut().expect("pushed above") = taken;
        if std::mem::take(&mut target.adopted) {
            *actions.last_mut().expect("pushed above") = PlannedAction::Adopt;
        }
        if desired.name == certificate.name {
            resource_version = written;
        }
    }
    for name in unwanted {
        let current = live.get(name);
        let action = kube::plan_removal(current, &certificate.id);
        actions.push(action);
        if let (PlannedAction::Delete, Some(current), false) = (action, current, dry_run) {
            target.delete(name, current).await.map_err(|error| (Some(combine(&actions)), error))?;
        }
    }

    Ok((combine(&actions), resource_version))
}

/// Combines the actions on a target's Secrets into one: a write or removal when any Secret got
/// one, `unchanged` or `absent` when none did. Removing a stale `{name}-cacert` while the
/// certificate is applied counts as an update.
fn combine(actions: &[PlannedAction]) -> PlannedAction {
    let writes = [PlannedAction::Adopt, PlannedAction::Recreate, PlannedAction::Create, PlannedAction::Update, PlannedAction::Drifted];
    if let Some(action) = writes.into_iter().find(|action| actions.contains(action)) {
        return action;
    }
    if actions.contains(&PlannedAction::Superseded) {
        return PlannedAction::Superseded;
    }
    let applies = actions.iter().any(|action| matches!(action, PlannedAction::Unchanged));
    match (applies, actions.contains(&PlannedAction::Delete)) {
        (true, true) => PlannedAction::Update,
        (true, false) => PlannedAction::Unchanged,
        (false, true) => PlannedAction::Delete,
        (false, false) => PlannedAction::Absent,
    }
}

/// Reads the resourceVersion from a write's response, or its failure.
fn written(response: &spin_sdk::http::Response) -> Result<Option<String>, SyncError> {
    match kube::read_apply_response(*response.status(), response.body()) {
        ApplyOutcome::Applied { resource_version } => Ok(resource_version),
        ApplyOutcome::Failed(error) => Err(error),
    }
}

fn unexpected(status: u16) -> SyncError {
    SyncError { kind: "unexpected_response".into(), message: "the API server returned a Secret that is not valid JSON".into(), status: Some(status) }
}

/// Removes the records of a deleted certificate once no cluster stores its Secret. The head goes
/// last, after the versions and the sync record, so a failure in between leaves the head in state
/// `deleting` and the next sync finishes the job.
fn finish_delete(store: &Store, certificate: &Certificate, report: &mut SyncReport) -> anyhow::Result<()> {
    let pending = report.targets.iter().filter(|target| target.certificate == certificate.id && target.state != SyncState::Deleted).count();
    if pending > 0 {
        tracing::warn!(certificate = %certificate.id, clusters = pending, "certificate stays in state deleting");
        return Ok(());
    }

    for key in store.keys(&records::version_prefix(&certificate.namespace, &certificate.name))? {
        store.delete(&key)?;
    }
    store.delete(&records::sync_key(&certificate.namespace, &certificate.name))?;
    meshcert_spin::index::update(store, &certificate.namespace, &certificate.name, |entry| *entry = None)?;
    store.delete(&records::certificate_key(&certificate.namespace, &certificate.name))?;
    report.deleted.push(certificate.id.clone());
    tracing::info!(certificate = %certificate.id, "certificate deleted");
    Ok(())
}

/// Counts an outcome in the report's totals.
fn count(report: &mut SyncReport, outcome: &Outcome, state: SyncState) {
    report.requests += outcome.requests;
    match (state, outcome.action) {
        (SyncState::Failed | SyncState::Conflict | SyncState::Deleting, _) => report.failed += 1,
        (_, Some(PlannedAction::Unchanged | PlannedAction::Superseded)) => report.unchanged += 1,
        (_, Some(PlannedAction::Drifted)) => {
            report.drifted += 1;
            report.applied += 1;
        }
        (_, Some(PlannedAction::Delete)) => report.removed += 1,
        (_, Some(PlannedAction::Create | PlannedAction::Update | PlannedAction::Recreate | PlannedAction::Adopt)) => report.applied += 1,
        _ => {}
    }
}

/// Writes each certificate's sync record and builds the report.
fn record(store: &Store, clusters: &[Cluster], outcomes: Vec<Outcome>, purge: bool, started: Instant) -> anyhow::Result<SyncReport> {
    let now = now();
    let mut report = SyncReport::default();
    let mut by_certificate: BTreeMap<String, (Arc<Certificate>, Vec<Outcome>)> = BTreeMap::new();
    for outcome in outcomes {
        by_certificate.entry(outcome.certificate.id.clone()).or_insert_with(|| (outcome.certificate.clone(), Vec::new())).1.push(outcome);
    }

    for (id, (certificate, outcomes)) in by_certificate {
        // Only the entries of the clusters this run reached change, over the record as it is at
        // the write, so two syncs at once (two replicas) keep each other's clusters.
        let key = records::sync_key(&certificate.namespace, &certificate.name);
        let states = store.update(&key, |record: Option<SyncRecord>| {
            let mut record = record.unwrap_or_default();
            let before = record.clusters.clone();
            // A cluster this run reached that the selector no longer matches, or that was purged,
            // contains nothing of this certificate unless a removal below failed.
            for cluster in clusters.iter().filter(|cluster| !certificate.deleting && (purge || !certificate.selector.matches(&cluster.labels))) {
                record.clusters.remove(&cluster.id);
            }

            let mut states = Vec::with_capacity(outcomes.len());
            for outcome in &outcomes {
                record.clusters.remove(&outcome.cluster);
                let state = next_state(outcome, before.get(&outcome.cluster), now);
                if let Some(state) = &state {
                    record.clusters.insert(outcome.cluster.clone(), state.clone());
                }
                states.push(state);
            }
            Ok(Change::Write(record, states))
        })?;

        for (outcome, state) in outcomes.into_iter().zip(states) {
            let reported = match (&state, &outcome.result) {
                // The cluster contains a newer version than this sync expected.
                _ if outcome.action == Some(PlannedAction::Superseded) => SyncState::Synced,
                (Some(state), _) => state.state,
                (None, Ok(_)) => SyncState::Deleted,
                (None, Err(_)) => SyncState::Failed,
            };
            count(&mut report, &outcome, reported);
            report.targets.push(TargetReport {
                certificate: id.clone(),
                cluster: outcome.cluster.clone(),
                state: reported,
                version: (outcome.kind == TargetKind::Apply).then_some(certificate.version),
                attempts: outcome.attempts,
                action: outcome.action,
                error: outcome.result.as_ref().err().cloned(),
            });
        }
    }

    report.targets.sort_by(|a, b| (&a.certificate, &a.cluster).cmp(&(&b.certificate, &b.cluster)));
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Computes the recorded state of a target after this run. `None` means the cluster leaves the sync
/// record, because it no longer stores anything of the certificate.
fn next_state(outcome: &Outcome, previous: Option<&ClusterSyncState>, now: chrono::DateTime<chrono::Utc>) -> Option<ClusterSyncState> {
    match (&outcome.result, outcome.kind) {
        // The sync that wrote the newer version records it, so its entry stays. Until it does, the
        // entry is what the cluster last confirmed.
        (Ok(_), TargetKind::Apply) if outcome.action == Some(PlannedAction::Superseded) => previous.cloned(),
        (Ok(resource_version), TargetKind::Apply) => Some(ClusterSyncState {
            state: SyncState::Synced,
            version: Some(outcome.certificate.version),
            fingerprint: outcome.certificate.wanted.first().map(|secret| secret.fingerprint.clone()),
            resource_version: resource_version.clone(),
            attempts: outcome.attempts,
            last_error: None,
            updated_at: now,
            synced_at: Some(now),
        }),
        (Ok(_), TargetKind::Delete | TargetKind::Unselect) => None,
        // A failed removal from a cluster that had no record of the certificate records nothing.
        (Err(_), TargetKind::Unselect) if previous.is_none() => None,
        (Err(error), kind) => Some(ClusterSyncState {
            state: match kind {
                TargetKind::Delete => SyncState::Deleting,
                _ if error.kind == UNMANAGED_SECRET => SyncState::Conflict,
                _ => SyncState::Failed,
            },
            // The cluster still stores what it last confirmed.
            version: previous.and_then(|previous| previous.version),
            fingerprint: previous.and_then(|previous| previous.fingerprint.clone()),
            resource_version: previous.and_then(|previous| previous.resource_version.clone()),
            attempts: outcome.attempts,
            last_error: Some(error.clone()),
            updated_at: now,
            synced_at: previous.and_then(|previous| previous.synced_at),
        }),
    }
}

/// Builds the report of a dry run: each target with the action it would get and the state that
/// would follow. Nothing is recorded.
fn plan_report(outcomes: Vec<Outcome>, started: Instant) -> SyncReport {
    let mut report = SyncReport { dry_run: true, ..SyncReport::default() };
    for outcome in outcomes {
        let state = match (&outcome.result, outcome.action, outcome.kind) {
            (Err(error), _, _) if error.kind == UNMANAGED_SECRET => SyncState::Conflict,
            (Err(_), _, _) => SyncState::Failed,
            (Ok(_), _, TargetKind::Delete | TargetKind::Unselect) => SyncState::Deleted,
            (Ok(_), _, TargetKind::Apply) => SyncState::Synced,
        };
        count(&mut report, &outcome, state);
        report.targets.push(TargetReport {
            certificate: outcome.certificate.id.clone(),
            cluster: outcome.cluster,
            state,
            version: (outcome.kind == TargetKind::Apply).then_some(outcome.certificate.version),
            attempts: outcome.attempts,
            action: outcome.action,
            error: outcome.result.err(),
        });
    }
    report.targets.sort_by(|a, b| (&a.certificate, &a.cluster).cmp(&(&b.certificate, &b.cluster)));
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// `sync_concurrency`, or 16 with an error in the log when it is invalid.
pub(crate) fn concurrency() -> usize {
    let value = variable("sync_concurrency").unwrap_or_default();
    match value.trim().parse::<usize>() {
        Ok(limit) if (1..=1024).contains(&limit) => limit,
        _ => {
            tracing::error!(value = %value, fallback = DEFAULT_CONCURRENCY, "sync_concurrency is not a whole number from 1 to 1024");
            DEFAULT_CONCURRENCY
        }
    }
}
