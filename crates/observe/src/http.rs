//! The metrics endpoint (`ferry serve`'s `metrics.listen`, `ferry audit`'s `--metrics-listen`):
//! `GET /metrics` in the Prometheus text format, `GET /healthz` (the process is up: 200 from the
//! moment it listens), `GET /readyz` (200 once the process says it is ready, e.g. the data
//! directory recovered and the Kafka listener serving; 503 before that and while shutting
//! down). HTTP/1.1 by `hyper`; anything else is 404, any method but GET or HEAD 405.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

/// How long a scraper may take to send its request headers before its connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a scrape's families come from: a registry's `gather`, or a snapshot turned into
/// families (`broker_families`).
type Source = Box<dyn Fn() -> Vec<MetricFamily> + Send + Sync>;

/// What the endpoint serves: the families of every source added, and whether the process is
/// ready.
#[derive(Default)]
pub struct Endpoint {
    sources: Mutex<Vec<Source>>,
    ready: AtomicBool,
}

impl Endpoint {
    pub fn new() -> Arc<Endpoint> {
        Arc::new(Endpoint::default())
    }

    /// From now on, every scrape includes what `source` returns (metric names must not repeat
    /// across sources).
    pub fn add_source(&self, source: impl Fn() -> Vec<MetricFamily> + Send + Sync + 'static) {
        self.sources
            .lock()
            .expect("no scrape panics")
            .push(Box::new(source));
    }

    /// The process is ready (`/readyz` answers 200) or not (503: starting or shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every family, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut families: Vec<MetricFamily> = self
            .sources
            .lock()
            .expect("no scrape panics")
            .iter()
            .flat_map(|source| source())
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn request(method: &str, path: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    }

    #[tokio::test]
    async fn readiness_health_and_metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = Endpoint::new();
        let counter = prometheus::IntCounter::new("ferry_test_things_total", "Things.").unwrap();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(counter.clone())).unwrap();
        endpoint.add_source(move || registry.gather());
        let server = tokio::spawn(serve(listener, endpoint.clone()));

        // Starting (recovering): up, not ready.
        assert!(get(addr, &request("GET", "/healthz"))
            .await
            .starts_with("HTTP/1.1 200"));
        let starting = get(addr, &request("GET", "/readyz")).await;
        assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
        endpoint.set_ready(true);
        assert!(get(addr, &request("GET", "/readyz"))
            .await
            .starts_with("HTTP/1.1 200"));
        // Shutting down: not ready again.
        endpoint.set_ready(false);
        assert!(get(addr, &request("GET", "/readyz"))
            .await
            .starts_with("HTTP/1.1 503"));

        counter.inc_by(3);
        let metrics = get(addr, &request("GET", "/metrics")).await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(
            metrics.contains("\nferry_test_things_total 3\n"),
            "{metrics}"
        );
        assert!(get(addr, &request("GET", "/elsewhere"))
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get(addr, &request("POST", "/metrics"))
            .await
            .starts_with("HTTP/1.1 405"));
        // Garbage instead of HTTP closes that connection only.
        let garbage = get(addr, "\x16\x03\x01 not http at all\r\n\r\n").await;
        assert!(!garbage.contains("200 OK"), "{garbage}");
        assert!(get(addr, &request("GET", "/healthz"))
            .await
            .starts_with("HTTP/1.1 200"));
        server.abort();
    }
}
