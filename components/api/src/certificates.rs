//! `/api/v1/certificates`: create, list and show certificates.

use chrono::{DateTime, Utc};
use meshcert_core::alerts::{self, AlertKind, AlertRecord};
use meshcert_core::api::{CertificateDetails, CertificateListItem, CreateCertificateRequest, SyncScope};
use meshcert_core::expiry;
use meshcert_core::kube;
use meshcert_core::names;
use meshcert_core::selector::LabelSelector;
use meshcert_core::records::{self, CertificateHead, CertificateState, CertificateVersion, StoreKey, SyncRecord};
use meshcert_core::validate::{self, UploadInput, Warning};
use meshcert_spin::{cipher, error_response, json_response, now, variable, Store};
use spin_sdk::http::{Request, Response};

use crate::auth::Role;
use crate::internal_error;
use crate::json::{parse_body, query_parameter};

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
    if let Some(selector) = &body.clusters {
        if let Err(error) = LabelSelector::parse(selector) {
            return error_response(
                422,
                "invalid_cluster_selector",
                &format!("clusters {selector:?} is not a label selector: {error}"),
                Some("clusters"),
            );
        }
    }
    let now = now();
    let warning_days = warning_days();

    // Validation, before anything is read or written.
    let input = UploadInput {
        certificate: body.certificate.as_bytes(),
        private_key: body.private_key.expose().as_bytes(),
        ca_certificate: body.ca_certificate.as_deref().map(str::as_bytes),
        mtls: body.mtls,
        allow_expired: body.allow_expired,
    };
    let upload = match validate::validate_upload(&input, now, warning_days) {
        Ok(upload) => upload,
        Err(error) => {
            tracing::warn!(namespace = %body.namespace, name = %body.name, code = error.code(), "upload rejected");
            return error_response(422, error.code(), &error.to_string(), Some(error.field().as_str()));
        }
    };

    match store_new_certificate(&body, upload.chain_pem.clone(), &upload, role, now, warning_days) {
        Ok(StoreOutcome::Stored) => {}
        Ok(StoreOutcome::Exists) => {
            return error_response(
                409,
                "certificate_exists",
                &format!("certificate {}/{} already exists; choose another name", body.namespace, body.name),
                Some("name"),
            );
        }
        Err(error) => return internal_error(error),
    }
    tracing::info!(namespace = %body.namespace, name = %body.name, version = 1, "certificate created");

    // Push it now, so the response can tell where it landed.
    let mut warnings = upload.warnings;
    let scope = SyncScope::Certificate(format!("{}/{}", body.namespace, body.name));
    if let Err(error) = crate::hooks::sync(scope).await {
        tracing::error!(namespace = %body.namespace, name = %body.name, error = format!("{error:#}"), "sync after create failed");
        warnings.push(Warning {
            code: "sync_not_started".into(),
            message: format!("the certificate is stored, but the sync could not start ({error:#}); the next scheduled sync pushes it"),
        });
    }

    match load_details(&body.namespace, &body.name, now, warning_days) {
        Ok(Some(mut details)) => {
            details.warnings = warnings;
            json_response(201, &details)
        }
        Ok(None) => internal_error(anyhow::anyhow!("certificate {}/{} vanished after it was stored", body.namespace, body.name)),
        Err(error) => internal_error(error),
    }
}

enum StoreOutcome {
    Stored,
    Exists,
}

/// Writes version 1, then the head that points to it, then the alert. A crash between the
/// writes leaves an unreferenced version, which the next create of that name overwrites.
fn store_new_certificate(
    body: &CreateCertificateRequest,
    chain_pem: String,
    upload: &validate::ValidatedUpload,
    role: Role,
    now: DateTime<Utc>,
    warning_days: u32,
) -> anyhow::Result<StoreOutcome> {
    let store = Store::open()?;
    let head_key = records::certificate_key(&body.namespace, &body.name);
    // TODO: Two creates of one name at the same moment can both pass this check; remove when
    // the head is written with wasi:keyvalue/atomics compare-and-swap.
    if store.exists(&head_key)? {
        return Ok(StoreOutcome::Exists);
    }

    let version = 1;
    let version_key = records::version_key(&body.namespace, &body.name, version);
    let private_key = cipher()?.seal(&upload.private_key_pem, &version_key)?;
    let content_fingerprint = kube::content_fingerprint(&chain_pem, &upload.private_key_pem, upload.ca_pem.as_deref().filter(|_| body.mtls));
    let record = CertificateVersion {
        version,
        chain_pem,
        private_key,
        ca_pem: upload.ca_pem.clone(),
        mtls: body.mtls,
        summary: upload.summary.clone(),
        content_fingerprint: content_fingerprint.clone(),
        author: role.as_str().into(),
        created_at: now,
    };
    store.set(&version_key, &record)?;

    let head = CertificateHead {
        namespace: body.namespace.clone(),
        name: body.name.clone(),
        version,
        state: CertificateState::Active,
        mtls: body.mtls,
        clusters: body.clusters.clone(),
        summary: upload.summary.clone(),
        content_fingerprint,
        created_at: now,
        updated_at: now,
    };
    store.set(&head_key, &head)?;

    // The same alert rule as the scan, so an expiring upload is alerted at once.
    let alert_key = records::alert_key(&body.namespace, &body.name);
    let existing: Option<AlertRecord> = store.get(&alert_key)?;
    let evaluation = alerts::evaluate(&head.summary, now, warning_days);
    if let Some(record) = alerts::reconcile(existing.as_ref(), &body.namespace, &body.name, evaluation, now) {
        store.set(&alert_key, &record)?;
    }
    Ok(StoreOutcome::Stored)
}

/// `GET /api/v1/certificates`, with optional `namespace` and `status` filters.
pub fn list(request: &Request) -> Response {
    let namespace = query_parameter(request, "namespace");
    let status = query_parameter(request, "status");
    if let Some(status) = status.as_deref().filter(|status| !matches!(*status, "valid" | "expiring" | "expired")) {
        return error_response(400, "invalid_filter", &format!("status {status:?} is not one of valid, expiring, expired"), Some("status"));
    }
    let now = now();
    let warning_days = warning_days();

    let result = (|| -> anyhow::Result<Vec<CertificateListItem>> {
        let store = Store::open()?;
        let mut items = Vec::new();
        for key in store.keys("cert/")? {
            let Some(StoreKey::CertificateHead { .. }) = StoreKey::parse(&key) else {
                continue;
            };
            let Some(head) = store.get::<CertificateHead>(&key)? else {
                continue;
            };
            if namespace.as_deref().is_some_and(|namespace| namespace != head.namespace) {
                continue;
            }
            let (item_status, days_left) = status_of(&head, now, warning_days);
            if status.as_deref().is_some_and(|status| status != item_status) {
                continue;
            }
            let sync: SyncRecord = store.get(&records::sync_key(&head.namespace, &head.name))?.unwrap_or_default();
            items.push(CertificateListItem {
                namespace: head.namespace,
                name: head.name,
                status: item_status.into(),
                days_left,
                not_after: head.summary.leaf.not_after,
                version: head.version,
                sync: sync.summary().into(),
                state: state_name(head.state).into(),
            });
        }
        Ok(items)
    })();

    match result {
        Ok(items) => json_response(200, &serde_json::json!({ "certificates": items })),
        Err(error) => internal_error(error),
    }
}

/// `GET /api/v1/certificates/{namespace}/{name}`: details, never the private key.
pub fn details(namespace: &str, name: &str) -> Response {
    match load_details(namespace, name, now(), warning_days()) {
        Ok(Some(details)) => json_response(200, &details),
        Ok(None) => error_response(
            404,
            "certificate_not_found",
            &format!("certificate {namespace}/{name} does not exist; list them with GET /api/v1/certificates"),
            None,
        ),
        Err(error) => internal_error(error),
    }
}

fn load_details(namespace: &str, name: &str, now: DateTime<Utc>, warning_days: u32) -> anyhow::Result<Option<CertificateDetails>> {
    let store = Store::open()?;
    let Some(head) = store.get::<CertificateHead>(&records::certificate_key(namespace, name))? else {
        return Ok(None);
    };
    let sync: SyncRecord = store.get(&records::sync_key(namespace, name))?.unwrap_or_default();
    let (status, days_left) = status_of(&head, now, warning_days);

    Ok(Some(CertificateDetails {
        namespace: head.namespace,
        name: head.name,
        version: head.version,
        state: state_name(head.state).into(),
        status: status.into(),
        days_left,
        mtls: head.mtls,
        clusters: head.clusters,
        summary: head.summary,
        content_fingerprint: head.content_fingerprint,
        created_at: head.created_at,
        updated_at: head.updated_at,
        sync: sync.clusters,
        warnings: Vec::new(),
    }))
}

/// Status and days left of a certificate, from its member with the earliest not_after, so an
/// intermediate that expires first shows.
fn status_of(head: &CertificateHead, now: DateTime<Utc>, warning_days: u32) -> (&'static str, i64) {
    let earliest = alerts::members(&head.summary)
        .into_iter()
        .map(|member| member.not_after)
        .min()
        .unwrap_or(head.summary.leaf.not_after);
    let status = match alerts::evaluate(&head.summary, now, warning_days) {
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

fn check_names(namespace: &str, name: &str) -> Result<(), Response> {
    if let Err(rule) = names::check_dns1123_label(namespace) {
        return Err(error_response(
            422,
            "invalid_namespace",
            &format!("namespace {namespace:?} is not a valid Kubernetes namespace: it {rule}"),
            Some("namespace"),
        ));
    }
    if let Err(rule) = names::check_dns1123_subdomain(name) {
        return Err(error_response(
            422,
            "invalid_name",
            &format!("name {name:?} is not a valid Kubernetes Secret name: it {rule}"),
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
