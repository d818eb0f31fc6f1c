//! The topic registry: names, ids, partition counts and per-topic config overrides, persisted in
//! `meta.json` in the data directory (format in `docs/storage-format.md`), plus the partition logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use storage::{Disk, LogConfig, PartitionLog, Wal, WAL_FILE};
use uuid::Uuid;

use crate::partition::{Partition, PartitionGuard, Partitions};
use crate::topic_config::{topic_synonym, TopicConfig};
use crate::BrokerError;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Upper bound on partitions per topic, so one request cannot make the broker open millions of
/// files.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
const META_FILE: &str = "meta.json";
const META_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
    /// Overrides of the broker defaults, by Kafka config name, as the client set them.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MetaFile {
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    /// Topics whose deletion began: forgotten, their directories maybe not all removed yet.
    /// Empty (and absent from the file) but in the moment `Topics::delete` removes directories
    /// or after a crash in that moment; the next start finishes the deletion.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    deleting: BTreeMap<String, TopicMeta>,
    /// The broker settings changed at run time (IncrementalAlterConfigs on the BROKER resource),
    /// by Kafka name; they override the static settings the broker started with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    broker_configs: BTreeMap<String, String>,
}

pub struct Topic {
    /// The topic's name, shared with the [`crate::LogId`]s of its partitions.
    pub name: Arc<str>,
    pub meta: TopicMeta,
    /// The broker defaults with `meta.configs` applied, parsed when the topic was created,
    /// altered or loaded.
    pub config: TopicConfig,
    pub partitions: Partitions,
}

/// How many refused auto-creation names `first_refusal` remembers; past that it warns no more.
const REFUSALS_REMEMBERED: usize = 1024;

pub struct Topics {
    /// Topic names whose auto-creation was refused (see `first_refusal`).
    refused: std::collections::BTreeSet<String>,
    /// `max.partitions`: the most partitions all topics may hold together.
    max_partitions: usize,
    disk: Arc<dyn Disk>,
    data_dir: PathBuf,
    /// The group commit's write-ahead log, replayed before any partition opened; reset before a
    /// deleted topic's name can be given to a new one.
    wal: Arc<Wal>,
    cluster_id: String,
    /// The broker's log settings, for what a topic cannot override.
    log_base: LogConfig,
    /// The broker's defaults of the topic settings.
    /// The topic defaults from the broker's settings at start.
    static_defaults: TopicConfig,
    /// `static_defaults` with the broker settings changed at run time applied.
    defaults: TopicConfig,
    /// The broker settings changed at run time (persisted in `meta.json`).
    broker_configs: BTreeMap<String, String>,
    topics: BTreeMap<String, Topic>,
    /// Changes made by the request at hand whose file work is still to do (`take_job`).
    staged: Staged,
}

/// Topic changes a request made under the broker lock whose file work (partition directories,
/// `meta.json` and its fsyncs, removals) runs outside it, as a [`TopicsJob`]; what they change
/// is installed in the registry when the job is done ([`Topics::install`]). A topic deleted
/// leaves the registry at once; a created or grown one appears, and a changed config applies,
/// only once `meta.json` records it durably.
#[derive(Default)]
struct Staged {
    created: Vec<(String, TopicMeta)>,
    /// A topic and the partition count it grows to.
    grown: Vec<(String, i32)>,
    deleted: Vec<(String, Topic)>,
    configured: Vec<(String, BTreeMap<String, String>)>,
    broker_configs: Option<BTreeMap<String, String>>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.grown.is_empty()
            && self.deleted.is_empty()
            && self.configured.is_empty()
            && self.broker_configs.is_none()
    }
}

/// One partition log a [`TopicsJob`] opens (creates) for a new topic or a grown one.
struct PartitionToOpen {
    topic: String,
    index: i32,
    dir: PathBuf,
    config: LogConfig,
}

/// The file work of a request's topic changes, run outside the broker lock ([`TopicsJob::run`]):
/// the new partition logs created, then, for deletions, `meta.json` with the deletions recorded
/// as begun and the deleted topics' directories removed, then `meta.json` as the registry will
/// be. Jobs run one at a time, in order (the broker holds the next request that changes topics
/// until this one is installed), so each `meta.json` written is the registry's state after
/// every change before it.
pub struct TopicsJob {
    disk: Arc<dyn Disk>,
    data_dir: PathBuf,
    wal: Arc<Wal>,
    now_ms: i64,
    opens: Vec<PartitionToOpen>,
    /// `meta.json` recording the deletions as begun, written before their directories go.
    deleting: Option<MetaFile>,
    removals: Vec<(String, Topic)>,
    meta: MetaFile,
    installs: Installs,
}

/// What a done [`TopicsJob`] puts in the registry (under the lock again).
pub struct Installs {
    /// Each created topic with its settings, parsed once when the job was made.
    created: Vec<(String, TopicMeta, TopicConfig)>,
    grown: Vec<(String, i32)>,
    configured: Vec<(String, BTreeMap<String, String>)>,
    broker_configs: Option<BTreeMap<String, String>>,
}

/// A run [`TopicsJob`]: the partitions it opened, in the order of its installs.
pub struct TopicsDone {
    opened: Result<Vec<Partition>, BrokerError>,
    installs: Installs,
}

impl TopicsJob {
    /// Does the file work; no broker state is touched. The result is installed with
    /// [`Topics::install`]; an error there stops the broker (a failed fsync of `meta.json`
    /// leaves nothing to trust but recovery).
    pub fn run(self) -> TopicsDone {
        let TopicsJob {
            disk,
            data_dir,
            wal,
            now_ms,
            opens,
            deleting,
            removals,
            meta,
            installs,
        } = self;
        let removals_empty = removals.is_empty();
        let opened = (|| {
            let mut opened = Vec::with_capacity(opens.len());
            for open in opens {
                opened.push(open_partition(&disk, &open, now_ms)?);
            }
            if let Some(deleting) = &deleting {
                write_meta(&*disk, &data_dir, deleting)?;
            }
            for (name, topic) in removals {
                for (index, partition) in topic.partitions.into_iter().enumerate() {
                    partition
                        .delete()
                        .map_err(|source| BrokerError::log(&name, index as i32, source))?;
                }
                tracing::info!(topic = name, "deleted topic");
            }
            if !removals_empty {
                // No frame may name a deleted partition's files once its name can be taken
                // again (`PartitionLog::delete` waited for every round that held its appends).
                wal.reset().map_err(|source| {
                    BrokerError::io("reset write-ahead log", &data_dir.join(WAL_FILE), source)
                })?;
            }
            write_meta(&*disk, &data_dir, &meta)?;
            Ok(opened)
        })();
        TopicsDone { opened, installs }
    }
}

/// Why a topic name is refused (Kafka's INVALID_TOPIC_EXCEPTION).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    // The group and transaction logs live in `<name>-0` directories of the data directory: a
    // topic of the same name would open the same files as a second log.
    if name == crate::groups::GROUP_LOG_NAME || name == crate::transactions::TXN_LOG_NAME {
        return Err(format!(
            "topic name {name:?} is the broker's internal log (ferry keeps it apart from topics)"
        ));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is longer than {TOPIC_NAME_BYTES_MAX} bytes"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "topic name contains {c:?}; allowed are ASCII letters, digits, '.', '_', '-'"
        ));
    }
    Ok(())
}

impl Topics {
    /// Loads `meta.json`, finishes a topic deletion a crash interrupted, checks that the
    /// partition directories are those `meta.json` records (`reconcile.rs`: a difference
    /// refuses the start) and opens (recovers) every partition log. `meta.json` is written only
    /// if its content changes (a new data directory, a finished deletion), so a start with
    /// nothing to change needs no free space. `log_base` and `message_max_bytes` are the
    /// broker's settings, the defaults of every topic.
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        log_base: &LogConfig,
        message_max_bytes: usize,
        max_partitions: usize,
        now_ms: i64,
    ) -> Result<Topics, BrokerError> {
        disk.create_dir_all(data_dir)
            .map_err(|source| BrokerError::io("create data dir", data_dir, source))?;
        // Before any log opens: the appends only the write-ahead log held go back into their
        // segments, where recovery looks for them.
        let (wal, _) = Wal::open(disk.clone(), data_dir).map_err(BrokerError::Wal)?;
        let meta_path = data_dir.join(META_FILE);
        let stored = match read_file(&*disk, &meta_path)? {
            Some(bytes) => Some(serde_json::from_slice::<MetaFile>(&bytes).map_err(|error| {
                BrokerError::Meta(format!("parse {}: {error}", meta_path.display()))
            })?),
            None => None,
        };
        if stored.is_none() {
            // A new data directory: its name in its parent is made durable before anything is
            // acknowledged from it.
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                disk.sync_dir(parent)
                    .map_err(|source| BrokerError::io("sync directory", parent, source))?;
            }
        }
        let meta = stored.clone().unwrap_or_else(|| MetaFile {
            version: META_VERSION,
            cluster_id: Uuid::new_v4().simple().to_string(),
            topics: BTreeMap::new(),
            deleting: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
        });
        if meta.version != META_VERSION {
            return Err(BrokerError::Meta(format!(
                "{} has version {}, this ferry reads {META_VERSION}",
                meta_path.display(),
                meta.version
            )));
        }
        if let Some(name) = meta.deleting.keys().find(|n| meta.topics.contains_key(*n)) {
            return Err(BrokerError::Meta(format!(
                "{} records topic {name} as both live and being deleted",
                meta_path.display()
            )));
        }
        crate::reconcile::finish_deletions(&*disk, data_dir, &meta.deleting)?;
        crate::reconcile::reconcile(&*disk, data_dir, &meta.topics)?;
        let held: usize = meta.topics.values().map(|t| t.partitions as usize).sum();
        if held > max_partitions {
            return Err(BrokerError::TooManyPartitions {
                held,
                max: max_partitions,
            });
        }
        let static_defaults = TopicConfig::defaults(log_base, message_max_bytes);
        let mut topics = Topics {
            refused: Default::default(),
            max_partitions,
            defaults: static_defaults.with_overrides(&synonyms(&meta.broker_configs)),
            static_defaults,
            broker_configs: meta.broker_configs.clone(),
            disk,
            data_dir: data_dir.to_path_buf(),
            wal: Arc::new(wal),
            cluster_id: meta.cluster_id,
            log_base: log_base.clone(),
            topics: BTreeMap::new(),
            staged: Staged::default(),
        };
        for (name, topic_meta) in meta.topics {
            let topic = topics.open_topic(&name, topic_meta, now_ms)?;
            topics.topics.insert(name, topic);
        }
        let current = topics.meta_file(BTreeMap::new());
        if stored.as_ref() != Some(&current) {
            write_meta(&*topics.disk, &topics.data_dir, &current)?;
        }
        Ok(topics)
    }

    fn open_topic(&self, name: &str, meta: TopicMeta, now_ms: i64) -> Result<Topic, BrokerError> {
        let config = self.defaults.with_overrides(&meta.configs);
        let log_config = config.log_config(&self.log_base);
        let partitions = (0..meta.partitions)
            .map(|index| {
                open_partition(&self.disk, &self.to_open(name, index, &log_config), now_ms)
            })
            .collect::<Result<Partitions, BrokerError>>()?;
        Ok(Topic {
            name: Arc::from(name),
            meta,
            config,
            partitions,
        })
    }

    /// The broker's defaults of the topic settings.
    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    /// The settings a topic with `overrides` would have, if the log accepts them (a
    /// `segment.bytes` beyond the segment limit, say, it does not); the error text goes back to
    /// the client with INVALID_CONFIG. Each override is checked first with
    /// `topic_config::validate_topic_config`.
    pub fn resolve(&self, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, String> {
        let config = self.defaults.with_overrides(overrides);
        config
            .log_config(&self.log_base)
            .validate()
            .map_err(|error| error.to_string())?;
        Ok(config)
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn get(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Topic> {
        self.topics.get_mut(name)
    }

    pub fn partition_mut(&mut self, name: &str, index: i32) -> Option<&mut Partition> {
        let topic = self.topics.get_mut(name)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get_mut(i))
    }

    /// Locks a partition, with the broker held shared (see [`Partitions`]).
    pub fn partition(&self, name: &str, index: i32) -> Option<PartitionGuard<'_>> {
        let topic = self.topics.get(name)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))
    }

    /// The size and usable space of the data directory's file system.
    pub fn space(&self) -> std::io::Result<storage::Space> {
        self.disk.space(&self.data_dir)
    }

    /// Whether this is the first refused auto-creation of `name` (remembered for up to
    /// `REFUSALS_REMEMBERED` names), so the operator is warned once per name, not per request.
    pub fn first_refusal(&mut self, name: &str) -> bool {
        if self.refused.contains(name) || self.refused.len() >= REFUSALS_REMEMBERED {
            return false;
        }
        self.refused.insert(name.to_string());
        true
    }

    /// How many partitions all topics hold, with those the request at hand is adding.
    pub fn partition_count(&self) -> usize {
        let live: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        let created: usize = self
            .staged
            .created
            .iter()
            .map(|(_, t)| t.partitions as usize)
            .sum();
        let grown: usize = self
            .staged
            .grown
            .iter()
            .map(|(name, to)| (to - self.topics[name].meta.partitions) as usize)
            .sum();
        live + created + grown
    }

    /// Whether `more` partitions fit under `max.partitions`; the refusal says why.
    pub fn check_room(&self, more: usize) -> Result<(), String> {
        let held = self.partition_count();
        if held + more > self.max_partitions {
            return Err(format!(
                "this broker holds {held} partitions and max.partitions is {} (by default what \
                 its file descriptor limit leaves room for): {more} more do not fit",
                self.max_partitions
            ));
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Topic)> {
        self.topics.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Topic)> {
        self.topics.iter_mut()
    }

    pub fn name_by_id(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.meta.id == id)
            .map(|(n, _)| n.as_str())
    }

    /// Creates a topic at once: its partition logs, then `meta.json`, all under the caller's
    /// hands (the synchronous form of [`Topics::stage_create`] and its job, for tests and tools
    /// that own the broker).
    pub fn create(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<&Topic, BrokerError> {
        assert!(self.staged.is_empty(), "create with other changes staged");
        self.stage_create(name, partitions, configs);
        let job = self.take_job(now_ms).expect("a creation was staged");
        self.install(job.run())?;
        Ok(&self.topics[name])
    }

    /// Stages a topic's creation (see [`Staged`]): its id is chosen now, its partition logs
    /// and its entry in `meta.json` are made by the request's job.
    pub fn stage_create(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> &TopicMeta {
        assert!(!self.exists(name), "create of existing topic {name}");
        assert!(
            (1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions),
            "partition count checked by caller"
        );
        let meta = TopicMeta {
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        self.staged.created.push((name.to_string(), meta));
        &self.staged.created.last().expect("just pushed").1
    }

    /// Whether a topic of this name exists or is being created by the request at hand.
    pub fn exists(&self, name: &str) -> bool {
        self.topics.contains_key(name) || self.staged_creation(name).is_some()
    }

    /// A topic the request at hand is creating.
    pub fn staged_creation(&self, name: &str) -> Option<&TopicMeta> {
        self.staged
            .created
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, meta)| meta)
    }

    /// Stages growing a topic to `partitions` (CreatePartitions): the job creates the new
    /// partition logs first, then records the count in `meta.json`; a crash in between leaves
    /// empty directories that the next start removes (`reconcile.rs`).
    pub fn stage_add_partitions(&mut self, name: &str, partitions: i32) {
        let current = self.topics[name].meta.partitions;
        assert!(
            current < partitions && partitions <= PARTITIONS_PER_TOPIC_MAX,
            "partition count checked by the caller"
        );
        self.staged.grown.push((name.to_string(), partitions));
    }

    /// Stages a topic's deletion: it leaves the registry now (no request finds it from here on);
    /// the job records the deletion as begun in `meta.json`, removes the partition directories,
    /// then writes `meta.json` without it, so a crash in between leaves directories the next
    /// start knows to remove, not unrecorded ones it would refuse.
    pub fn stage_delete(&mut self, name: &str) {
        let topic = self
            .topics
            .remove(name)
            .expect("delete of a topic that exists");
        self.staged.deleted.push((name.to_string(), topic));
    }

    /// Stages new config overrides for a topic (already validated); they apply once
    /// `meta.json` holds them.
    pub fn stage_configs(&mut self, name: &str, configs: BTreeMap<String, String>) {
        assert!(self.topics.contains_key(name), "alter a topic that exists");
        self.staged.configured.push((name.to_string(), configs));
    }

    /// Stages new broker settings changed at run time (already validated); they apply, as the
    /// defaults of every topic that does not override them, once `meta.json` holds them.
    pub fn stage_broker_configs(&mut self, broker_configs: BTreeMap<String, String>) {
        self.staged.broker_configs = Some(broker_configs);
    }

    /// The file work of what the request at hand staged; None if it staged nothing.
    pub fn take_job(&mut self, now_ms: i64) -> Option<TopicsJob> {
        if self.staged.is_empty() {
            return None;
        }
        let Staged {
            created,
            grown,
            deleted,
            configured,
            broker_configs,
        } = std::mem::take(&mut self.staged);
        let mut meta = self.meta_file(BTreeMap::new());
        let mut opens = Vec::new();
        let mut creations = Vec::with_capacity(created.len());
        for (name, topic) in created {
            let config = self.defaults.with_overrides(&topic.configs);
            let log_config = config.log_config(&self.log_base);
            opens
                .extend((0..topic.partitions).map(|index| self.to_open(&name, index, &log_config)));
            meta.topics.insert(name.clone(), topic.clone());
            creations.push((name, topic, config));
        }
        for (name, partitions) in &grown {
            let topic = &self.topics[name];
            let log_config = topic.config.log_config(&self.log_base);
            let from = topic.meta.partitions;
            opens.extend((from..*partitions).map(|index| self.to_open(name, index, &log_config)));
            meta.topics
                .get_mut(name)
                .expect("grown topic exists")
                .partitions = *partitions;
        }
        for (name, configs) in &configured {
            meta.topics
                .get_mut(name)
                .expect("altered topic exists")
                .configs = configs.clone();
        }
        if let Some(configs) = &broker_configs {
            meta.broker_configs = configs.clone();
        }
        let deleting = (!deleted.is_empty()).then(|| MetaFile {
            deleting: deleted
                .iter()
                .map(|(name, topic)| (name.clone(), topic.meta.clone()))
                .collect(),
            ..meta.clone()
        });
        Some(TopicsJob {
            disk: self.disk.clone(),
            data_dir: self.data_dir.clone(),
            wal: self.wal.clone(),
            now_ms,
            opens,
            deleting,
            removals: deleted,
            meta,
            installs: Installs {
                created: creations,
                grown,
                configured,
                broker_configs,
            },
        })
    }

    /// Puts a done job's changes in the registry: the created topics and grown partitions
    /// with the logs it opened, the new configs applied.
    pub fn install(&mut self, done: TopicsDone) -> Result<(), BrokerError> {
        let TopicsDone { opened, installs } = done;
        let mut opened = opened?.into_iter();
        let Installs {
            created,
            grown,
            configured,
            broker_configs,
        } = installs;
        for (name, meta, config) in created {
            let partitions: Partitions = opened.by_ref().take(meta.partitions as usize).collect();
            assert_eq!(
                partitions.len(),
                meta.partitions as usize,
                "a log per partition"
            );
            tracing::info!(topic = name, partitions = meta.partitions, "created topic");
            let topic = Topic {
                name: Arc::from(name.as_str()),
                meta,
                config,
                partitions,
            };
            self.topics.insert(name, topic);
        }
        for (name, partitions) in grown {
            let topic = self.topics.get_mut(&name).expect("grown topic exists");
            let current = topic.meta.partitions;
            let added = opened.by_ref().take((partitions - current) as usize);
            topic.partitions.extend(added);
            assert_eq!(
                topic.partitions.len(),
                partitions as usize,
                "a log per partition"
            );
            topic.meta.partitions = partitions;
            tracing::info!(
                topic = name,
                from = current,
                to = partitions,
                "added partitions"
            );
        }
        assert!(opened.next().is_none(), "every opened log installed");
        if let Some(broker_configs) = broker_configs {
            self.defaults = self
                .static_defaults
                .with_overrides(&synonyms(&broker_configs));
            self.broker_configs = broker_configs;
            let names: Vec<String> = self.topics.keys().cloned().collect();
            for name in names {
                let overrides = self.topics[&name].meta.configs.clone();
                self.apply_configs(&name, overrides)?;
            }
            tracing::info!(configs = ?self.broker_configs, "altered broker configs");
        }
        for (name, configs) in configured {
            // A topic deleted since is gone with its configs (deletions come in later jobs,
            // so this cannot happen today; the check keeps install total).
            if self.topics.contains_key(&name) {
                self.apply_configs(&name, configs)?;
                tracing::info!(topic = name, configs = ?self.topics[&name].meta.configs, "altered topic configs");
            }
        }
        Ok(())
    }

    fn to_open(&self, name: &str, index: i32, config: &LogConfig) -> PartitionToOpen {
        PartitionToOpen {
            topic: name.to_string(),
            index,
            dir: self.partition_dir(name, index),
            config: config.clone(),
        }
    }

    /// The broker settings changed at run time, by Kafka name.
    pub fn broker_configs(&self) -> &BTreeMap<String, String> {
        &self.broker_configs
    }

    /// The topic defaults the broker would have with `broker_configs` as its settings changed
    /// at run time, if every topic's log accepts them; the error text goes back to the client.
    pub fn resolve_broker(
        &self,
        broker_configs: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, String> {
        let defaults = self
            .static_defaults
            .with_overrides(&synonyms(broker_configs));
        defaults
            .log_config(&self.log_base)
            .validate()
            .map_err(|error| error.to_string())?;
        Ok(defaults)
    }

    /// A topic's overrides on the broker's defaults, applied to its partition logs (not yet
    /// persisted).
    fn apply_configs(
        &mut self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        let config = self.defaults.with_overrides(&configs);
        let log_config = config.log_config(&self.log_base);
        let topic = self
            .topics
            .get_mut(name)
            .expect("alter a topic that exists");
        for (index, partition) in topic.partitions.iter_mut().enumerate() {
            partition
                .log_mut()
                .set_config(log_config.clone())
                .map_err(|source| BrokerError::Log {
                    topic: name.to_string(),
                    partition: index as i32,
                    source,
                })?;
        }
        topic.meta.configs = configs;
        topic.config = config;
        Ok(())
    }

    /// Closes every partition log cleanly (see `Partition::close`), consuming the registry.
    /// A failure does not stop the others from closing (each syncs what it holds); the first
    /// error is returned.
    pub fn close(self) -> Result<(), BrokerError> {
        let mut first_error = None;
        for (name, topic) in self.topics {
            for (index, partition) in topic.partitions.into_iter().enumerate() {
                if let Err(source) = partition.close() {
                    let error = BrokerError::log(&name, index as i32, source);
                    tracing::error!(%error, "cannot close partition log cleanly");
                    first_error.get_or_insert(error);
                }
            }
        }
        if first_error.is_none() {
            // Every partition synced its files: the next start has nothing to replay.
            if let Err(source) = self.wal.reset() {
                let path = self.data_dir.join(WAL_FILE);
                first_error = Some(BrokerError::io("reset write-ahead log", &path, source));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The group commit's write-ahead log.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    fn partition_dir(&self, name: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{name}-{index}"))
    }

    /// What `meta.json` holds for the registry as it is.
    fn meta_file(&self, deleting: BTreeMap<String, TopicMeta>) -> MetaFile {
        MetaFile {
            version: META_VERSION,
            cluster_id: self.cluster_id.clone(),
            topics: self
                .topics
                .iter()
                .map(|(n, t)| (n.clone(), t.meta.clone()))
                .collect(),
            deleting,
            broker_configs: self.broker_configs.clone(),
        }
    }
}

/// Dynamic broker settings as the topic settings they are the defaults of.
fn synonyms(broker_configs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    broker_configs
        .iter()
        .filter_map(|(name, value)| Some((topic_synonym(name)?.to_string(), value.clone())))
        .collect()
}

/// Writes `meta.json` atomically: temp file, fsync, rename, directory fsync.
fn write_meta(disk: &dyn Disk, data_dir: &Path, meta: &MetaFile) -> Result<(), BrokerError> {
    let bytes = serde_json::to_vec_pretty(meta).expect("meta serializes");
    crate::durable::write_file_atomic(disk, data_dir, META_FILE, &bytes)
        .map_err(|source| BrokerError::io("write meta.json", data_dir, source))
}

/// Opens (creating or recovering) one partition's log and producer state.
fn open_partition(
    disk: &Arc<dyn Disk>,
    open: &PartitionToOpen,
    now_ms: i64,
) -> Result<Partition, BrokerError> {
    let log_error = |source| BrokerError::log(&open.topic, open.index, source);
    let log = PartitionLog::open(disk.clone(), &open.dir, open.config.clone(), now_ms)
        .map_err(log_error)?;
    Partition::open(disk.clone(), log, now_ms).map_err(log_error)
}

fn read_file(disk: &dyn Disk, path: &Path) -> Result<Option<Vec<u8>>, BrokerError> {
    crate::durable::read_file(disk, path).map_err(|source| BrokerError::io("read", path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let check =
            |name: &str, ok: bool| assert_eq!(validate_topic_name(name).is_ok(), ok, "{name}");
        check("orders", true);
        check("a.b_c-D9", true);
        check("", false);
        check(".", false);
        check("..", false);
        check("with space", false);
        check("slash/", false);
        check(&"x".repeat(249), true);
        check(&"x".repeat(250), false);
        check("__consumer_offsets", false);
        check("__transaction_state", false);
        check("__consumer_offsets_2", true);
    }
}
