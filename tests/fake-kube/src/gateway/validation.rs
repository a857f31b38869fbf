//! The checks a Gateway passes before it is stored: object metadata as kube-apiserver checks it,
//! value types as the CRD schema checks them, and the `spec` rules of Istio's validating webhook
//! (`ValidateGateway` in istio/istio pkg/config/validation/validation.go).
//!
//! Every failure is a [`FieldCause`] with the field path, such as `spec.servers[0].tls.mode`.
// NOTE: a real cluster reports a denial by Istio's webhook with the webhook's message after
// `admission webhook "<name>" denied the request:`, and not as a 422 Invalid. The fake returns
// every failure as a 422 Invalid with one cause per field instead, so tests can check the field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::secret;
use crate::status::FieldCause;

/// The TLS modes of `ServerTLSSettings.mode`.
const TLS_MODES: [&str; 6] = [
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
];

/// The port protocols Istio recognizes, matched without case (`protocol.Parse` in
/// istio/istio pkg/config/protocol).
const PROTOCOLS: [&str; 12] = [
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "REDIS",
    "MYSQL",
    "TCP",
    "TLS",
    "UDP",
];

/// The protocols whose servers terminate or pass through TLS, and so need `tls` settings.
const TLS_PROTOCOLS: [&str; 2] = ["HTTPS", "TLS"];

/// The protocols that carry HTTP, whose servers may set `tls` only for `httpsRedirect`.
const HTTP_PROTOCOLS: [&str; 5] = ["HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"];

/// Checks a Gateway and returns every failure, or nothing when it is valid.
pub(super) fn validate(
    name: &str,
    content: &Map<String, Value>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    validate_name(name, &mut causes);
    secret::validate_labels(labels, &mut causes);
    secret::validate_annotations(annotations, &mut causes);
    match content.get("spec") {
        None | Some(Value::Null) => causes.push(no_servers()),
        Some(Value::Object(spec)) => validate_spec(spec, &mut causes),
        Some(other) => causes.push(FieldCause::wrong_type("spec", other, "object")),
    }
    causes
}

/// Checks the name: kube-apiserver requires a DNS-1123 subdomain, and Istio a DNS-1123 label,
/// which has no dots and at most 63 characters.
fn validate_name(name: &str, causes: &mut Vec<FieldCause>) {
    if let Err(detail) = secret::check_dns_subdomain(name) {
        causes.push(FieldCause::invalid("metadata.name", name, &detail));
    } else if name.contains('.') || name.len() > 63 {
        causes.push(FieldCause::invalid(
            "metadata.name",
            name,
            "invalid gateway name: Istio requires a DNS-1123 label (at most 63 characters, without dots)",
        ));
    }
}

fn no_servers() -> FieldCause {
    FieldCause::required("spec.servers").with_detail("gateway must have at least one server")
}

fn validate_spec(spec: &Map<String, Value>, causes: &mut Vec<FieldCause>) {
    match spec.get("selector") {
        None | Some(Value::Null) => {}
        Some(Value::Object(selector)) => {
            for (key, value) in selector {
                if !value.is_string() {
                    causes.push(FieldCause::wrong_type(
                        format!("spec.selector.{key}"),
                        value,
                        "string",
                    ));
                }
            }
        }
        Some(other) => causes.push(FieldCause::wrong_type("spec.selector", other, "object")),
    }

    match spec.get("servers") {
        None | Some(Value::Null) => causes.push(no_servers()),
        Some(Value::Array(servers)) if servers.is_empty() => causes.push(no_servers()),
        Some(Value::Array(servers)) => {
            let mut port_names = BTreeSet::new();
            for (i, server) in servers.iter().enumerate() {
                validate_server(
                    &format!("spec.servers[{i}]"),
                    server,
                    &mut port_names,
                    causes,
                );
            }
        }
        Some(other) => causes.push(FieldCause::wrong_type("spec.servers", other, "array")),
    }
}

/// Checks one server at `path`. `port_names` collects the port names seen so far, which Istio
/// requires to be unique across the servers of a Gateway.
fn validate_server(
    path: &str,
    server: &Value,
    port_names: &mut BTreeSet<String>,
    causes: &mut Vec<FieldCause>,
) {
    let Value::Object(server) = server else {
        causes.push(FieldCause::wrong_type(path, server, "object"));
        return;
    };
    validate_hosts(path, server.get("hosts"), causes);

    let protocol = match server.get("port") {
        None | Some(Value::Null) => {
            causes
                .push(FieldCause::required(format!("{path}.port")).with_detail("port is required"));
            None
        }
        Some(Value::Object(port)) => {
            validate_port(&format!("{path}.port"), port, port_names, causes)
        }
        Some(other) => {
            causes.push(FieldCause::wrong_type(
                format!("{path}.port"),
                other,
                "object",
            ));
            None
        }
    };

    let tls_path = format!("{path}.tls");
    match (server.get("tls"), protocol) {
        (None | Some(Value::Null), Some(protocol)) if TLS_PROTOCOLS.contains(&protocol) => {
            causes.push(
                FieldCause::required(tls_path)
                    .with_detail("server must have TLS settings for HTTPS/TLS protocols"),
            );
        }
        (None | Some(Value::Null), _) => {}
        (Some(Value::Object(tls)), protocol) => validate_tls(&tls_path, tls, protocol, causes),
        (Some(other), _) => causes.push(FieldCause::wrong_type(tls_path, other, "object")),
    }
}

// NOTE: Istio also checks the form of each host (`namespace/dnsName`, wildcards). The fake only
// requires non-empty strings.
fn validate_hosts(path: &str, hosts: Option<&Value>, causes: &mut Vec<FieldCause>) {
    let field = format!("{path}.hosts");
    match hosts {
        None | Some(Value::Null) => causes.push(
            FieldCause::required(field).with_detail("server config must contain at least one host"),
        ),
        Some(Value::Array(hosts)) if hosts.is_empty() => causes.push(
            FieldCause::required(field).with_detail("server config must contain at least one host"),
        ),
        Some(Value::Array(hosts)) => {
            for (j, host) in hosts.iter().enumerate() {
                match host {
                    Value::String(host) if !host.is_empty() => {}
                    Value::String(_) => causes.push(FieldCause::invalid(
                        format!("{field}[{j}]"),
                        "",
                        "a host must not be empty",
                    )),
                    other => causes.push(FieldCause::wrong_type(
                        format!("{field}[{j}]"),
                        other,
                        "string",
                    )),
                }
            }
        }
        Some(other) => causes.push(FieldCause::wrong_type(field, other, "array")),
    }
}

/// Checks `port.number`, `port.protocol` and `port.name`, and returns the protocol in upper case
/// when it is one Istio recognizes.
fn validate_port(
    path: &str,
    port: &Map<String, Value>,
    port_names: &mut BTreeSet<String>,
    causes: &mut Vec<FieldCause>,
) -> Option<&'static str> {
    let number_field = format!("{path}.number");
    match port.get("number") {
        None | Some(Value::Null) => causes.push(FieldCause::required(number_field)),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
            if !number.as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
                causes.push(FieldCause::invalid_value(
                    number_field,
                    &Value::Number(number.clone()),
                    &format!("port number {number} must be in the range 1..65535"),
                ));
            }
        }
        Some(other) => causes.push(FieldCause::wrong_type(number_field, other, "integer")),
    }

    let protocol_field = format!("{path}.protocol");
    let protocol = match port.get("protocol") {
        None | Some(Value::Null) => {
            causes.push(FieldCause::required(protocol_field));
            None
        }
        Some(Value::String(protocol)) => {
            let known = PROTOCOLS
                .iter()
                .copied()
                .find(|p| p.eq_ignore_ascii_case(protocol));
            if known.is_none() {
                causes.push(FieldCause::not_supported(
                    protocol_field,
                    protocol,
                    &PROTOCOLS,
                ));
            }
            known
        }
        Some(other) => {
            causes.push(FieldCause::wrong_type(protocol_field, other, "string"));
            None
        }
    };

    let name_field = format!("{path}.name");
    match port.get("name") {
        None | Some(Value::Null) => {
            causes.push(FieldCause::required(name_field).with_detail("port name must be set"))
        }
        Some(Value::String(name)) if name.is_empty() => {
            causes.push(FieldCause::required(name_field).with_detail("port name must be set"))
        }
        Some(Value::String(name)) => {
            if !port_names.insert(name.clone()) {
                causes.push(FieldCause::invalid(
                    name_field,
                    name,
                    &format!("port names in servers must be unique: duplicate name {name}"),
                ));
            }
        }
        Some(other) => causes.push(FieldCause::wrong_type(name_field, other, "string")),
    }
    protocol
}

/// Checks the `tls` settings at `path` of a server. `protocol` is the server's port protocol, or
/// `None` when it is missing or unknown.
fn validate_tls(
    path: &str,
    tls: &Map<String, Value>,
    protocol: Option<&str>,
    causes: &mut Vec<FieldCause>,
) {
    let mode_field = format!("{path}.mode");
    let mode = match tls.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => match TLS_MODES.iter().copied().find(|m| m == mode) {
            Some(mode) => Some(mode),
            None => {
                causes.push(FieldCause::not_supported(mode_field, mode, &TLS_MODES));
                return;
            }
        },
        Some(other) => {
            causes.push(FieldCause::wrong_type(mode_field, other, "string"));
            return;
        }
    };
    let text = |key: &str| {
        tls.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let has_credential_name = text("credentialName").is_some();
    let has_credential_names = match tls.get("credentialNames") {
        None | Some(Value::Null) => false,
        Some(Value::Array(names)) => !names.is_empty(),
        Some(other) => {
            causes.push(FieldCause::wrong_type(
                format!("{path}.credentialNames"),
                other,
                "array",
            ));
            false
        }
    };
    let has_key_pair = text("serverCertificate").is_some() && text("privateKey").is_some();
    let has_certificate_field = ["serverCertificate", "privateKey", "caCertificates"]
        .iter()
        .any(|k| text(k).is_some());

    let is_tls_protocol = protocol.is_some_and(|p| TLS_PROTOCOLS.contains(&p));
    let is_http_protocol = protocol.is_some_and(|p| HTTP_PROTOCOLS.contains(&p));
    let protocol_text = protocol.unwrap_or("");
    // NOTE: Istio treats a missing mode as PASSTHROUGH. The fake requires it on HTTPS and TLS
    // servers, because a Gateway that terminates TLS with a credential needs SIMPLE or MUTUAL.
    if is_tls_protocol && mode.is_none() {
        causes.push(FieldCause::required(mode_field).with_detail(
            "an HTTPS or TLS server must set a TLS mode (fake-kube requires it, where Istio defaults to PASSTHROUGH)",
        ));
    }
    // An HTTP server may set `tls` only to redirect to HTTPS, so without certificates and with
    // the default PASSTHROUGH mode.
    if is_http_protocol && (mode.is_some_and(|m| m != "PASSTHROUGH") || has_certificate_field) {
        causes.push(FieldCause::invalid(
            path,
            protocol_text,
            "server cannot have TLS settings for plain text HTTP ports",
        ));
    }
    if protocol.is_some() && !is_tls_protocol && !is_http_protocol {
        causes.push(FieldCause::invalid(
            path,
            protocol_text,
            "server cannot have TLS settings for non HTTPS/TLS ports",
        ));
    }

    match mode {
        Some(mode @ ("SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL")) => {
            let sources = [has_credential_name, has_credential_names, has_key_pair]
                .iter()
                .filter(|s| **s)
                .count();
            if sources > 1 {
                causes.push(FieldCause::invalid(
                    path,
                    mode,
                    "only one of credentialName, credentialNames, serverCertificate/privateKey should be specified",
                ));
            }
            if has_credential_name || has_credential_names {
                return;
            }
            let prefix = if mode == "SIMPLE" {
                "SIMPLE TLS"
            } else {
                "MUTUAL TLS"
            };
            if !has_key_pair {
                causes.push(
                    FieldCause::required(format!("{path}.credentialName")).with_detail(&format!(
                        "{prefix} requires credentialName, credentialNames, or serverCertificate and privateKey"
                    )),
                );
            }
            if mode != "SIMPLE" && text("caCertificates").is_none() {
                causes.push(
                    FieldCause::required(format!("{path}.caCertificates"))
                        .with_detail(&format!("{prefix} requires a client CA bundle")),
                );
            }
        }
        Some("ISTIO_MUTUAL") => {
            for field in [
                "serverCertificate",
                "privateKey",
                "caCertificates",
                "credentialName",
            ] {
                if text(field).is_some() {
                    causes.push(FieldCause::forbidden(
                        format!("{path}.{field}"),
                        &format!("ISTIO_MUTUAL TLS cannot have associated {field}"),
                    ));
                }
            }
            if has_credential_names {
                causes.push(FieldCause::forbidden(
                    format!("{path}.credentialNames"),
                    "ISTIO_MUTUAL TLS cannot have associated credentialNames",
                ));
            }
        }
        _ => {}
    }
}
