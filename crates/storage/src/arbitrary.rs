//! The oracle of recovery from arbitrary bytes, shared by the `segment_recovery` fuzz target
//! (`fuzz/`) and its property test (`tests/it/arbitrary.rs`): a segment, its offset index and a
//! recovery-point checkpoint holding any bytes either fail to open (a typed `LogError`) or open
//! and serve only batches that verify. Never a panic inside the log.

use std::path::Path;
use std::sync::Arc;

use wire::batch::Batches;

use crate::disk::Disk;
use crate::log::{LogConfig, PartitionLog};
use crate::sim::SimDisk;

/// Writes the three files (synced) into a fresh `SimDisk`, opens the log and reads every batch
/// it serves; panics if a served batch does not verify.
pub fn check_recovery_from(log: &[u8], index: &[u8], checkpoint: &[u8]) {
    let disk = SimDisk::new();
    let dir = Path::new("/p0");
    disk.create_dir_all(dir).unwrap();
    for (name, bytes) in [
        ("00000000000000000000.log", log),
        ("00000000000000000000.index", index),
        ("recovery-point.checkpoint", checkpoint),
    ] {
        let file = disk.open(&dir.join(name), true).unwrap();
        file.write_all_at(0, bytes).unwrap();
        file.sync_data().unwrap();
    }
    disk.sync_dir(dir).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let Ok(log) = PartitionLog::open(Arc::new(disk), dir, config, 0) else {
        return;
    };
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let Ok(bytes) = log.read(offset, 1, i64::MAX) else {
            break;
        };
        let (_, view) = Batches::new(&bytes)
            .next()
            .expect("a read below the log end returns a batch")
            .expect("served batches are whole");
        assert!(view.validate().is_ok(), "served an invalid batch");
        offset = view.last_offset() + 1;
    }
}
