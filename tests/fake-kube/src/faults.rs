//! Fault injection settings and the request log of a fake cluster.

use std::time::Duration;

/// A fault that responds to matching requests with a fixed HTTP status code and a Kubernetes `Status`
/// body, before authentication, as a failing load balancer or an overloaded API server would.
/// A 429 also carries `Retry-After: 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFault {
    pub code: u16,
    /// The path prefix (without the query) of the requests to affect, or `None` for all requests.
    pub path_prefix: Option<String>,
    /// The number of requests left to fail, or `None` to fail every matching request until cleared.
    pub remaining: Option<u32>,
    /// The HTTP method of the requests to affect, such as `PATCH`, or `None` for every method.
    pub method: Option<String>,
}

impl StatusFault {
    /// Creates a fault that fails every request with `code`.
    pub fn new(code: u16) -> Self {
        StatusFault {
            code,
            path_prefix: None,
            remaining: None,
            method: None,
        }
    }

    /// Limits the fault to paths starting with `prefix`, such as `/api/v1/namespaces/istio-system/secrets`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Limits the fault to the next `count` matching requests.
    pub fn times(mut self, count: u32) -> Self {
        self.remaining = Some(count);
        self
    }

    /// Limits the fault to requests with `method`, such as a write that races another client.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
}

/// A fault that closes the connection after reading a matching request, without a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropFault {
    /// The path prefix (without the query) of the requests to affect, or `None` for all requests.
    pub path_prefix: Option<String>,
    /// The number of requests left to drop, or `None` to drop every matching request until cleared.
    pub remaining: Option<u32>,
}

impl DropFault {
    /// Creates a fault that drops every request.
    pub fn new() -> Self {
        DropFault::default()
    }

    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    pub fn times(mut self, count: u32) -> Self {
        self.remaining = Some(count);
        self
    }
}

/// Sends response bodies in pieces of `chunk_bytes`, waiting `delay` before each piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowBody {
    pub chunk_bytes: usize,
    pub delay: Duration,
}

/// One request as the fake cluster received it, recorded before faults and authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path with the query string, as sent, such as
    /// `/api/v1/namespaces/istio-system/secrets/east-tls?fieldManager=meshcert&force=true`.
    pub path: String,
    pub content_type: Option<String>,
    /// The request body, empty when it exceeded the request size limit.
    pub body: Vec<u8>,
}

/// The fault settings of one cluster, which tests can change at any time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pub status: Option<StatusFault>,
    pub drop: Option<DropFault>,
    pub latency: Duration,
    pub slow_body: Option<SlowBody>,
}

/// Checks whether a fault with this prefix and countdown applies to `path`, and counts the use.
fn take(path_prefix: &Option<String>, remaining: &mut Option<u32>, path: &str) -> bool {
    if path_prefix
        .as_deref()
        .is_some_and(|prefix| !path.starts_with(prefix))
    {
        return false;
    }
    match remaining {
        None => true,
        Some(0) => false,
        Some(count) => {
            *count -= 1;
            true
        }
    }
}

impl Faults {
    /// Returns whether to drop the connection for a request to `path`, counting the use.
    pub fn take_drop(&mut self, path: &str) -> bool {
        match &mut self.drop {
            Some(fault) => take(&fault.path_prefix, &mut fault.remaining, path),
            None => false,
        }
    }

    /// Returns the injected status code for a `method` request to `path`, counting the use.
    pub fn take_status(&mut self, method: &str, path: &str) -> Option<u16> {
        let fault = self.status.as_mut()?;
        if fault.method.as_deref().is_some_and(|wanted| !wanted.eq_ignore_ascii_case(method)) {
            return None;
        }
        take(&fault.path_prefix, &mut fault.remaining, path).then_some(fault.code)
    }
}
