//! Snapshot files in a partition directory, over the `Disk` trait: write one, find the newest
//! usable one at open, delete the stale and the damaged.
//!
//! A snapshot is written to `<name>.tmp` and renamed into place (storage's recovery removes
//! leftover `*.tmp` files). At a segment roll or periodically it is encoded under the broker's
//! lock and written by the partition log's next group-commit round, outside the lock
//! (`PartitionLog::defer`), without an fsync of its own: a snapshot lost or torn by a crash
//! costs a longer replay, never correctness, because every snapshot is checked (CRC, offsets)
//! before use. The one written by a clean close is fsynced.

use std::io;
use std::path::{Path, PathBuf};

use storage::{Disk, LogError};

use super::snapshot::{self, Snapshot, SnapshotError, SNAPSHOT_BYTES_MAX};
use super::state::ProducerStateTable;
use crate::txn_index::TxnIndex;

/// Snapshots kept per partition: the newest, and one more in case the newest was lost.
pub const SNAPSHOTS_KEPT: usize = 2;

fn io_error(op: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> LogError {
    move |source| LogError::Io { op, path, source }
}

/// The offsets of the snapshot files in `dir`, ascending.
pub fn list(disk: &dyn Disk, dir: &Path) -> Result<Vec<i64>, LogError> {
    let names = disk
        .list_dir(dir)
        .map_err(io_error("list directory", dir.to_path_buf()))?;
    let mut offsets: Vec<i64> = names
        .iter()
        .filter_map(|n| snapshot::parse_file_name(n))
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes the snapshot of `table` and `txns` at `offset`; with `sync`, durably (file, then
/// directory). A snapshot that would exceed [`SNAPSHOT_BYTES_MAX`] is not written (an error):
/// recovery would refuse it.
pub fn write(
    disk: &dyn Disk,
    dir: &Path,
    table: &ProducerStateTable,
    txns: &TxnIndex,
    offset: i64,
    sync: bool,
) -> Result<(), LogError> {
    let bytes = encode(dir, table, txns, offset)?;
    write_encoded(disk, dir, offset, &bytes, sync)
}

/// The snapshot of `table` and `txns` at `offset`, encoded; an error if it would exceed
/// [`SNAPSHOT_BYTES_MAX`] (recovery would refuse it).
pub fn encode(
    dir: &Path,
    table: &ProducerStateTable,
    txns: &TxnIndex,
    offset: i64,
) -> Result<Vec<u8>, LogError> {
    let bytes = snapshot::encode(table, txns, offset);
    if bytes.len() as u64 > SNAPSHOT_BYTES_MAX {
        return Err(LogError::Io {
            op: "write snapshot",
            path: dir.join(snapshot::file_name(offset)),
            source: io::Error::other(format!(
                "{} bytes, above the {SNAPSHOT_BYTES_MAX}-byte limit",
                bytes.len()
            )),
        });
    }
    Ok(bytes)
}

/// Writes an encoded snapshot at `offset`; with `sync`, durably (file, then directory).
pub fn write_encoded(
    disk: &dyn Disk,
    dir: &Path,
    offset: i64,
    bytes: &[u8],
    sync: bool,
) -> Result<(), LogError> {
    let path = dir.join(snapshot::file_name(offset));
    let temp = dir.join(format!("{}.tmp", snapshot::file_name(offset)));
    let file = disk
        .open(&temp, true)
        .map_err(io_error("create snapshot", temp.clone()))?;
    file.truncate(0)
        .map_err(io_error("truncate snapshot", temp.clone()))?;
    file.write_all_at(0, bytes)
        .map_err(io_error("write snapshot", temp.clone()))?;
    if sync {
        file.sync_data()
            .map_err(io_error("sync snapshot", temp.clone()))?;
    }
    disk.rename(&temp, &path)
        .map_err(io_error("rename snapshot", path))?;
    if sync {
        disk.sync_dir(dir)
            .map_err(io_error("sync directory", dir.to_path_buf()))?;
    }
    Ok(())
}

/// Deletes all but the newest [`SNAPSHOTS_KEPT`] snapshots.
pub fn prune(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    let offsets = list(disk, dir)?;
    let stale = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
    for offset in &offsets[..stale] {
        remove(disk, dir, *offset)?;
    }
    Ok(())
}

fn remove(disk: &dyn Disk, dir: &Path, offset: i64) -> Result<(), LogError> {
    let path = dir.join(snapshot::file_name(offset));
    match disk.remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove snapshot", path)(error))
        }
        _ => Ok(()),
    }
}

/// The newest snapshot that is intact and at or below `log_end_offset`, with its offset.
/// Snapshots above the log end (their batches were lost with an unsynced tail) are deleted,
/// durably, before any new append can reach their offset: one that came back after another
/// crash would describe batches that are not the log's. Damaged ones are deleted with a WARN.
pub fn load_newest(
    disk: &dyn Disk,
    dir: &Path,
    log_end_offset: i64,
) -> Result<Option<(i64, Snapshot)>, LogError> {
    let offsets = list(disk, dir)?;
    let mut removed = false;
    let mut found = None;
    for &offset in offsets.iter().rev() {
        let path = dir.join(snapshot::file_name(offset));
        if offset > log_end_offset {
            tracing::info!(path = %path.display(), log_end_offset, "deleting a producer snapshot beyond the log end");
            remove(disk, dir, offset)?;
            removed = true;
            continue;
        }
        match read(disk, &path, offset)? {
            Ok(state) => {
                found = Some((offset, state));
                break;
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring a damaged producer snapshot; the log is replayed instead");
                remove(disk, dir, offset)?;
                removed = true;
            }
        }
    }
    if removed {
        disk.sync_dir(dir)
            .map_err(io_error("sync directory", dir.to_path_buf()))?;
    }
    Ok(found)
}

/// Reads and decodes one snapshot; the outer error is I/O (stop), the inner one damage (ignore).
fn read(
    disk: &dyn Disk,
    path: &Path,
    offset: i64,
) -> Result<Result<Snapshot, SnapshotError>, LogError> {
    let file = disk
        .open(path, false)
        .map_err(io_error("open snapshot", path.to_path_buf()))?;
    let len = file
        .len()
        .map_err(io_error("stat snapshot", path.to_path_buf()))?;
    if len > SNAPSHOT_BYTES_MAX {
        return Ok(Err(SnapshotError::Entry {
            index: 0,
            reason: "file larger than any snapshot",
        }));
    }
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(0, &mut bytes)
        .map_err(io_error("read snapshot", path.to_path_buf()))?;
    Ok(snapshot::decode(&bytes, offset))
}
