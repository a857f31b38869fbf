//! The API server URLs the sync can reach. Spin lets a component call only the hosts in its
//! `allowed_outbound_hosts`, which for sync-webhook are HTTPS on ports 443 and 6443 plus the
//! `extra_cluster_hosts` variable. The api checks a cluster's `api_server` against the same list
//! at registration, so a cluster Spin would refuse is an error then, not at every sync.
//!
//! Patterns follow Spin's syntax: `scheme://host[:port]`, where the scheme may be `*`, the host
//! `*`, `*.example.com`, a name, an IP address or a CIDR block, and the port `*`, a number or a
//! range `start..end` (end excluded). Without a port, the scheme's default port applies.

use std::net::IpAddr;

/// The entries of sync-webhook's `allowed_outbound_hosts` that do not come from a variable.
pub const BUILT_IN_CLUSTER_HOSTS: [&str; 2] = ["https://*:443", "https://*:6443"];

/// One `allowed_outbound_hosts` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// A suffix with its leading dot, such as `.example.com`.
    Subdomain(String),
    Name(String),
    Network { network: IpAddr, prefix_len: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortMatch {
    Any,
    /// `start..end`, end excluded.
    Range(u16, u16),
}

impl HostPattern {
    /// Parses one pattern.
    ///
    /// # Errors
    ///
    /// A message that names the pattern and the part that is wrong.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (scheme, rest) = pattern.trim().split_once("://").ok_or_else(|| format!("{pattern:?} has no scheme: write it as https://host:port"))?;
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let (host, port) = split_port(rest).ok_or_else(|| format!("{pattern:?} has an invalid port: use a number, a range such as 8000..8100, or *"))?;
        let port = match port {
            None => {
                let default = scheme.as_deref().and_then(default_port).ok_or_else(|| format!("{pattern:?} needs an explicit port for its scheme"))?;
                PortMatch::Range(default, default + 1)
            }
            Some(port) => port,
        };
        let host = parse_host(host).ok_or_else(|| format!("{pattern:?} has an invalid host: use *, *.example.com, a name, an IP address or a CIDR block"))?;
        Ok(Self { scheme, host, port })
    }

    /// Returns whether a request to `url` matches this pattern.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        let scheme_matches = self.scheme.as_deref().is_none_or(|scheme| scheme == url.scheme());
        let port_matches = match self.port {
            PortMatch::Any => true,
            PortMatch::Range(start, end) => (start..end).contains(&port),
        };
        scheme_matches && port_matches && self.host_matches(url)
    }

    fn host_matches(&self, url: &url::Url) -> bool {
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => return self.ip_matches(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => return self.ip_matches(IpAddr::V6(ip)),
            None => return false,
        };
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            HostMatch::Name(name) => host == *name,
            HostMatch::Network { .. } => false,
        }
    }

    fn ip_matches(&self, ip: IpAddr) -> bool {
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Name(name) => name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|named| named == ip),
            HostMatch::Network { network, prefix_len } => in_network(ip, *network, *prefix_len),
            HostMatch::Subdomain(_) => false,
        }
    }
}

/// Returns whether sync-webhook may call `url`: it matches a built-in entry or the
/// `extra_cluster_hosts` pattern `extra`. An `extra` that does not parse matches nothing.
pub fn cluster_url_allowed(url: &url::Url, extra: &str) -> bool {
    BUILT_IN_CLUSTER_HOSTS
        .iter()
        .copied()
        .chain(std::iter::once(extra).filter(|extra| !extra.trim().is_empty()))
        .filter_map(|pattern| HostPattern::parse(pattern).ok())
        .any(|pattern| pattern.allows(url))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

/// Splits `host[:port]`, where an IPv6 host is in brackets. `None` for a bad port.
fn split_port(text: &str) -> Option<(&str, Option<PortMatch>)> {
    let text = text.trim_end_matches('/');
    let split_at = if text.starts_with('[') { text.find(']').map(|end| end + 1) } else { text.find(':') };
    let Some(split_at) = split_at.filter(|at| *at < text.len()) else {
        return Some((text, None));
    };
    let (host, port) = (&text[..split_at], text[split_at..].strip_prefix(':')?);
    let port = match port {
        "*" => PortMatch::Any,
        range if range.contains("..") => {
            let (start, end) = range.split_once("..")?;
            PortMatch::Range(start.parse().ok()?, end.parse().ok()?)
        }
        number => {
            let number: u16 = number.parse().ok()?;
            PortMatch::Range(number, number.checked_add(1)?)
        }
    };
    Some((host, Some(port)))
}

fn parse_host(host: &str) -> Option<HostMatch> {
    let host = host.to_ascii_lowercase();
    if host == "*" {
        return Some(HostMatch::Any);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        return (!suffix.is_empty()).then(|| HostMatch::Subdomain(format!(".{suffix}")));
    }
    if let Some((network, prefix_len)) = host.split_once('/') {
        let network: IpAddr = network.parse().ok()?;
        let prefix_len: u8 = prefix_len.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        return (prefix_len <= bits).then_some(HostMatch::Network { network, prefix_len });
    }
    (!host.is_empty() && !host.contains('*')).then_some(HostMatch::Name(host))
}

fn in_network(ip: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    let (ip, network, bits) = match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => (u128::from(u32::from(ip)), u128::from(u32::from(network)), 32),
        (IpAddr::V6(ip), IpAddr::V6(network)) => (u128::from(ip), u128::from(network), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix_len);
    shift >= 128 || (ip >> shift) == (network >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(url: &str, extra: &str) -> bool {
        cluster_url_allowed(&url::Url::parse(url).unwrap(), extra)
    }

    #[test]
    fn built_in_entries_allow_https() {
        assert!(allowed("https://k8s.example.com", ""));
        assert!(allowed("https://10.0.0.1:6443", ""));
        assert!(!allowed("https://10.0.0.1:8443", ""));
        assert!(!allowed("http://10.0.0.1:6443", ""));
    }

    #[test]
    fn extra_entry_follows_spin_syntax() {
        assert!(allowed("http://127.0.0.1:41000", "http://127.0.0.1:*"));
        assert!(allowed("https://api.prod.example.com:8443", "https://*.example.com:8443"));
        assert!(!allowed("https://example.com:8443", "https://*.example.com:8443"));
        assert!(allowed("https://10.1.2.3:8443", "https://10.0.0.0/8:8443"));
        assert!(!allowed("https://11.1.2.3:8443", "https://10.0.0.0/8:8443"));
        assert!(allowed("https://k8s.local:8100", "https://k8s.local:8000..8101"));
        assert!(!allowed("https://k8s.local:8101", "https://k8s.local:8000..8101"));
        assert!(allowed("https://[::1]:9443", "*://[::1]:9443"));
        assert!(!allowed("http://127.0.0.1:41000", "not a pattern"));
    }
}
