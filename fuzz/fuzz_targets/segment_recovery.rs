//! Segment and index recovery from arbitrary bytes on `SimDisk`: the input is split into a
//! segment, its offset index and a recovery-point checkpoint; opening the log may fail (typed
//! `LogError`), and when it opens every batch it serves must read back.
#![no_main]

use libfuzzer_sys::fuzz_target;

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
    storage::arbitrary::check_recovery_from(log, index, checkpoint);
}
