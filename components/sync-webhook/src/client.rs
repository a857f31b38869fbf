//! Requests to API servers: a shared limit on requests in flight, a time limit per attempt, and
//! retries with exponential backoff and jitter for the failures that another attempt can fix.

use std::time::{Duration, Instant};

use meshcert_core::kube;
use meshcert_core::records::SyncError;
use meshcert_spin::{sleep, with_timeout};
use spin_sdk::http::{ErrorCode, Response, SendError};

/// The time limit of one attempt. A cluster that accepts connections and never responds then
/// cannot hold up the sync for long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// The time one request may take with its retries, counted from its first attempt. It bounds
/// what a failing cluster costs the sync: about 10 s per request, however many retries fit.
const RETRY_BUDGET: Duration = Duration::from_secs(10);

/// The maximum attempts of one request.
const MAX_ATTEMPTS: u32 = 4;

/// The backoff before the second attempt; it doubles for each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The longest `Retry-After` honoured; a longer one fails the request, for the next sync to retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A response, or the failure that ended the last attempt, with the number of attempts made.
pub struct Sent {
    pub result: Result<Response, SyncError>,
    pub attempts: u32,
}

/// Sends requests to API servers, at most `limit` at a time across every cluster.
pub struct Client {
    permits: async_lock::Semaphore,
}

impl Client {
    pub fn new(limit: usize) -> Self {
        Self { permits: async_lock::Semaphore::new(limit) }
    }

    /// Sends `request` once, within the time limit of one attempt.
    pub async fn send_once(&self, request: &http::Request<Vec<u8>>) -> Result<Response, SyncError> {
        let _permit = self.permits.acquire().await;
        send_once(copy(request), ATTEMPT_TIMEOUT).await
    }

    /// Sends `request`, repeating it after a 429, a 5xx, a timeout or a refused connection
    /// while [`RETRY_BUDGET`] allows. A request takes one of the `limit` slots only while an
    /// attempt is in flight, never while it waits to retry, so a failing cluster does not slow
    /// the others beyond its own attempts.
    pub async fn send(&self, request: &http::Request<Vec<u8>>) -> Sent {
        let mut started = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = self.permits.acquire().await;
            let first_sent = *started.get_or_insert_with(Instant::now);
            let timeout = ATTEMPT_TIMEOUT.min(RETRY_BUDGET.saturating_sub(first_sent.elapsed()));
            let result = send_once(copy(request), timeout).await;
            drop(permit);

            let (error, retry_after) = match result {
                Ok(response) if is_retried_status(*response.status()) => {
                    let retry_after = retry_after(&response);
                    (kube::status_error(*response.status(), response.body()), retry_after)
                }
                Ok(response) => return Sent { result: Ok(response), attempts: attempt },
                Err(error) => (error, None),
            };
            if !kube::is_retryable(&error) || attempt == MAX_ATTEMPTS {
                return Sent { result: Err(error), attempts: attempt };
            }
            let delay = match retry_after {
                Some(retry_after) if retry_after > MAX_RETRY_AFTER => return Sent { result: Err(error), attempts: attempt },
                Some(retry_after) => retry_after,
                None => backoff(attempt),
            };
            if first_sent.elapsed() + delay >= RETRY_BUDGET {
                return Sent { result: Err(error), attempts: attempt };
            }
            tracing::debug!(url = %request.uri(), attempt, delay_ms = delay.as_millis() as u64, kind = %error.kind, "retrying a request to the API server");
            sleep(delay).await;
        }
    }
}

fn is_retried_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// Computes the backoff after attempt `attempt`: [`FIRST_BACKOFF`] doubled per attempt, of which a random
/// half is kept ("equal jitter"), so that requests that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let fraction = f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / f64::from(u32::MAX);
    ceiling / 2 + ceiling.mul_f64(fraction / 2.0)
}

/// `Retry-After` in seconds, as Kubernetes sends it with 429 and some 503 responses.
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response.header("retry-after")?.as_str()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Sends one request within `timeout`.
async fn send_once(request: http::Request<Vec<u8>>, timeout: Duration) -> Result<Response, SyncError> {
    let url = request.uri().to_string();
    let send = spin_sdk::http::send::<_, Response>(request);
    let Some(result) = with_timeout(timeout, send).await else {
        return Err(SyncError {
            kind: "timeout".into(),
            message: format!("the API server did not respond within {} ms ({url}): check that the cluster is up; the next sync or request tries again", timeout.as_millis()),
            status: None,
        });
    };
    result.map_err(|error| send_error(&url, error))
}

/// Copies `request` for another attempt: `http::Request` is not `Clone`.
fn copy(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

fn send_error(url: &str, error: SendError) -> SyncError {
    // The URL has no credentials: the token travels in a header.
    let (kind, advice) = match &error {
        SendError::Http(ErrorCode::ConnectionRefused) => ("connection_refused", "the API server refused the connection: check that it runs and that api_server is right"),
        SendError::Http(ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout | ErrorCode::HttpResponseTimeout) => {
            ("timeout", "the API server did not answer in time")
        }
        SendError::Http(ErrorCode::HttpRequestDenied) => (
            "outbound_denied",
            "Spin's allowed_outbound_hosts does not include this API server: add it with the extra_cluster_hosts variable",
        ),
        SendError::Http(ErrorCode::DnsError(_) | ErrorCode::DnsTimeout | ErrorCode::DestinationNotFound) => {
            ("connection_failed", "the API server's host name does not resolve")
        }
        SendError::Http(ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) | ErrorCode::TlsProtocolError) => (
            "tls_failed",
            "TLS to the API server failed: add its CA to Spin's runtime configuration ([[client_tls]]; GET /api/v1/runtime-config/client-tls prints the block) and restart",
        ),
        _ => ("connection_failed", "the request to the API server failed"),
    };
    SyncError { kind: kind.into(), message: format!("{advice} ({url}: {error})"), status: None }
}
