//! The proxy's tokio shell: the accept loop, the shared state every connection reads (plan,
//! events, operator commands) and the handle the caller steers it with.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::connection;
use crate::error::ChaosError;
use crate::events::{EventLog, FaultEvent, EVENTS_MAX_DEFAULT};
use crate::frame::FRAME_BYTES_MAX_DEFAULT;
use crate::in_flight::IN_FLIGHT_REQUESTS_MAX_DEFAULT;
use crate::plan::{Direction, Fault, Plan};

/// The default limit on client connections open through the proxy at once.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;

/// The default time allowed to open the upstream connection for a new client.
pub const UPSTREAM_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// How long the accept loop waits after a failed accept (for example, out of file descriptors)
/// before trying again, so the failure does not become a busy loop.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// Every limit the proxy enforces, each with a named default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame forwarded, length prefix included; a larger one cuts its connection.
    pub frame_bytes_max: usize,
    /// Fault events kept in memory (the event file keeps them all).
    pub events_max: usize,
    /// Client connections open at once; more are closed on accept.
    pub connections_max: usize,
    /// Requests remembered per connection to match responses (see [`crate::in_flight`]).
    pub in_flight_requests_max: usize,
    /// Time allowed to connect upstream for a new client connection.
    pub upstream_connect_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            events_max: EVENTS_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            in_flight_requests_max: IN_FLIGHT_REQUESTS_MAX_DEFAULT,
            upstream_connect_timeout_ms: UPSTREAM_CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Everything needed to start a proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where clients connect; port 0 picks a free port (see [`ProxyHandle::local_addr`]).
    pub listen: SocketAddr,
    /// The broker every client connection is forwarded to.
    pub upstream: SocketAddr,
    pub plan: Plan,
    pub limits: Limits,
    /// If set, every fault event is also appended to this file as one JSON line.
    pub events_path: Option<PathBuf>,
}

impl ProxyConfig {
    /// A configuration with default limits and no event file.
    pub fn new(listen: SocketAddr, upstream: SocketAddr, plan: Plan) -> ProxyConfig {
        ProxyConfig {
            listen,
            upstream,
            plan,
            limits: Limits::default(),
            events_path: None,
        }
    }
}

/// State shared by the accept loop, every connection and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    pub(crate) limits: Limits,
    plan: RwLock<Arc<Plan>>,
    events: EventLog,
    /// The time origin of `FaultEvent::at_ms`, read only here at the I/O edge.
    started: Instant,
    connections_accepted: AtomicU64,
    /// True while the operator has paused all forwarding.
    pub(crate) paused: watch::Sender<bool>,
    /// Bumped by every `cut_all`; a connection ends when it sees the value change.
    pub(crate) cuts: watch::Sender<u64>,
}

impl Shared {
    /// The plan in force now; a connection asks once per frame, so `set_plan` takes effect on
    /// the next frame of every connection.
    pub(crate) fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.read().expect("plan lock poisoned"))
    }

    pub(crate) fn record(
        &self,
        connection: u64,
        direction: Direction,
        api_key: Option<i16>,
        correlation_id: Option<i32>,
        action: Fault,
        rule: Option<usize>,
    ) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.events.record(FaultEvent {
            at_ms,
            connection,
            direction,
            api_key,
            correlation_id,
            action,
            rule,
        });
    }
}

/// The fault proxy. See the crate documentation for what it does and what it does not.
pub struct Proxy;

impl Proxy {
    /// Starts a proxy with default limits and no event file.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        plan: Plan,
    ) -> Result<ProxyHandle, ChaosError> {
        Proxy::start_with(ProxyConfig::new(listen, upstream, plan)).await
    }

    /// Starts a proxy: binds `config.listen` and forwards each accepted connection to
    /// `config.upstream` until the handle is shut down or dropped.
    pub async fn start_with(config: ProxyConfig) -> Result<ProxyHandle, ChaosError> {
        config.plan.validate()?;
        let file = match &config.events_path {
            None => None,
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ChaosError::OpenEvents {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let bind_error = |source| ChaosError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        tracing::info!(
            listen = %local_addr,
            upstream = %config.upstream,
            seed = config.plan.seed,
            rules = config.plan.rules.len(),
            "chaos proxy started"
        );
        let shared = Arc::new(Shared {
            upstream: config.upstream,
            limits: config.limits,
            plan: RwLock::new(Arc::new(config.plan)),
            events: EventLog::new(config.limits.events_max, file),
            started: Instant::now(),
            connections_accepted: AtomicU64::new(0),
            paused: watch::Sender::new(false),
            cuts: watch::Sender::new(0),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        Ok(ProxyHandle {
            shared,
            local_addr,
            shutdown,
            task: Some(task),
        })
    }
}

/// Accepts clients until shutdown, then aborts every connection (closing its sockets).
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Err means the handle was dropped without `shutdown`: stop all the same.
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    if connections.len() >= shared.limits.connections_max {
                        tracing::warn!(
                            %peer,
                            connections_max = shared.limits.connections_max,
                            "refuse client connection: at the connection limit"
                        );
                        continue;
                    }
                    let connection = shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    // Subscribing here, before the task runs, means a `cut_all` issued after
                    // this accept reaches the new connection too.
                    let cuts = shared.cuts.subscribe();
                    connections.spawn(connection::serve(Arc::clone(&shared), connection, client, peer, cuts));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept client connection");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            },
        }
    }
    connections.shutdown().await;
    tracing::info!("chaos proxy stopped");
}

/// Steers a running proxy. Dropping it stops the proxy too; `shutdown` also waits for that.
#[derive(Debug)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address clients connect to (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plan in force.
    pub fn plan(&self) -> Plan {
        Plan::clone(&self.shared.plan())
    }

    /// Replaces the plan; every connection uses it from its next frame on. Connection numbers
    /// and frame indexes carry on, so a run stays reproducible given the times of the switches.
    pub fn set_plan(&self, plan: Plan) -> Result<(), ChaosError> {
        plan.validate()?;
        tracing::info!(
            seed = plan.seed,
            rules = plan.rules.len(),
            "chaos plan replaced"
        );
        *self.shared.plan.write().expect("plan lock poisoned") = Arc::new(plan);
        Ok(())
    }

    /// The fault events still in memory, oldest first.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.shared.events.snapshot()
    }

    /// How many events were dropped from memory to respect [`Limits::events_max`].
    pub fn events_forgotten(&self) -> u64 {
        self.shared.events.forgotten()
    }

    /// How many client connections have been accepted; the next one gets this number.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// Holds every frame, in both directions and on every connection (new ones too), until
    /// [`ProxyHandle::resume_all`]: a stalled network or a stopped broker. Nothing is lost; the
    /// held frames go on in order. Each open connection records a `Pause` event.
    pub fn pause_all(&self) {
        self.shared
            .paused
            .send_if_modified(|paused| !std::mem::replace(paused, true));
    }

    /// Ends a pause; each open connection records a `Resume` event.
    pub fn resume_all(&self) {
        self.shared
            .paused
            .send_if_modified(|paused| std::mem::replace(paused, false));
    }

    /// Closes every open connection, both sides; each records a `CutConnection` event.
    pub fn cut_all(&self) {
        self.shared.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Stops accepting, closes every connection and waits until all of it is done.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "chaos accept loop ended abnormally");
            }
        }
    }
}
