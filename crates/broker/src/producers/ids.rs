//! Producer id allocation that never repeats, across restarts and `kill -9`: ids are handed out
//! from a block whose end is made durable in `producer-ids.checkpoint` (data directory) before an
//! id of the block is answered, as Kafka's `ProducerIdManager` reserves blocks. A crash loses the
//! rest of the block, never reuses it. Format: `docs/producer-snapshot-format.md`.
//!
//! Allocation does no I/O (it runs under the broker lock): when a block is used up, the next one
//! is staged with a ticket of the group commit, whose next round writes the file
//! ([`IdReservation`], before any log's data, so nothing naming an id of the block reaches the
//! disk before the block does), and an answer carrying an id of a block not yet durable waits
//! for that ticket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::Disk;

use crate::durable::{self, FileWrite};
use crate::sync::Tickets;
use crate::BrokerError;

pub const PRODUCER_IDS_FILE: &str = "producer-ids.checkpoint";
/// Ids reserved per durable write (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
const VERSION: u32 = 1;
const FILE_BYTES: usize = 16;

pub struct ProducerIdAllocator {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// The next id to hand out.
    next: i64,
    /// The end (exclusive) of the blocks known durable: an id below it is answered at once.
    durable_end: i64,
    /// The end the next reservation makes durable, and the ticket whose round writes it (the
    /// newest staged; an id at or past `durable_end` waits for it).
    staged: Option<Staged>,
    /// The reservation a round took and has not reported yet.
    in_flight: Option<Staged>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Staged {
    end: i64,
    ticket: u64,
}

/// A producer id, and the ticket its answer waits for when its block is not durable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    pub id: i64,
    pub after_sync: Option<u64>,
}

/// A block of producer ids to make durable: the group commit runs it outside the lock, before
/// the round's log writes, and the round's report puts it in force.
pub struct IdReservation {
    write: FileWrite,
}

impl IdReservation {
    /// Writes `producer-ids.checkpoint` (temp file, fsync, rename, directory fsync).
    pub fn run(&self) -> Result<(), BrokerError> {
        self.write.run()
    }
}

impl ProducerIdAllocator {
    /// Reads the reserved end from `dir`; nothing is reserved until the first allocation.
    /// A damaged file stops the broker: without it, ids could repeat.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<ProducerIdAllocator, BrokerError> {
        let path = dir.join(PRODUCER_IDS_FILE);
        let bytes = durable::read_file(&*disk, &path)
            .map_err(|source| BrokerError::io("read", &path, source))?;
        let next = match bytes {
            None => 0,
            Some(bytes) => decode(&bytes).map_err(|reason| {
                BrokerError::Meta(format!(
                    "{}: {reason}; refusing to start, producer ids could repeat",
                    path.display()
                ))
            })?,
        };
        Ok(ProducerIdAllocator {
            disk,
            dir: dir.to_path_buf(),
            next,
            durable_end: next,
            staged: None,
            in_flight: None,
        })
    }

    /// A producer id never handed out before. When the blocks reserved so far are used up, the
    /// next block is staged with a new ticket from `tickets` (so that a round runs).
    pub(crate) fn allocate(&mut self, tickets: &Tickets) -> Allocated {
        let reserved_end = self.staged.map_or(self.durable_end, |staged| staged.end);
        if self.next == reserved_end {
            let end = reserved_end
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .expect("producer ids exhausted");
            self.staged = Some(Staged {
                end,
                ticket: tickets.bump(),
            });
        }
        let id = self.next;
        self.next += 1;
        let after_sync = match self.staged {
            Some(staged) if id >= self.durable_end => Some(staged.ticket),
            _ => None,
        };
        self.assert_invariants();
        Allocated { id, after_sync }
    }

    /// The staged reservation, for the group commit's next round; `None` when every block
    /// handed out is durable or a reservation is still in flight.
    pub(crate) fn take_reservation(&mut self) -> Option<IdReservation> {
        let staged = self.staged.filter(|_| self.in_flight.is_none())?;
        self.in_flight = Some(staged);
        Some(self.reservation(staged.end))
    }

    /// The write that makes the blocks up to `end` durable.
    fn reservation(&self, end: i64) -> IdReservation {
        IdReservation {
            write: FileWrite::new(self.disk.clone(), &self.dir, PRODUCER_IDS_FILE, encode(end)),
        }
    }

    /// The group commit reported a round covering `ticket`: the reservation it took is durable.
    pub(crate) fn synced(&mut self, ticket: u64) {
        let Some(written) = self.in_flight.filter(|written| written.ticket <= ticket) else {
            return;
        };
        self.in_flight = None;
        self.durable_end = self.durable_end.max(written.end);
        if self
            .staged
            .is_some_and(|staged| staged.end <= self.durable_end)
        {
            self.staged = None;
        }
        tracing::debug!(to = written.end, "reserved a block of producer ids");
        self.assert_invariants();
    }

    /// At a clean close: a staged block is written before the logs close, since the
    /// transaction log may already name an id of it.
    pub(crate) fn close(&mut self) -> Result<(), BrokerError> {
        self.in_flight = None;
        if let Some(staged) = self.staged.take() {
            self.reservation(staged.end).run()?;
            self.durable_end = staged.end;
        }
        Ok(())
    }

    fn assert_invariants(&self) {
        let reserved_end = self.staged.map_or(self.durable_end, |staged| staged.end);
        assert!(self.durable_end <= reserved_end);
        assert!(
            self.next <= reserved_end,
            "an id handed out beyond its block"
        );
        if let Some(in_flight) = self.in_flight {
            assert!(self.durable_end < in_flight.end && in_flight.end <= reserved_end);
        }
    }
}

fn encode(reserved_end: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FILE_BYTES);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&reserved_end.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() != FILE_BYTES {
        return Err(format!("{} bytes, expected {FILE_BYTES}", bytes.len()));
    }
    let field = |at: usize, n: usize| &bytes[at..at + n];
    let version = u32::from_be_bytes(field(0, 4).try_into().expect("4 bytes"));
    let value = i64::from_be_bytes(field(4, 8).try_into().expect("8 bytes"));
    let stored = u32::from_be_bytes(field(12, 4).try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[..12]);
    if stored != computed {
        return Err(format!(
            "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if version != VERSION {
        return Err(format!("version {version}, this ferry reads {VERSION}"));
    }
    if value < 0 {
        return Err(format!("negative reserved end {value}"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{FsDisk, SimDisk};

    /// What the group commit does for the allocator: take the reservation, write it, report.
    fn round(ids: &mut ProducerIdAllocator, tickets: &Tickets) {
        if let Some(reservation) = ids.take_reservation() {
            reservation.run().unwrap();
        }
        ids.synced(tickets.appended());
    }

    /// Allocates `n` ids, each answered once durable (a round runs when one has to wait).
    fn answered(ids: &mut ProducerIdAllocator, tickets: &mut Tickets, n: i64) -> Vec<i64> {
        (0..n)
            .map(|_| {
                let allocated = ids.allocate(tickets);
                if allocated.after_sync.is_some() {
                    round(ids, tickets);
                }
                allocated.id
            })
            .collect()
    }

    #[test]
    fn ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(FsDisk);
        let mut tickets = Tickets::default();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir.path()).unwrap();
        assert_eq!(answered(&mut ids, &mut tickets, 3), [0, 1, 2]);
        drop(ids);
        // A restart (clean or not) continues after the reserved block.
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir.path()).unwrap();
        assert_eq!(
            answered(&mut ids, &mut tickets, 1),
            [PRODUCER_ID_BLOCK_SIZE]
        );
        answered(&mut ids, &mut tickets, PRODUCER_ID_BLOCK_SIZE - 1);
        assert_eq!(
            answered(&mut ids, &mut tickets, 1),
            [2 * PRODUCER_ID_BLOCK_SIZE]
        );
        let mut ids = ProducerIdAllocator::open(disk, dir.path()).unwrap();
        assert_eq!(
            answered(&mut ids, &mut tickets, 1),
            [3 * PRODUCER_ID_BLOCK_SIZE]
        );
    }

    #[test]
    fn an_id_waits_for_its_block_and_the_block_is_written_by_the_round() {
        let disk = Arc::new(SimDisk::new());
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let mut tickets = Tickets::default();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir).unwrap();
        let before = disk.mutations();
        let first = ids.allocate(&mut tickets);
        let second = ids.allocate(&mut tickets);
        assert_eq!(disk.mutations(), before, "allocation does no I/O");
        // Both wait for the ticket the block was staged with, which asks for a round.
        assert_eq!(first.id, 0);
        assert_eq!(second.id, 1);
        assert_eq!(first.after_sync, Some(1));
        assert_eq!(second.after_sync, Some(1));
        assert_eq!(tickets.appended(), 1);
        // Crash before the round: the ids were never answered, and are handed out again.
        disk.crash();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir).unwrap();
        assert_eq!(ids.allocate(&mut tickets).id, 0);
        round(&mut ids, &tickets);
        assert!(disk.mutations() > before, "the round wrote the block");
        // Once reported, the rest of the block is answered at once.
        assert_eq!(
            ids.allocate(&mut tickets),
            Allocated {
                id: 1,
                after_sync: None
            }
        );
        // Crash after the round: the block is durable, ids continue past it.
        disk.crash();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir).unwrap();
        assert_eq!(ids.allocate(&mut tickets).id, PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn a_block_staged_while_another_is_written_waits_for_the_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut tickets = Tickets::default();
        let mut ids = ProducerIdAllocator::open(Arc::new(FsDisk), dir.path()).unwrap();
        let first = ids.allocate(&mut tickets);
        let reservation = ids.take_reservation().expect("the first block");
        assert!(
            ids.take_reservation().is_none(),
            "one reservation in flight"
        );
        // The rest of the first block and the start of the second, while the first is written.
        let rest: Vec<Allocated> = (1..=PRODUCER_ID_BLOCK_SIZE)
            .map(|_| ids.allocate(&mut tickets))
            .collect();
        let round_ticket = 1;
        assert_eq!(first.after_sync, Some(round_ticket));
        let second = rest.last().unwrap();
        assert_eq!(second.id, PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(second.after_sync, Some(2), "waits for a later round");
        reservation.run().unwrap();
        ids.synced(round_ticket);
        // The first block is in force; the second is taken by the next round.
        assert_eq!(ids.durable_end, PRODUCER_ID_BLOCK_SIZE);
        let next = ids.take_reservation().expect("the second block");
        next.run().unwrap();
        ids.synced(2);
        assert_eq!(ids.durable_end, 2 * PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(ids.allocate(&mut tickets).after_sync, None);
    }

    #[test]
    fn a_clean_close_writes_the_staged_block() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(FsDisk);
        let mut tickets = Tickets::default();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir.path()).unwrap();
        assert_eq!(ids.allocate(&mut tickets).id, 0);
        ids.close().unwrap();
        let mut ids = ProducerIdAllocator::open(disk, dir.path()).unwrap();
        assert_eq!(ids.allocate(&mut tickets).id, PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn a_damaged_file_stops_the_broker() {
        let check = |bytes: &[u8], expect: &str| assert_eq!(decode(bytes).unwrap_err(), expect);
        let good = encode(5_000);
        assert_eq!(decode(&good), Ok(5_000));
        check(&good[..15], "15 bytes, expected 16");
        let mut flipped = good.clone();
        flipped[5] ^= 1;
        assert!(decode(&flipped)
            .unwrap_err()
            .starts_with("CRC-32C mismatch"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRODUCER_IDS_FILE), &flipped).unwrap();
        let error = ProducerIdAllocator::open(Arc::new(FsDisk), dir.path())
            .err()
            .expect("damaged file refused");
        assert!(
            error.to_string().contains("producer ids could repeat"),
            "{error}"
        );
    }
}
