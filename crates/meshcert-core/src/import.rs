//! Migration: reading a certificate from an existing Secret in any format Istio accepts, so that
//! meshcert can adopt it, and describing the Secrets that are candidates for adoption.
//!
//! Istio reads a gateway certificate from the Secret named by `credentialName` in one of two key
//! formats: the generic `cert`/`key`/`cacert`, which it prefers, and `tls.crt`/`tls.key`/`ca.crt`.
//! For mutual TLS it reads the CA from a companion Secret `{name}-cacert` (key `cacert`, or
//! `ca.crt`) before the CA inside the Secret. An adopted Secret keeps its `type` and key format.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::SealedSecret;
use crate::kube::{KeyFormat, SecretFormat, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::secret::SecretString;

/// A certificate read from a Secret (and its `-cacert` companion) in a cluster.
#[derive(Debug)]
pub struct FoundSecret {
    /// The Secret's `type` and key names.
    pub format: SecretFormat,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// Whether meshcert already manages it.
    pub managed: bool,
    /// The chain, as stored in `cert` or `tls.crt`.
    pub chain_pem: String,
    /// The private key, as stored in `key` or `tls.key`.
    pub private_key: SecretString,
    /// The CA for mutual TLS: from the companion when there is one, else from the Secret.
    pub ca_pem: Option<String>,
    /// Whether the CA came from a `{name}-cacert` companion Secret.
    pub ca_in_companion: bool,
}

/// A Secret that does not hold a certificate in a format Istio reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Neither `cert`/`key` nor `tls.crt`/`tls.key`.
    #[error("Secret {secret} holds no certificate Istio reads (data keys: {keys}): it needs cert and key, or tls.crt and tls.key")]
    NoCertificate {
        /// `namespace/name`.
        secret: String,
        /// The data keys it has.
        keys: String,
    },
    /// An entry is not base64 or not UTF-8 text.
    #[error("entry {key:?} of Secret {secret} is not base64-encoded PEM text")]
    NotText {
        /// `namespace/name`.
        secret: String,
        /// The data key.
        key: String,
    },
}

/// Reads the certificate of `secret`, with the CA of its `-cacert` `companion` when there is one.
///
/// # Errors
///
/// [`ReadError`] when the Secret contains no certificate in an Istio format, or an entry is not text.
pub fn read_secret(secret: &Value, companion: Option<&Value>) -> Result<FoundSecret, ReadError> {
    let metadata = &secret["metadata"];
    let id = format!("{}/{}", metadata["namespace"].as_str().unwrap_or_default(), metadata["name"].as_str().unwrap_or_default());
    let data = decode_data(secret, &id)?;

    // Istio reads the generic keys first, so they are what a gateway serves when both are there.
    let (keys, chain, key, inline_ca) = if data.contains_key("cert") && data.contains_key("key") {
        (KeyFormat::Generic, "cert", "key", "cacert")
    } else if data.contains_key("tls.crt") && data.contains_key("tls.key") {
        (KeyFormat::Tls, "tls.crt", "tls.key", "ca.crt")
    } else {
        return Err(ReadError::NoCertificate { secret: id, keys: data.keys().cloned().collect::<Vec<_>>().join(", ") });
    };

    let companion_ca = match companion {
        Some(companion) => {
            let companion_id = format!("{id}-cacert");
            let mut companion_data = decode_data(companion, &companion_id)?;
            companion_data.remove("cacert").or_else(|| companion_data.remove("ca.crt"))
        }
        None => None,
    };
    let ca_in_companion = companion_ca.is_some();
    let ca_pem = companion_ca.or_else(|| data.get(inline_ca).cloned()).filter(|ca| !ca.trim().is_empty());

    Ok(FoundSecret {
        format: SecretFormat { secret_type: secret["type"].as_str().unwrap_or("Opaque").to_string(), keys },
        resource_version: metadata["resourceVersion"].as_str().map(str::to_string),
        managed: metadata["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE),
        chain_pem: data[chain].clone(),
        private_key: SecretString::new(data[key].clone()),
        ca_pem,
        ca_in_companion,
    })
}

fn decode_data(secret: &Value, id: &str) -> Result<BTreeMap<String, String>, ReadError> {
    let Some(data) = secret["data"].as_object() else {
        return Ok(BTreeMap::new());
    };
    data.iter()
        .map(|(key, value)| {
            let text = value.as_str().and_then(|encoded| BASE64.decode(encoded).ok()).and_then(|bytes| String::from_utf8(bytes).ok());
            text.map(|text| (key.clone(), text)).ok_or_else(|| ReadError::NotText { secret: id.into(), key: key.clone() })
        })
        .collect()
}

/// Describes the leaf of a PEM chain without the key: SHA-256 fingerprint, subject, not_after.
pub fn leaf_facts(chain_pem: &str) -> Option<LeafFacts> {
    let blocks = crate::pem_blocks::parse(crate::validate::Field::Certificate, chain_pem.as_bytes()).ok()?;
    let leaf = blocks.iter().find(|block| block.is_certificate())?;
    let parsed = crate::certificate::parse_der(&leaf.der).ok()?;
    Some(LeafFacts { sha256_fingerprint: parsed.summary.sha256_fingerprint, subject: parsed.summary.subject, not_after: parsed.summary.not_after })
}

/// The facts about a Secret's leaf certificate that tell copies apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafFacts {
    /// SHA-256 of the leaf's DER.
    pub sha256_fingerprint: String,
    /// The leaf's subject.
    pub subject: String,
    /// The leaf's not_after.
    pub not_after: DateTime<Utc>,
}

/// One cluster's copy of a candidate Secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CandidateCopy {
    /// Cluster id.
    pub cluster: String,
    /// `type`.
    #[serde(rename = "type")]
    pub secret_type: String,
    /// Key names.
    pub keys: KeyFormat,
    /// Whether it (or its companion) contains a CA for mutual TLS.
    pub has_ca: bool,
    /// The leaf, or `None` when the chain does not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<LeafFacts>,
    /// The Gateways in this cluster that reference it, as `namespace/name`.
    pub referenced_by: Vec<String>,
}

/// A Secret that meshcert could adopt: a certificate in an Istio format, not managed by meshcert.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Every cluster's copy.
    pub copies: Vec<CandidateCopy>,
    /// Whether every copy contains the same leaf certificate.
    pub identical: bool,
    /// Whether meshcert already stores a certificate of that name, which an import would not replace.
    pub stored: bool,
}

/// The response of `GET /api/v1/imports/candidates`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CandidatesReport {
    /// Candidates, sorted by namespace and name.
    pub candidates: Vec<Candidate>,
    /// The clusters that could not be read.
    pub errors: Vec<crate::gateway::ClusterError>,
}

/// Groups the copies found per cluster by namespace/name, and marks whether they agree.
pub fn group_candidates(found: Vec<(String, String, CandidateCopy)>, stored: impl Fn(&str, &str) -> bool) -> Vec<Candidate> {
    let mut grouped: BTreeMap<(String, String), Vec<CandidateCopy>> = BTreeMap::new();
    for (namespace, name, copy) in found {
        grouped.entry((namespace, name)).or_default().push(copy);
    }
    grouped
        .into_iter()
        .map(|((namespace, name), mut copies)| {
            copies.sort_by(|a, b| a.cluster.cmp(&b.cluster));
            let first = copies[0].leaf.as_ref().map(|leaf| &leaf.sha256_fingerprint);
            let identical = first.is_some() && copies.iter().all(|copy| copy.leaf.as_ref().map(|leaf| &leaf.sha256_fingerprint) == first);
            let stored = stored(&namespace, &name);
            Candidate { namespace, name, copies, identical, stored }
        })
        .collect()
}

/// `POST /hooks/secret`: read one Secret for an import.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSecretRequest {
    /// Cluster id.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Secret name.
    pub name: String,
    /// Any unique value, as in [`crate::api::SyncRequest::nonce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The response of `POST /hooks/secret`. The private key travels sealed with the store's key, so
/// that a caller who holds only the webhook secret cannot read keys out of clusters.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadSecretReport {
    /// `type` and key names.
    pub format: SecretFormat,
    /// `metadata.resourceVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Whether meshcert already manages it.
    pub managed: bool,
    /// The chain.
    pub certificate: String,
    /// The CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// Whether the CA came from the `{name}-cacert` companion.
    pub separate_ca_secret: bool,
    /// The private key, sealed with context [`sealing_context`].
    pub private_key: SealedSecret,
}

/// Returns the AEAD context of a private key read for an import, which binds the ciphertext to the Secret.
pub fn sealing_context(cluster: &str, namespace: &str, name: &str) -> String {
    format!("import/{cluster}/{namespace}/{name}")
}

/// One Secret to adopt, in `POST /api/v1/imports`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The cluster that holds the Secret.
    pub cluster: String,
    /// Its namespace; the certificate is stored under the same namespace and name.
    pub namespace: String,
    /// Its name.
    pub secret: String,
    /// Also take over same-named Secrets that meshcert does not manage in the other clusters,
    /// writing this certificate over them. Without it they are reported as `conflict` and left alone.
    #[serde(default)]
    pub replace: bool,
    /// Label selector of the clusters the certificate goes to; every cluster when absent. The
    /// source cluster must match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<String>,
}

/// The body of `POST /api/v1/imports`: one import, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImportBody {
    /// One Secret.
    One(ImportRequest),
    /// Several Secrets, imported in order.
    Many(Vec<ImportRequest>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(text: &str) -> String {
        BASE64.encode(text)
    }

    #[test]
    fn generic_keys_win_over_tls_keys() {
        let secret = json!({
            "metadata": { "namespace": "istio-system", "name": "web", "resourceVersion": "5" },
            "type": "Opaque",
            "data": { "cert": encode("GENERIC"), "key": encode("GKEY"), "tls.crt": encode("TLS"), "tls.key": encode("TKEY"), "cacert": encode("CA") },
        });

        let found = read_secret(&secret, None).unwrap();

        assert_eq!(found.format, SecretFormat { secret_type: "Opaque".into(), keys: KeyFormat::Generic });
        assert_eq!(found.chain_pem, "GENERIC");
        assert_eq!(found.private_key.expose(), "GKEY");
        assert_eq!(found.ca_pem.as_deref(), Some("CA"));
        assert_eq!(found.resource_version.as_deref(), Some("5"));
        assert!(!found.managed);
        assert!(!found.ca_in_companion);
    }

    #[test]
    fn companion_ca_wins_over_the_inline_ca() {
        let secret = json!({
            "metadata": { "namespace": "istio-system", "name": "web" },
            "type": "kubernetes.io/tls",
            "data": { "tls.crt": encode("TLS"), "tls.key": encode("TKEY"), "ca.crt": encode("INLINE") },
        });
        let companion = json!({ "metadata": { "namespace": "istio-system", "name": "web-cacert" }, "data": { "ca.crt": encode("COMPANION") } });

        let found = read_secret(&secret, Some(&companion)).unwrap();

        assert_eq!(found.format.keys, KeyFormat::Tls);
        assert_eq!(found.ca_pem.as_deref(), Some("COMPANION"));
        assert!(found.ca_in_companion);
    }

    #[test]
    fn read_secret_rejects_other_data() {
        let secret = json!({ "metadata": { "namespace": "apps", "name": "db" }, "data": { "password": encode("x") } });
        let binary = json!({ "metadata": { "namespace": "apps", "name": "bin" }, "data": { "cert": "/w==", "key": encode("k") } });

        assert_eq!(read_secret(&secret, None).unwrap_err().to_string(), "Secret apps/db holds no certificate Istio reads (data keys: password): it needs cert and key, or tls.crt and tls.key");
        assert!(matches!(read_secret(&binary, None), Err(ReadError::NotText { key, .. }) if key == "cert"));
    }

    #[test]
    fn candidates_group_copies_and_compare_leaves() {
        let copy = |cluster: &str, fingerprint: &str| CandidateCopy {
            cluster: cluster.into(),
            secret_type: "kubernetes.io/tls".into(),
            keys: KeyFormat::Tls,
            has_ca: false,
            leaf: Some(LeafFacts { sha256_fingerprint: fingerprint.into(), subject: "CN=web".into(), not_after: DateTime::<Utc>::MIN_UTC }),
            referenced_by: Vec::new(),
        };
        let found = vec![
            ("istio-system".to_string(), "web".to_string(), copy("west", "AA")),
            ("istio-system".to_string(), "web".to_string(), copy("east", "BB")),
            ("istio-system".to_string(), "api".to_string(), copy("east", "CC")),
        ];

        let candidates = group_candidates(found, |_, name| name == "api");

        assert_eq!(candidates.iter().map(|candidate| candidate.name.as_str()).collect::<Vec<_>>(), ["api", "web"]);
        assert!(candidates[0].identical);
        assert!(candidates[0].stored);
        assert!(!candidates[1].identical);
        assert!(!candidates[1].stored);
        assert_eq!(candidates[1].copies[0].cluster, "east");
    }
}
