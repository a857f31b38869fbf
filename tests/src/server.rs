//! The loopback HTTP listener and the cron scheduler of a running app.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::app::{App, AppInner};
use crate::cron::{next_fire, POLL_INTERVAL};

/// A running HTTP listener. It stops accepting and closes its connections on
/// [`shutdown`](Self::shutdown) or drop.
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Returns the bound address, with the real port when port 0 was requested.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the base URL, such as `http://127.0.0.1:3000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the listener and waits until it has stopped.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    /// Binds `addr` and serves the app's HTTP routes on it until the returned [`Server`] is
    /// shut down or dropped. Binding port 0 picks a free port.
    pub async fn serve(&self, addr: SocketAddr) -> Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to listen on {addr}: is another process using it? choose another address with --listen"))?;
        let addr = listener.local_addr()?;
        let app = self.inner.clone();
        let task = tokio::spawn(async move {
            // Dropping the set when this task is aborted aborts every connection task.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, client)) => {
                            connections.spawn(serve_connection(app.clone(), stream, client));
                        }
                        Err(err) => {
                            tracing::warn!("failed to accept a connection: {err}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        tracing::info!(address = %addr, "serving HTTP");
        Ok(Server { addr, task })
    }

    /// Starts firing every `[[trigger.cron]]` on its schedule, measured on the app's wall
    /// clock. Events stop when the returned scheduler is dropped.
    pub fn start_cron(&self) -> CronScheduler {
        let mut tasks = JoinSet::new();
        for index in 0..self.inner.cron_entries.len() {
            tasks.spawn(run_schedule(self.inner.clone(), index));
        }
        CronScheduler { _tasks: tasks }
    }
}

/// The running cron schedules of an app; dropping it stops them.
pub struct CronScheduler {
    _tasks: JoinSet<()>,
}

async fn serve_connection(app: Arc<AppInner>, stream: tokio::net::TcpStream, client: SocketAddr) {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.route_and_handle(request, client).await) }
    });
    if let Err(err) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(client = %client, "connection ended with an error: {err}");
    }
}

async fn run_schedule(app: Arc<AppInner>, index: usize) {
    let entry = &app.cron_entries[index];
    let mut after: DateTime<Utc> = app.clock.now().into();
    loop {
        let Some(due) = next_fire(&entry.schedule, after) else {
            tracing::info!(component = %entry.component_id, "cron expression {:?} fires no more events", entry.expression);
            return;
        };
        loop {
            let now: DateTime<Utc> = app.clock.now().into();
            if now >= due {
                break;
            }
            let wait = (due - now).to_std().unwrap_or_default().min(POLL_INTERVAL);
            tokio::time::sleep(wait).await;
        }
        let timestamp = app.clock.unix_seconds();
        tracing::info!(component = %entry.component_id, timestamp, "cron event");
        if let Err(err) = app.run_cron(&entry.component_id, timestamp).await {
            tracing::error!(component = %entry.component_id, "cron event failed: {err:#}");
        }
        // After a clock jump, skip the missed ticks and schedule from the current time.
        after = app.clock.now().into();
    }
}
