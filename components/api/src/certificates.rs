//! `/api/v1/certificates`: create, list, show, replace (rotate), roll back and delete
//! certificates.
//!
//! Write order: a new version record is written before the head that points to it. Versions the
//! head no longer lists are deleted after the head, so a failure between two writes leaves the
//! previous version served complete. A delete marks the head `deleting`, and sync-webhook removes
//! the Secrets and then the records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use meshcert_core::alerts::{self, AlertKind, AlertRecord};
use meshcert_core::api::{
    self, CertificateDetails, CertificateListItem, CreateCertificateRequest, ReplaceCertificateRequest, RollbackRequest, SyncScope,
};
use meshcert_core::expiry;
use meshcert_core::gateway;
use meshcert_core::expiry_index::{AlertSnapshot, IndexEntry};
use meshcert_core::kube;
use meshcert_core::names;
use meshcert_core::records::{self, CertificateHead, CertificateState, CertificateVersion, ClusterRecord, ClusterSyncState, StoreKey, SyncRecord, SyncState, VersionEntry};
use meshcert_core::secret::SecretString;
use meshcert_core::selector::LabelSelector;
use meshcert_core::validate::{self, UploadInput, UploadSummary, ValidatedUpload, Warning};
use meshcert_spin::{cipher, error_response, json_response, now, variable, Change, Store};
use spin_sdk::http::{Request, Response};

use crate::auth::Role;
use crate::internal_error;
use crate::json::{parse_body, query_parameter, reject_unknown_parameters};

/// `POST /api/v1/certificates`: validates an upload, stores version 1 and its head, applies the
/// alert rule, and syncs it to every cluster. A rejected upload writes nothing.
pub async fn create(request: &Request, role: Role) -> Response {
    let body: CreateCertificateRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Err(response) = check_names(&body.namespace, &body.name) {
        return response;
    }
    if let Err(response) = check_selector(body.clusters.as_deref()) {
        return response;
    }
    let delivery = Delivery { clusters: body.clusters.clone(), separate_ca_secret: body.separate_ca_secret, secret_format: None, imported_from: None };
    if let Err(response) = delivery.check(&body.name, body.mtls && body.ca_certificate.is_some()) {
        return response;
    }
    let now = now();

    // Validation, before anything is read or written.
    let input = UploadInput {
        certificate: body.certificate.as_bytes(),
        private_key: body.private_key.expose().as_bytes(),
        ca_certificate: body.ca_certificate.as_deref().map(str::as_bytes),
        mtls: body.mtls,
        allow_expired: body.allow_expired,
    };
    let upload = match validate_input(&input, &body.namespace, &body.name, now) {
        Ok(upload) => upload,
        Err(response) => return response,
    };

    let stored = Store::open().and_then(|store| {
        let content = Content::from_upload(&upload, body.mtls);
        // The name is free only if no head exists when the first head is written.
        let free = |head: Option<&CertificateHead>| head.map_or(Ok(()), |head| Err(name_taken(head)));
        write_version(&store, free, &body.namespace, &body.name, content, &delivery, role, now, None)
    });
    let head = match stored {
        Ok(Ok(head)) => head,
        Ok(Err(response)) => return response,
        Err(error) => return internal_error(error),
    };
    tracing::info!(namespace = %body.namespace, name = %body.name, version = head.version, "certificate created");

    respond_after_write(201, &body.namespace, &body.name, Some(head.version), upload.warnings, now, Vec::new()).await
}

/// `PUT /api/v1/certificates/{namespace}/{name}`: stores new content as a new version (rotation)
/// and syncs it. Fields other than the chain and key keep their values when absent.
pub async fn replace(request: &Request, role: Role, namespace: &str, name: &str) -> Response {
    let body: ReplaceCertificateRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(Some(selector)) = &body.clusters {
        if let Err(response) = check_selector(Some(selector)) {
            return response;
        }
    }
    let now = now();

    let (store, head) = match writable_head(request, namespace, name) {
        Ok(found) => found,
        Err(response) => return response,
    };

    // Absent fields keep the current version's values, so a rotation sends only chain and key.
    let ca_pem = match &body.ca_certificate {
        Some(ca_pem) => ca_pem.clone(),
        None => match current_version(&store, &head) {
            Ok(version) => version.ca_pem,
            Err(error) => return internal_error(error),
        },
    };
    let mtls = body.mtls.unwrap_or(head.mtls);
    let delivery = Delivery {
        clusters: body.clusters.clone().unwrap_or_else(|| head.clusters.clone()),
        separate_ca_secret: body.separate_ca_secret.unwrap_or(head.separate_ca_secret),
        ..Delivery::of(&head)
    };
    if let Err(response) = delivery.check(name, mtls && ca_pem.is_some()) {
        return response;
    }
    let input = UploadInput {
        certificate: body.certificate.as_bytes(),
        private_key: body.private_key.expose().as_bytes(),
        ca_certificate: ca_pem.as_deref().map(str::as_bytes),
        mtls,
        allow_expired: body.allow_expired,
    };
    let upload = match validate_input(&input, namespace, name, now) {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    let content = Content::from_upload(&upload, mtls);

    if content.fingerprint() == head.content_fingerprint && delivery == Delivery::of(&head) {
        let mut warnings = upload.warnings;
        warnings.push(Warning {
            code: "unchanged".into(),
            message: format!("the content equals version {}, so no new version was stored", head.version),
        });
        return respond_after_write(200, namespace, name, Some(head.version), warnings, now, Vec::new()).await;
    }

    let written = write_version(&store, |current| still_writable(request, namespace, name, current), namespace, name, content, &delivery, role, now, None);
    let head = match written {
        Ok(Ok(head)) => head,
        Ok(Err(response)) => return response,
        Err(error) => return internal_error(error),
    };
    tracing::info!(namespace = %namespace, name = %name, version = head.version, "certificate replaced");

    respond_after_write(200, namespace, name, Some(head.version), upload.warnings, now, Vec::new()).await
}

/// `POST /api/v1/certificates/{namespace}/{name}/rollback`: stores the content of a kept older
/// version as a new version, so version numbers only grow and every Secret annotation stays
/// unique. The old content is validated again at `now`.
pub async fn rollback(request: &Request, role: Role, namespace: &str, name: &str) -> Response {
    let body: RollbackRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let now = now();

    let (store, head) = match writable_head(request, namespace, name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    if body.version == head.version {
        return error_response(
            409,
            "version_is_current",
            &format!("version {} of {namespace}/{name} is already current; roll back to one of {}", body.version, older_versions(&head)),
            Some("version"),
        );
    }
    if !head.versions.iter().any(|entry| entry.version == body.version) {
        return error_response(
            404,
            "version_not_found",
            &format!("version {} of {namespace}/{name} is not kept; the kept older versions are {}", body.version, older_versions(&head)),
            Some("version"),
        );
    }

    let restored = (|| -> anyhow::Result<(CertificateVersion, SecretString)> {
        let key = records::version_key(namespace, name, body.version);
        let version: CertificateVersion =
            store.get(&key)?.ok_or_else(|| anyhow::anyhow!("version {} of {namespace}/{name} is listed but its record {key:?} is missing", body.version))?;
        let private_key = cipher()?.open(&version.private_key, &key)?;
        Ok((version, private_key))
    })();
    let (version, private_key) = match restored {
        Ok(restored) => restored,
        Err(error) => return internal_error(error),
    };
    let input = UploadInput {
        certificate: version.chain_pem.as_bytes(),
        private_key: private_key.expose().as_bytes(),
        ca_certificate: version.ca_pem.as_deref().map(str::as_bytes),
        mtls: version.mtls,
        allow_expired: body.allow_expired,
    };
    // The stored content passed every check once; what can fail now is its dates, which the
    // request controls through `version` and `allow_expired`.
    let upload = match validate::validate_upload(&input, now, warning_days()) {
        Ok(upload) => upload,
        Err(error) => {
            tracing::warn!(namespace = %namespace, name = %name, version = body.version, code = error.code(), "rollback rejected");
            let message = format!("version {} cannot be restored: {error}", body.version);
            return error_response(422, error.code(), &message, Some("version"));
        }
    };

    let content = Content::from_upload(&upload, version.mtls);
    let writable = |current: Option<&CertificateHead>| still_writable(request, namespace, name, current);
    let written = write_version(&store, writable, namespace, name, content, &Delivery::of(&head), role, now, Some(body.version));
    let head = match written {
        Ok(Ok(head)) => head,
        Ok(Err(response)) => return response,
        Err(error) => return internal_error(error),
    };
    tracing::info!(namespace = %namespace, name = %name, version = head.version, restored_from = body.version, "certificate rolled back");

    respond_after_write(200, namespace, name, Some(head.version), upload.warnings, now, Vec::new()).await
}

/// `DELETE /api/v1/certificates/{namespace}/{name}`: marks the certificate `deleting`, resolves
/// its alerts, and calls sync-webhook to remove the Secrets it manages from every cluster and then
/// the records. 200 when everything is gone; 202 while a cluster still holds the Secret (a later
/// sync finishes the job).
pub async fn delete(request: &Request, namespace: &str, name: &str) -> Response {
    let now = now();
    let marked = (|| -> anyhow::Result<Result<(), Response>> {
        let store = Store::open()?;
        // Marked over the head that was checked, so a rotation at the same moment either comes
        // before the mark, and is deleted with it, or is refused.
        let marked = store.update(&records::certificate_key(namespace, name), |head: Option<CertificateHead>| {
            let Some(mut head) = head else {
                return Ok(Change::Keep(Err(not_found(namespace, name))));
            };
            if let Err(response) = check_if_match(request, &head) {
                return Ok(Change::Keep(Err(response)));
            }
            if head.state == CertificateState::Deleting {
                return Ok(Change::Keep(Ok(())));
            }
            head.state = CertificateState::Deleting;
            head.delete_requested_at = Some(now);
            Ok(Change::Write(head, Ok(())))
        })?;
        if let Err(response) = marked {
            return Ok(Err(response));
        }
        // A deleted certificate no longer alerts.
        store.update(&records::alert_key(namespace, name), |existing: Option<AlertRecord>| {
            Ok(match existing.as_ref().and_then(|existing| alerts::resolve_all(existing, now)) {
                Some(resolved) => Change::Write(resolved, ()),
                None => Change::Keep(()),
            })
        })?;
        meshcert_spin::index::update(&store, namespace, name, |entry| {
            if let Some(entry) = entry {
                entry.deleting = true;
                entry.alert = None;
            }
        })?;
        Ok(Ok(()))
    })();
    match marked {
        Ok(Ok(())) => {}
        Ok(Err(response)) => return response,
        Err(error) => return internal_error(error),
    }
    tracing::info!(namespace = %namespace, name = %name, "certificate delete requested");

    let mut warnings = Vec::new();
    if let Err(error) = crate::hooks::sync(SyncScope::Certificate(format!("{namespace}/{name}"))).await {
        tracing::error!(namespace = %namespace, name = %name, error = format!("{error:#}"), "sync after delete failed");
        warnings.push(sync_not_started(&error));
    }

    match load_details(namespace, name, now) {
        Ok(None) => json_response(200, &serde_json::json!({ "namespace": namespace, "name": name, "deleted": true })),
        Ok(Some(mut details)) => {
            warnings.push(Warning {
                code: "delete_pending".into(),
                message: format!(
                    "{namespace}/{name} stays in state deleting until every cluster has removed its Secret; see sync for the clusters that failed, and DELETE again or wait for the next sync"
                ),
            });
            details.warnings = warnings;
            json_response(202, &details)
        }
        Err(error) => internal_error(error),
    }
}

/// `GET /api/v1/certificates`, with optional `namespace` and `status` filters, sorted by
/// namespace and name, one page of `limit` at a time from `cursor`.
pub fn list(request: &Request) -> Response {
    if let Err(response) = reject_unknown_parameters(request, &["namespace", "status", "limit", "cursor"]) {
        return response;
    }
    let namespace = query_parameter(request, "namespace");
    let status = query_parameter(request, "status");
    if let Some(status) = status.as_deref().filter(|status| !matches!(*status, "valid" | "expiring" | "expired")) {
        return error_response(400, "invalid_filter", &format!("status {status:?} is not one of valid, expiring, expired"), Some("status"));
    }
    let limit = match api::parse_limit(query_parameter(request, "limit").as_deref()) {
        Ok(limit) => limit,
        Err(message) => return error_response(400, "invalid_limit", &message, Some("limit")),
    };
    let cursor = query_parameter(request, "cursor");
    if let Some(cursor) = &cursor {
        let valid = cursor.split_once('/').is_some_and(|(namespace, name)| names::check_dns1123_label(namespace).is_ok() && names::check_dns1123_subdomain(name).is_ok());
        if !valid {
            return error_response(400, "invalid_cursor", "cursor is not one this endpoint returned (namespace/name): start again without it", Some("cursor"));
        }
    }
    let now = now();
    let warning_days = warning_days();

    let result = (|| -> anyhow::Result<Vec<CertificateListItem>> {
        let store = Store::open()?;
        let mut items = Vec::new();
        for key in store.keys("cert/")? {
            let Some(StoreKey::CertificateHead { namespace: key_namespace, name: key_name }) = StoreKey::parse(&key) else {
                continue;
            };
            if namespace.as_deref().is_some_and(|namespace| namespace != key_namespace) {
                continue;
            }
            // Only heads after the cursor are read, so later pages cost less.
            if cursor.as_deref().is_some_and(|cursor| format!("{key_namespace}/{key_name}").as_str() <= cursor) {
                continue;
            }
            let Some(head) = store.get::<CertificateHead>(&key)? else {
                continue;
            };
            let (item_status, days_left) = status_of(&head.summary, now, warning_days);
            if status.as_deref().is_some_and(|status| status != item_status) {
                continue;
            }
            items.push((head, item_status, days_left));
        }
        items.sort_by(|(a, ..), (b, ..)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        items.truncate(limit + 1);

        let clusters = load_clusters(&store)?;
        let mut listed = Vec::new();
        for (head, item_status, days_left) in items {
            let sync = sync_states(&store, &head, &clusters)?;
            listed.push(CertificateListItem {
                namespace: head.namespace,
                name: head.name,
                status: item_status.into(),
                days_left,
                not_after: head.summary.leaf.not_after,
                version: head.version,
                sync: records::sync_summary(&sync).into(),
                cluster_states: sync
                    .into_iter()
                    .map(|(cluster, state)| (cluster, api::ClusterStateSummary { state: state.state, last_error: state.last_error }))
                    .collect(),
                state: state_name(head.state).into(),
            });
        }
        Ok(listed)
    })();

    match result {
        Ok(items) => {
            let (page, next_cursor) = api::paginate(items, |item| format!("{}/{}", item.namespace, item.name), None, limit);
            json_response(200, &serde_json::json!({ "certificates": page, "next_cursor": next_cursor }))
        }
        Err(error) => internal_error(error),
    }
}

/// `GET /api/v1/certificates/{namespace}/{name}`: details, never the private key. The `ETag`
/// is the current version, for `If-Match` on writes.
pub fn details(namespace: &str, name: &str) -> Response {
    match load_details(namespace, name, now()) {
        Ok(Some(details)) => with_etag(json_response(200, &details), details.version),
        Ok(None) => not_found(namespace, name),
        Err(error) => internal_error(error),
    }
}

/// The content of a version, validated and in canonical form.
pub(crate) struct Content {
    chain_pem: String,
    private_key: SecretString,
    ca_pem: Option<String>,
    mtls: bool,
    summary: UploadSummary,
}

impl Content {
    pub(crate) fn from_upload(upload: &ValidatedUpload, mtls: bool) -> Self {
        Self {
            chain_pem: upload.chain_pem.clone(),
            private_key: upload.private_key_pem.clone(),
            ca_pem: upload.ca_pem.clone(),
            mtls,
            summary: upload.summary.clone(),
        }
    }

    /// Computes the fingerprint of the Secret data this content produces (`ca.crt` only with mTLS).
    fn fingerprint(&self) -> String {
        kube::content_fingerprint(&self.chain_pem, &self.private_key, self.ca_pem.as_deref().filter(|_| self.mtls))
    }
}

/// The delivery of a certificate: the clusters it goes to, and the Secrets it goes in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Label selector of the clusters; `None` selects every cluster.
    pub(crate) clusters: Option<String>,
    /// Whether the CA also goes to a separate `{name}-cacert` Secret.
    pub(crate) separate_ca_secret: bool,
    /// The format of an adopted Secret, which sync keeps; `None` for meshcert's own.
    pub(crate) secret_format: Option<kube::SecretFormat>,
    /// The cluster an imported certificate came from.
    pub(crate) imported_from: Option<records::ImportOrigin>,
}

impl Delivery {
    fn of(head: &CertificateHead) -> Self {
        Self {
            clusters: head.clusters.clone(),
            separate_ca_secret: head.separate_ca_secret,
            secret_format: head.secret_format.clone(),
            imported_from: head.imported_from.clone(),
        }
    }

    /// Checks that the separate CA Secret has a CA to hold and a valid name.
    pub(crate) fn check(&self, name: &str, has_mtls_ca: bool) -> Result<(), Response> {
        if !self.separate_ca_secret {
            return Ok(());
        }
        if !has_mtls_ca {
            return Err(error_response(
                422,
                "separate_ca_secret_needs_mtls",
                "separate_ca_secret is true but the certificate has no mTLS CA: send ca_certificate with mtls true, or set separate_ca_secret to false",
                Some("separate_ca_secret"),
            ));
        }
        let ca_secret = kube::ca_secret_name(name);
        if let Err(rule) = names::check_dns1123_subdomain(&ca_secret) {
            return Err(error_response(
                422,
                "name_too_long",
                &format!("the separate CA Secret {} is not a valid Secret name: it {rule}; shorten name", names::describe_for_message(&ca_secret)),
                Some("name"),
            ));
        }
        Ok(())
    }
}

/// Writes `content` as a new version of `namespace/name`, then the head that points to it, then
/// deletes the versions that dropped out of the kept list, then updates the alert.
///
/// `check` decides on the head as it is at the moment of the write (`None` when there is none):
/// an `Err` writes nothing and is returned. The caller checked the head it read before, but
/// another replica may write in between, so `check` runs again on each head the write meets.
///
/// Two writers at once (two replicas) never lose a version, since both steps write with
/// compare-and-swap:
/// - A version number is taken by creating its record only where the key is absent, above the
///   head's highest version. A record written without its head (a failure between the two
///   writes) keeps its number, which the next write skips; the delete of the certificate removes
///   it with the other version keys.
/// - The head is written only over the head that was read. A writer that meets a newer head
///   checks it again and keeps the versions that head lists. When that head is at or above the
///   taken number, the record moves to a number above it, so the head is always the highest
///   version and version numbers follow the order in which heads were written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_version<E>(
    store: &Store,
    check: impl Fn(Option<&CertificateHead>) -> Result<(), E>,
    namespace: &str,
    name: &str,
    content: Content,
    delivery: &Delivery,
    role: Role,
    now: DateTime<Utc>,
    restored_from: Option<u32>,
) -> anyhow::Result<Result<CertificateHead, E>> {
    let cipher = cipher()?;
    let content_fingerprint = content.fingerprint();
    let mut reserved: Option<CertificateVersion> = None;

    let written = store.update(&records::certificate_key(namespace, name), |current: Option<CertificateHead>| {
        if let Err(refusal) = check(current.as_ref()) {
            return Ok(Change::Keep(Err(refusal)));
        }
        let lowest = current.as_ref().map_or(1, CertificateHead::next_version);
        if reserved.as_ref().is_none_or(|record| record.version < lowest) {
            if let Some(outdated) = reserved.take() {
                discard_version(store, namespace, name, outdated.version);
            }
            reserved = Some(take_version(store, &cipher, namespace, name, lowest, &content, &content_fingerprint, role, now)?);
        }
        let record = reserved.as_ref().expect("a version was reserved above");

        let mut versions = current.as_ref().map(|head| head.versions.clone()).unwrap_or_default();
        let dropped = records::push_version(&mut versions, VersionEntry::of(record, restored_from), kept_versions());
        let head = CertificateHead {
            namespace: namespace.into(),
            name: name.into(),
            version: record.version,
            state: CertificateState::Active,
            mtls: record.mtls,
            clusters: delivery.clusters.clone(),
            separate_ca_secret: delivery.separate_ca_secret,
            summary: record.summary.clone(),
            content_fingerprint: content_fingerprint.clone(),
            created_at: current.as_ref().map_or(now, |head| head.created_at),
            updated_at: now,
            versions,
            delete_requested_at: None,
            secret_format: delivery.secret_format.clone(),
            imported_from: delivery.imported_from.clone(),
        };
        Ok(Change::Write(head.clone(), Ok((head, dropped))))
    });
    let (head, dropped) = match written {
        Ok(Ok(written)) => written,
        // Nothing lists the reserved record: the head was refused or not written.
        Ok(Err(refusal)) => {
            if let Some(record) = reserved {
                discard_version(store, namespace, name, record.version);
            }
            return Ok(Err(refusal));
        }
        Err(error) => {
            if let Some(record) = reserved {
                discard_version(store, namespace, name, record.version);
            }
            return Err(error);
        }
    };

    // The head no longer lists these versions, so a failure here leaves only unreachable records;
    // the delete of the certificate removes every version key.
    for dropped in dropped {
        discard_version(store, namespace, name, dropped);
    }
    // Kept versions sealed with encryption_key_previous move to the current key.
    if let Err(error) = crate::reseal::reseal_versions(store, &cipher, &head) {
        tracing::warn!(namespace = %namespace, name = %name, error = format!("{error:#}"), "kept versions not sealed again");
    }

    // The same alert rule as the scan, so an expiring upload is alerted at once and a renewal
    // resolves the alert at once. The version is stored by now, so a failure here is logged, not
    // returned: the next scan writes the alert.
    if let Err(error) = update_alert(store, &head, now) {
        tracing::error!(namespace = %namespace, name = %name, error = format!("{error:#}"), "alert not updated; the next expiry scan updates it");
        // Without its index entry the scan would miss the certificate until the daily rebuild, so
        // the next scan rebuilds the index at once.
        if let Err(error) = store.delete(meshcert_core::expiry_index::META_KEY) {
            tracing::error!(error = format!("{error:#}"), "expiry index not marked for a rebuild; the daily rebuild repairs it");
        }
    }
    Ok(Ok(head))
}

/// The maximum of version numbers that [`take_version`] tries. It skips a number whose record was written
/// without its head, or that a writer at the same moment took.
const VERSION_NUMBERS_TRIED: u32 = 64;

/// Creates the record of `content` at the first free version number from `lowest`, and returns
/// it. The private key is sealed for the record's own key, so a record cannot move to another
/// number by a copy.
#[allow(clippy::too_many_arguments)]
fn take_version(
    store: &Store,
    cipher: &meshcert_core::crypto::Cipher,
    namespace: &str,
    name: &str,
    lowest: u32,
    content: &Content,
    content_fingerprint: &str,
    role: Role,
    now: DateTime<Utc>,
) -> anyhow::Result<CertificateVersion> {
    for version in lowest..lowest.saturating_add(VERSION_NUMBERS_TRIED) {
        let version_key = records::version_key(namespace, name, version);
        let record = CertificateVersion {
            version,
            private_key: cipher.seal(&content.private_key, &version_key)?,
            chain_pem: content.chain_pem.clone(),
            ca_pem: content.ca_pem.clone(),
            mtls: content.mtls,
            summary: content.summary.clone(),
            content_fingerprint: content_fingerprint.into(),
            author: role.as_str().into(),
            created_at: now,
        };
        if store.insert_new(&version_key, &record)? {
            return Ok(record);
        }
        tracing::info!(namespace = %namespace, name = %name, version, "version number taken; trying the next");
    }
    anyhow::bail!(
        "versions {lowest} to {} of {namespace}/{name} all exist without being listed in its head; delete the certificate and create it again",
        lowest.saturating_add(VERSION_NUMBERS_TRIED - 1)
    )
}

/// Deletes a version record that no head lists. A failure leaves an unreachable record, which the
/// delete of the certificate removes.
fn discard_version(store: &Store, namespace: &str, name: &str, version: u32) {
    if let Err(error) = store.delete(&records::version_key(namespace, name, version)) {
        tracing::warn!(namespace = %namespace, name = %name, version, error = format!("{error:#}"), "unlisted version not deleted");
    }
}

/// Applies the alert rule to the head's version, then writes the certificate's entry of the
/// expiry index, which the scan reads in place of the head and the alert record.
fn update_alert(store: &Store, head: &CertificateHead, now: DateTime<Utc>) -> anyhow::Result<()> {
    let evaluation = alerts::evaluate(&head.summary, now, warning_days());
    let record = store.update(&records::alert_key(&head.namespace, &head.name), |record: Option<AlertRecord>| {
        Ok(match alerts::reconcile(record.as_ref(), &head.namespace, &head.name, evaluation.clone(), now) {
            Some(updated) => Change::Write(updated.clone(), Some(updated)),
            None => Change::Keep(record),
        })
    })?;

    let entry = IndexEntry { members: alerts::members(&head.summary), deleting: false, alert: AlertSnapshot::of(record.as_ref()) };
    meshcert_spin::index::update(store, &head.namespace, &head.name, |current| {
        // A delete that marked the head after this write keeps its mark: deleting is final, and
        // the scan resolves the alert of a certificate being deleted.
        let deleting = current.as_ref().is_some_and(|current| current.deleting);
        *current = Some(IndexEntry { deleting, ..entry.clone() });
    })
}

/// Syncs the certificate and responds with its details, the upload's warnings, a warning per
/// gateway host its SANs do not cover, and the ETag. `written` is the version this request stored
/// or found equal, if any. `adopt` lists the clusters where the sync may take over a same-named
/// Secret (an import).
///
/// The details and the ETag are those of the current head, which a write on another replica may
/// have replaced already; a warning then says so, since the client's next `If-Match` must name
/// what it saw.
pub(crate) async fn respond_after_write(
    status: u16,
    namespace: &str,
    name: &str,
    written: Option<u32>,
    mut warnings: Vec<Warning>,
    now: DateTime<Utc>,
    adopt: Vec<String>,
) -> Response {
    // Push it now, so the response can tell where it landed.
    let id = format!("{namespace}/{name}");
    let synced: Vec<String> = match crate::hooks::sync_adopting(SyncScope::Certificate(id.clone()), adopt).await {
        Ok(report) => report.targets.into_iter().filter(|target| target.state == SyncState::Synced).map(|target| target.cluster).collect(),
        Err(error) => {
            tracing::error!(namespace = %namespace, name = %name, error = format!("{error:#}"), "sync after write failed");
            warnings.push(sync_not_started(&error));
            Vec::new()
        }
    };

    // Gateways that already reference the name serve the new content now, so report the hosts it
    // leaves uncovered. Only the clusters that took the content are read, each request once, so a
    // failing cluster does not delay the response twice. Its failure is in the sync state.
    let usage = if synced.is_empty() { Ok(Default::default()) } else { crate::hooks::gateways(&id, Some(synced), true).await };
    match usage {
        Ok(usage) => {
            for used in &usage.gateways {
                for host in used.servers.iter().flat_map(|server| &server.uncovered_hosts) {
                    let gateway = format!("{}/{}", used.namespace, used.name);
                    warnings.push(Warning { code: "host_not_covered".into(), message: gateway::uncovered_warning(host, &gateway, &used.cluster) });
                }
            }
        }
        Err(error) => tracing::warn!(certificate = %id, error = format!("{error:#}"), "gateway hosts not checked after a write"),
    }

    match load_details(namespace, name, now) {
        Ok(Some(mut details)) => {
            if let Some(written) = written.filter(|written| *written != details.version) {
                warnings.push(Warning {
                    code: "superseded".into(),
                    message: format!(
                        "this request left the certificate at version {written}, and another write has since made version {} current; these details and the ETag are of version {}",
                        details.version, details.version
                    ),
                });
            }
            details.warnings = warnings;
            let version = details.version;
            with_etag(json_response(status, &details), version)
        }
        Ok(None) => internal_error(anyhow::anyhow!("certificate {namespace}/{name} vanished after it was stored")),
        Err(error) => internal_error(error),
    }
}

fn sync_not_started(error: &anyhow::Error) -> Warning {
    Warning {
        code: "sync_not_started".into(),
        message: format!("the change is stored, but the sync could not start ({error:#}); the next scheduled sync applies it"),
    }
}

/// Opens the store and reads the head for a write: 404 when absent, 409 while deleting, 412 when
/// `If-Match` names another version. The write checks again with [`still_writable`].
fn writable_head(request: &Request, namespace: &str, name: &str) -> Result<(Store, CertificateHead), Response> {
    let store = Store::open().map_err(internal_error)?;
    let head = store.get::<CertificateHead>(&records::certificate_key(namespace, name)).map_err(internal_error)?;
    still_writable(request, namespace, name, head.as_ref())?;
    Ok((store, head.expect("still_writable refuses a missing head")))
}

/// The check of a rotation or rollback on the head it writes over: the certificate exists, is not
/// being deleted, and is at the version that `If-Match` names.
fn still_writable(request: &Request, namespace: &str, name: &str, head: Option<&CertificateHead>) -> Result<(), Response> {
    let Some(head) = head else {
        return Err(not_found(namespace, name));
    };
    if head.state == CertificateState::Deleting {
        return Err(deleting(namespace, name));
    }
    check_if_match(request, head)
}

/// Builds the response to a create of a name that a certificate has.
fn name_taken(head: &CertificateHead) -> Response {
    if head.state == CertificateState::Deleting {
        return deleting(&head.namespace, &head.name);
    }
    error_response(
        409,
        "certificate_exists",
        &format!(
            "certificate {}/{} already exists; rotate it with PUT /api/v1/certificates/{}/{}, or choose another name",
            head.namespace, head.name, head.namespace, head.name
        ),
        Some("name"),
    )
}

/// Optimistic concurrency: a write with `If-Match: "<version>"` applies only to that version, so
/// two pipelines cannot rotate over each other unknowingly.
fn check_if_match(request: &Request, head: &CertificateHead) -> Result<(), Response> {
    let Some(expected) = request.header("if-match").and_then(|value| value.as_str()) else {
        return Ok(());
    };
    // The ETag is the version in quotes; a bare version number is accepted too.
    let current = head.version.to_string();
    let expected = expected.trim();
    if expected == "*" || expected.split(',').any(|tag| tag.trim().trim_start_matches("W/").trim_matches('"') == current) {
        return Ok(());
    }
    Err(error_response(
        412,
        "version_mismatch",
        &format!(
            "If-Match names another version than the current version {current} of {}/{}: GET the certificate again, check the change, and retry with If-Match: \"{current}\"",
            head.namespace, head.name
        ),
        None,
    ))
}

pub(crate) fn deleting(namespace: &str, name: &str) -> Response {
    error_response(
        409,
        "certificate_deleting",
        &format!(
            "certificate {namespace}/{name} is being deleted: a cluster still holds its Secret (see its sync state); DELETE again or resync once the cluster is reachable, then create it again"
        ),
        None,
    )
}

fn etag(version: u32) -> String {
    format!("\"{version}\"")
}

fn with_etag(mut response: Response, version: u32) -> Response {
    response.set_header("etag", etag(version));
    response
}

fn current_version(store: &Store, head: &CertificateHead) -> anyhow::Result<CertificateVersion> {
    let key = records::version_key(&head.namespace, &head.name, head.version);
    store
        .get(&key)?
        .ok_or_else(|| anyhow::anyhow!("certificate {}/{} points to version {} but {key:?} is missing", head.namespace, head.name, head.version))
}

fn older_versions(head: &CertificateHead) -> String {
    let older: Vec<String> = head.versions.iter().filter(|entry| entry.version != head.version).map(|entry| entry.version.to_string()).collect();
    if older.is_empty() {
        return "none (only the current version is kept)".into();
    }
    older.join(", ")
}

pub(crate) fn not_found(namespace: &str, name: &str) -> Response {
    error_response(
        404,
        "certificate_not_found",
        &format!("certificate {namespace}/{name} does not exist; list them with GET /api/v1/certificates"),
        None,
    )
}

/// Validates an upload, turning a failed check into a 422 that names the field.
pub(crate) fn validate_input(input: &UploadInput<'_>, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<ValidatedUpload, Response> {
    validate::validate_upload(input, now, warning_days()).map_err(|error| {
        tracing::warn!(namespace = %namespace, name = %name, code = error.code(), "upload rejected");
        error_response(422, error.code(), &error.to_string(), Some(error.field().as_str()))
    })
}

fn load_details(namespace: &str, name: &str, now: DateTime<Utc>) -> anyhow::Result<Option<CertificateDetails>> {
    let store = Store::open()?;
    let Some(head) = store.get::<CertificateHead>(&records::certificate_key(namespace, name))? else {
        return Ok(None);
    };
    let sync = sync_states(&store, &head, &load_clusters(&store)?)?;
    let (status, days_left) = status_of(&head.summary, now, warning_days());

    Ok(Some(CertificateDetails {
        namespace: head.namespace,
        name: head.name,
        version: head.version,
        state: state_name(head.state).into(),
        status: status.into(),
        days_left,
        mtls: head.mtls,
        separate_ca_secret: head.separate_ca_secret,
        clusters: head.clusters,
        summary: head.summary,
        content_fingerprint: head.content_fingerprint,
        created_at: head.created_at,
        updated_at: head.updated_at,
        versions: head.versions,
        delete_requested_at: head.delete_requested_at,
        secret_format: head.secret_format,
        imported_from: head.imported_from,
        sync,
        warnings: Vec::new(),
    }))
}

fn load_clusters(store: &Store) -> anyhow::Result<Vec<ClusterRecord>> {
    meshcert_spin::clusters::load(store)
}

/// The state of `head` in each registered cluster it goes to, `pending` where no sync has
/// delivered the current version yet.
fn sync_states(store: &Store, head: &CertificateHead, clusters: &[ClusterRecord]) -> anyhow::Result<BTreeMap<String, ClusterSyncState>> {
    let record: SyncRecord = store.get(&records::sync_key(&head.namespace, &head.name))?.unwrap_or_default();
    // A stored selector was validated on upload, so it parses.
    let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
    let deleting = head.state == CertificateState::Deleting;
    let selection: Vec<(&str, bool)> = clusters.iter().map(|cluster| (cluster.id.as_str(), !deleting && selector.matches(&cluster.labels))).collect();
    Ok(record.states_for(head.version, head.updated_at, &selection))
}

/// Status and days left of a certificate, from its member with the earliest not_after, so an
/// intermediate that expires first shows.
fn status_of(summary: &UploadSummary, now: DateTime<Utc>, warning_days: u32) -> (&'static str, i64) {
    let earliest = alerts::members(summary).into_iter().map(|member| member.not_after).min().unwrap_or(summary.leaf.not_after);
    let status = match alerts::evaluate(summary, now, warning_days) {
        Some((AlertKind::Expired, _)) => "expired",
        Some((AlertKind::Expiring, _)) => "expiring",
        None => "valid",
    };
    (status, expiry::days_left(earliest, now))
}

fn state_name(state: CertificateState) -> &'static str {
    match state {
        CertificateState::Active => "active",
        CertificateState::Deleting => "deleting",
    }
}

/// `expiry_warning_days`, or 30 with an error in the log when it is invalid.
pub fn warning_days() -> u32 {
    let value = variable("expiry_warning_days").unwrap_or_default();
    match expiry::parse_warning_days(&value) {
        Ok(days) => days,
        Err(message) => {
            tracing::error!(error = %message, fallback = expiry::DEFAULT_WARNING_DAYS, "invalid expiry_warning_days");
            expiry::DEFAULT_WARNING_DAYS
        }
    }
}

/// `kept_versions`, or 5 with an error in the log when it is invalid.
fn kept_versions() -> usize {
    let value = variable("kept_versions").unwrap_or_default();
    parse_kept_versions(&value).unwrap_or_else(|message| {
        tracing::error!(error = %message, fallback = records::DEFAULT_KEPT_VERSIONS, "invalid kept_versions");
        records::DEFAULT_KEPT_VERSIONS
    })
}

/// Reads `kept_versions`: a whole number from 1 to 100.
pub fn parse_kept_versions(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(kept) if (1..=100).contains(&kept) => Ok(kept),
        _ => Err(format!("kept_versions {value:?} is not a whole number from 1 to 100")),
    }
}

pub(crate) fn check_selector(selector: Option<&str>) -> Result<(), Response> {
    let Some(selector) = selector else {
        return Ok(());
    };
    LabelSelector::parse(selector).map(|_| ()).map_err(|error| {
        error_response(422, "invalid_cluster_selector", &format!("clusters {selector:?} is not a label selector: {error}"), Some("clusters"))
    })
}

pub(crate) fn check_names(namespace: &str, name: &str) -> Result<(), Response> {
    if let Err(rule) = names::check_dns1123_label(namespace) {
        return Err(error_response(
            422,
            "invalid_namespace",
            &format!("namespace {} is not a valid Kubernetes namespace: it {rule}", names::describe_for_message(namespace)),
            Some("namespace"),
        ));
    }
    if let Err(rule) = names::check_dns1123_subdomain(name) {
        return Err(error_response(
            422,
            "invalid_name",
            &format!("name {} is not a valid Kubernetes Secret name: it {rule}", names::describe_for_message(name)),
            Some("name"),
        ));
    }
    if let Err(longest) = records::check_key_length(namespace, name) {
        return Err(error_response(
            422,
            "name_too_long",
            &format!(
                "name {name:?} ({} characters) does not fit the key-value store's 256-byte key limit in namespace {namespace:?}; use at most {longest} characters",
                name.len()
            ),
            Some("name"),
        ));
    }
    Ok(())
}
