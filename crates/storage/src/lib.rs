//! ferry's storage: one segmented log per partition, holding Kafka v2 record batches exactly as
//! received, with sparse indexes, crash recovery, retention and group-commit fsync.
//!
//! Architecture Invariant: `storage` knows nothing about sockets, the Kafka protocol beyond the
//! v2 batch header, or clocks (time comes in as `now_ms`). All file access goes through [`Disk`],
//! so [`SimDisk`] can crash it. The on-disk format is drawn in `docs/storage-format.md`.

pub mod arbitrary;
mod checkpoint;
mod clean;
pub mod disk;
mod error;
mod index;
mod lazy;
mod log;
mod recovery;
mod segment;
pub mod sim;
mod wal;

pub use crate::clean::{
    CleanContext, CleanJob, CleanStats, Cleaned, CompactionConfig, KEY_MAP_BYTES_MAX,
};
pub use crate::disk::{
    at_once, open_descriptors, reopened_descriptors, Disk, DiskFile, FsDisk, Release, Released,
    Space,
};
pub use crate::error::LogError;
pub use crate::log::{
    AppendInfo, FileJob, LogConfig, PartitionLog, SyncWork, TimestampLookup, APPEND_BYTES_MAX,
    RECOVERY_POINT_INTERVAL_MS, SEGMENT_BYTES_MAX, WRITEBACK_BYTES_MIN,
};
pub use crate::segment::{SegmentRead, BATCH_BYTES_MAX};
pub use crate::sim::SimDisk;
pub use crate::wal::{Replayed, Wal, WAL_BYTES_MAX, WAL_FILE, WAL_ROUND_BYTES_MAX};
