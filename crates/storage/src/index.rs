//! The sparse offset index and time index of one segment, kept in memory and written to the
//! `.index` and `.timeindex` files when the segment is sealed (see `docs/storage-format.md`).
//!
//! Both are hints, never the truth: the `.log` file is. A lookup only says where to start scanning
//! batch headers, so an index that misses entries costs a longer scan, never a wrong answer, and a
//! file that fails its checks is rebuilt from the log.

/// Bytes of one `.index` entry: relative offset u32, file position u32 (big-endian).
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry: timestamp i64, relative offset u32 (big-endian).
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

/// Maps the base offset of some batches (relative to the segment's base offset) to their position
/// in the `.log` file. Both columns strictly increase.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetIndex {
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset,
                "offset index must increase"
            );
            assert!(
                entry.position > last.position,
                "offset index positions must increase"
            );
        }
        self.entries.push(entry);
    }

    /// The entry with the largest relative offset at or below `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
            bytes.extend_from_slice(&entry.position.to_be_bytes());
        }
        bytes
    }

    /// Decodes a `.index` file of a segment holding relative offsets below `relative_offset_end`
    /// in `size_bytes` bytes; the reason is why the file cannot be trusted.
    pub fn decode(bytes: &[u8], relative_offset_end: u64, size_bytes: u64) -> Result<Self, String> {
        if bytes.len() % OFFSET_ENTRY_BYTES != 0 {
            return Err(format!(
                "length {} is not a multiple of {OFFSET_ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32_at(chunk, 0),
                position: u32_at(chunk, 4),
            };
            if let Some(last) = index.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return Err(format!("entry {entry:?} does not follow {last:?}"));
                }
            }
            if entry.relative_offset as u64 >= relative_offset_end
                || entry.position as u64 >= size_bytes
            {
                return Err(format!(
                    "entry {entry:?} points past the end of the segment"
                ));
            }
            index.entries.push(entry);
        }
        Ok(index)
    }
}

/// Maps the largest timestamp seen so far in a segment to the relative base offset of the batch
/// that first carried it. Timestamps strictly increase, offsets never decrease, so the first batch
/// at or after a timestamp is found by scanning from the entry at or below it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

impl TimeIndex {
    /// Adds the entry if its timestamp is newer than the last one (a time index only grows in time).
    pub fn push_if_newer(&mut self, entry: TimeEntry) {
        if let Some(last) = self.entries.last() {
            if entry.timestamp_ms <= last.timestamp_ms {
                return;
            }
            assert!(
                entry.relative_offset >= last.relative_offset,
                "time index offsets must not decrease"
            );
        }
        self.entries.push(entry);
    }

    /// The entry with the largest timestamp at or below `timestamp_ms`.
    pub fn lookup(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let after = self
            .entries
            .partition_point(|e| e.timestamp_ms <= timestamp_ms);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.timestamp_ms.to_be_bytes());
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        bytes
    }

    /// Decodes a `.timeindex` file of a segment holding relative offsets below
    /// `relative_offset_end`; the reason is why the file cannot be trusted.
    pub fn decode(bytes: &[u8], relative_offset_end: u64) -> Result<Self, String> {
        if bytes.len() % TIME_ENTRY_BYTES != 0 {
            return Err(format!(
                "length {} is not a multiple of {TIME_ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp_ms = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let entry = TimeEntry {
                timestamp_ms,
                relative_offset: u32_at(chunk, 8),
            };
            if let Some(last) = index.last() {
                if entry.timestamp_ms <= last.timestamp_ms
                    || entry.relative_offset < last.relative_offset
                {
                    return Err(format!("entry {entry:?} does not follow {last:?}"));
                }
            }
            if entry.relative_offset as u64 >= relative_offset_end {
                return Err(format!(
                    "entry {entry:?} points past the end of the segment"
                ));
            }
            index.entries.push(entry);
        }
        Ok(index)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn offset_index(pairs: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for &(relative_offset, position) in pairs {
            index.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        index
    }

    fn check_lookup(pairs: &[(u32, u32)], target: u32, expect: Expect) {
        expect.assert_eq(&format!("{:?}", offset_index(pairs).lookup(target)));
    }

    #[test]
    fn offset_lookup() {
        check_lookup(&[], 5, expect!["None"]);
        check_lookup(&[(10, 100)], 5, expect!["None"]);
        check_lookup(
            &[(10, 100)],
            10,
            expect!["Some(OffsetEntry { relative_offset: 10, position: 100 })"],
        );
        check_lookup(
            &[(10, 100), (20, 200)],
            19,
            expect!["Some(OffsetEntry { relative_offset: 10, position: 100 })"],
        );
        check_lookup(
            &[(10, 100), (20, 200)],
            99,
            expect!["Some(OffsetEntry { relative_offset: 20, position: 200 })"],
        );
    }

    fn check_decode(bytes: &[u8], end: u64, size: u64, expect: Expect) {
        let result = OffsetIndex::decode(bytes, end, size).map(|index| index.entries);
        expect.assert_eq(&format!("{result:?}"));
    }

    #[test]
    fn offset_decode() {
        let good = offset_index(&[(1, 10), (2, 20)]).encode();
        check_decode(&good, 3, 30, expect!["Ok([OffsetEntry { relative_offset: 1, position: 10 }, OffsetEntry { relative_offset: 2, position: 20 }])"]);
        check_decode(
            &good[..7],
            3,
            30,
            expect![[r#"Err("length 7 is not a multiple of 8")"#]],
        );
        check_decode(
            &good,
            2,
            30,
            expect![[
                r#"Err("entry OffsetEntry { relative_offset: 2, position: 20 } points past the end of the segment")"#
            ]],
        );
        check_decode(
            &good,
            3,
            20,
            expect![[
                r#"Err("entry OffsetEntry { relative_offset: 2, position: 20 } points past the end of the segment")"#
            ]],
        );
        let mut swapped = good[8..].to_vec();
        swapped.extend_from_slice(&good[..8]);
        check_decode(
            &swapped,
            3,
            30,
            expect![[
                r#"Err("entry OffsetEntry { relative_offset: 1, position: 10 } does not follow OffsetEntry { relative_offset: 2, position: 20 }")"#
            ]],
        );
    }

    #[test]
    fn time_index_keeps_only_newer_timestamps() {
        let mut index = TimeIndex::default();
        for (timestamp_ms, relative_offset) in [(100, 0), (90, 1), (100, 2), (150, 3)] {
            index.push_if_newer(TimeEntry {
                timestamp_ms,
                relative_offset,
            });
        }
        let decoded = TimeIndex::decode(&index.encode(), 4).unwrap();
        assert_eq!(decoded, index);
        expect![[r#"[TimeEntry { timestamp_ms: 100, relative_offset: 0 }, TimeEntry { timestamp_ms: 150, relative_offset: 3 }]"#]]
            .assert_eq(&format!("{:?}", index.entries));
        expect!["None"].assert_eq(&format!("{:?}", index.lookup(99)));
        expect!["Some(TimeEntry { timestamp_ms: 100, relative_offset: 0 })"]
            .assert_eq(&format!("{:?}", index.lookup(149)));
        expect![[r#"Err("entry TimeEntry { timestamp_ms: 150, relative_offset: 3 } points past the end of the segment")"#]]
            .assert_eq(&format!("{:?}", TimeIndex::decode(&index.encode(), 3)));
    }
}
