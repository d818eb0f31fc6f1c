//! ferry's broker logic: topics, partitions, the group and transaction coordinators, and one
//! handler per Kafka API.
//!
//! Nothing here opens a socket, reads a clock or spawns a task. The `server` crate decodes
//! requests and passes each, with the time ([`Now`]), through one front door,
//! [`Broker::handle`], then carries out the returned [`Outcome`] (send now, send after the
//! group-commit fsync of a ticket, send later on the request's token, wait for fetchable data,
//! send nothing, close). All timed work is [`Broker::tick`], due at [`Broker::next_deadline`];
//! the group commit takes its work with [`Broker::take_sync_work`] and reports each round with
//! [`Broker::synced`]. Disk access goes through the `storage` crate's `Disk` trait, so tests can
//! run the whole broker on a simulated disk.

pub mod acls;
mod admin;
mod authorize;
pub mod cleaner;
pub mod config;
mod coordinators;
mod durable;
mod error;
pub mod groups;
mod handlers;
mod internal_log;
mod now;
mod outcome;
pub mod partition;
mod prepared;
pub mod producers;
pub mod reconcile;
pub mod stats;
mod sync;
mod tick;
pub mod topic_config;
pub mod topics;
pub mod transactions;
pub mod txn_index;
pub mod users;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::RequestKind;
use storage::Disk;
use wire::Request;

pub use admin::{AdminDone, AdminJob};
pub use config::{Advertised, BrokerConfig};
pub use error::BrokerError;
use groups::Groups;
pub use handlers::api_versions::response as api_versions_response;
pub use handlers::list_offsets::PendingOffsets;
pub use now::Now;
pub use outcome::{
    ClientInfo, FetchRead, ListenerName, Outcome, PendingFetch, Principal, Routed, WaitingFetch,
};
pub use prepared::Prepared;
pub use stats::Stats;
pub use sync::{LogId, SyncRound};
pub use tick::HOUSEKEEPING_INTERVAL_MS;
use topics::Topics;

/// What [`Broker::handle_shared`] did with a request.
pub enum SharedCall {
    /// Handled holding the broker shared.
    Handled(Outcome),
    /// Its API needs the broker exclusively: given back for [`Broker::handle`].
    Exclusive(Prepared),
}

pub struct Broker {
    config: BrokerConfig,
    topics: Topics,
    /// Append tickets and the logs waiting for the group commit.
    tickets: sync::Tickets,
    /// Descriptors of idle sealed segments released by housekeeping, not closed yet: the
    /// server closes them outside the lock (`take_released`).
    released: Vec<storage::Released>,
    /// The time of the latest call.
    now: Now,
    /// When `tick` next runs the housekeeping over every log (wall-clock milliseconds).
    housekeeping_due_ms: i64,
    retention_checked_ms: i64,
    /// `storage::reopened_descriptors` at the last housekeeping: while it stays, only logs that
    /// sealed a segment have descriptors to release.
    reopened_seen: u64,
    groups: Groups,
    /// The transaction coordinator and its log, behind a lock of their own (`txns_locked`).
    transactions: Mutex<transactions::Transactions>,
    /// Producer ids and the idempotence counters (the per-partition state is in `Partition`).
    producers: producers::Producers,
    /// Responses to requests answered later, until the server takes them (`take_routed`);
    /// shared group calls route too, so it has a lock of its own.
    routed: Mutex<Vec<Routed>>,
    /// A shared call touched the group coordinator since the server last looked
    /// (`take_shared_effects`): answers may be routed and the next deadline may have moved.
    coordinators_touched: AtomicBool,
    /// The SCRAM credential store (`users.json`).
    users: users::Users,
    /// The ACLs, and the authorizer when `authorizer.enabled` is on.
    acls: acls::Acls,
    /// Compacted topics' log cleaner.
    cleaner: cleaner::Cleaner,
    /// Topic changes' file work in flight, and the requests held behind it.
    admin: admin::Admin,
}

impl Broker {
    /// Opens the data directory, recovering every partition.
    pub fn open(
        config: BrokerConfig,
        disk: Arc<dyn Disk>,
        now: Now,
    ) -> Result<Broker, BrokerError> {
        let now_ms = now.wall_ms();
        let topics = Topics::open(
            disk.clone(),
            &config.data_dir,
            &config.log,
            config.message_max_bytes,
            config.max_partitions,
            now_ms,
        )?;
        let producers = producers::Producers::open(disk.clone(), &config.data_dir)?;
        let users = users::Users::open(disk.clone(), &config.data_dir)?;
        let groups = Groups::open(
            disk.clone(),
            &config.data_dir,
            config.group.clone(),
            config.internal_log_compact_bytes,
            now,
        )?;
        let acls = acls::Acls::open(
            disk.clone(),
            &config.data_dir,
            config.authorizer_enabled,
            &config.authorizer,
        )?;
        let transactions = transactions::Transactions::open(
            disk,
            &config.data_dir,
            config.txn.clone(),
            config.internal_log_compact_bytes,
            now_ms,
        )?;
        let mut broker = Broker {
            config,
            topics,
            tickets: sync::Tickets::default(),
            released: Vec::new(),
            now,
            housekeeping_due_ms: now_ms,
            retention_checked_ms: now_ms,
            reopened_seen: storage::reopened_descriptors(),
            groups,
            transactions: Mutex::new(transactions),
            producers,
            routed: Mutex::new(Vec::new()),
            coordinators_touched: AtomicBool::new(false),
            users,
            acls,
            cleaner: cleaner::Cleaner::default(),
            admin: admin::Admin::default(),
        };
        broker.recover_transactions(now)?;
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// A user's SCRAM credential for `mechanism`, for the server's SASL exchanges (PLAIN logins
    /// are checked against these too).
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: sasl::ScramMechanism,
    ) -> Option<sasl::ScramCredential> {
        self.users.credential(user, mechanism).cloned()
    }

    /// Handles one request of any advertised API, at `now`. `token` names the request for an
    /// answer that comes later ([`Outcome::Later`], then [`Broker::take_routed`]); `client` is
    /// who sent it. A [`Prepared`] request had its state-free checks done before (outside the
    /// lock); a plain `Request` has them done here. A request that changes topics is answered
    /// [`Outcome::Later`], once its file work is done outside the lock (`admin.rs`).
    pub fn handle(
        &mut self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        request: impl Into<Prepared>,
    ) -> Result<Outcome, BrokerError> {
        self.advance(now);
        let Some(request) = self.hold_while_busy(token, client, request.into()) else {
            return Ok(Outcome::Later);
        };
        let outcome = self.dispatch(now, token, client, request)?;
        Ok(self.job_for(now, token, outcome))
    }

    /// Hands a request to its API's handler.
    fn dispatch(
        &mut self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        request: Prepared,
    ) -> Result<Outcome, BrokerError> {
        let request = match self.dispatch_shared(now, token, client, request)? {
            SharedCall::Handled(outcome) => return Ok(outcome),
            SharedCall::Exclusive(request) => request,
        };
        let Request { header, body, .. } = request.request;
        let version = header.request_api_version;
        let response = match body {
            RequestKind::ApiVersions(r) => handlers::api_versions::handle(&r, version),
            RequestKind::Metadata(r) => handlers::metadata::handle(self, client, &r, version)?,
            RequestKind::CreateTopics(r) => {
                handlers::create_topics::handle(self, client, &r, version)?
            }
            RequestKind::DeleteTopics(r) => {
                handlers::delete_topics::handle(self, client, now, &r, version)?
            }
            RequestKind::CreatePartitions(r) => {
                handlers::create_partitions::handle(self, client, &r)?
            }
            RequestKind::AlterConfigs(r) => {
                handlers::alter_configs::handle_alter(self, client, &r)?
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                handlers::alter_configs::handle_incremental(self, client, &r)?
            }
            RequestKind::DescribeConfigs(r) => handlers::describe_configs::handle(self, client, &r),
            RequestKind::DescribeProducers(r) => {
                handlers::describe_producers::handle(self, client, &r)
            }
            RequestKind::DescribeLogDirs(r) => {
                handlers::describe_log_dirs::handle(self, client, &r, version)
            }
            RequestKind::DeleteRecords(r) => {
                return handlers::delete_records::handle(self, client, &r)
            }
            RequestKind::DescribeAcls(r) => handlers::describe_acls::handle(self, client, &r),
            RequestKind::CreateAcls(r) => handlers::create_acls::handle(self, client, &r)?,
            RequestKind::DeleteAcls(r) => handlers::delete_acls::handle(self, client, &r)?,
            RequestKind::SaslHandshake(_) => handlers::sasl::handshake(),
            RequestKind::SaslAuthenticate(_) => handlers::sasl::authenticate(),
            RequestKind::DescribeUserScramCredentials(r) => {
                handlers::describe_user_scram_credentials::handle(self, client, &r)
            }
            RequestKind::AlterUserScramCredentials(r) => {
                handlers::alter_user_scram_credentials::handle(self, client, &r)?
            }
            RequestKind::FindCoordinator(r) => {
                handlers::find_coordinator::handle(self, client, &r, version)
            }
            // Without a transactional id it is the idempotent producer's; with one, the
            // transaction coordinator's (below).
            other => panic!("server passed an unadvertised API: {other:?}"),
        };
        Ok(Outcome::Respond(response))
    }

    /// Handles a request holding the broker shared, when its API allows: a Produce, a Fetch or
    /// a ListOffsets (each partition behind its own lock, see [`partition::Partitions`]); an
    /// InitProducerId, a group or a transaction request (each coordinator behind its own lock;
    /// they may route answers to other requests: [`Broker::take_shared_effects`],
    /// [`Prepared::may_be_answered_later`]); a Metadata that creates no topic. Any other is
    /// handed back for [`Broker::handle`], holding the broker exclusively. `now` is not
    /// recorded: shared calls come in any order of time, none before the last exclusive call.
    pub fn handle_shared(
        &self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        request: impl Into<Prepared>,
    ) -> Result<SharedCall, BrokerError> {
        self.check_time(now);
        self.dispatch_shared(now, token, client, request.into())
    }

    /// The APIs handled holding the broker shared: Produce, Fetch, ListOffsets, InitProducerId,
    /// the consumer group and transaction APIs, and a Metadata that creates no topic.
    fn dispatch_shared(
        &self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        request: Prepared,
    ) -> Result<SharedCall, BrokerError> {
        if let RequestKind::Metadata(_) = &request.request.body {
            return Ok(handlers::metadata::shared(self, client, request));
        }
        let Prepared { request, produce } = request;
        let Request {
            api_key,
            header,
            body,
        } = request;
        let version = header.request_api_version;
        let outcome = match body {
            RequestKind::Produce(r) => {
                let checks = produce.expect("a prepared Produce carries its checks");
                handlers::produce::handle(self, client, now.wall_ms(), r, checks, version)?
            }
            RequestKind::Fetch(r) => handlers::fetch::begin(self, client, now, r, version)?,
            RequestKind::ListOffsets(r) => {
                handlers::list_offsets::handle(self, client, &r, version)
            }
            // Without a transactional id it is the idempotent producer's; with one, the
            // transaction coordinator's (below).
            RequestKind::InitProducerId(r) if r.transactional_id.is_none() => {
                handlers::init_producer_id::handle(self, client, &r)
            }
            body => match groups::group_request(body) {
                Ok(body) => self.handle_group(now, token, client, &header, body)?,
                Err(body) => match transactions::txn_request(body) {
                    Ok(body) => self.handle_txn(now, token, client, version, body)?,
                    Err(body) => {
                        let request = Request {
                            api_key,
                            header,
                            body,
                        };
                        return Ok(SharedCall::Exclusive(Prepared { request, produce }));
                    }
                },
            },
        };
        Ok(SharedCall::Handled(outcome))
    }

    /// Plans again a Fetch whose reads came short ([`FetchRead::Short`]), holding the broker
    /// shared.
    pub fn fetch_again(&self, now: Now, fetch: WaitingFetch) -> Result<Outcome, BrokerError> {
        self.check_time(now);
        handlers::fetch::again(self, now, fetch)
    }

    /// A call's time is not before the latest exclusive call's (the server reads the clock once
    /// it holds the broker, and the clock never goes back); only an exclusive call records it.
    fn check_time(&self, now: Now) {
        assert!(
            now.not_before(self.now),
            "time went back: {now:?} after {:?}",
            self.now
        );
    }

    /// Closes every partition log cleanly (indexes written, everything fsynced, recovery points
    /// at the log end), consuming the broker. Called once, at shutdown.
    pub fn close(self) -> Result<(), BrokerError> {
        // Every log gets its clean close even when an earlier one fails (a full disk fails
        // them all alike): each syncs what it holds. The first error is the answer.
        let mut producers = self.producers;
        // A block of producer ids the transaction log may name is durable before that log.
        let ids = producers.close();
        let topics = self.topics.close();
        let groups = self.groups.close();
        let transactions = self
            .transactions
            .into_inner()
            .expect("transaction coordinator lock poisoned");
        let transactions = ids.and_then(|()| transactions.close());
        topics.and(groups).and(transactions)
    }

    /// Moves the broker's time to `now`, which the caller guarantees is not earlier than the
    /// previous call's on either clock (the server clamps the wall clock once, at its boundary,
    /// so nothing in here has to).
    fn advance(&mut self, now: Now) {
        self.check_time(now);
        self.now = now;
    }
}

/// The server shares the broker between threads: produces and fetches run at once, each holding
/// it shared (`Broker::handle_shared`).
const _: fn() = || {
    fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Broker>();
};
