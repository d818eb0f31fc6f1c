//! Issue 14, items 4 and 7: start-up reconciles the partition directories with `meta.json` and
//! refuses (naming every difference) where they differ; an interrupted topic deletion or
//! creation does not block the start; an unchanged data directory starts without writing; a
//! clean shutdown on a full disk fails with an error.
//!
//! Each refusal has its control: the same data directory with `meta.json` intact starts and
//! serves every record.

use std::path::Path;
use std::sync::Arc;

use broker::{Broker, BrokerConfig, BrokerError, Outcome};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use storage::{Disk, FsDisk, SimDisk};
use wire::batch::{build_batch, ProducerFields};

use crate::idempotence::{call, now, request, NOW_MS};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS_PER_PARTITION: i64 = 5;

fn open_on(disk: Arc<dyn Disk>, dir: &Path) -> Result<Broker, BrokerError> {
    Broker::open(BrokerConfig::new(dir.to_path_buf()), disk, now())
}

fn create(broker: &mut Broker, name: &str, partitions: i32) -> i16 {
    let body = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    match call(
        broker,
        request(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(body)),
    ) {
        Outcome::Respond(ResponseKind::CreateTopics(r)) => r.topics[0].error_code,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Produces one record to `topic`-`index` (acks=1); returns the error code.
fn produce_one(broker: &mut Broker, topic: &str, index: i32) -> i16 {
    let batch = build_batch(&[(None, Some(&b"v"[..]))], NOW_MS, ProducerFields::NONE, 0);
    let body =
        ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(index)
                    .with_records(Some(batch.into()))])]);
    match call(
        broker,
        request(ApiKey::Produce, 9, RequestKind::Produce(body)),
    ) {
        Outcome::Respond(ResponseKind::Produce(r))
        | Outcome::AfterWrite {
            response: ResponseKind::Produce(r),
            ..
        } => r.responses[0].partition_responses[0].error_code,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// What the server's group commit does, checkpoints included.
pub(crate) fn group_commit(broker: &mut Broker) {
    let round = broker.take_sync_work();
    if let Some(ids) = &round.ids {
        ids.run().unwrap();
    }
    let ticket = round.ticket;
    let mut synced = Vec::new();
    let mut checkpointed = Vec::new();
    for (log, sync) in round.logs {
        sync.run_data().unwrap();
        synced.push((log.clone(), sync.offset()));
        if let Some(recovery_point) = sync.checkpoint() {
            sync.run_checkpoint().unwrap();
            checkpointed.push((log, recovery_point));
        }
    }
    broker.synced(now(), ticket, synced).unwrap();
    broker.mark_checkpointed(checkpointed);
}

/// A data directory on `disk` with topic `orders` (3 partitions, 5 records each), closed.
fn populate(disk: Arc<dyn Disk>, dir: &Path) {
    let mut broker = open_on(disk, dir).unwrap();
    assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
    for index in 0..PARTITIONS {
        for _ in 0..RECORDS_PER_PARTITION {
            assert_eq!(produce_one(&mut broker, TOPIC, index), 0);
        }
    }
    group_commit(&mut broker);
    broker.close().unwrap();
}

/// The log end offset of every partition of `orders`.
fn log_ends(broker: &Broker) -> Vec<i64> {
    let topic = broker.topics().get(TOPIC).expect("topic orders is there");
    topic
        .partitions
        .iter()
        .map(|p| p.log_end_offset())
        .collect()
}

/// The refusal's text, with the data directory's path cut out.
fn refusal(disk: Arc<dyn Disk>, dir: &Path) -> String {
    let error = match open_on(disk, dir) {
        Ok(_) => panic!("the broker started"),
        Err(error) => error,
    };
    assert!(
        matches!(error, BrokerError::DataDirMismatch { .. }),
        "{error}"
    );
    error
        .to_string()
        .replace(&dir.display().to_string(), "<data>")
}

fn edit_meta(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut meta);
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

#[test]
fn control_an_intact_data_dir_starts_and_serves_every_record() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn a_new_empty_data_dir_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new");
    let broker = open_on(Arc::new(FsDisk), &data).unwrap();
    assert!(broker.topics().iter().next().is_none());
    assert!(data.join("meta.json").exists());
}

#[test]
fn issue_14_deleted_meta_json_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    let meta = std::fs::read(dir.path().join("meta.json")).unwrap();
    std::fs::remove_file(dir.path().join("meta.json")).unwrap();
    expect_test::expect![[r#"data directory <data> does not match its meta.json: directory orders-0 holds records of a topic meta.json does not record; directory orders-1 holds records of a topic meta.json does not record; directory orders-2 holds records of a topic meta.json does not record; refusing to start rather than guess: restore meta.json or the directories, or move what does not belong out of the data directory"#]]
        .assert_eq(&refusal(Arc::new(FsDisk), dir.path()));
    assert!(
        !dir.path().join("meta.json").exists(),
        "a refused start writes no new meta.json"
    );
    // Control: restored, the same directory starts with every record.
    std::fs::write(dir.path().join("meta.json"), meta).unwrap();
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn issue_14_a_topic_removed_from_meta_json_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    {
        // A second topic whose entry stays: only the removed one is named.
        let mut broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
        assert_eq!(create(&mut broker, "kept", 1), 0);
        broker.close().unwrap();
    }
    let meta = std::fs::read(dir.path().join("meta.json")).unwrap();
    edit_meta(dir.path(), |meta| {
        meta["topics"].as_object_mut().unwrap().remove(TOPIC);
    });
    let text = refusal(Arc::new(FsDisk), dir.path());
    for index in 0..PARTITIONS {
        assert!(
            text.contains(&format!(
                "directory orders-{index} holds records of a topic"
            )),
            "{text}"
        );
    }
    assert!(!text.contains("kept"), "{text}");
    std::fs::write(dir.path().join("meta.json"), meta).unwrap();
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn issue_14_a_partition_count_edited_down_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    let meta = std::fs::read(dir.path().join("meta.json")).unwrap();
    edit_meta(dir.path(), |meta| {
        meta["topics"][TOPIC]["partitions"] = 2.into();
    });
    expect_test::expect![[r#"data directory <data> does not match its meta.json: directory orders-2 holds records beyond the 2 partition(s) meta.json records for its topic; refusing to start rather than guess: restore meta.json or the directories, or move what does not belong out of the data directory"#]]
        .assert_eq(&refusal(Arc::new(FsDisk), dir.path()));
    std::fs::write(dir.path().join("meta.json"), meta).unwrap();
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn issue_14_a_deleted_partition_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    let moved = dir.path().join("moved-away");
    std::fs::rename(dir.path().join("orders-1"), &moved).unwrap();
    expect_test::expect![[r#"data directory <data> does not match its meta.json: partition orders-1 is recorded in meta.json but its directory is missing; refusing to start rather than guess: restore meta.json or the directories, or move what does not belong out of the data directory"#]]
        .assert_eq(&refusal(Arc::new(FsDisk), dir.path()));
    assert!(
        !dir.path().join("orders-1").exists(),
        "a refused start creates no empty partition"
    );
    std::fs::rename(&moved, dir.path().join("orders-1")).unwrap();
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn every_difference_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    std::fs::remove_dir_all(dir.path().join("orders-0")).unwrap();
    edit_meta(dir.path(), |meta| {
        meta["topics"][TOPIC]["partitions"] = 2.into();
    });
    let text = refusal(Arc::new(FsDisk), dir.path());
    assert!(
        text.contains("directory orders-2 holds records beyond"),
        "{text}"
    );
    assert!(
        text.contains("partition orders-0 is recorded in meta.json but its directory is missing"),
        "{text}"
    );
}

fn delete_topic(broker: &mut Broker, name: &str) -> Result<(), BrokerError> {
    let body = DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))]);
    handle_through(
        broker,
        request(ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(body)),
    )
}

/// Handles a request that changes topics, then runs its file work and reports it as the
/// server would: a failed write or fsync in either is the error.
fn handle_through(broker: &mut Broker, request: wire::Request) -> Result<(), BrokerError> {
    let outcome = broker.handle(now(), 1, &broker::ClientInfo::default(), request)?;
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    let job = broker.take_admin_job().expect("a topic change makes a job");
    broker.admin_done(now(), job.run())
}

#[test]
fn a_topic_deletion_interrupted_by_a_crash_is_finished_at_start() {
    let disk = SimDisk::new();
    let dir = Path::new("/data");
    populate(Arc::new(disk.clone()), dir);
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    // The deletion is recorded, then the first directory's removal fails: the broker stops
    // (the error is fatal) and the power goes.
    disk.fail_next_remove();
    assert!(delete_topic(&mut broker, TOPIC).is_err());
    drop(broker);
    disk.crash();
    assert!(disk.exists(&dir.join("orders-0")));
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert!(broker.topics().get(TOPIC).is_none());
    for index in 0..PARTITIONS {
        assert!(!disk.exists(&dir.join(format!("orders-{index}"))));
    }
    // Control: the same crash without the deletion recorded (directories of a topic meta.json
    // does not record, holding records) is refused.
    drop(broker);
    populate(Arc::new(disk.clone()), dir);
    let meta = disk.contents(&dir.join("meta.json")).unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    meta["topics"].as_object_mut().unwrap().remove(TOPIC);
    let file = disk.open(&dir.join("meta.json"), false).unwrap();
    let bytes = serde_json::to_vec(&meta).unwrap();
    file.truncate(0).unwrap();
    file.write_all_at(0, &bytes).unwrap();
    assert!(refusal(Arc::new(disk.clone()), dir).contains("orders-0"));
}

#[test]
fn a_deleted_topic_does_not_block_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(Arc::new(FsDisk), dir.path());
    let mut broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    delete_topic(&mut broker, TOPIC).unwrap();
    broker.close().unwrap();
    let broker = open_on(Arc::new(FsDisk), dir.path()).unwrap();
    assert!(broker.topics().get(TOPIC).is_none());
    let meta = std::fs::read_to_string(dir.path().join("meta.json")).unwrap();
    assert!(!meta.contains("deleting"), "{meta}");
}

#[test]
fn a_topic_creation_interrupted_by_a_crash_leaves_nothing_that_blocks_the_start() {
    let disk = SimDisk::new();
    let dir = Path::new("/data");
    populate(Arc::new(disk.clone()), dir);
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    // The partition directories are created (and synced), then the write of meta.json fails.
    disk.set_full(true);
    let body = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("late")))
        .with_num_partitions(2)
        .with_replication_factor(1)]);
    let created = handle_through(
        &mut broker,
        request(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(body)),
    );
    assert!(
        created.is_err(),
        "a failed meta.json write stops the broker"
    );
    drop(broker);
    disk.crash();
    disk.set_full(false);
    assert!(disk.exists(&dir.join("late-0")));
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert!(broker.topics().get("late").is_none());
    assert!(
        !disk.exists(&dir.join("late-0")),
        "the empty leftover is removed"
    );
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
}

#[test]
fn issue_14_an_unchanged_data_dir_starts_without_writing() {
    let disk = SimDisk::new();
    let dir = Path::new("/data");
    populate(Arc::new(disk.clone()), dir);
    let before = disk.mutations();
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(disk.mutations(), before, "opening wrote to the disk");
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
    // So it starts on a full disk too.
    drop(broker);
    disk.set_full(true);
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION; 3]);
    // Control: a new data directory has a meta.json to write, and a full disk refuses it.
    let error = match open_on(Arc::new(disk.clone()), Path::new("/other")) {
        Ok(_) => panic!("started without writing meta.json"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("No space left on device"), "{error}");
}

#[test]
fn issue_14_close_on_a_full_disk_fails_and_loses_nothing_synced() {
    let disk = SimDisk::new();
    let dir = Path::new("/data");
    populate(Arc::new(disk.clone()), dir);
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    for index in 0..PARTITIONS {
        assert_eq!(produce_one(&mut broker, TOPIC, index), 0);
    }
    group_commit(&mut broker);
    disk.set_full(true);
    let error = broker
        .close()
        .expect_err("a clean close writes index files");
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
    disk.crash();
    disk.set_full(false);
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(log_ends(&broker), vec![RECORDS_PER_PARTITION + 1; 3]);
}

/// What the server's group commit does with the write-ahead log (`server/commit.rs`): a round of
/// small appends is made durable by one frame, any other by its own fsyncs, then a reset if it
/// reshaped a log. Returns whether the frame took the round.
fn wal_group_commit(broker: &mut Broker) -> bool {
    let wal = broker.wal();
    let round = broker.take_sync_work();
    if let Some(ids) = &round.ids {
        ids.run().unwrap();
    }
    let logged = !round.logs.is_empty() && wal.takes(round.logs.iter().map(|(_, work)| work));
    if logged {
        for (_, work) in &round.logs {
            work.run_writes().unwrap();
        }
        wal.log(round.logs.iter().map(|(_, work)| work)).unwrap();
    } else {
        for (_, work) in &round.logs {
            work.run_data().unwrap();
        }
        if round.logs.iter().any(|(_, work)| work.reshapes()) && wal.owes() {
            wal.reset().unwrap();
        }
    }
    report(broker, &round);
    logged
}

/// Reports a round's works synced, as the server does once its fsyncs are done.
fn report(broker: &mut Broker, round: &broker::SyncRound) {
    let synced = round
        .logs
        .iter()
        .map(|(log, work)| (log.clone(), work.offset()))
        .collect();
    broker.synced(now(), round.ticket, synced).unwrap();
}

/// `orders` with `records` records per partition, each acknowledged through a write-ahead log
/// frame only (the segments' writes are not synced), then a power loss.
fn produce_through_the_wal_then_crash(disk: &SimDisk, dir: &Path, records: i64) {
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    if broker.topics().get(TOPIC).is_none() {
        assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
        // The creation's own files and directories, synced directly.
        wal_group_commit(&mut broker);
    }
    for _ in 0..records {
        for index in 0..PARTITIONS {
            assert_eq!(produce_one(&mut broker, TOPIC, index), 0);
        }
        assert!(
            wal_group_commit(&mut broker),
            "small appends go through the frame"
        );
    }
    assert_eq!(log_ends(&broker), vec![records; PARTITIONS as usize]);
    drop(broker);
    disk.crash();
}

/// Appends acknowledged through the write-ahead log alone survive a power loss: the start
/// writes them back into their segments before recovery. The control: the same crash with the
/// write-ahead log removed before the start loses them, so the segments alone did not hold them.
#[test]
fn appends_acknowledged_through_the_write_ahead_log_survive_a_power_loss() {
    let dir = Path::new("/data");
    let disk = SimDisk::new();
    produce_through_the_wal_then_crash(&disk, dir, 4);
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(log_ends(&broker), vec![4; PARTITIONS as usize]);
    drop(broker);

    let control = SimDisk::new();
    produce_through_the_wal_then_crash(&control, dir, 4);
    control.remove_file(&dir.join(storage::WAL_FILE)).unwrap();
    let broker = open_on(Arc::new(control.clone()), dir).unwrap();
    assert_eq!(
        log_ends(&broker),
        vec![0; PARTITIONS as usize],
        "without its write-ahead log the crash loses the appends"
    );
}

/// A topic deleted while its appends were durable only through write-ahead log frames, then
/// created again under the same name with fewer records: after a power loss the new topic holds
/// its own records only, none of the old topic's (the deletion voided the frames naming its
/// files). Without that, the old frames would write the deleted topic's later records after the
/// new one's, as valid batches with the offsets recovery expects next.
#[test]
fn a_topic_deleted_and_created_again_gets_none_of_the_old_frames_after_a_power_loss() {
    let dir = Path::new("/data");
    let disk = SimDisk::new();
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
    wal_group_commit(&mut broker);
    for _ in 0..4 {
        for index in 0..PARTITIONS {
            assert_eq!(produce_one(&mut broker, TOPIC, index), 0);
        }
        assert!(wal_group_commit(&mut broker));
    }
    delete_topic(&mut broker, TOPIC).unwrap();
    assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
    wal_group_commit(&mut broker);
    for index in 0..PARTITIONS {
        assert_eq!(produce_one(&mut broker, TOPIC, index), 0);
    }
    assert!(wal_group_commit(&mut broker));
    drop(broker);
    disk.crash();
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(log_ends(&broker), vec![1; PARTITIONS as usize]);
}

/// One append to every partition of `orders`, then a round taken while the frames before it are
/// still to be fsynced (`take_append_round`), written as a frame; returns the round.
fn pipelined_round(
    broker: &mut Broker,
    wal: &storage::Wal,
    bytes_max: u64,
) -> Option<broker::SyncRound> {
    for index in 0..PARTITIONS {
        assert_eq!(produce_one(broker, TOPIC, index), 0);
    }
    let round = broker.take_append_round(bytes_max)?;
    for (_, work) in &round.logs {
        work.run_writes().unwrap();
    }
    wal.write(round.logs.iter().map(|(_, work)| work)).unwrap();
    Some(round)
}

/// The appends a round taken behind frames in flight may hold, as the server passes it.
const MAX: u64 = storage::WAL_ROUND_BYTES_MAX;

/// While a frame's fsync runs, the next round of appends is taken and written as the next
/// frame; one fsync then covers both, the rounds are reported in order, and a power loss after
/// it keeps both. Appends over the byte limit are not taken so (they wait, and the next round
/// takes them). The control: a log that rolled has more than appends to sync, so no such round
/// is taken (it waits for a whole round).
#[test]
fn rounds_of_appends_overlap_their_frames_and_are_reported_in_order() {
    let dir = Path::new("/data");
    let disk = SimDisk::new();
    let mut broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    let wal = broker.wal();
    assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
    wal_group_commit(&mut broker);
    let first = pipelined_round(&mut broker, &wal, MAX).expect("appends only");
    assert!(
        pipelined_round(&mut broker, &wal, 0).is_none(),
        "appends over the limit wait for a whole round"
    );
    let second = pipelined_round(&mut broker, &wal, MAX).expect("appends only, first in flight");
    assert_eq!(first.logs.len(), PARTITIONS as usize);
    assert_eq!(second.logs.len(), PARTITIONS as usize);
    assert!(
        broker.take_sync_work().logs.is_empty(),
        "a whole round waits for the frames in flight"
    );
    wal.sync().unwrap();
    for round in [first, second] {
        report(&mut broker, &round);
    }
    let topic = broker.topics().get(TOPIC).unwrap();
    let watermarks: Vec<i64> = topic
        .partitions
        .iter()
        .map(|p| p.high_watermark())
        .collect();
    assert_eq!(watermarks, vec![3; PARTITIONS as usize]);
    drop(broker);
    disk.crash();
    let broker = open_on(Arc::new(disk.clone()), dir).unwrap();
    assert_eq!(log_ends(&broker), vec![3; PARTITIONS as usize]);
    drop(broker);

    let control = SimDisk::new();
    let mut config = BrokerConfig::new(dir.to_path_buf());
    // One record's batch fits a segment, the second rolls it.
    config.log.segment_bytes = 100;
    let mut broker = Broker::open(config, Arc::new(control.clone()), now()).unwrap();
    let wal = broker.wal();
    assert_eq!(create(&mut broker, TOPIC, PARTITIONS), 0);
    wal_group_commit(&mut broker);
    assert!(pipelined_round(&mut broker, &wal, MAX).is_some());
    assert!(pipelined_round(&mut broker, &wal, MAX).is_none());
    assert!(
        broker.take_sync_work().logs.is_empty(),
        "the rolled logs wait for the frame in flight"
    );
}
