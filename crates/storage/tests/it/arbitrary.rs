//! Recovery from arbitrary bytes: the logic of the `segment_recovery` fuzz target
//! (fuzz/fuzz_targets/segment_recovery.rs; both call `storage::arbitrary::check_recovery_from`)
//! as a property test in the default run. A segment, its
//! offset index and a recovery-point checkpoint full of arbitrary bytes open with a typed error
//! or open and serve only batches that verify; never a panic.

use proptest::prelude::*;

use crate::batch;

fn open_arbitrary(log: &[u8], index: &[u8], checkpoint: &[u8]) {
    storage::arbitrary::check_recovery_from(log, index, checkpoint);
}

/// Valid batches (offsets assigned) with some bytes flipped, so that the cases reach past the
/// first header check.
fn damaged_segment(seeds: u8, flips: &[(u16, u8)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut next = 0i64;
    for seed in 0..seeds {
        let mut one = batch(u64::from(seed), 1 + seed as usize % 3, 20, 0);
        wire::batch::assign_base_offset(&mut one, next, 0);
        next += 1 + i64::from(seed) % 3;
        bytes.extend(one);
    }
    for &(at, mask) in flips {
        if !bytes.is_empty() {
            let at = at as usize % bytes.len();
            bytes[at] ^= mask;
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_files_open_with_an_error_or_serve_valid_batches(
        log in proptest::collection::vec(any::<u8>(), 0..400),
        index in proptest::collection::vec(any::<u8>(), 0..40),
        checkpoint in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        open_arbitrary(&log, &index, &checkpoint);
    }

    #[test]
    fn damaged_segments_open_with_an_error_or_serve_valid_batches(
        seeds in 0u8..8,
        flips in proptest::collection::vec((any::<u16>(), 1u8..=255), 0..4),
        index in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        open_arbitrary(&damaged_segment(seeds, &flips), &index, &[]);
    }
}

/// Issue 8: found by the `segment_recovery` fuzz target. A batch header whose base offset plus
/// last offset delta passes `i64::MAX` made recovery panic on the overflow instead of judging the
/// bytes. The fuzzer's input: valid batches, one with its base offset set near `i64::MAX`, a valid
/// one after it, and a checkpoint holding recovery point 1 (without a valid checkpoint the open
/// fails before it scans).
#[test]
fn issue_8_a_base_offset_near_i64_max_is_judged_not_a_panic() {
    // Version 1, offset 1, CRC-32C of the twelve bytes before it (`checkpoint.rs`).
    const RECOVERY_POINT_1: [u8; 16] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x2d, 0x35, 0xe0, 0x16];
    let at = |seed: u64, base_offset: i64| {
        let mut bytes = batch(seed, 3, 20, 0);
        wire::batch::assign_base_offset(&mut bytes, base_offset, 0);
        bytes
    };
    for base_offset in [i64::MAX, i64::MAX - 1, i64::MIN] {
        let log = [at(1, 0), at(2, base_offset), at(3, 6)].concat();
        open_arbitrary(&log, &[], &RECOVERY_POINT_1);
        open_arbitrary(&log, &[], &[]);
    }
}
