//! Producer id allocation that never repeats, across restarts and `kill -9`: ids are handed out
//! from a block whose end was made durable in `producer-ids.checkpoint` (data directory) before
//! the first id of the block was given, as Kafka's `ProducerIdManager` reserves blocks. A crash
//! loses the rest of the block, never reuses it. Format: `docs/producer-snapshot-format.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::Disk;

use crate::durable;
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
    /// The end (exclusive) of the durably reserved block.
    reserved_end: i64,
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
            reserved_end: next,
        })
    }

    /// A producer id never handed out before. Reserves the next block durably (temp file,
    /// fsync, rename, directory fsync) when the current one is used up.
    pub fn allocate(&mut self) -> Result<i64, BrokerError> {
        if self.next == self.reserved_end {
            let end = self
                .reserved_end
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .expect("producer ids exhausted");
            durable::write_file_atomic(&*self.disk, &self.dir, PRODUCER_IDS_FILE, &encode(end))
                .map_err(|source| BrokerError::io("reserve producer ids in", &self.dir, source))?;
            tracing::debug!(
                from = self.next,
                to = end,
                "reserved a block of producer ids"
            );
            self.reserved_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
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

    #[test]
    fn ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(FsDisk);
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, [0, 1, 2]);
        drop(ids);
        // A restart (clean or not) continues after the reserved block.
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir.path()).unwrap();
        assert_eq!(ids.allocate().unwrap(), PRODUCER_ID_BLOCK_SIZE);
        for _ in 0..PRODUCER_ID_BLOCK_SIZE - 1 {
            ids.allocate().unwrap();
        }
        assert_eq!(ids.allocate().unwrap(), 2 * PRODUCER_ID_BLOCK_SIZE);
        let mut ids = ProducerIdAllocator::open(disk, dir.path()).unwrap();
        assert_eq!(ids.allocate().unwrap(), 3 * PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn the_reservation_is_durable_before_an_id_is_given() {
        let disk = Arc::new(SimDisk::new());
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir).unwrap();
        assert_eq!(ids.allocate().unwrap(), 0);
        disk.crash();
        let mut ids = ProducerIdAllocator::open(disk.clone(), dir).unwrap();
        assert_eq!(ids.allocate().unwrap(), PRODUCER_ID_BLOCK_SIZE);
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
