//! The small per-partition checkpoint files (log start offset, recovery point), replaced
//! atomically: write a temporary file, fsync it, rename it over the old one, fsync the directory.
//!
//! A checkpoint is therefore either the old value or the new one after a crash, never torn, and a
//! checkpoint that fails its CRC is corruption, reported as such.

use std::io;
use std::path::Path;

use crate::disk::Disk;
use crate::error::LogError;

/// The log start offset raised by DeleteRecords; retention does not need it (the first segment's
/// base offset says as much).
pub(crate) const LOG_START_FILE: &str = "log-start-offset.checkpoint";
/// The offset up to which the log was known synced: recovery trusts what lies before it.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point.checkpoint";
/// The offset below which compaction has cleaned the log, written once a cleaning's segments
/// are in place: the segments after it are dirty (absent until the first compaction).
pub(crate) const CLEANER_FILE: &str = "cleaner-offset.checkpoint";
/// The offset below which segments may have offset gaps, written before a cleaning renames its
/// segments into place (so at least the cleaner checkpoint; more after a crash mid-install).
pub(crate) const COMPACTED_FILE: &str = "compacted-offset.checkpoint";
/// Suffix of the temporary file a checkpoint is written to before the rename.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

const VERSION: u32 = 1;
/// version u32, value i64, CRC-32C u32 of the first 12 bytes.
const CHECKPOINT_BYTES: usize = 16;

/// Reads a checkpoint; None when the file does not exist.
pub(crate) fn read(disk: &dyn Disk, dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    let file = match disk.open(&path, false) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LogError::io("open checkpoint", &path)(error)),
    };
    let len = file.len().map_err(LogError::io("stat checkpoint", &path))?;
    if len != CHECKPOINT_BYTES as u64 {
        return Err(LogError::corrupt(
            &path,
            0,
            format!("checkpoint is {len} bytes, expected {CHECKPOINT_BYTES}"),
        ));
    }
    let mut bytes = [0u8; CHECKPOINT_BYTES];
    file.read_exact_at(0, &mut bytes)
        .map_err(LogError::io("read checkpoint", &path))?;
    decode(&bytes)
        .map(Some)
        .map_err(|reason| LogError::corrupt(&path, 0, reason))
}

/// Replaces a checkpoint durably.
pub(crate) fn write(disk: &dyn Disk, dir: &Path, name: &str, value: i64) -> Result<(), LogError> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let file = disk
        .open(&temp, true)
        .map_err(LogError::io("create checkpoint", &temp))?;
    // A temporary file left by a crash may be longer than the new content.
    file.truncate(0)
        .map_err(LogError::io("truncate checkpoint", &temp))?;
    file.write_all_at(0, &encode(value))
        .map_err(LogError::io("write checkpoint", &temp))?;
    file.sync_data()
        .map_err(LogError::io("sync checkpoint", &temp))?;
    disk.rename(&temp, &path)
        .map_err(LogError::io("rename checkpoint", &temp))?;
    disk.sync_dir(dir)
        .map_err(LogError::io("sync directory", dir))
}

fn encode(value: i64) -> [u8; CHECKPOINT_BYTES] {
    let mut bytes = [0u8; CHECKPOINT_BYTES];
    bytes[0..4].copy_from_slice(&VERSION.to_be_bytes());
    bytes[4..12].copy_from_slice(&value.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8; CHECKPOINT_BYTES]) -> Result<i64, String> {
    let version = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut value_bytes = [0u8; 8];
    value_bytes.copy_from_slice(&bytes[4..12]);
    let value = i64::from_be_bytes(value_bytes);
    let stored = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let computed = crc32c::crc32c(&bytes[..12]);
    if stored != computed {
        return Err(format!(
            "checkpoint CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if version != VERSION {
        return Err(format!("unknown checkpoint version {version}"));
    }
    if value < 0 {
        return Err(format!("checkpoint holds the negative offset {value}"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimDisk;
    use expect_test::{expect, Expect};

    fn check(bytes: [u8; CHECKPOINT_BYTES], expect: Expect) {
        expect.assert_eq(&format!("{:?}", decode(&bytes)));
    }

    #[test]
    fn decode_cases() {
        check(encode(42), expect!["Ok(42)"]);
        let mut flipped = encode(42);
        flipped[11] ^= 1;
        check(
            flipped,
            expect![[
                r#"Err("checkpoint CRC-32C mismatch: stored 0x9401c5f3, computed 0x666a46f0")"#
            ]],
        );
        check(
            encode(-1),
            expect![[r#"Err("checkpoint holds the negative offset -1")"#]],
        );
    }

    #[test]
    fn write_then_read_survives_a_crash() {
        let disk = SimDisk::new();
        let dir = Path::new("/p");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        assert_eq!(read(&disk, dir, RECOVERY_POINT_FILE).unwrap(), None);
        write(&disk, dir, RECOVERY_POINT_FILE, 7).unwrap();
        write(&disk, dir, RECOVERY_POINT_FILE, 9).unwrap();
        disk.crash();
        assert_eq!(read(&disk, dir, RECOVERY_POINT_FILE).unwrap(), Some(9));
    }
}
