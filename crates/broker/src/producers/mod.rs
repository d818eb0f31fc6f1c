//! The idempotent producer ("retries never write a record twice"): producer id allocation
//! ([`ids`]), per-partition producer state and its verdicts on incoming batches ([`state`]),
//! snapshots of that state ([`snapshot`], [`files`]) so recovery replays only the log's tail, and
//! the broker-wide counters that the traces report.
//!
//! The state of a partition lives in its `Partition` (`partition.rs`): rebuilt on open from the
//! newest snapshot plus the batch headers after it, judged and updated by the produce handler,
//! snapshotted at segment rolls, periodically and at a clean close.

pub mod files;
pub mod ids;
pub mod snapshot;
pub mod state;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use storage::Disk;

use crate::sync::Tickets;
use crate::BrokerError;
use ids::{Allocated, IdReservation, ProducerIdAllocator};
pub use state::{BatchHeader, ProducerStateTable, Verdict};

/// Kafka's `producer.id.expiration.ms` default: a producer id idle this long is forgotten.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// How often idle producer ids are looked for.
pub const EXPIRATION_CHECK_INTERVAL_MS: i64 = 60_000;
/// How often, at most, a partition whose producer state changed writes a snapshot besides the
/// ones at segment rolls and at close; it bounds the replay after a crash.
pub const SNAPSHOT_INTERVAL_MS: i64 = 30_000;

/// What the idempotence checks did, for the traces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Retries of batches already written, answered with their original offsets.
    pub duplicates: u64,
    /// Batches refused with INVALID_PRODUCER_EPOCH.
    pub fenced: u64,
    /// Batches refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
    pub out_of_order: u64,
    /// Producer ids forgotten after `producer.id.expiration.ms` idle.
    pub expired: u64,
    /// Producer ids handed out by InitProducerId.
    pub allocated: u64,
}

/// The counters the shared paths move (produce; InitProducerId): atomics.
#[derive(Debug, Default)]
struct VerdictCounters {
    duplicates: AtomicU64,
    fenced: AtomicU64,
    out_of_order: AtomicU64,
    allocated: AtomicU64,
}

impl Counters {
    pub fn trace(&self, what: &str) {
        tracing::info!(
            duplicates_detected = self.duplicates,
            producers_fenced = self.fenced,
            out_of_order_rejected = self.out_of_order,
            producer_ids_expired = self.expired,
            producer_ids_allocated = self.allocated,
            "{what}"
        );
    }
}

/// The broker-wide part of idempotence: the id allocator, the counters and the maintenance
/// clock (expiration, periodic snapshots, counter traces).
pub struct Producers {
    /// Behind a lock of its own: transactional InitProducerId requests allocate holding the
    /// broker shared.
    ids: Mutex<ProducerIdAllocator>,
    verdicts: VerdictCounters,
    /// The counter of the exclusive paths (`expired`); the others are kept in `verdicts`.
    counted: Counters,
    /// The counters as last traced; a new trace line only when they moved.
    traced: Counters,
    pub(crate) expiration_checked_ms: i64,
}

impl Producers {
    pub fn open(disk: Arc<dyn Disk>, data_dir: &Path) -> Result<Producers, BrokerError> {
        Ok(Producers {
            ids: Mutex::new(ProducerIdAllocator::open(disk, data_dir)?),
            verdicts: VerdictCounters::default(),
            counted: Counters::default(),
            traced: Counters::default(),
            // The first maintenance pass expires what recovery brought back.
            expiration_checked_ms: i64::MIN,
        })
    }

    /// A new producer id, and the ticket its answer waits for when its block is not durable
    /// yet (see `ids.rs`).
    pub(crate) fn allocate(&self, tickets: &Tickets) -> Allocated {
        let allocated = self.ids.lock().expect(IDS_POISONED).allocate(tickets);
        self.verdicts.allocated.fetch_add(1, Ordering::Relaxed);
        allocated
    }

    /// Counts a verdict that refused or short-circuited an append; the counters as they are
    /// after it.
    pub(crate) fn count(&self, verdict: &Verdict) -> Counters {
        let counter = match verdict {
            Verdict::Duplicate(_) => Some(&self.verdicts.duplicates),
            Verdict::Fenced { .. } => Some(&self.verdicts.fenced),
            Verdict::OutOfOrder { .. } => Some(&self.verdicts.out_of_order),
            Verdict::Append | Verdict::MissingSequence { .. } => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.counters()
    }

    fn ids_mut(&mut self) -> &mut ProducerIdAllocator {
        self.ids.get_mut().expect(IDS_POISONED)
    }

    /// Producer ids forgotten after `producer.id.expiration.ms` idle.
    pub(crate) fn count_expired(&mut self, expired: usize) {
        self.counted.expired += expired as u64;
    }

    pub fn counters(&self) -> Counters {
        Counters {
            duplicates: self.verdicts.duplicates.load(Ordering::Relaxed),
            fenced: self.verdicts.fenced.load(Ordering::Relaxed),
            out_of_order: self.verdicts.out_of_order.load(Ordering::Relaxed),
            allocated: self.verdicts.allocated.load(Ordering::Relaxed),
            ..self.counted
        }
    }

    /// The block of ids the group commit's next round makes durable, if one is staged.
    pub(crate) fn take_reservation(&mut self) -> Option<IdReservation> {
        self.ids_mut().take_reservation()
    }

    /// A round covering `ticket` was reported.
    pub(crate) fn synced(&mut self, ticket: u64) {
        self.ids_mut().synced(ticket);
    }

    /// Writes a staged block of ids at a clean close, before the logs close.
    pub(crate) fn close(&mut self) -> Result<(), BrokerError> {
        self.counters().trace("idempotent producers at shutdown");
        self.ids_mut().close()
    }

    /// Whether expiration is due at `now_ms`; if so, the clock restarts.
    pub(crate) fn expiration_due(&mut self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.expiration_checked_ms) < EXPIRATION_CHECK_INTERVAL_MS {
            return false;
        }
        self.expiration_checked_ms = now_ms;
        true
    }

    /// Traces the counters if they changed since the last line.
    pub(crate) fn trace_if_changed(&mut self) {
        let counters = self.counters();
        if counters != self.traced {
            counters.trace("idempotent producers");
            self.traced = counters;
        }
    }
}

const IDS_POISONED: &str = "producer id allocator lock poisoned by an earlier panic";
