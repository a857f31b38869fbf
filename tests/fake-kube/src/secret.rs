//! The core/v1 Secret model: decoding request bodies, validation as kube-apiserver does it, field
//! ownership for server-side apply, and the JSON form that responses carry.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::status::{ApiError, FieldCause};

/// The maximum total size of a Secret's decoded `data` values (`MaxSecretSize` in
/// k8s.io/kubernetes pkg/apis/core).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// The maximum total size of all annotation keys and values (`TotalAnnotationSizeLimitB` in
/// k8s.io/apimachinery).
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

pub(crate) const TLS_TYPE: &str = "kubernetes.io/tls";
const OPAQUE_TYPE: &str = "Opaque";

/// A Secret as the fake cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSecret {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: u64,
    pub creation_timestamp: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub secret_type: String,
    pub data: BTreeMap<String, Vec<u8>>,
    pub immutable: Option<bool>,
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// The fields of a Secret that field ownership is tracked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSet {
    pub data: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub annotations: BTreeSet<String>,
    pub secret_type: bool,
    pub immutable: bool,
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManagedFieldsEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub time: String,
    pub fields: FieldSet,
}

/// A Secret decoded from a request body. `None` means the body omits the field, which matters to
/// server-side apply: an omitted field is not owned by the applier.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecretInput {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub secret_type: Option<String>,
    /// `data` and `stringData` merged, with `stringData` winning as the API server does.
    pub data: Option<BTreeMap<String, Vec<u8>>>,
    pub immutable: Option<bool>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.labels.is_empty()
            && self.annotations.is_empty()
            && !self.secret_type
            && !self.immutable
    }

    /// Collects the fields present in a decoded body.
    pub fn of_input(input: &SecretInput) -> FieldSet {
        FieldSet {
            data: keys(input.data.as_ref()),
            labels: keys(input.labels.as_ref()),
            annotations: keys(input.annotations.as_ref()),
            secret_type: input.secret_type.is_some(),
            immutable: input.immutable.is_some(),
        }
    }

    /// Collects the fields whose values differ between two versions of a Secret, including removed keys.
    pub fn changed_between(old: &StoredSecret, new: &StoredSecret) -> FieldSet {
        FieldSet {
            data: changed_keys(&old.data, &new.data),
            labels: changed_keys(&old.labels, &new.labels),
            annotations: changed_keys(&old.annotations, &new.annotations),
            secret_type: old.secret_type != new.secret_type,
            immutable: old.immutable != new.immutable,
        }
    }

    /// Collects the fields set in a stored Secret.
    pub fn of_secret(secret: &StoredSecret) -> FieldSet {
        FieldSet {
            data: secret.data.keys().cloned().collect(),
            labels: secret.labels.keys().cloned().collect(),
            annotations: secret.annotations.keys().cloned().collect(),
            secret_type: true,
            immutable: secret.immutable.is_some(),
        }
    }

    pub fn intersect(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            data: self.data.intersection(&other.data).cloned().collect(),
            labels: self.labels.intersection(&other.labels).cloned().collect(),
            annotations: self
                .annotations
                .intersection(&other.annotations)
                .cloned()
                .collect(),
            secret_type: self.secret_type && other.secret_type,
            immutable: self.immutable && other.immutable,
        }
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.data.extend(other.data.iter().cloned());
        self.labels.extend(other.labels.iter().cloned());
        self.annotations.extend(other.annotations.iter().cloned());
        self.secret_type |= other.secret_type;
        self.immutable |= other.immutable;
    }

    pub fn subtract(&mut self, other: &FieldSet) {
        self.data.retain(|k| !other.data.contains(k));
        self.labels.retain(|k| !other.labels.contains(k));
        self.annotations.retain(|k| !other.annotations.contains(k));
        self.secret_type &= !other.secret_type;
        self.immutable &= !other.immutable;
    }

    /// Lists the field paths in both sets, written as server-side apply conflicts name them (`.data.tls.crt`).
    pub fn intersection_paths(&self, other: &FieldSet) -> Vec<String> {
        let mut paths = Vec::new();
        paths.extend(
            self.data
                .intersection(&other.data)
                .map(|k| format!(".data.{k}")),
        );
        paths.extend(
            self.labels
                .intersection(&other.labels)
                .map(|k| format!(".metadata.labels.{k}")),
        );
        paths.extend(
            self.annotations
                .intersection(&other.annotations)
                .map(|k| format!(".metadata.annotations.{k}")),
        );
        if self.secret_type && other.secret_type {
            paths.push(".type".into());
        }
        if self.immutable && other.immutable {
            paths.push(".immutable".into());
        }
        paths
    }

    /// Renders the set as `fieldsV1`, the format of `metadata.managedFields[].fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        let prefixed = |set: &BTreeSet<String>| -> Value {
            Value::Object(set.iter().map(|k| (format!("f:{k}"), json!({}))).collect())
        };
        if !self.data.is_empty() {
            root.insert("f:data".into(), prefixed(&self.data));
        }
        if self.immutable {
            root.insert("f:immutable".into(), json!({}));
        }
        let mut metadata = Map::new();
        if !self.annotations.is_empty() {
            metadata.insert("f:annotations".into(), prefixed(&self.annotations));
        }
        if !self.labels.is_empty() {
            metadata.insert("f:labels".into(), prefixed(&self.labels));
        }
        if !metadata.is_empty() {
            root.insert("f:metadata".into(), Value::Object(metadata));
        }
        if self.secret_type {
            root.insert("f:type".into(), json!({}));
        }
        Value::Object(root)
    }

    /// Reads the fields this model tracks from `fieldsV1`, ignoring every other field.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let unprefixed = |v: Option<&Value>| -> BTreeSet<String> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("f:"))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let metadata = value.get("f:metadata");
        FieldSet {
            data: unprefixed(value.get("f:data")),
            labels: unprefixed(metadata.and_then(|m| m.get("f:labels"))),
            annotations: unprefixed(metadata.and_then(|m| m.get("f:annotations"))),
            secret_type: value.get("f:type").is_some(),
            immutable: value.get("f:immutable").is_some(),
        }
    }
}

fn keys<V>(map: Option<&BTreeMap<String, V>>) -> BTreeSet<String> {
    map.map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn changed_keys<V: PartialEq>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    changed
}

impl StoredSecret {
    /// Builds a new Secret from a create or apply body, before its first resourceVersion.
    pub(crate) fn from_input(name: &str, namespace: &str, input: SecretInput, now: &str) -> Self {
        StoredSecret {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: crate::util::new_uid(),
            resource_version: 0,
            creation_timestamp: now.to_owned(),
            labels: input.labels.unwrap_or_default(),
            annotations: input.annotations.unwrap_or_default(),
            secret_type: input
                .secret_type
                .filter(|t| !t.is_empty())
                .unwrap_or_else(default_type),
            data: input.data.unwrap_or_default(),
            immutable: input.immutable,
            managed_fields: Vec::new(),
        }
    }

    /// Renders the Secret as the API returns it. `with_type_meta` is false for items of a list,
    /// which kube-apiserver sends without `apiVersion` and `kind`.
    pub fn to_json(&self, with_type_meta: bool) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(self.name));
        metadata.insert("namespace".into(), json!(self.namespace));
        metadata.insert("uid".into(), json!(self.uid));
        metadata.insert(
            "resourceVersion".into(),
            json!(self.resource_version.to_string()),
        );
        metadata.insert("creationTimestamp".into(), json!(self.creation_timestamp));
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), json!(self.annotations));
        }
        if !self.managed_fields.is_empty() {
            let entries: Vec<Value> = self
                .managed_fields
                .iter()
                .map(|entry| {
                    json!({
                        "manager": entry.manager,
                        "operation": entry.operation,
                        "apiVersion": "v1",
                        "time": entry.time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": entry.fields.to_fields_v1(),
                    })
                })
                .collect();
            metadata.insert("managedFields".into(), Value::Array(entries));
        }

        let mut object = Map::new();
        if with_type_meta {
            object.insert("kind".into(), json!("Secret"));
            object.insert("apiVersion".into(), json!("v1"));
        }
        object.insert("metadata".into(), Value::Object(metadata));
        if let Some(immutable) = self.immutable {
            object.insert("immutable".into(), json!(immutable));
        }
        if !self.data.is_empty() {
            let encoded: Map<String, Value> = self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), json!(STANDARD.encode(v))))
                .collect();
            object.insert("data".into(), Value::Object(encoded));
        }
        object.insert("type".into(), json!(self.secret_type));
        Value::Object(object)
    }

    /// Compares the content that writes change, ignoring uid, resourceVersion, timestamps and
    /// managed fields, to decide whether a write is a no-op.
    pub fn content_eq(&self, other: &StoredSecret) -> bool {
        self.labels == other.labels
            && self.annotations == other.annotations
            && self.secret_type == other.secret_type
            && self.data == other.data
            && self.immutable == other.immutable
    }

    /// Records a write by `manager`: the entry for (manager, operation) gains `written`, and every
    /// other entry loses the fields in `taken`. Entries left without fields are removed, as the
    /// API server does.
    pub fn record_write(
        &mut self,
        manager: &str,
        operation: &str,
        written: &FieldSet,
        taken: &FieldSet,
        time: &str,
    ) {
        for entry in &mut self.managed_fields {
            if !(entry.manager == manager && entry.operation == operation) {
                entry.fields.subtract(taken);
            }
        }
        match self
            .managed_fields
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == operation)
        {
            Some(entry) => {
                entry.fields.union(written);
                entry.time = time.to_owned();
            }
            None => self.managed_fields.push(ManagedFieldsEntry {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                time: time.to_owned(),
                fields: written.clone(),
            }),
        }
        self.managed_fields.retain(|e| !e.fields.is_empty());
    }
}

/// Builds a Secret for direct insertion by a test, bypassing validation. The value's
/// `metadata.managedFields` is kept, as in a Secret read back from the fake. Without it, `manager`
/// owns every field through an `Update` entry, as after a `kubectl create`.
pub(crate) fn stored_from_json(
    namespace: &str,
    value: &Value,
    manager: &str,
) -> Result<StoredSecret, String> {
    let input = decode_input(value).map_err(|e| {
        e.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("invalid Secret")
            .to_owned()
    })?;
    let name = input
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("the Secret has no metadata.name")?;
    let metadata = value.get("metadata");
    let text = |field: &str| {
        metadata
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };

    let mut secret = StoredSecret {
        name,
        namespace: namespace.to_owned(),
        uid: text("uid").unwrap_or_else(crate::util::new_uid),
        resource_version: 0,
        creation_timestamp: text("creationTimestamp").unwrap_or_else(crate::util::now_rfc3339),
        labels: input.labels.unwrap_or_default(),
        annotations: input.annotations.unwrap_or_default(),
        secret_type: input
            .secret_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(default_type),
        data: input.data.unwrap_or_default(),
        immutable: input.immutable,
        managed_fields: Vec::new(),
    };
    match metadata
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    {
        Some(entries) => {
            for entry in entries {
                let field = |key: &str| {
                    entry
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                secret.managed_fields.push(ManagedFieldsEntry {
                    manager: field("manager"),
                    operation: field("operation"),
                    time: field("time"),
                    fields: FieldSet::from_fields_v1(entry.get("fieldsV1").unwrap_or(&Value::Null)),
                });
            }
        }
        None => {
            let owned = FieldSet::of_secret(&secret);
            secret.record_write(
                manager,
                "Update",
                &owned,
                &owned,
                &crate::util::now_rfc3339(),
            );
        }
    }
    Ok(secret)
}

/// Decodes a Secret from a JSON body, with the errors kube-apiserver's decoder returns (400).
pub(crate) fn decode_input(value: &Value) -> Result<SecretInput, ApiError> {
    let decode_error = |detail: String| {
        ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {detail}"
        ))
    };
    let object = value
        .as_object()
        .ok_or_else(|| decode_error("the body is not a JSON object".into()))?;

    let optional_string =
        |map: &Map<String, Value>, field: &str| -> Result<Option<String>, ApiError> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(decode_error(format!(
                    "{field}: expected a string, found {other}"
                ))),
            }
        };
    let string_map = |map: &Map<String, Value>,
                      field: &str|
     -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(entries)) => entries
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(decode_error(format!(
                        "{field}[{k}]: expected a string, found {other}"
                    ))),
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map(Some),
            Some(other) => Err(decode_error(format!(
                "{field}: expected an object, found {other}"
            ))),
        }
    };

    let empty = Map::new();
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(decode_error(format!(
                "metadata: expected an object, found {other}"
            )))
        }
    };

    let encoded_data = string_map(object, "data")?;
    let string_data = string_map(object, "stringData")?;
    let data = match (encoded_data, string_data) {
        (None, None) => None,
        (encoded, plain) => {
            let mut merged = BTreeMap::new();
            for (key, text) in encoded.unwrap_or_default() {
                let bytes = STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| decode_error(describe_base64_error(&key, &e)))?;
                merged.insert(key, bytes);
            }
            for (key, text) in plain.unwrap_or_default() {
                merged.insert(key, text.into_bytes());
            }
            Some(merged)
        }
    };

    let immutable = match object.get("immutable") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(decode_error(format!(
                "immutable: expected a boolean, found {other}"
            )))
        }
    };

    Ok(SecretInput {
        api_version: optional_string(object, "apiVersion")?,
        kind: optional_string(object, "kind")?,
        name: optional_string(metadata, "name")?,
        namespace: optional_string(metadata, "namespace")?,
        resource_version: optional_string(metadata, "resourceVersion")?,
        labels: string_map(metadata, "labels")?,
        annotations: string_map(metadata, "annotations")?,
        secret_type: optional_string(object, "type")?,
        data,
        immutable,
    })
}

fn describe_base64_error(key: &str, error: &base64::DecodeError) -> String {
    match error {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("data[{key}]: illegal base64 data at input byte {offset}")
        }
        other => format!("data[{key}]: illegal base64 data: {other}"),
    }
}

/// Checks the rules kube-apiserver applies to every Secret it stores (`ValidateSecret`).
pub(crate) fn validate(secret: &StoredSecret) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if let Err(detail) = check_dns_subdomain(&secret.name) {
        causes.push(FieldCause::invalid("metadata.name", &secret.name, &detail));
    }
    validate_labels(&secret.labels, &mut causes);
    validate_annotations(&secret.annotations, &mut causes);

    let mut total_bytes = 0usize;
    for (key, value) in &secret.data {
        if let Err(detail) = check_config_key(key) {
            causes.push(FieldCause::invalid(format!("data[{key}]"), key, &detail));
        }
        total_bytes += value.len();
    }
    if total_bytes > MAX_SECRET_BYTES {
        causes.push(FieldCause::too_long("data", MAX_SECRET_BYTES));
    }

    if secret.secret_type == TLS_TYPE {
        for required in ["tls.crt", "tls.key"] {
            if !secret.data.contains_key(required) {
                causes.push(FieldCause::required(format!("data[{required}]")));
            }
        }
    }
    causes
}

/// Checks the rules for replacing `old` with `new` (`ValidateSecretUpdate`): `type` never changes,
/// and an immutable Secret keeps its data and stays immutable.
pub(crate) fn validate_update(old: &StoredSecret, new: &StoredSecret) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if old.secret_type != new.secret_type {
        causes.push(FieldCause::invalid(
            "type",
            &new.secret_type,
            "field is immutable",
        ));
    }
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            causes.push(FieldCause::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        if old.data != new.data {
            causes.push(FieldCause::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
    }
    causes
}

/// Returns the type a Secret gets when a write omits it.
pub(crate) fn default_type() -> String {
    OPAQUE_TYPE.to_owned()
}

/// Checks a DNS-1123 subdomain: at most 253 characters of lowercase alphanumerics, `-` and `.`,
/// each dot-separated label starting and ending with an alphanumeric.
pub(crate) fn check_dns_subdomain(name: &str) -> Result<(), String> {
    const DETAIL: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
                          and must start and end with an alphanumeric character";
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{DETAIL} (and be 1 to 253 characters long)"));
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(DETAIL.to_owned())
    }
}

/// Checks a Secret or ConfigMap key: at most 253 characters of alphanumerics, `-`, `_` and `.`,
/// and not `.`, `..` or starting with `..`.
fn check_config_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err("a valid config key must be 1 to 253 characters long".into());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'".into(),
        );
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Err(
            "a valid config key must not be '.' or '..' and must not start with '..'".into(),
        );
    }
    Ok(())
}

/// Checks a label value or the name part of a qualified name: at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric (empty allowed).
pub(crate) fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

/// Checks a qualified name such as `app.kubernetes.io/managed-by`: an optional DNS subdomain
/// prefix and `/`, then a non-empty name.
pub(crate) fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(|p| check_dns_subdomain(p).is_ok())
        && !name.is_empty()
        && is_label_value(name)
}

pub(crate) fn validate_labels(labels: &BTreeMap<String, String>, causes: &mut Vec<FieldCause>) {
    for (key, value) in labels {
        if !is_qualified_name(key) {
            causes.push(FieldCause::invalid(
                "metadata.labels",
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'",
            ));
        }
        if !is_label_value(value) {
            causes.push(FieldCause::invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of at most 63 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
}

pub(crate) fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    causes: &mut Vec<FieldCause>,
) {
    let mut total = 0usize;
    for (key, value) in annotations {
        if !is_qualified_name(key) {
            causes.push(FieldCause::invalid(
                "metadata.annotations",
                key,
                "annotation keys must be qualified names",
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATION_BYTES {
        causes.push(FieldCause::too_long(
            "metadata.annotations",
            MAX_ANNOTATION_BYTES,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let set = FieldSet {
            data: ["tls.crt".to_string()].into(),
            labels: ["app".to_string()].into(),
            annotations: BTreeSet::new(),
            secret_type: true,
            immutable: false,
        };
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), set);
    }

    #[test]
    fn dns_subdomain_rules() {
        assert!(check_dns_subdomain("east-tls.v2").is_ok());
        assert!(check_dns_subdomain("East").is_err());
        assert!(check_dns_subdomain("-a").is_err());
        assert!(check_dns_subdomain(&"a".repeat(254)).is_err());
    }
}
