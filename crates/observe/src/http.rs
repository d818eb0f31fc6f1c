//! The metrics endpoint (`metrics.listen`): `GET /metrics` in the Prometheus text format,
//! `GET /healthz` (the process is up: 200 from the moment it listens), `GET /readyz` (200 once
//! the data directory is recovered and the Kafka listener serves, 503 before that and while
//! shutting down). HTTP/1.1 by `hyper`; anything else is 404, any method but GET or HEAD 405.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::stats::broker_families;
use crate::ServerMetrics;

/// How long a scraper may take to send its request headers before its connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

type StatsSource = Box<dyn Fn() -> Option<broker::Stats> + Send + Sync>;

/// What the endpoint serves: the server's live metrics, the broker's snapshot once the broker
/// is open, and whether the broker is ready.
pub struct Endpoint {
    server: Arc<ServerMetrics>,
    broker: OnceLock<StatsSource>,
    ready: AtomicBool,
}

impl Endpoint {
    pub fn new(server: Arc<ServerMetrics>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            server,
            broker: OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    pub fn server(&self) -> &Arc<ServerMetrics> {
        &self.server
    }

    /// The broker is open and its listener serves: from now on scrapes include its snapshot
    /// (taken by `source`; None once the broker is closed), and `/readyz` answers 200.
    pub fn serving(&self, source: impl Fn() -> Option<broker::Stats> + Send + Sync + 'static) {
        if self.broker.set(Box::new(source)).is_err() {
            panic!("the broker's stats source is set once");
        }
        self.ready.store(true, Ordering::Release);
    }

    /// The broker is shutting down: `/readyz` answers 503 again.
    pub fn stopping(&self) {
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every family, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut families = self.server.gather();
        if let Some(stats) = self.broker.get().and_then(|source| source()) {
            families.extend(broker_families(&stats));
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut text)
            .expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match request.uri().path() {
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.render());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(prometheus::TEXT_FORMAT),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" if self.is_ready() => text(StatusCode::OK, "ready\n".into()),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: recovering the data directory or shutting down\n".into(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz, /readyz\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the endpoint on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = endpoint.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "metrics endpoint: connection ended");
            }
        });
    }
}
