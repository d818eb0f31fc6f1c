//! ferry's network shell around the `broker` logic: accepts connections, frames and decodes
//! requests, enforces the named limits, runs the group commit (one fdatasync round covers every
//! `acks=all` write that arrived meanwhile, across connections and partitions), long-polls
//! fetches, and shuts down gracefully. The broker itself never sees a socket or a clock.

pub mod alloc;
mod commit;
mod connection;
mod groups;
pub mod limits;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::{Broker, BrokerError};
use kafka_protocol::messages::ResponseKind;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify, Semaphore};

pub use limits::Limits;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// State shared by the accept loop, connections and the group commit.
pub(crate) struct Shared {
    /// The broker; taken out (None) at the end of `Server::run` to be closed.
    broker: Mutex<Option<Broker>>,
    /// The newest append ticket; the group commit watches it.
    appended: watch::Sender<u64>,
    /// The newest ticket whose appends are fsynced; `acks=all` responses wait on it.
    synced: watch::Sender<u64>,
    /// The newest ticket whose fsync moved the high watermarks (published right after `synced`,
    /// once the broker knows); fetch waiters wait on it.
    visible: watch::Sender<u64>,
    limits: Limits,
    shutdown: watch::Sender<bool>,
    /// Group requests waiting for their (possibly delayed) response, by token.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Delivery>>>,
    next_token: AtomicU64,
    /// Wakes the group ticker when a request may have moved the next deadline.
    group_wake: Notify,
}

/// A routed group response and the append ticket that must be fsynced before it is sent.
pub(crate) struct Delivery {
    sync_ticket: Option<u64>,
    response: ResponseKind,
}

impl Shared {
    /// Locks the broker. A poisoned lock means a handler panicked on a broken invariant: stop.
    pub(crate) fn broker(&self) -> BrokerGuard<'_> {
        BrokerGuard(self.lock_slot())
    }

    fn lock_slot(&self) -> MutexGuard<'_, Option<Broker>> {
        match self.broker.lock() {
            Ok(guard) => guard,
            Err(_) => fatal("broker state lock poisoned by an earlier panic"),
        }
    }

    /// Publishes the broker's newest append ticket to fetch waiters and the group commit.
    pub(crate) fn publish_appends(&self, ticket: u64) {
        self.appended.send_if_modified(|current| {
            let changed = *current != ticket;
            *current = ticket;
            changed
        });
    }
}

/// Wall-clock milliseconds since the Unix epoch: Kafka timestamps are wall-clock times.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Stops the process: a failed write or fsync, or a broken invariant. Restarting is the repair;
/// recovery re-derives the truth from disk. fsync is never retried (PostgreSQL's fsyncgate).
pub fn fatal(reason: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {reason}; stopping so that recovery can re-derive state from disk");
    eprintln!("ferry: fatal: {reason}");
    std::process::exit(70)
}

/// The locked broker. Only `Server::run` takes the broker out, after every task using it has
/// ended.
pub(crate) struct BrokerGuard<'a>(MutexGuard<'a, Option<Broker>>);

impl std::ops::Deref for BrokerGuard<'_> {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        self.0.as_ref().expect("broker used after close")
    }
}

impl std::ops::DerefMut for BrokerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Broker {
        self.0.as_mut().expect("broker used after close")
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    /// Wraps a bound listener around an open (recovered) broker. Binding first lets the caller
    /// learn the port (listen on port 0) before recovery and advertise it.
    pub fn from_listener(listener: TcpListener, broker: Broker, limits: Limits) -> Server {
        let ticket = broker.append_ticket();
        let shared = Arc::new(Shared {
            broker: Mutex::new(Some(broker)),
            appended: watch::channel(ticket).0,
            synced: watch::channel(ticket).0,
            visible: watch::channel(ticket).0,
            limits,
            shutdown: watch::channel(false).0,
            waiting: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            group_wake: Notify::new(),
        });
        Server { shared, listener }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `stop` resolves, then stops accepting, lets connections finish the requests
    /// they have read, fsyncs everything and returns.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
        let Server { shared, listener } = self;
        let commit = tokio::spawn(commit::run(shared.clone()));
        let retention = tokio::spawn(retention_loop(shared.clone()));
        let ticker = tokio::spawn(groups::tick_loop(shared.clone()));
        let connections = Arc::new(Semaphore::new(shared.limits.connections_max));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = shared.limits.connections_max, "connection limit reached; closing new connection");
                        drop(stream);
                        continue;
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        connection::serve(shared, stream, peer).await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
        drop(listener);
        shared.shutdown.send_replace(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish in time; closing them");
            tasks.abort_all();
        }
        retention.abort();
        ticker.abort();
        // The commit task syncs what is pending and exits once shutdown is set.
        match commit.await {
            Ok(()) => {}
            Err(error) => fatal(format!("group commit task failed: {error}")),
        }
        let broker = shared
            .lock_slot()
            .take()
            .expect("the broker is closed once");
        broker.close().map_err(ServerError::Broker)?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

async fn retention_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut broker = shared.broker();
        if let Err(error) = broker.enforce_retention(now_ms()) {
            fatal(error);
        }
        // Internal-log compaction appends a snapshot for the group commit to sync.
        shared.publish_appends(broker.append_ticket());
    }
}
