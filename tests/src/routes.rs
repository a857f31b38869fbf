//! HTTP route matching as Spin's HTTP trigger does it, and the `spin-*` request headers that
//! Spin sets for the component.
//!
//! A route ending in `/...` matches its prefix and everything below it; any other route matches
//! one path exactly. An exact match beats every wildcard, and a longer wildcard prefix beats a
//! shorter one, so `/hooks/...` wins over `/...` for `/hooks/sync`.

use std::net::SocketAddr;

use anyhow::Result;

/// The route of one `[[trigger.http]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// Matches exactly this path.
    Exact(String),
    /// Matches this prefix (without the `/...`, empty for the root) and every path below it.
    Wildcard(String),
}

#[derive(Clone, Debug)]
struct Route {
    component_id: String,
    raw_route: String,
    based_route: String,
    pattern: Pattern,
}

/// The HTTP routes of an app.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// The result of routing one request: the component and the values of Spin's route headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// The id of the component that handles the request.
    pub component_id: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    /// The route after normalisation against the base path `/` (`spin-matched-route`).
    pub based_route: String,
    /// The part of the path after the matched prefix (`spin-path-info`).
    pub path_info: String,
}

/// A route that a later manifest entry took over: `(route, replaced component, effective component)`.
pub type DuplicateRoute = (String, String, String);

impl Router {
    /// Builds a router from `(component id, route)` pairs in manifest order. A later entry with
    /// the same route replaces an earlier one, as in Spin, and is returned in the second list
    /// as `(route, replaced component, effective component)` so the caller can warn about it.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Self, Vec<DuplicateRoute>)> {
        let mut routes: Vec<Route> = Vec::new();
        let mut duplicates = Vec::new();
        for (component_id, raw_route) in entries {
            let (based_route, pattern) = parse_route(raw_route).map_err(|reason| {
                anyhow::format_err!(
                    "invalid route {raw_route:?} for component {component_id:?}: {reason}"
                )
            })?;
            let route = Route {
                component_id: component_id.to_string(),
                raw_route: raw_route.to_string(),
                based_route,
                pattern,
            };
            if let Some(existing) = routes.iter_mut().find(|r| r.pattern == route.pattern) {
                duplicates.push((
                    route.based_route.clone(),
                    existing.component_id.clone(),
                    route.component_id.clone(),
                ));
                *existing = route;
            } else {
                routes.push(route);
            }
        }
        Ok((Self { routes }, duplicates))
    }

    /// Finds the most specific route for `path` (the path without the query string).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let mut best: Option<(&Route, usize)> = None;
        for route in &self.routes {
            let rank = match &route.pattern {
                Pattern::Exact(exact) if exact == path => usize::MAX,
                Pattern::Exact(_) => continue,
                Pattern::Wildcard(prefix) => {
                    let below = path.len() > prefix.len()
                        && path.starts_with(prefix.as_str())
                        && path.as_bytes()[prefix.len()] == b'/';
                    if path != prefix && !below {
                        continue;
                    }
                    prefix.split('/').filter(|s| !s.is_empty()).count()
                }
            };
            if best.is_none_or(|(_, best_rank)| rank > best_rank) {
                best = Some((route, rank));
            }
        }
        let (route, _) = best?;
        let path_info = match &route.pattern {
            Pattern::Exact(_) => String::new(),
            Pattern::Wildcard(prefix) => path[prefix.len()..].to_string(),
        };
        Some(RouteMatch {
            component_id: route.component_id.clone(),
            raw_route: route.raw_route.clone(),
            based_route: route.based_route.clone(),
            path_info,
        })
    }

    /// Returns the routes as `(component id, route as written, is wildcard)`, in manifest order.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.routes.iter().map(|route| {
            let display = match &route.pattern {
                Pattern::Exact(path) => path.as_str(),
                Pattern::Wildcard(prefix) => prefix.as_str(),
            };
            (
                route.component_id.as_str(),
                display,
                matches!(route.pattern, Pattern::Wildcard(_)),
            )
        })
    }
}

impl RouteMatch {
    /// Creates the match Spin uses for a service-chaining request to `component_id`: the route `/...`
    /// with the whole request path as path info.
    pub fn synthetic(component_id: &str, path: &str) -> Self {
        Self {
            component_id: component_id.to_string(),
            raw_route: "/...".to_string(),
            based_route: "/...".to_string(),
            path_info: path.to_string(),
        }
    }

    /// Returns the route without its trailing `/...` (`spin-component-route`).
    pub fn component_route(&self) -> &str {
        self.raw_route.strip_suffix("/...").unwrap_or(&self.raw_route)
    }

    /// Returns the headers Spin adds to the request, as `(lowercase name, value)` pairs.
    ///
    /// `scheme` is the request's scheme, `host` the value of its `Host` header (Spin uses
    /// `localhost` when there is none), `path_and_query` the request target.
    pub fn spin_headers(
        &self,
        scheme: &str,
        host: Option<&str>,
        path_and_query: &str,
        client_addr: SocketAddr,
    ) -> Vec<(&'static str, String)> {
        let host = host.unwrap_or("localhost");
        vec![
            ("spin-path-info", self.path_info.clone()),
            ("spin-full-url", format!("{scheme}://{host}{path_and_query}")),
            ("spin-matched-route", self.based_route.clone()),
            ("spin-base-path", "/".to_string()),
            ("spin-raw-component-route", self.raw_route.clone()),
            ("spin-component-route", self.component_route().to_string()),
            ("spin-client-addr", client_addr.to_string()),
        ]
    }
}

/// Parses a route as written in the manifest into its normalised form and pattern.
fn parse_route(raw: &str) -> std::result::Result<(String, Pattern), String> {
    let mut based = if raw.starts_with('/') { raw.to_string() } else { format!("/{raw}") };
    if let Some(prefix) = based.strip_suffix("/...") {
        check_segments(prefix)?;
        let prefix = prefix.to_string();
        return Ok((based, Pattern::Wildcard(prefix)));
    }
    if based.len() > 1 && based.ends_with('/') {
        based.pop();
    }
    check_segments(&based)?;
    Ok((based.clone(), Pattern::Exact(based)))
}

fn check_segments(path: &str) -> std::result::Result<(), String> {
    for segment in path.split('/') {
        if segment.starts_with(':') || segment == "*" || segment == "..." {
            // NOTE: Spin also accepts named segments (`/users/:id`) and `/*`; meshcert uses
            // neither, so this host rejects them rather than matching them differently.
            return Err(format!(
                "the segment {segment:?} is a Spin route parameter or wildcard, which meshcert-host does not support; use a literal path or a trailing \"/...\""
            ));
        }
    }
    if path.contains("//") {
        return Err("it contains an empty segment (\"//\")".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meshcert_router() -> Router {
        Router::build([("api", "/..."), ("sync-webhook", "/hooks/..."), ("health", "/health")])
            .unwrap()
            .0
    }

    #[test]
    fn route_prefers_most_specific() {
        let router = meshcert_router();
        assert_eq!(router.route("/hooks/sync").unwrap().component_id, "sync-webhook");
        assert_eq!(router.route("/api/v1/certificates").unwrap().component_id, "api");
        assert_eq!(router.route("/health").unwrap().component_id, "health");
        assert_eq!(router.route("/").unwrap().component_id, "api");
    }

    #[test]
    fn route_wildcard_needs_segment_boundary() {
        let router = meshcert_router();
        assert_eq!(router.route("/hooksx").unwrap().component_id, "api");
        assert_eq!(router.route("/hooks").unwrap().component_id, "sync-webhook");
    }

    #[test]
    fn route_exact_matches_only_itself() {
        let (router, _) = Router::build([("health", "/health")]).unwrap();
        assert!(router.route("/health/x").is_none());
        assert!(router.route("/").is_none());
        assert!(router.route("/health").is_some());
    }

    #[test]
    fn route_path_info_is_suffix() {
        let router = meshcert_router();
        assert_eq!(router.route("/hooks/sync").unwrap().path_info, "/sync");
        assert_eq!(router.route("/hooks").unwrap().path_info, "");
        assert_eq!(router.route("/hooks/").unwrap().path_info, "/");
        assert_eq!(router.route("/hooks/a/b/").unwrap().path_info, "/a/b/");
        assert_eq!(router.route("/api/v1").unwrap().path_info, "/api/v1");
        assert_eq!(router.route("/").unwrap().path_info, "/");
        assert_eq!(router.route("/health").unwrap().path_info, "");
    }

    #[test]
    fn route_headers_match_spin() {
        let router = meshcert_router();
        let matched = router.route("/hooks/sync").unwrap();
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let headers = matched.spin_headers("http", Some("127.0.0.1:3000"), "/hooks/sync?a=1", client);
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("spin-full-url"), "http://127.0.0.1:3000/hooks/sync?a=1");
        assert_eq!(get("spin-path-info"), "/sync");
        assert_eq!(get("spin-matched-route"), "/hooks/...");
        assert_eq!(get("spin-raw-component-route"), "/hooks/...");
        assert_eq!(get("spin-component-route"), "/hooks");
        assert_eq!(get("spin-base-path"), "/");
        assert_eq!(get("spin-client-addr"), "127.0.0.1:5000");
    }

    #[test]
    fn route_root_wildcard_component_route_empty() {
        let matched = meshcert_router().route("/x").unwrap();
        assert_eq!(matched.component_route(), "");
        assert_eq!(matched.based_route, "/...");
    }

    #[test]
    fn route_duplicate_replaces_earlier() {
        let (router, duplicates) = Router::build([("a", "/x/..."), ("b", "/x/...")]).unwrap();
        assert_eq!(router.route("/x/y").unwrap().component_id, "b");
        assert_eq!(duplicates, [("/x/...".to_string(), "a".to_string(), "b".to_string())]);
    }

    #[test]
    fn route_rejects_parameters() {
        assert!(Router::build([("a", "/users/:id")]).is_err());
        assert!(Router::build([("a", "/files/*")]).is_err());
    }

    #[test]
    fn route_normalises_missing_slash() {
        let (router, _) = Router::build([("a", "status"), ("b", "/trailing/")]).unwrap();
        assert_eq!(router.route("/status").unwrap().component_id, "a");
        assert_eq!(router.route("/trailing").unwrap().component_id, "b");
    }

    #[test]
    fn synthetic_match_uses_whole_path() {
        let matched = RouteMatch::synthetic("sync-webhook", "/hooks/sync");
        assert_eq!(matched.path_info, "/hooks/sync");
        assert_eq!(matched.based_route, "/...");
        assert_eq!(matched.component_route(), "");
    }
}
