//! Segment and index recovery from arbitrary bytes on `SimDisk`: the input is split into a
//! segment, its offset index and a recovery-point checkpoint; opening the log may fail (typed
//! `LogError`), and when it opens every batch it serves must read back.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use storage::{Disk, LogConfig, PartitionLog, SimDisk};

fuzz_target!(|data: &[u8]| {
    storage_fuzz(data);
});

fn storage_fuzz(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let log_len = (u16::from_be_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let index_len = (data[2] as usize).min(data.len() - 2 - log_len);
    let rest = &data[3.min(data.len())..];
    let (log, rest) = rest.split_at(log_len.min(rest.len()));
    let (index, checkpoint) = rest.split_at(index_len.min(rest.len()));
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
        match log.read(offset, 1, i64::MAX) {
            Ok(bytes) => {
                let Some(Ok((_, view))) = wire::batch::Batches::new(&bytes).next() else {
                    panic!("a read below the log end returned no batch");
                };
                assert!(view.validate().is_ok(), "served an invalid batch");
                offset = view.last_offset() + 1;
            }
            Err(_) => break,
        }
    }
}
