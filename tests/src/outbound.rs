//! `allowed_outbound_hosts` patterns with the syntax and matching rules of Spin 4.
//!
//! A pattern is `scheme://host[:port]`. The scheme is a word or `*`. The host is `*`,
//! `*.example.com`, a domain, an IP address, a CIDR block (`10.0.0.0/8`) or `self`. The port is
//! a number, `*`, or a range `start..end` with an exclusive end (`8000..8101` allows 8000
//! through 8100). Without a port, the scheme's well-known port applies (`http` 80, `https` 443);
//! a scheme without one requires an explicit port.

use std::fmt;
use std::net::IpAddr;

use anyhow::{bail, Context as _, Result};
use url::Host;

/// The domain of Spin's service chaining: `http://<component-id>.spin.internal`.
pub const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    /// `None` allows every scheme.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// A suffix including the leading dot, such as `.example.com`.
    AnySubdomain(String),
    /// `self`: relative requests to the app itself, which this host does not route.
    ToSelf,
    Literal(Host),
    Cidr { network: IpAddr, prefix_len: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    /// `start..end`, end exclusive as in Spin.
    Range(u16, u16),
}

impl AllowedHost {
    /// Parses one pattern, with Spin's error cases.
    pub fn parse(pattern: &str) -> Result<Self> {
        let original = pattern.to_string();
        let text = pattern.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            if matches!(text, "*" | ":" | "" | "?") {
                bail!("{text:?} is not a valid allowed outbound host: write <scheme>://<host>[:<port>], with '*' as a wildcard in each part ('*://*:*' allows every destination)");
            }
            bail!("allowed outbound host {text:?} has no scheme: write it as \"https://{text}\" or \"*://{text}\"");
        };

        let (host, port) = split_host_port(rest)
            .with_context(|| format!("invalid allowed outbound host {text:?}"))?;
        let port = parse_port(port, scheme).with_context(|| {
            format!("invalid port {port:?} in allowed outbound host {text:?}")
        })?;
        let scheme = parse_scheme(scheme).with_context(|| {
            format!("invalid scheme {scheme:?} in allowed outbound host {text:?}")
        })?;
        let host = parse_host(host)
            .with_context(|| format!("invalid host {host:?} in allowed outbound host {text:?}"))?;
        Ok(Self { original, scheme, host, port })
    }

    /// Returns whether a request with this scheme, host and port (`None`: the scheme's default) is
    /// allowed by this pattern.
    pub fn allows(&self, scheme: &str, host: &Host, port: Option<u16>) -> bool {
        if let Some(allowed_scheme) = &self.scheme {
            if allowed_scheme != scheme {
                return false;
            }
        }
        let host_matches = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::AnySubdomain(suffix), Host::Domain(domain)) => domain.ends_with(suffix.as_str()),
            (HostPattern::AnySubdomain(_), _) => false,
            (HostPattern::Literal(literal), host) => literal == host,
            (HostPattern::Cidr { network, prefix_len }, Host::Ipv4(ip)) => {
                cidr_contains(*network, *prefix_len, IpAddr::V4(*ip))
            }
            (HostPattern::Cidr { network, prefix_len }, Host::Ipv6(ip)) => {
                cidr_contains(*network, *prefix_len, IpAddr::V6(*ip))
            }
            (HostPattern::Cidr { .. }, Host::Domain(_)) => false,
            (HostPattern::ToSelf, _) => false,
        };
        if !host_matches {
            return false;
        }
        match &self.port {
            PortPattern::Any => true,
            allowed => {
                let Some(port) = port.or_else(|| well_known_port(scheme)) else {
                    return false;
                };
                match allowed {
                    PortPattern::Port(p) => *p == port,
                    PortPattern::Range(start, end) => (*start..*end).contains(&port),
                    PortPattern::Any => true,
                }
            }
        }
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// The resolved `allowed_outbound_hosts` of one component.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

/// A request destination checked against [`AllowedHosts`].
#[derive(Clone, Debug)]
pub struct Destination {
    /// The scheme, such as `https`.
    pub scheme: String,
    /// The parsed host.
    pub host: Host,
    /// The explicit port, if the URL has one.
    pub port: Option<u16>,
}

impl Destination {
    /// Parses the scheme and authority of an outbound request URI.
    pub fn from_uri(uri: &http::Uri) -> Result<Self> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(authority) = uri.authority() else {
            bail!("the request URL {uri} has no host; write an absolute URL such as https://example.com/path");
        };
        let url = url::Url::parse(&format!("{scheme}://{authority}/"))
            .with_context(|| format!("the request URL {uri} has an invalid host"))?;
        let host = url
            .host()
            .with_context(|| format!("the request URL {uri} has no host"))?
            .to_owned();
        Ok(Self { scheme: url.scheme().to_string(), host, port: url.port() })
    }

    /// Returns the component id when this is a service-chaining destination `<id>.spin.internal`.
    pub fn chaining_target(&self) -> Option<&str> {
        match &self.host {
            Host::Domain(domain) => domain
                .strip_suffix(SERVICE_CHAINING_SUFFIX)
                .filter(|id| !id.is_empty() && !id.contains('.')),
            _ => None,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}", self.scheme, self.host),
        }
    }
}

impl AllowedHosts {
    /// Wraps already parsed patterns.
    pub fn new(hosts: Vec<AllowedHost>) -> Self {
        Self { hosts }
    }

    /// Returns whether any pattern allows `destination`.
    pub fn allows(&self, destination: &Destination) -> bool {
        self.hosts
            .iter()
            .any(|h| h.allows(&destination.scheme, &destination.host, destination.port))
    }
}

/// Splits `host[:port][/]` the way Spin does: a trailing `:x` is a port unless the whole text is
/// already a valid host (an IPv6 address or CIDR block contains colons).
fn split_host_port(rest: &str) -> Result<(&str, &str)> {
    let Some((host, tail)) = rest.rsplit_once(':') else {
        return Ok((rest, ""));
    };
    if tail.is_empty() {
        return Ok((host, ""));
    }
    if parse_host(rest).is_ok() {
        return Ok((rest, ""));
    }
    let port = match tail.split_once('/') {
        Some((port, "")) => port,
        Some(_) => bail!("it has a path after the port, but a pattern must not contain a path"),
        None => tail,
    };
    Ok((host, port))
}

fn parse_scheme(scheme: &str) -> Result<Option<String>> {
    if scheme == "*" {
        return Ok(None);
    }
    if scheme.starts_with('{') {
        bail!("scheme lists are not supported: write one entry per scheme");
    }
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic()) {
        bail!("a scheme may contain only letters, or be '*'");
    }
    Ok(Some(scheme.to_ascii_lowercase()))
}

fn parse_host(host: &str) -> Result<HostPattern> {
    let host = host.trim();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if host == "self" || host == "self.alt" {
        return Ok(HostPattern::ToSelf);
    }
    if host.starts_with('{') {
        bail!("host lists are not supported: write one entry per host");
    }
    if let Some((network, prefix_len)) = parse_cidr(host) {
        return Ok(HostPattern::Cidr { network, prefix_len });
    }
    let host = host.strip_suffix('/').unwrap_or(host);
    if host.contains('/') {
        bail!("a host must not contain a path");
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            bail!("'*' is allowed only as the first label, as in \"*.example.com\"");
        }
        let Host::Domain(domain) = Host::parse(domain)
            .with_context(|| format!("\"*.{domain}\" is not a valid wildcard domain"))?
        else {
            bail!("a wildcard must be followed by a domain, not an IP address");
        };
        return Ok(HostPattern::AnySubdomain(format!(".{domain}")));
    }
    if host.contains('*') {
        bail!("'*' is allowed only alone or as the first label, as in \"*.example.com\"");
    }
    Ok(HostPattern::Literal(Host::parse(host)?))
}

/// Parses an IP address or CIDR block; host bits are cleared as Spin does.
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix_len) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max_len = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = prefix_len.unwrap_or(max_len);
    if prefix_len > max_len {
        return None;
    }
    Some((mask(address, prefix_len), prefix_len))
}

fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix_len == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix_len)) };
            IpAddr::V6((bits & mask).into())
        }
    }
}

fn cidr_contains(network: IpAddr, prefix_len: u8, address: IpAddr) -> bool {
    network.is_ipv4() == address.is_ipv4() && mask(address, prefix_len) == network
}

fn parse_port(port: &str, scheme: &str) -> Result<PortPattern> {
    if port.is_empty() {
        let Some(default) = well_known_port(scheme) else {
            bail!("the pattern has no port and the scheme {scheme:?} has no well-known port: add one, such as \":8080\" or \":*\"");
        };
        return Ok(PortPattern::Port(default));
    }
    if port == "*" {
        return Ok(PortPattern::Any);
    }
    if port.starts_with('{') {
        bail!("port lists are not supported: write one entry per port, or a range such as 8000..8101");
    }
    if let Some((start, end)) = port.split_once("..") {
        let start = start
            .parse()
            .with_context(|| format!("port range {port:?} must be two numbers, such as 8000..8101"))?;
        let end = end
            .parse()
            .with_context(|| format!("port range {port:?} must be two numbers, such as 8000..8101"))?;
        return Ok(PortPattern::Range(start, end));
    }
    if port.contains('-') {
        bail!("Spin writes port ranges as start..end with an exclusive end: write 8000..8101 to allow ports 8000 through 8100");
    }
    Ok(PortPattern::Port(port.parse().with_context(|| format!("port {port:?} is not a number"))?))
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        let pattern = AllowedHost::parse(pattern).unwrap();
        let destination = Destination::from_uri(&url.parse().unwrap()).unwrap();
        pattern.allows(&destination.scheme, &destination.host, destination.port)
    }

    #[test]
    fn outbound_wildcard_host_with_port() {
        assert!(allows("https://*:6443", "https://k8s.example.com:6443/api"));
        assert!(!allows("https://*:6443", "https://k8s.example.com/api"));
        assert!(!allows("https://*:6443", "http://k8s.example.com:6443/api"));
    }

    #[test]
    fn outbound_default_port_from_scheme() {
        assert!(allows("https://*:443", "https://hooks.example.com/x"));
        assert!(allows("https://example.com", "https://example.com/x"));
        assert!(allows("https://example.com", "https://example.com:443/x"));
        assert!(!allows("https://example.com", "https://example.com:8443/x"));
    }

    #[test]
    fn outbound_subdomain_wildcard() {
        assert!(allows("https://*.example.com", "https://a.b.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com/"));
        assert!(!allows("https://*.example.com", "https://badexample.com/"));
    }

    #[test]
    fn outbound_loopback_any_port() {
        assert!(allows("http://127.0.0.1:*", "http://127.0.0.1:39211/"));
        assert!(!allows("http://127.0.0.1:*", "http://127.0.0.2:39211/"));
        assert!(!allows("http://127.0.0.1:*", "http://localhost:39211/"));
    }

    #[test]
    fn outbound_port_range_end_exclusive() {
        assert!(allows("http://localhost:8000..8101", "http://localhost:8100/"));
        assert!(!allows("http://localhost:8000..8101", "http://localhost:8101/"));
        let err = format!("{:#}", AllowedHost::parse("http://localhost:8000-8100").unwrap_err());
        assert!(err.contains("8000..8101"), "{err}");
    }

    #[test]
    fn outbound_cidr_and_ipv6() {
        assert!(allows("http://10.0.0.0/8:80", "http://10.1.2.3/"));
        assert!(!allows("http://10.0.0.0/8:80", "http://11.1.2.3/"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080/"));
    }

    #[test]
    fn outbound_service_chaining_pattern() {
        assert!(allows("http://sync-webhook.spin.internal", "http://sync-webhook.spin.internal/hooks/sync"));
        assert!(!allows("http://sync-webhook.spin.internal", "http://api.spin.internal/"));
        assert!(allows("http://*.spin.internal", "http://api.spin.internal/"));
        let destination = Destination::from_uri(&"http://sync-webhook.spin.internal/x".parse().unwrap()).unwrap();
        assert_eq!(destination.chaining_target(), Some("sync-webhook"));
    }

    #[test]
    fn outbound_any_scheme_and_port() {
        assert!(allows("*://*:*", "https://anything.example:1/"));
    }

    #[test]
    fn outbound_rejects_invalid_patterns() {
        for bad in [
            "example.com",
            "*",
            "",
            "https://exa*mple.com",
            "https://*.*.com",
            "https://example.com:abc",
            "https://example.com:443/path",
            "ftp://example.com",
            "ht-tp://example.com",
            "https://{a,b}.com",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn outbound_missing_scheme_error_names_fix() {
        let err = format!("{:#}", AllowedHost::parse("example.com").unwrap_err());
        assert!(err.contains("https://example.com"), "{err}");
    }
}
