//! Migration: `GET /api/v1/imports/candidates` lists the Secrets in clusters that meshcert could
//! adopt, and `POST /api/v1/imports` adopts them.
//!
//! An import reads the Secret through sync-webhook, and the private key comes back sealed with
//! the store's key. It validates the Secret as an upload and stores it under the same namespace
//! and name. Then it syncs it with permission to take over that Secret in its cluster (and, with
//! `replace`, the same-named Secrets elsewhere). The adopted Secret keeps its `type` and key
//! names, and later syncs write in that format, because a gateway that reads a Secret deleted and
//! created again loses its listeners for a moment.

use chrono::{DateTime, Utc};
use meshcert_core::import::{self, ImportRequest};
use meshcert_core::names;
use meshcert_core::records::{self, CertificateHead, CertificateState, ClusterRecord, ImportOrigin};
use meshcert_core::selector::LabelSelector;
use meshcert_core::validate::{self, UploadInput, Warning};
use meshcert_spin::{cipher, error_response, json_response, now, Store};
use serde_json::Value;
use spin_sdk::http::{Request, Response};

use crate::auth::Role;
use crate::certificates::{self, check_selector, deleting, respond_after_write, write_version, Content, Delivery};
use crate::internal_error;
use crate::json::parse_body;

/// The most Secrets one request may import; a larger migration is several requests.
const MAX_IMPORTS: usize = 50;

/// `GET /api/v1/imports/candidates`.
pub async fn candidates() -> Response {
    match crate::hooks::candidates().await {
        Ok(report) => json_response(200, &report),
        Err(error) => crate::gateways::unavailable(&error),
    }
}

/// `POST /api/v1/imports`: one import (`{"cluster", "namespace", "secret"}`), with the response
/// of a create, or a list of them, with 200 and each import's status and body.
pub async fn import(request: &Request, role: Role) -> Response {
    let body: Value = match parse_body(request) {
        Ok(body) => body,
        Err(response) => {
            audit(request, role, &response, None);
            return response;
        }
    };
    let now = now();

    let Value::Array(items) = body else {
        let (response, target) = match parse_item(body, None) {
            Ok(item) => (import_one(&item, role, now).await, Some(target(&item))),
            Err(response) => (response, None),
        };
        audit(request, role, &response, target);
        return response;
    };
    if items.is_empty() || items.len() > MAX_IMPORTS {
        let message = format!("the list has {} imports; send 1 to {MAX_IMPORTS}, and split a larger migration into several requests", items.len());
        let response = error_response(400, "invalid_import_list", &message, None);
        audit(request, role, &response, None);
        return response;
    }
    let mut outcomes = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let summary = serde_json::json!({ "cluster": item["cluster"], "namespace": item["namespace"], "secret": item["secret"] });
        let (response, target) = match parse_item(item, Some(index)) {
            Ok(item) => (import_one(&item, role, now).await, Some(target(&item))),
            Err(response) => (response, None),
        };
        audit(request, role, &response, target);
        let status = *response.status();
        let body: Value = serde_json::from_slice(response.body()).unwrap_or_default();
        let mut outcome = summary;
        outcome["status"] = status.into();
        if (200..300).contains(&status) {
            outcome["certificate"] = body;
        } else {
            outcome["error"] = body["error"].clone();
        }
        outcomes.push(outcome);
    }
    json_response(200, &serde_json::json!({ "imports": outcomes }))
}

/// Names an import in the audit trail by the certificate it creates.
fn target(item: &ImportRequest) -> String {
    format!("certificate {}/{} from cluster {}", item.namespace, item.secret, item.cluster)
}

/// Records one import, or a request that was refused before any import, in the audit trail.
fn audit(request: &Request, role: Role, response: &Response, target: Option<String>) {
    crate::audit::record_for("POST", request.path(), Some(role), response, target);
}

fn parse_item(item: Value, index: Option<usize>) -> Result<ImportRequest, Response> {
    let at = index.map(|index| format!("import {index}: ")).unwrap_or_default();
    // serde's own messages may quote a value, which could be a key pasted into the wrong field,
    // so the message is rebuilt without values.
    serde_json::from_value(item).map_err(|error| {
        let (message, field) = crate::json::describe(&error, ".");
        let usage = "send {\"cluster\": \"id\", \"namespace\": \"...\", \"secret\": \"...\"} with optional replace and clusters";
        error_response(400, "invalid_json", &format!("{at}{message}; {usage}"), field.as_deref())
    })
}

/// Imports one Secret and responds as a create does: 201 with the certificate's details.
async fn import_one(item: &ImportRequest, role: Role, now: DateTime<Utc>) -> Response {
    let (namespace, name) = (item.namespace.as_str(), item.secret.as_str());
    if let Err(response) = check_item(item) {
        return response;
    }
    let store = match Store::open() {
        Ok(store) => store,
        Err(error) => return internal_error(error),
    };
    if let Err(response) = check_source_cluster(&store, item) {
        return response;
    }
    let adopt = if item.replace { vec!["*".to_string()] } else { vec![item.cluster.clone()] };

    match store.get::<CertificateHead>(&records::certificate_key(namespace, name)) {
        Ok(None) => {}
        Ok(Some(head)) => return answer_taken(&head, item, now, adopt).await,
        Err(error) => return internal_error(error),
    }

    let found = match crate::hooks::read_secret(&item.cluster, namespace, name).await {
        Ok(Ok(found)) => found,
        Ok(Err(response)) => return response,
        Err(error) => return crate::gateways::unavailable(&error),
    };
    if found.managed {
        let message = format!(
            "Secret {namespace}/{name} in cluster {} already carries meshcert's label, so there is nothing to import: manage it through its certificate, or remove the label {}={} in the cluster to import it",
            item.cluster,
            meshcert_core::kube::MANAGED_BY_LABEL,
            meshcert_core::kube::MANAGED_BY_VALUE
        );
        return error_response(409, "already_managed", &message, Some("secret"));
    }
    let context = import::sealing_context(&item.cluster, namespace, name);
    let private_key = match cipher().and_then(|cipher| Ok(cipher.open(&found.private_key, &context)?)) {
        Ok(private_key) => private_key,
        Err(error) => return internal_error(error),
    };

    // The same checks as an upload, except that an expired certificate is adopted with a
    // warning and alerted: it is what the gateways serve now.
    let mtls = found.ca_certificate.is_some();
    let input = UploadInput {
        certificate: found.certificate.as_bytes(),
        private_key: private_key.expose().as_bytes(),
        ca_certificate: found.ca_certificate.as_deref().map(str::as_bytes),
        mtls,
        allow_expired: true,
    };
    let mut upload = match validate::validate_upload(&input, now, certificates::warning_days()) {
        Ok(upload) => upload,
        Err(error) => {
            tracing::warn!(cluster = %item.cluster, namespace = %namespace, name = %name, code = error.code(), "import rejected");
            let message = format!("Secret {namespace}/{name} in cluster {} cannot be adopted: {error}", item.cluster);
            return error_response(422, error.code(), &message, Some("secret"));
        }
    };
    // The upload's wording names a request field that an import does not have.
    for warning in &mut upload.warnings {
        warning.message = warning.message.replace("it is stored because allow_expired is true", "it is adopted because gateways serve it now");
    }
    let delivery = Delivery {
        clusters: item.clusters.clone(),
        separate_ca_secret: found.separate_ca_secret && mtls,
        secret_format: Some(found.format),
        imported_from: Some(ImportOrigin { cluster: item.cluster.clone(), imported_at: now }),
    };
    if let Err(response) = delivery.check(name, mtls) {
        return response;
    }

    // The name is free only if no head exists when the first head is written: of two imports at
    // once, the later one gets the response to an import of a taken name.
    let free = |head: Option<&CertificateHead>| head.map_or(Ok(()), |head| Err(head.clone()));
    let head = match write_version(&store, free, namespace, name, Content::from_upload(&upload, mtls), &delivery, role, now, None) {
        Ok(Ok(head)) => head,
        Ok(Err(head)) => return answer_taken(&head, item, now, adopt).await,
        Err(error) => return internal_error(error),
    };
    tracing::info!(cluster = %item.cluster, namespace = %namespace, name = %name, replace = item.replace, "certificate imported");

    respond_after_write(201, namespace, name, Some(head.version), upload.warnings, now, adopt).await
}

/// Builds the response to an import of a name that a certificate has. An import of the same Secret again resumes
/// one whose adoption did not finish, such as when the cluster could not be reached right after
/// the certificate was stored.
async fn answer_taken(head: &CertificateHead, item: &ImportRequest, now: DateTime<Utc>, adopt: Vec<String>) -> Response {
    let (namespace, name) = (item.namespace.as_str(), item.secret.as_str());
    if head.state == CertificateState::Deleting {
        return deleting(namespace, name);
    }
    if head.imported_from.as_ref().is_some_and(|origin| origin.cluster == item.cluster) {
        let warning = Warning { code: "already_imported".into(), message: format!("{namespace}/{name} was imported from cluster {} before; it was synced again", item.cluster) };
        return respond_after_write(200, namespace, name, None, vec![warning], now, adopt).await;
    }
    let message = format!("meshcert already stores certificate {namespace}/{name}; rotate it with PUT /api/v1/certificates/{namespace}/{name}, or delete it before importing the cluster's Secret");
    error_response(409, "certificate_exists", &message, Some("secret"))
}

fn check_item(item: &ImportRequest) -> Result<(), Response> {
    if names::check_dns1123_label(&item.cluster).is_err() {
        return Err(error_response(422, "invalid_cluster", &format!("cluster {:?} is not a cluster id (a DNS-1123 label, such as east)", item.cluster), Some("cluster")));
    }
    if let Err(rule) = names::check_dns1123_label(&item.namespace) {
        return Err(error_response(422, "invalid_namespace", &format!("namespace {} {rule}", names::describe_for_message(&item.namespace)), Some("namespace")));
    }
    if let Err(rule) = names::check_dns1123_subdomain(&item.secret) {
        return Err(error_response(422, "invalid_name", &format!("secret {} {rule}", names::describe_for_message(&item.secret)), Some("secret")));
    }
    if let Err(length) = records::check_key_length(&item.namespace, &item.secret) {
        let message = format!("namespace and secret make a {length}-byte store key, over the limit of {}: shorten the name", records::MAX_KEY_BYTES);
        return Err(error_response(422, "name_too_long", &message, Some("secret")));
    }
    check_selector(item.clusters.as_deref())
}

/// The source cluster must be registered, and selected when the request narrows the clusters.
fn check_source_cluster(store: &Store, item: &ImportRequest) -> Result<(), Response> {
    let cluster = match store.get::<ClusterRecord>(&records::cluster_key(&item.cluster)) {
        Ok(Some(cluster)) => cluster,
        Ok(None) => return Err(error_response(404, "cluster_not_found", &format!("cluster {:?} is not registered: GET /api/v1/clusters lists them", item.cluster), Some("cluster"))),
        Err(error) => return Err(internal_error(error)),
    };
    let selector = LabelSelector::parse(item.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
    if !selector.matches(&cluster.labels) {
        let message = format!(
            "clusters {:?} does not select cluster {}, where the Secret is, so meshcert would adopt it and then remove it: widen the selector",
            item.clusters.as_deref().unwrap_or_default(),
            item.cluster
        );
        return Err(error_response(422, "source_not_selected", &message, Some("clusters")));
    }
    Ok(())
}
