//! One sync run: load what is in scope, apply each (certificate, cluster) target concurrently,
//! record the outcomes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt as _;
use meshcert_core::api::{SyncReport, SyncRequest, SyncScope, TargetReport};
use meshcert_core::kube::{self, ApplyOutcome, TlsSecret};
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

struct Outcome {
    namespace: String,
    name: String,
    cluster: String,
    version: u32,
    fingerprint: String,
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
        if head.state != CertificateState::Active {
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
    let outcomes: Vec<Outcome> = futures::stream::iter(targets.into_iter().map(|(certificate, cluster)| apply_target(certificate, cluster)))
        .buffer_unordered(concurrency())
        .collect()
        .await;

    let report = record(&store, outcomes, started)?;
    crate::log_summary(&report);
    Ok(report)
}

async fn apply_target(certificate: Arc<Certificate>, cluster: Arc<Cluster>) -> Outcome {
    let secret = TlsSecret {
        namespace: &certificate.namespace,
        name: &certificate.name,
        chain_pem: &certificate.chain_pem,
        private_key_pem: &certificate.private_key,
        ca_pem: certificate.ca_pem.as_deref(),
        version: certificate.version,
    };
    let fingerprint = secret.fingerprint();
    let result = match kube::apply_secret_request(&cluster.api_server, &cluster.token, &secret) {
        Ok(request) => send_apply(request).await,
        Err(error) => Err(SyncError { kind: "invalid".into(), message: error.to_string(), status: None }),
    };

    match &result {
        Ok(_) => tracing::debug!(namespace = %certificate.namespace, name = %certificate.name, cluster = %cluster.id, "Secret applied"),
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
        namespace: certificate.namespace.clone(),
        name: certificate.name.clone(),
        cluster: cluster.id.clone(),
        version: certificate.version,
        fingerprint,
        result,
    }
}

/// Sends one server-side apply and returns the new resourceVersion from the response.
async fn send_apply(request: http::Request<Vec<u8>>) -> Result<Option<String>, SyncError> {
    let url = request.uri().to_string();
    let send = spin_sdk::http::send::<_, Response>(request);
    let Some(result) = with_timeout(REQUEST_TIMEOUT, send).await else {
        return Err(SyncError {
            kind: "timeout".into(),
            message: format!("the API server did not respond within {} s ({url}): the next sync retries", REQUEST_TIMEOUT.as_secs()),
            status: None,
        });
    };
    let response = result.map_err(|error| send_error(&url, error))?;
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
                    state: SyncState::Failed,
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
            match &outcome.result {
                Ok(_) => report.applied += 1,
                Err(_) => report.failed += 1,
            }
            report.targets.push(TargetReport {
                certificate: format!("{namespace}/{name}"),
                cluster: outcome.cluster.clone(),
                state: state.state,
                version: Some(outcome.version),
                attempts: state.attempts,
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
