//! ferry's network shell around the `broker` logic: accepts connections, frames and decodes
//! requests, enforces the named limits, runs the group commit (one fdatasync round covers every
//! `acks=all` write that arrived meanwhile, across connections and partitions) and the metadata
//! changes' file work (`admin.rs`) outside the broker lock, waits where the
//! broker says a response waits (an fsync, a later answer, fetchable data), runs the broker's
//! timer, and shuts down gracefully. The broker itself never sees a socket or a clock: every call
//! goes through [`Shared::read`] (produces, fetches, list-offsets, InitProducerId, group and
//! transaction requests, most Metadata, holding the broker shared, so they run at once) or
//! [`Shared::lock`] (everything else, exclusively), which read the clock and, when the call is
//! done, publish what it appended and hand routed answers to their connections.

mod admin;
pub mod alloc;
mod clock;
mod commit;
mod connection;
pub mod limits;
mod listener;
pub mod principal;
mod routes;
pub mod sasl;
mod timer;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use broker::{Broker, BrokerError, Now};
use kafka_protocol::messages::ResponseKind;
use observe::ServerMetrics;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};

pub use clock::Clock;
pub use limits::Limits;
pub use listener::{Listener, SecurityProtocol};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// State shared by the accept loop, connections, the group commit and the timer.
pub(crate) struct Shared {
    /// The broker, held shared by the calls that may run beside others (`Broker::handle_shared`)
    /// and exclusively by every other; taken out (None) at the end of `Server::run` to be closed.
    core: RwLock<Option<Broker>>,
    /// The clock of the broker's calls.
    clock: Clock,
    /// Where the monotonic clock counts from (`Now::mono`), to sleep until a broker deadline.
    clock_origin: tokio::time::Instant,
    /// The group commit's turns; calls publish the newest append ticket to it.
    commit: commit::Pipeline,
    /// The newest ticket whose appends are written to the OS; `acks=1` responses wait on it.
    written: watch::Sender<u64>,
    /// The newest ticket whose appends are fsynced; `acks=all` responses wait on it.
    synced: watch::Sender<u64>,
    /// The newest ticket whose fsync moved the high watermarks (published right after `synced`,
    /// once the broker knows); fetch waiters wait on it.
    visible: watch::Sender<u64>,
    limits: Limits,
    shutdown: watch::Sender<bool>,
    /// Requests waiting for an answer routed later, by token.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Delivery>>>,
    next_token: AtomicU64,
    /// The broker deadline (wall-clock ms) the timer sleeps until; a call that moves the
    /// broker's next deadline before it wakes the timer.
    timer_deadline_ms: AtomicI64,
    timer_wake: Notify,
    /// What the request path measures; None when no metrics endpoint is configured.
    metrics: Option<Arc<ServerMetrics>>,
    /// The listener's SASL settings: connections authenticate first (`sasl.rs`); None on a
    /// listener without SASL.
    sasl: Option<sasl::SaslState>,
    /// Where the broker's topic-change jobs go to be run outside the lock (`admin.rs`); taken
    /// (None) at shutdown once the connections are done, which ends the admin task.
    admin_jobs: Mutex<Option<mpsc::UnboundedSender<broker::AdminJob>>>,
}

/// A routed response and the append ticket that must be fsynced before it is sent.
pub(crate) struct Delivery {
    sync_ticket: Option<u64>,
    response: ResponseKind,
}

/// The broker, held exclusively for one call. Dropping it publishes the broker's newest append
/// ticket to the group commit, hands the answers the call routed to their requests, and wakes the
/// timer if the call moved the broker's next deadline earlier: no call can forget them.
pub(crate) struct Locked<'a> {
    shared: &'a Shared,
    /// Taken (None) only by the drop, which releases the lock before it wakes anyone.
    core: Option<RwLockWriteGuard<'a, Option<Broker>>>,
    /// The time of this call, read once the broker is held: the broker sees it never go back.
    pub(crate) now: Now,
}

/// The broker, held shared for a call that may run beside others
/// ([`broker::Broker::handle_shared`]). Dropping it publishes the newest append ticket to the
/// group commit and, after a coordinator's request, hands the answers it routed to their
/// requests and wakes the timer if the call moved the broker's next deadline earlier. A shared
/// call cannot stage jobs or release files (they need the broker exclusively).
pub(crate) struct Reading<'a> {
    shared: &'a Shared,
    /// Taken (None) only by the drop, which releases the lock before it wakes anyone.
    core: Option<RwLockReadGuard<'a, Option<Broker>>>,
    /// The time of this call, read once the broker is held: no earlier than any exclusive
    /// call's before it.
    pub(crate) now: Now,
    /// The visible ticket when the broker was taken: a fetch told to wait waits for a newer one.
    pub(crate) visible: u64,
}

/// A poisoned broker lock means a call panicked on a broken invariant: stop.
const BROKER_POISONED: &str = "broker state lock poisoned by an earlier panic";

impl Shared {
    /// Holds the broker exclusively for a call; None once it is closed (the end of a shutdown).
    pub(crate) fn lock(&self) -> Option<Locked<'_>> {
        let core = self.core.write().unwrap_or_else(|_| fatal(BROKER_POISONED));
        let now = self.enter(core.as_ref()?);
        Some(Locked {
            shared: self,
            core: Some(core),
            now,
        })
    }

    /// Holds the broker shared for a shared call; None once it is closed.
    pub(crate) fn read(&self) -> Option<Reading<'_>> {
        let core = self.core.read().unwrap_or_else(|_| fatal(BROKER_POISONED));
        let now = self.enter(core.as_ref()?);
        let visible = *self.visible.borrow();
        Some(Reading {
            shared: self,
            core: Some(core),
            now,
            visible,
        })
    }

    /// A fresh token to name a request by.
    pub(crate) fn next_token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// The time of a call, read once the broker is held. Acknowledgements go out before the
    /// group commit reports to the broker: a request sent after one of them must find the broker
    /// knowing that ticket synced.
    fn enter(&self, broker: &Broker) -> Now {
        broker.observe_synced(*self.synced.borrow());
        self.clock.now()
    }

    /// Delivers the answers a call routed, and wakes the timer if the call moved the broker's
    /// next deadline earlier.
    fn hand_over(&self, broker: &Broker, routed: Vec<broker::Routed>) {
        if !routed.is_empty() {
            routes::deliver(self, routed);
        }
        if broker.next_deadline() < self.timer_deadline_ms.load(Ordering::Relaxed) {
            self.timer_wake.notify_one();
        }
    }

    fn publish_appends(&self, ticket: u64) {
        self.commit.appended(ticket);
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        held(&self.core).as_ref().expect("locked while open")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Broker {
        held_mut(&mut self.core)
            .as_mut()
            .expect("locked while open")
    }
}

impl std::ops::Deref for Reading<'_> {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        held(&self.core).as_ref().expect("held while open")
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let shared = self.shared;
        let Some(broker) = held(&self.core).as_ref() else {
            return;
        };
        let ticket = broker.append_ticket();
        // A coordinator request may have answered others and moved the coordinator's deadline.
        if let Some(routed) = broker.take_shared_effects() {
            shared.hand_over(broker, routed);
        }
        drop(self.core.take());
        shared.publish_appends(ticket);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let shared = self.shared;
        let Some(broker) = held_mut(&mut self.core).as_mut() else {
            return;
        };
        let ticket = broker.append_ticket();
        shared.hand_over(broker, broker.take_routed());
        if let Some(job) = broker.take_admin_job() {
            let jobs = match shared.admin_jobs.lock() {
                Ok(jobs) => jobs,
                Err(_) => fatal("admin job sender lock poisoned by an earlier panic"),
            };
            match jobs.as_ref() {
                Some(jobs) => {
                    if jobs.send(job).is_err() {
                        fatal("the admin task ended while the server runs");
                    }
                }
                // Shutting down, the connections done: the change was asked by a request held
                // behind the last job, whose connection is gone; it is not made (nothing was
                // answered, and the next start finds the topics as `meta.json` has them).
                None => tracing::warn!(?job, "topic change dropped at shutdown"),
            }
        }
        let released = broker.take_released();
        if !released.is_empty() {
            // close(2) and munmap(2) on a blocking thread, not under the lock.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(released))),
                Err(_) => drop(released),
            }
        }
        drop(self.core.take());
        shared.publish_appends(ticket);
    }
}

/// The broker a `Locked` or `Reading` holds. Their drop releases the lock before it publishes
/// the call's appends: the group commit thread it may wake takes the round holding the broker
/// exclusively, so woken under the lock it would block on it at once (and on a busy core
/// preempt the holder first), a sleep and a wake-up more before the round is taken.
fn held<G: std::ops::Deref<Target = Option<Broker>>>(core: &Option<G>) -> &Option<Broker> {
    core.as_ref().expect("held until dropped")
}

/// The broker an exclusive guard holds, to change.
fn held_mut<G: std::ops::DerefMut<Target = Option<Broker>>>(
    core: &mut Option<G>,
) -> &mut Option<Broker> {
    core.as_mut().expect("held until dropped")
}

/// The exit code of a process stopped by [`fatal`] (sysexits' EX_SOFTWARE), and of `ferry serve`
/// when its clean shutdown fails.
pub const EXIT_FATAL: u8 = 70;

/// Stops the process: a failed write or fsync, or a broken invariant. Restarting is the repair;
/// recovery re-derives the truth from disk. fsync is never retried (PostgreSQL's fsyncgate).
pub fn fatal(reason: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {reason}; stopping so that recovery can re-derive state from disk");
    eprintln!("ferry: fatal: {reason}");
    std::process::exit(i32::from(EXIT_FATAL))
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
}

impl Server {
    /// Wraps bound listeners around an open (recovered) broker and the clock it was opened
    /// with. Binding first lets the caller learn the ports (listen on port 0) before recovery and
    /// advertise them. `metrics`, when given, is fed as requests pass.
    pub fn new(
        listeners: Vec<Listener>,
        broker: Broker,
        clock: Clock,
        limits: Limits,
        metrics: Option<Arc<ServerMetrics>>,
    ) -> Server {
        let ticket = broker.append_ticket();
        let shared = Arc::new(Shared {
            clock_origin: clock.origin(),
            core: RwLock::new(Some(broker)),
            clock,
            commit: commit::Pipeline::new(ticket),
            written: watch::channel(ticket).0,
            synced: watch::channel(ticket).0,
            visible: watch::channel(ticket).0,
            limits,
            shutdown: watch::channel(false).0,
            waiting: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            timer_deadline_ms: AtomicI64::new(i64::MAX),
            timer_wake: Notify::new(),
            metrics,
            sasl: None,
            admin_jobs: Mutex::new(None),
        });
        assert!(!listeners.is_empty(), "a server needs a listener");
        Server { shared, listeners }
    }

    /// Makes the listener a SASL listener: every connection authenticates with one of
    /// `config.mechanisms` before its first request other than ApiVersions reaches the broker.
    pub fn with_sasl(mut self, config: sasl::SaslConfig) -> Server {
        let shared = Arc::get_mut(&mut self.shared).expect("no connection before the server runs");
        shared.sasl = Some(sasl::SaslState::new(config));
        self
    }

    /// A snapshot of the broker's state for a metrics scrape, taken under the broker lock;
    /// None once the broker is closed.
    pub fn stats_source(&self) -> impl Fn() -> Option<broker::Stats> + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || Some(shared.upgrade()?.read()?.stats())
    }

    /// The first listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].local_addr()
    }

    /// Serves until `stop` resolves, then stops accepting, lets connections finish the requests
    /// they have read, fsyncs everything and returns.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
        let Server { shared, listeners } = self;
        let arrivals: Vec<listener::Arrival> = listeners.iter().map(Listener::arrival).collect();
        // Listeners are polled in turn from a rotating start, so a busy one cannot starve another.
        let mut turn = 0;
        // The admin task's sender is in place before anything can lock the broker.
        let (admin_jobs, admin_receiver) = mpsc::unbounded_channel();
        *shared
            .admin_jobs
            .lock()
            .expect("not poisoned before the server runs") = Some(admin_jobs);
        let admin = tokio::spawn(admin::run(shared.clone(), admin_receiver));
        let commit = tokio::spawn(commit::run(shared.clone()));
        let timer = tokio::spawn(timer::run(shared.clone()));
        let connections = Arc::new(Semaphore::new(shared.limits.connections_max));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                (index, accepted) = listener::accept_any(&listeners, &mut turn) => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        if let Some(metrics) = &shared.metrics {
                            metrics.connection_refused_by_limit();
                        }
                        tracing::warn!(%peer, limit = shared.limits.connections_max, "connection limit reached; closing new connection");
                        drop(stream);
                        continue;
                    };
                    let shared = shared.clone();
                    let arrival = arrivals[index].clone();
                    tasks.spawn(async move {
                        connection::serve(shared, arrival, stream, peer).await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
        drop(listeners);
        shared.shutdown.send_replace(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish in time; closing them");
            tasks.abort_all();
        }
        timer.abort();
        // No connection is left to change topics: the admin task runs what it was sent and
        // ends once the sender is gone.
        let sender = match shared.admin_jobs.lock() {
            Ok(mut jobs) => jobs.take(),
            Err(_) => fatal("admin job sender lock poisoned by an earlier panic"),
        };
        drop(sender);
        if let Err(error) = admin.await {
            fatal(format!("admin task failed: {error}"));
        }
        // The group commit syncs what is pending and ends: no connection is left to append.
        shared.commit.shut_down();
        match commit.await {
            Ok(()) => {}
            Err(error) => fatal(format!("group commit task failed: {error}")),
        }
        let broker = match shared.core.write() {
            Ok(mut core) => core.take(),
            Err(_) => fatal(BROKER_POISONED),
        };
        let broker = broker.expect("the broker is closed once");
        broker.close().map_err(ServerError::Broker)?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
