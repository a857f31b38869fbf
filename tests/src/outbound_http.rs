//! Outbound HTTP from components: the `allowed_outbound_hosts` check, Spin service chaining to
//! `http://<component-id>.spin.internal`, HTTPS with the settings of a matching `[[client_tls]]`
//! entry, and other requests through wasi-http's default sender.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use http_body_util::BodyExt as _;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::app::{AppInner, ComponentRuntime, TriggerKind};
use crate::client_tls;
use crate::outbound::Destination;
use crate::routes::RouteMatch;

/// The client address Spin reports (`spin-client-addr`) for a service-chaining request.
const CHAINED_CLIENT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

pub(crate) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
pub(crate) type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// The wasi-http hooks of one instance.
pub(crate) struct OutboundHooks {
    pub(crate) app: Arc<AppInner>,
    pub(crate) component: Arc<ComponentRuntime>,
    pub(crate) trigger: TriggerKind,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let app = self.app.clone();
        let component = self.component.clone();
        let trigger = self.trigger;
        Box::new(async move { send(app, component, trigger, request, options).await })
    }
}

async fn send(
    app: Arc<AppInner>,
    component: Arc<ComponentRuntime>,
    trigger: TriggerKind,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let destination = match Destination::from_uri(request.uri()) {
        Ok(destination) => destination,
        Err(err) => {
            tracing::warn!(component = %component.id, "outbound request rejected: {err:#}");
            return Err(HttpError::HttpRequestUriInvalid);
        }
    };

    if !component.allowed_hosts.allows(&destination) {
        tracing::warn!(
            component = %component.id,
            destination = %destination,
            "outbound request denied: {destination} is not in [component.{}] allowed_outbound_hosts; add a matching pattern to allow it",
            component.id
        );
        return Err(HttpError::HttpRequestDenied);
    }

    let Some(target) = destination.chaining_target().map(str::to_string) else {
        if destination.scheme == "https" {
            let host = request.uri().host().unwrap_or_default();
            if let Some(config) = app.client_tls.get(&component.id, host) {
                return client_tls::send_request(request, options, config, &component.id).await;
            }
        }
        // NOTE: when no [[client_tls]] entry matches, Spin 4.0 trusts the operating system's roots
        // and the webpki roots. This default sender trusts the webpki roots only.
        let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        return Ok((response.map(|body| body.boxed_unsync()), Box::new(io)));
    };

    if trigger == TriggerKind::Cron {
        // Spin runs the cron trigger in its own process, which serves no HTTP components, so
        // service chaining from a cron component cannot reach anything there either.
        tracing::warn!(
            component = %component.id,
            destination = %destination,
            "outbound request denied: service chaining works only from HTTP components; call the app's own URL instead"
        );
        return Err(HttpError::HttpRequestDenied);
    }

    // Spin drops these before handing a chained request to the target component.
    request.headers_mut().remove(http::header::HOST);
    request.headers_mut().remove(http::header::CONNECTION);
    let route = RouteMatch::synthetic(&target, request.uri().path());
    match app.handle_http(route, request, "http", CHAINED_CLIENT_ADDR).await {
        Ok(response) => {
            let done: IoFuture = Box::new(async { Ok(()) });
            Ok((response, done))
        }
        Err(err) => {
            tracing::warn!(
                component = %component.id,
                target = %target,
                "service chaining request failed: {err:#}"
            );
            Err(HttpError::InternalError(Some(format!("service chaining to {target} failed: {err}"))))
        }
    }
}
