//! The HTTP side of a fake cluster: the accept loop, TLS, faults, authentication and response bodies.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiRequest, ClusterState};
use crate::faults::{Faults, RequestRecord};
use crate::status::ApiError;
use crate::tls::ServerTls;
use crate::util;

/// The maximum request body size kube-apiserver accepts by default (`--max-request-bytes`, 3 MiB).
const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// Everything the connections of one cluster share.
pub(crate) struct Shared {
    pub name: String,
    pub token: String,
    pub version: Value,
    pub log_requests: bool,
    /// The TLS settings when the cluster serves HTTPS, or `None` for plain HTTP.
    pub tls: Option<ServerTls>,
    pub state: Mutex<ClusterState>,
    pub faults: Mutex<Faults>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it. No code in this crate
/// panics while holding a lock, so only a panicking test thread can poison one. The state is still
/// consistent then, because every update completes under the lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the task is aborted. Aborting drops the listener, so new connections
/// are refused, and drops the JoinSet, which aborts every open connection.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match &shared.tls {
                    Some(tls) => {
                        connections.spawn(serve_tls_connection(shared.clone(), tls.acceptor.clone(), stream));
                    }
                    None => {
                        connections.spawn(serve_connection(shared.clone(), stream));
                    }
                },
                Err(error) => {
                    // This is typically EMFILE. Waiting lets open connections finish and free descriptors.
                    eprintln!("fake-kube {}: accept failed: {error}", shared.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Runs the TLS handshake, then serves HTTP on the encrypted stream. A failed handshake, such as
/// a client without the required client certificate, closes the connection before any request.
async fn serve_tls_connection(shared: Arc<Shared>, acceptor: TlsAcceptor, stream: TcpStream) {
    match acceptor.accept(stream).await {
        Ok(stream) => serve_connection(shared, stream).await,
        Err(error) => {
            if shared.log_requests {
                eprintln!("fake-kube {}: TLS handshake failed: {error}", shared.name);
            }
        }
    }
}

async fn serve_connection<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle_request(shared.clone(), request));
    // Errors here are clients hanging up or the drop fault closing the connection; neither is a
    // server failure, so they are not logged.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The error a handler returns to make hyper close the connection without writing a response.
#[derive(Debug)]
struct DroppedConnection;

impl fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}

/// Counts a request as in flight until dropped.
struct InFlightGuard(Arc<Shared>);

impl InFlightGuard {
    fn new(shared: Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(shared)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle_request(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, DroppedConnection> {
    let guard = InFlightGuard::new(shared.clone());
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let path = parts.uri.path().to_owned();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(CONTENT_TYPE);

    let (body, too_large) = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => (Bytes::new(), true),
        // The client closed the connection while sending the body, so no response can be sent.
        Err(_) => return Err(DroppedConnection),
    };
    lock(&shared.requests).push(RequestRecord {
        method: parts.method.to_string(),
        path: path_and_query.clone(),
        content_type: content_type.clone(),
        body: body.to_vec(),
    });

    let (latency, drop_connection, injected_status, slow_body) = {
        let mut faults = lock(&shared.faults);
        (
            faults.latency,
            faults.take_drop(&path),
            faults.take_status(parts.method.as_str(), &path),
            faults.slow_body,
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if drop_connection {
        log_request(
            &shared,
            parts.method.as_str(),
            &path_and_query,
            "connection dropped",
        );
        return Err(DroppedConnection);
    }

    let result = if let Some(code) = injected_status {
        Err(ApiError::injected(code))
    } else if too_large {
        Err(ApiError::too_large(MAX_REQUEST_BYTES))
    } else if !is_authorized(parts.headers.get(AUTHORIZATION), &shared.token) {
        Err(ApiError::unauthorized())
    } else {
        let query = parts.uri.query().map(util::parse_query).unwrap_or_default();
        let user_agent = header(USER_AGENT);
        let api_request = ApiRequest {
            method: &parts.method,
            path: &path,
            query,
            content_type: content_type.as_deref(),
            user_agent: user_agent.as_deref(),
            body: &body,
        };
        let mut state = lock(&shared.state);
        api::handle(&mut state, &shared.version, &api_request)
    };

    let (code, json) = match result {
        Ok(response) => (response.code, response.body),
        Err(error) => (error.code, error.body),
    };
    log_request(
        &shared,
        parts.method.as_str(),
        &path_and_query,
        &code.to_string(),
    );
    Ok(build_response(code, &json, slow_body, guard))
}

fn log_request(shared: &Shared, method: &str, path: &str, outcome: &str) {
    if shared.log_requests {
        eprintln!("fake-kube {}: {method} {path} -> {outcome}", shared.name);
    }
}

/// Checks `Authorization: Bearer <token>`; the scheme is case-insensitive, as in kube-apiserver.
fn is_authorized(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, presented)) => {
            scheme.eq_ignore_ascii_case("bearer") && presented.trim() == token
        }
        None => false,
    }
}

fn build_response(
    code: u16,
    json: &Value,
    slow_body: Option<crate::faults::SlowBody>,
    guard: InFlightGuard,
) -> Response<ResponseBody> {
    // Serializing a `Value` cannot fail, because its map keys are strings and it contains no foreign types.
    let mut bytes = serde_json::to_vec(json).unwrap_or_default();
    bytes.push(b'\n');
    let length = bytes.len();

    let body = match slow_body {
        Some(slow) => {
            // The guard moves into the sending task, so a slow response counts as in flight
            // until its last piece is sent.
            let (sender, receiver) = mpsc::channel(1);
            let bytes = Bytes::from(bytes);
            tokio::spawn(async move {
                let _guard = guard;
                let chunk_bytes = slow.chunk_bytes.max(1);
                let mut offset = 0;
                while offset < bytes.len() {
                    tokio::time::sleep(slow.delay).await;
                    let end = (offset + chunk_bytes).min(bytes.len());
                    if sender.send(bytes.slice(offset..end)).await.is_err() {
                        return;
                    }
                    offset = end;
                }
            });
            ResponseBody::Stream(receiver)
        }
        None => {
            drop(guard);
            ResponseBody::Full(Some(Bytes::from(bytes)))
        }
    };

    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if code == 429 {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A response body: whole, or streamed in pieces by the slow-body fault.
pub(crate) enum ResponseBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(receiver) => receiver
                .poll_recv(cx)
                .map(|piece| piece.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}
