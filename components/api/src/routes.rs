//! The route table of the api: every path it serves and the methods each accepts.
//!
//! The table is the one source of truth for routing, for the `Allow` header of 405 responses,
//! and for the test that checks the OpenAPI document lists every route. It uses no Spin API, so
//! that test can include this file natively.

/// A route of the api.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`
    Health,
    /// `/livez`
    Live,
    /// `/api/v1/openapi.json`
    OpenApi,
    /// `/api/v1/certificates`
    Certificates,
    /// `/api/v1/certificates/{namespace}/{name}`
    Certificate,
    /// `/api/v1/certificates/{namespace}/{name}/rollback`
    CertificateRollback,
    /// `/api/v1/certificates/{namespace}/{name}/gateways`
    CertificateGateways,
    /// `/api/v1/certificates/{namespace}/{name}/bindings`
    CertificateBindings,
    /// `/api/v1/certificates/{namespace}/{name}/gateway.yaml`
    CertificateGatewayManifest,
    /// `/api/v1/gateways/dangling`
    DanglingGateways,
    /// `/api/v1/imports/candidates`
    ImportCandidates,
    /// `/api/v1/imports`
    Imports,
    /// `/api/v1/clusters`
    Clusters,
    /// `/api/v1/clusters/{id}`
    Cluster,
    /// `/api/v1/clusters/{id}/ca-bundle`
    ClusterCaBundle,
    /// `/api/v1/runtime-config/client-tls`
    ClientTlsConfig,
    /// `/api/v1/alerts`
    Alerts,
    /// `/api/v1/scans/last`
    LastScan,
    /// `/metrics`
    Metrics,
    /// `/api/v1/audit`
    Audit,
    /// `/api/v1/encryption/reseal`
    EncryptionReseal,
}

/// A method a route accepts, with the audit action when the method writes.
pub type MethodEntry = (&'static str, Option<&'static str>);

/// A route: its path template, in OpenAPI's `{parameter}` form, and its methods.
pub type RouteEntry = (&'static str, Route, &'static [MethodEntry]);

/// Every route, with the methods it accepts (HEAD is accepted wherever GET is) and the audit
/// action of each write method.
pub const ROUTES: &[RouteEntry] = &[
    ("/healthz", Route::Health, &[("GET", None)]),
    ("/livez", Route::Live, &[("GET", None)]),
    ("/api/v1/openapi.json", Route::OpenApi, &[("GET", None)]),
    ("/api/v1/certificates", Route::Certificates, &[("GET", None), ("POST", Some("certificate.create"))]),
    (
        "/api/v1/certificates/{namespace}/{name}",
        Route::Certificate,
        &[("GET", None), ("PUT", Some("certificate.replace")), ("DELETE", Some("certificate.delete"))],
    ),
    ("/api/v1/certificates/{namespace}/{name}/rollback", Route::CertificateRollback, &[("POST", Some("certificate.rollback"))]),
    ("/api/v1/certificates/{namespace}/{name}/gateways", Route::CertificateGateways, &[("GET", None)]),
    (
        "/api/v1/certificates/{namespace}/{name}/bindings",
        Route::CertificateBindings,
        &[("POST", Some("certificate.bind")), ("DELETE", Some("certificate.unbind"))],
    ),
    ("/api/v1/certificates/{namespace}/{name}/gateway.yaml", Route::CertificateGatewayManifest, &[("GET", None)]),
    ("/api/v1/gateways/dangling", Route::DanglingGateways, &[("GET", None)]),
    ("/api/v1/imports/candidates", Route::ImportCandidates, &[("GET", None)]),
    ("/api/v1/imports", Route::Imports, &[("POST", Some("certificate.import"))]),
    ("/api/v1/clusters", Route::Clusters, &[("GET", None), ("POST", Some("cluster.register"))]),
    ("/api/v1/clusters/{id}", Route::Cluster, &[("GET", None), ("PATCH", Some("cluster.update")), ("DELETE", Some("cluster.delete"))]),
    ("/api/v1/clusters/{id}/ca-bundle", Route::ClusterCaBundle, &[("GET", None)]),
    ("/api/v1/runtime-config/client-tls", Route::ClientTlsConfig, &[("GET", None)]),
    ("/api/v1/alerts", Route::Alerts, &[("GET", None)]),
    ("/api/v1/scans/last", Route::LastScan, &[("GET", None)]),
    ("/metrics", Route::Metrics, &[("GET", None)]),
    ("/api/v1/audit", Route::Audit, &[("GET", None)]),
    ("/api/v1/encryption/reseal", Route::EncryptionReseal, &[("POST", Some("encryption.reseal"))]),
];

/// A request path matched against [`ROUTES`].
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The route.
    pub route: Route,
    /// Its path template.
    pub template: &'static str,
    /// The values of the template's parameters, in order.
    pub parameters: Vec<&'a str>,
    /// The methods the route accepts.
    pub methods: &'static [MethodEntry],
}

impl Matched<'_> {
    /// Lists the methods for an `Allow` header, such as `GET, PUT, DELETE`.
    pub fn allow(&self) -> String {
        self.methods.iter().map(|(method, _)| *method).collect::<Vec<_>>().join(", ")
    }

    /// Returns whether the route accepts `method`, counting HEAD as GET.
    pub fn accepts(&self, method: &str) -> bool {
        let method = if method == "HEAD" { "GET" } else { method };
        self.methods.iter().any(|(accepted, _)| *accepted == method)
    }

    /// Returns the audit action of a write `method`, such as `certificate.create`.
    pub fn action(&self, method: &str) -> Option<&'static str> {
        self.methods.iter().find(|(accepted, _)| *accepted == method).and_then(|(_, action)| *action)
    }

    /// Names what the request concerns, for the audit trail, such as `certificate istio-system/web`.
    pub fn target(&self) -> String {
        match (self.route, self.parameters.as_slice()) {
            (Route::Certificate | Route::CertificateRollback | Route::CertificateBindings, [namespace, name]) => format!("certificate {namespace}/{name}"),
            (Route::Imports, _) => "imports".into(),
            (Route::Certificates, _) => "certificates".into(),
            (Route::Clusters, _) => "clusters".into(),
            (Route::Cluster | Route::ClusterCaBundle, [id]) => format!("cluster {id}"),
            (Route::EncryptionReseal, _) => "stored secrets".into(),
            _ => self.template.into(),
        }
    }
}

/// Finds the route of `path` (without query). A trailing `/` is ignored. Parameters match one
/// non-empty segment each.
pub fn find(path: &str) -> Option<Matched<'_>> {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    ROUTES.iter().find_map(|(template, route, methods)| {
        let pattern: Vec<&str> = template.split('/').skip(1).collect();
        if pattern.len() != segments.len() {
            return None;
        }
        let mut parameters = Vec::new();
        for (expected, actual) in pattern.iter().zip(&segments) {
            if expected.starts_with('{') {
                if actual.is_empty() {
                    return None;
                }
                parameters.push(*actual);
            } else if expected != actual {
                return None;
            }
        }
        Some(Matched { route: *route, template, parameters, methods })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_with_parameters() {
        let matched = find("/api/v1/certificates/istio-system/web/rollback").unwrap();

        assert_eq!(matched.route, Route::CertificateRollback);
        assert_eq!(matched.parameters, ["istio-system", "web"]);
        assert_eq!(matched.target(), "certificate istio-system/web");
        assert_eq!(find("/api/v1/certificates/").unwrap().route, Route::Certificates);
        assert_eq!(find("/api/v1/certificates/istio-system"), None);
        assert_eq!(find("/api/v1/certificates//web"), None);
    }

    #[test]
    fn methods_and_actions() {
        let matched = find("/api/v1/certificates/istio-system/web").unwrap();

        assert_eq!(matched.allow(), "GET, PUT, DELETE");
        assert!(matched.accepts("HEAD"));
        assert!(!matched.accepts("POST"));
        assert_eq!(matched.action("DELETE"), Some("certificate.delete"));
        assert_eq!(matched.action("GET"), None);
    }
}
