//! Random append / sync / crash / reopen sequences on `SimDisk`: a synced batch is never lost, the
//! recovered log is always a prefix of what was appended, and no read returns a batch that fails
//! its CRC. `STORAGE_TORTURE=1` runs many more cases.

use proptest::prelude::*;
use storage::{LogConfig, PartitionLog, SimDisk};
use wire::batch::{BatchView, Batches};

use crate::{batch, open_sim, read_all, sync};

#[derive(Debug, Clone)]
enum Op {
    /// One write of `batches` batches, each of `records` records with `value_bytes` values.
    Append {
        batches: usize,
        records: usize,
        value_bytes: usize,
        advance_ms: i64,
    },
    Sync,
    /// A power cut; with `tear`, the last unsynced write keeps that many bytes.
    Crash {
        tear: Option<usize>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1..4usize, 1..4usize, 0..200usize, 0..800i64).prop_map(|(batches, records, value_bytes, advance_ms)| Op::Append {
            batches,
            records,
            value_bytes,
            advance_ms
        }),
        3 => Just(Op::Sync),
        1 => proptest::option::of(0..600usize).prop_map(|tear| Op::Crash { tear }),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// The whole batches of a read, each checked as a consumer would.
fn batches_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    Batches::new(bytes)
        .map(|batch| {
            let (_, view): (usize, BatchView<'_>) = batch.expect("reads return whole batches");
            view.validate().expect("reads return valid batches");
            view.as_bytes().to_vec()
        })
        .collect()
}

fn run(ops: Vec<Op>) {
    let disk = SimDisk::new();
    let mut log: Option<PartitionLog> = Some(open_sim(&disk, config()));
    // Every batch appended and not lost, as stored; the first `synced` are durable.
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut synced = 0usize;
    let mut now_ms = 0i64;
    let mut seed = 0u64;
    for op in ops {
        let current = log.as_mut().expect("open");
        let reopened = matches!(op, Op::Crash { .. } | Op::Reopen);
        match op {
            Op::Append {
                batches,
                records,
                value_bytes,
                advance_ms,
            } => {
                now_ms += advance_ms;
                let mut packed = Vec::new();
                for _ in 0..batches {
                    seed += 1;
                    packed.extend(batch(seed, records, value_bytes, now_ms));
                }
                let info = current
                    .append(bytes::Bytes::copy_from_slice(&packed), now_ms)
                    .expect("append");
                let stored = crate::stored(&packed, &info);
                model.extend(batches_of(&stored));
            }
            Op::Sync => {
                sync(current);
                let synced_offset = current.synced_offset();
                synced = model
                    .iter()
                    .take_while(|b| BatchView::parse(b).unwrap().last_offset() < synced_offset)
                    .count();
                assert_eq!(
                    synced,
                    model.len(),
                    "a sync with nothing outstanding covers everything"
                );
            }
            Op::Crash { tear } => {
                drop(log.take());
                if let Some(keep) = tear {
                    disk.tear_on_crash(keep);
                }
                disk.crash();
                log = Some(open_sim(&disk, config()));
            }
            Op::Reopen => {
                log.take().expect("open").close().expect("close");
                log = Some(open_sim(&disk, config()));
            }
        }
        let current = log.as_ref().expect("open");
        let recovered = batches_of(&read_all(current));
        assert!(
            recovered.len() >= synced,
            "lost synced batches: {} recovered, {synced} synced",
            recovered.len()
        );
        assert!(recovered.len() <= model.len(), "more batches than appended");
        assert!(
            recovered[..] == model[..recovered.len()],
            "the log is not a prefix of what was appended"
        );
        if reopened {
            // Appends not yet synced are unreadable (not yet written) until a crash settles them.
            model.truncate(recovered.len());
            // Recovery syncs everything it keeps.
            assert_eq!(current.synced_offset(), current.log_end_offset());
            synced = model.len();
        }
    }
}

fn cases() -> u32 {
    if std::env::var_os("STORAGE_TORTURE").is_some() {
        5_000
    } else {
        96
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn crashes_never_lose_synced_batches(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
