//! One sync run: load what is in scope, apply each (certificate, cluster) target concurrently,
//! record the outcomes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use meshcert_core::api::{SyncReport, SyncRequest, SyncScope, TargetReport};
use meshcert_core::kube::{self, ApplyOutcome, PlannedAction, TlsSecret};
use meshcert_core::records::{self, CertificateHead, CertificateState, CertificateVersion, ClusterRecord, ClusterSyncState, StoreKey, SyncError, SyncRecord, SyncState};
use meshcert_core::secret::SecretString;
use meshcert_core::selector::LabelSelector;
use meshcert_spin::{cipher, now, variable, with_timeout, Store};
use spin_sdk::http::{ErrorCode, Response, SendError};

/// The default of `sync_concurrency`.
const DEFAULT_CONCURRENCY: usize = 16;

/// The time limit of one request to an API server. A cluster that accepts connections and never
/// responds then cannot hold up the sync, or the api request that started it, for long.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A cluster with its token decrypted for this run.
struct Cluster {
    id: String,
    api_server: String,
    token: SecretString,
    labels: std::collections::BTreeMap<String, String>,
}

/// The current version of a certificate, with its key decrypted for this run.
struct Certificate {
    namespace: String,
    name: String,
    version: u32,
    chain_pem: String,
    private_key: SecretString,
    ca_pem: Option<String>,
    selector: LabelSelector,
}

/// A certificate in state `deleting`, whose Secrets are being removed.
struct Doomed {
    namespace: String,
    name: String,
}

struct Outcome {
    /// Whether the target was a delete.
    delete: bool,
    namespace: String,
    name: String,
    cluster: String,
    version: u32,
    fingerprint: String,
    /// The action taken, or with `dry_run` planned.
    action: Option<PlannedAction>,
    result: Result<Option<String>, SyncError>,
}

/// Applies the certificates in `request.scope` to the clusters in scope and records each outcome
/// in `sync/{namespace}/{name}`.
///
/// Guarantees: one cluster's failure never stops the others; every target in scope gets a
/// recorded state. Caveat: two runs for the same certificate at once can each rewrite its sync
/// record, and the later write wins.
///
/// # Errors
///
/// A store failure, or a missing or invalid `encryption_key`. Cluster failures are not errors:
/// they are recorded and reported per target.
pub async fn run(request: SyncRequest) -> anyhow::Result<SyncReport> {
    let started = Instant::now();
    let store = Store::open()?;
    let cipher = cipher()?;

    // What is in scope.
    let (certificate_filter, cluster_filter) = match &request.scope {
        Some(SyncScope::Certificate(id)) => (Some(id.clone()), None),
        Some(SyncScope::Cluster(id)) => (None, Some(id.clone())),
        None => (None, None),
    };
    let mut clusters = Vec::new();
    for key in store.keys("cluster/")? {
        let Some(record) = store.get::<ClusterRecord>(&key)? else {
            continue;
        };
        if cluster_filter.as_ref().is_some_and(|id| *id != record.id) {
            continue;
        }
        let token = cipher.open(&record.token, &key).with_context(|| format!("failed to decrypt the token of cluster {:?}", record.id))?;
        clusters.push(Arc::new(Cluster { id: record.id, api_server: record.api_server, token, labels: record.labels }));
    }
    let mut certificates = Vec::new();
    let mut deleting = Vec::new();
    for key in store.keys("cert/")? {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        if certificate_filter.as_ref().is_some_and(|id| *id != format!("{namespace}/{name}")) {
            continue;
        }
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        if head.state == CertificateState::Deleting {
            deleting.push(Arc::new(Doomed { namespace, name }));
            continue;
        }
        let version_key = records::version_key(&namespace, &name, head.version);
        let version: CertificateVersion = store
            .get(&version_key)?
            .with_context(|| format!("certificate {namespace}/{name} points to version {} but {version_key:?} is missing", head.version))?;
        let private_key = cipher.open(&version.private_key, &version_key)?;
        // The api validated the selector on upload, so a stored one parses.
        let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default())
            .map_err(|error| anyhow::anyhow!("certificate {namespace}/{name} has an invalid cluster selector: {error}"))?;
        certificates.push(Arc::new(Certificate {
            namespace,
            name,
            version: version.version,
            chain_pem: version.chain_pem,
            private_key,
            ca_pem: version.ca_pem.filter(|_| version.mtls),
            selector,
        }));
    }

    // Every target at once, at most `sync_concurrency` requests in flight. A certificate goes only
    // to the clusters its selector matches.
    let targets: Vec<(Arc<Certificate>, Arc<Cluster>)> = certificates
        .iter()
        .flat_map(|certificate| {
            clusters
                .iter()
                .filter(|cluster| certificate.selector.matches(&cluster.labels))
                .map(move |cluster| (certificate.clone(), cluster.clone()))
        })
        .collect();
    let dry_run = request.dry_run;
    let applies = targets.into_iter().map(|(certificate, cluster)| apply_target(certificate, cluster, dry_run).boxed_local());
    // A certificate being deleted leaves every cluster, not only those its selector matches now,
    // because the selector may have changed after the Secret was applied.
    let deletes = deleting
        .iter()
        .flat_map(|doomed| clusters.iter().map(move |cluster| delete_target(doomed.clone(), cluster.clone(), dry_run).boxed_local()))
        .collect::<Vec<_>>();
    let outcomes: Vec<Outcome> = futures::stream::iter(applies.chain(deletes)).buffer_unordered(concurrency()).collect().await;

    if dry_run {
        let report = plan_report(outcomes, started);
        crate::log_summary(&report);
        return Ok(report);
    }
    let mut report = record(&store, outcomes, started)?;
    // Only a run over every cluster can confirm that no cluster still stores the Secret.
    if cluster_filter.is_none() {
        for doomed in &deleting {
            finish_delete(&store, doomed, &mut report)?;
        }
    }
    crate::log_summary(&report);
    Ok(report)
}

/// Reads the live Secret, plans the action and, unless `dry_run`, takes it. A missing, outdated
/// or drifted Secret is applied, an unchanged one gets no request, and a Secret that meshcert does
/// not manage is left alone as a conflict.
async fn apply_target(certificate: Arc<Certificate>, cluster: Arc<Cluster>, dry_run: bool) -> Outcome {
    let secret = TlsSecret {
        namespace: &certificate.namespace,
        name: &certificate.name,
        chain_pem: &certificate.chain_pem,
        private_key_pem: &certificate.private_key,
        ca_pem: certificate.ca_pem.as_deref(),
        version: certificate.version,
    };
    let fingerprint = secret.fingerprint();
    let result = plan_and_apply(&certificate, &cluster, &secret, &fingerprint, dry_run).await;

    match &result {
        Ok((action, _)) => tracing::debug!(namespace = %certificate.namespace, name = %certificate.name, cluster = %cluster.id, action = ?action, dry_run, "Secret checked"),
        Err(error) => tracing::warn!(
            namespace = %certificate.namespace,
            name = %certificate.name,
            cluster = %cluster.id,
            kind = %error.kind,
            error = %error.message,
            "Secret apply failed"
        ),
    }
    Outcome {
        delete: false,
        namespace: certificate.namespace.clone(),
        name: certificate.name.clone(),
        cluster: cluster.id.clone(),
        version: certificate.version,
        fingerprint,
        action: result.as_ref().ok().map(|(action, _)| *action).or_else(|| result.as_ref().err().filter(|error| error.kind == UNMANAGED_SECRET).map(|_| PlannedAction::Conflict)),
        result: result.map(|(_, resource_version)| resource_version),
    }
}

/// The sync error kind of a same-named Secret that meshcert does not manage; recorded as the
/// state `conflict`.
const UNMANAGED_SECRET: &str = "unmanaged_secret";

async fn plan_and_apply(
    certificate: &Certificate,
    cluster: &Cluster,
    secret: &TlsSecret<'_>,
    fingerprint: &str,
    dry_run: bool,
) -> Result<(PlannedAction, Option<String>), SyncError> {
    // TODO: One GET per target doubles the requests of a sync that changes everything. A LIST per
    // (cluster, namespace) with the managed-by selector, plus a GET only for names missing from
    // it, would cost one.
    let live = read_live(cluster, &certificate.namespace, &certificate.name).await?;
    let action = kube::plan_apply(live.as_ref(), &certificate.namespace, &certificate.name, certificate.version, fingerprint);
    if dry_run {
        return Ok((action, None));
    }

    match action {
        PlannedAction::Conflict => Err(SyncError {
            kind: UNMANAGED_SECRET.into(),
            message: format!(
                "Secret {}/{} exists in cluster {} and meshcert does not manage it (no label {}={}), so it was left unchanged: delete or rename it there, or add that label to let meshcert replace it, then resync",
                certificate.namespace,
                certificate.name,
                cluster.id,
                kube::MANAGED_BY_LABEL,
                kube::MANAGED_BY_VALUE
            ),
            status: Some(200),
        }),
        PlannedAction::Unchanged => Ok((action, live.and_then(|live| live.resource_version))),
        _ => {
            let request = kube::apply_secret_request(&cluster.api_server, &cluster.token, secret)
                .map_err(|error| SyncError { kind: "invalid".into(), message: error.to_string(), status: None })?;
            send_apply(request).await.map(|resource_version| (action, resource_version))
        }
    }
}

/// Reads a Secret; `None` when the cluster has none of that name.
async fn read_live(cluster: &Cluster, namespace: &str, name: &str) -> Result<Option<kube::LiveSecret>, SyncError> {
    let request = kube::get_secret_request(&cluster.api_server, &cluster.token, namespace, name)
        .map_err(|error| SyncError { kind: "invalid".into(), message: error.to_string(), status: None })?;
    let response = send(request).await?;
    let status = *response.status();
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        return Err(kube::status_error(status, response.body()));
    }
    kube::LiveSecret::parse(response.body()).map(Some).ok_or_else(|| SyncError {
        kind: "unexpected_response".into(),
        message: "the API server returned a Secret that is not valid JSON".into(),
        status: Some(status),
    })
}

/// Removes the Secret of a deleted certificate from one cluster, but only when meshcert manages
/// it: a GET reads the live Secret, and the DELETE carries its resourceVersion as a precondition,
/// so a Secret replaced in between by someone else is kept.
async fn delete_target(doomed: Arc<Doomed>, cluster: Arc<Cluster>, dry_run: bool) -> Outcome {
    let result = delete_secret(&doomed, &cluster, dry_run).await;
    match &result {
        Ok(_) => tracing::info!(namespace = %doomed.namespace, name = %doomed.name, cluster = %cluster.id, "Secret removed"),
        Err(error) => tracing::warn!(
            namespace = %doomed.namespace,
            name = %doomed.name,
            cluster = %cluster.id,
            kind = %error.kind,
            error = %error.message,
            "Secret removal failed"
        ),
    }
    Outcome {
        delete: true,
        namespace: doomed.namespace.clone(),
        name: doomed.name.clone(),
        cluster: cluster.id.clone(),
        version: 0,
        fingerprint: String::new(),
        action: result.as_ref().ok().copied(),
        result: result.map(|_| None),
    }
}

async fn delete_secret(doomed: &Doomed, cluster: &Cluster, dry_run: bool) -> Result<PlannedAction, SyncError> {
    let Some(live) = read_live(cluster, &doomed.namespace, &doomed.name).await? else {
        return Ok(PlannedAction::Absent);
    };
    if !live.deletable_for(&doomed.namespace, &doomed.name) {
        // Not ours: it was there before meshcert, or someone replaced it. Never deleted.
        tracing::info!(namespace = %doomed.namespace, name = %doomed.name, cluster = %cluster.id, "Secret not managed by meshcert kept");
        return Ok(PlannedAction::Absent);
    }
    if dry_run {
        return Ok(PlannedAction::Delete);
    }

    let resource_version = live.resource_version.unwrap_or_default();
    let request = kube::delete_secret_request(&cluster.api_server, &cluster.token, &doomed.namespace, &doomed.name, &resource_version)
        .map_err(|error| SyncError { kind: "invalid".into(), message: error.to_string(), status: None })?;
    let response = send(request).await?;
    match *response.status() {
        200..=299 | 404 => Ok(PlannedAction::Delete),
        status => Err(kube::status_error(status, response.body())),
    }
}

/// Sends one request to an API server within [`REQUEST_TIMEOUT`].
async fn send(request: http::Request<Vec<u8>>) -> Result<Response, SyncError> {
    let url = request.uri().to_string();
    let send = spin_sdk::http::send::<_, Response>(request);
    let Some(result) = with_timeout(REQUEST_TIMEOUT, send).await else {
        return Err(SyncError {
            kind: "timeout".into(),
            message: format!("the API server did not respond within {} s ({url}): the next sync retries", REQUEST_TIMEOUT.as_secs()),
            status: None,
        });
    };
    result.map_err(|error| send_error(&url, error))
}

/// Removes the records of a deleted certificate once no cluster stores its Secret. The head goes
/// last, after the versions and the sync record, so a failure in between leaves the head in state
/// `deleting` and the next sync finishes the job.
fn finish_delete(store: &Store, doomed: &Doomed, report: &mut SyncReport) -> anyhow::Result<()> {
    let id = format!("{}/{}", doomed.namespace, doomed.name);
    let pending = report.targets.iter().filter(|target| target.certificate == id && target.state != SyncState::Deleted).count();
    if pending > 0 {
        tracing::warn!(namespace = %doomed.namespace, name = %doomed.name, clusters = pending, "certificate stays in state deleting");
        return Ok(());
    }

    for key in store.keys(&records::version_prefix(&doomed.namespace, &doomed.name))? {
        store.delete(&key)?;
    }
    store.delete(&records::sync_key(&doomed.namespace, &doomed.name))?;
    store.delete(&records::certificate_key(&doomed.namespace, &doomed.name))?;
    report.deleted.push(id);
    tracing::info!(namespace = %doomed.namespace, name = %doomed.name, "certificate deleted");
    Ok(())
}

/// Sends one server-side apply and returns the new resourceVersion from the response.
async fn send_apply(request: http::Request<Vec<u8>>) -> Result<Option<String>, SyncError> {
    let response = send(request).await?;
    match kube::read_apply_response(*response.status(), response.body()) {
        ApplyOutcome::Applied { resource_version } => Ok(resource_version),
        ApplyOutcome::Failed(error) => Err(error),
    }
}

fn send_error(url: &str, error: SendError) -> SyncError {
    // The URL has no credentials: the token travels in a header.
    let (kind, advice) = match &error {
        SendError::Http(ErrorCode::ConnectionRefused) => ("connection_refused", "the API server refused the connection: check that it runs and that api_server is right"),
        SendError::Http(ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout | ErrorCode::HttpResponseTimeout) => {
            ("timeout", "the API server did not answer in time")
        }
        SendError::Http(ErrorCode::HttpRequestDenied) => (
            "outbound_denied",
            "Spin's allowed_outbound_hosts does not include this API server: add it with the extra_cluster_hosts variable",
        ),
        SendError::Http(ErrorCode::DnsError(_) | ErrorCode::DnsTimeout | ErrorCode::DestinationNotFound) => {
            ("connection_failed", "the API server's host name does not resolve")
        }
        SendError::Http(ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) | ErrorCode::TlsProtocolError) => (
            "tls_failed",
            "TLS to the API server failed: add its CA to Spin's runtime configuration ([[client_tls]])",
        ),
        _ => ("connection_failed", "the request to the API server failed"),
    };
    SyncError { kind: kind.into(), message: format!("{advice} ({url}: {error})"), status: None }
}

/// Writes each certificate's sync record and builds the report.
fn record(store: &Store, outcomes: Vec<Outcome>, started: Instant) -> anyhow::Result<SyncReport> {
    let now = now();
    let mut report = SyncReport::default();
    let mut by_certificate: std::collections::BTreeMap<(String, String), Vec<Outcome>> = Default::default();
    for outcome in outcomes {
        by_certificate.entry((outcome.namespace.clone(), outcome.name.clone())).or_default().push(outcome);
    }

    for ((namespace, name), outcomes) in by_certificate {
        let key = records::sync_key(&namespace, &name);
        let mut record: SyncRecord = store.get(&key)?.unwrap_or_default();
        for outcome in outcomes {
            if outcome.delete {
                record_delete(&mut record, &mut report, &namespace, &name, outcome, now);
                continue;
            }
            let previous = record.clusters.get(&outcome.cluster);
            let state = match &outcome.result {
                Ok(resource_version) => ClusterSyncState {
                    state: SyncState::Synced,
                    version: Some(outcome.version),
                    fingerprint: Some(outcome.fingerprint.clone()),
                    resource_version: resource_version.clone(),
                    attempts: 1,
                    last_error: None,
                    updated_at: now,
                    synced_at: Some(now),
                },
                Err(error) => ClusterSyncState {
                    state: if error.kind == UNMANAGED_SECRET { SyncState::Conflict } else { SyncState::Failed },
                    // The cluster still stores what it last confirmed.
                    version: previous.and_then(|previous| previous.version),
                    fingerprint: previous.and_then(|previous| previous.fingerprint.clone()),
                    resource_version: previous.and_then(|previous| previous.resource_version.clone()),
                    attempts: 1,
                    last_error: Some(error.clone()),
                    updated_at: now,
                    synced_at: previous.and_then(|previous| previous.synced_at),
                },
            };
            match (&outcome.result, outcome.action) {
                (Ok(_), Some(PlannedAction::Unchanged)) => report.unchanged += 1,
                (Ok(_), Some(PlannedAction::Drifted)) => {
                    report.drifted += 1;
                    report.applied += 1;
                }
                (Ok(_), _) => report.applied += 1,
                (Err(_), _) => report.failed += 1,
            }
            report.targets.push(TargetReport {
                certificate: format!("{namespace}/{name}"),
                cluster: outcome.cluster.clone(),
                state: state.state,
                version: Some(outcome.version),
                attempts: state.attempts,
                action: outcome.action,
                error: state.last_error.clone(),
            });
            record.clusters.insert(outcome.cluster, state);
        }
        store.set(&key, &record)?;
    }

    report.targets.sort_by(|a, b| (&a.certificate, &a.cluster).cmp(&(&b.certificate, &b.cluster)));
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Builds the report of a dry run: each target with the action it would get and the state that
/// would follow. Nothing is recorded.
fn plan_report(outcomes: Vec<Outcome>, started: Instant) -> SyncReport {
    let mut report = SyncReport { dry_run: true, ..SyncReport::default() };
    for outcome in outcomes {
        let (state, error) = match (&outcome.result, outcome.action) {
            (Err(error), _) => (SyncState::Failed, Some(error.clone())),
            (Ok(_), Some(PlannedAction::Conflict)) => (SyncState::Conflict, None),
            (Ok(_), Some(PlannedAction::Delete | PlannedAction::Absent)) => (SyncState::Deleted, None),
            (Ok(_), _) => (SyncState::Synced, None),
        };
        match (state, outcome.action) {
            (SyncState::Failed, _) => report.failed += 1,
            (_, Some(PlannedAction::Unchanged)) => report.unchanged += 1,
            (_, Some(PlannedAction::Drifted)) => {
                report.drifted += 1;
                report.applied += 1;
            }
            (_, Some(PlannedAction::Delete)) => report.removed += 1,
            (_, Some(PlannedAction::Create | PlannedAction::Update)) => report.applied += 1,
            _ => {}
        }
        report.targets.push(TargetReport {
            certificate: format!("{}/{}", outcome.namespace, outcome.name),
            cluster: outcome.cluster,
            state,
            version: (!outcome.delete).then_some(outcome.version),
            attempts: 1,
            action: outcome.action,
            error,
        });
    }
    report.targets.sort_by(|a, b| (&a.certificate, &a.cluster).cmp(&(&b.certificate, &b.cluster)));
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Records the outcome of removing a Secret. A cluster that no longer stores it leaves the sync
/// record, and one that failed stays in state `deleting` with the error, for the next sync to retry.
fn record_delete(record: &mut SyncRecord, report: &mut SyncReport, namespace: &str, name: &str, outcome: Outcome, now: chrono::DateTime<chrono::Utc>) {
    let state = match outcome.result {
        Ok(_) => {
            record.clusters.remove(&outcome.cluster);
            report.removed += 1;
            SyncState::Deleted
        }
        Err(error) => {
            report.failed += 1;
            let previous = record.clusters.remove(&outcome.cluster);
            let state = ClusterSyncState {
                state: SyncState::Deleting,
                version: previous.as_ref().and_then(|previous| previous.version),
                fingerprint: previous.as_ref().and_then(|previous| previous.fingerprint.clone()),
                resource_version: previous.as_ref().and_then(|previous| previous.resource_version.clone()),
                attempts: 1,
                last_error: Some(error),
                updated_at: now,
                synced_at: previous.and_then(|previous| previous.synced_at),
            };
            record.clusters.insert(outcome.cluster.clone(), state);
            SyncState::Deleting
        }
    };
    report.targets.push(TargetReport {
        certificate: format!("{namespace}/{name}"),
        cluster: outcome.cluster.clone(),
        state,
        version: None,
        attempts: 1,
        action: outcome.action,
        error: record.clusters.get(&outcome.cluster).and_then(|state| state.last_error.clone()),
    });
}

/// `sync_concurrency`, or 16 with an error in the log when it is invalid.
fn concurrency() -> usize {
    let value = variable("sync_concurrency").unwrap_or_default();
    match value.trim().parse::<usize>() {
        Ok(limit) if (1..=1024).contains(&limit) => limit,
        _ => {
            tracing::error!(value = %value, fallback = DEFAULT_CONCURRENCY, "sync_concurrency is not a whole number from 1 to 1024");
            DEFAULT_CONCURRENCY
        }
    }
}
