//! Start-up reconciliation of the data directory with `meta.json`: every partition directory
//! must belong to a partition `meta.json` records, and every recorded partition must have its
//! directory. Where they differ (`meta.json` lost or edited, a directory deleted) the broker
//! refuses to start and names every difference: guessing would either hide acknowledged records
//! or serve a partition from offset 0 below its consumers' committed offsets.
//!
//! Two states a crash leaves are not differences. A directory that never held a record (a
//! topic or partition creation interrupted before `meta.json` recorded it) is removed. The
//! directories of a topic whose deletion `meta.json` records (`deleting`) are removed, finishing
//! the deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

use storage::{Disk, PartitionLog};

use crate::topics::{validate_topic_name, TopicMeta};
use crate::BrokerError;

/// One way the data directory and `meta.json` differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirDifference {
    /// A partition directory, holding records, of a topic `meta.json` does not record.
    Unrecorded { dir: String },
    /// A partition directory, holding records, beyond the partition count `meta.json` records
    /// for its topic.
    BeyondCount { dir: String, partitions: i32 },
    /// A partition `meta.json` records whose directory is missing.
    Missing { dir: String },
}

impl fmt::Display for DirDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirDifference::Unrecorded { dir } => {
                write!(f, "directory {dir} holds records of a topic meta.json does not record")
            }
            DirDifference::BeyondCount { dir, partitions } => write!(
                f,
                "directory {dir} holds records beyond the {partitions} partition(s) meta.json records for its topic"
            ),
            DirDifference::Missing { dir } => write!(
                f,
                "partition {dir} is recorded in meta.json but its directory is missing"
            ),
        }
    }
}

/// Every difference found, for [`BrokerError::DataDirMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirDifferences(pub Vec<DirDifference>);

impl fmt::Display for DirDifferences {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, difference) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{difference}")?;
        }
        Ok(())
    }
}

/// The partition directories in `data_dir`: names `<topic>-<index>` with a valid topic name and
/// an index as the broker writes it. The internal logs' directories (`__consumer_offsets-0`,
/// `__transaction_state-0`) are not topic partitions (their names are refused as topic names),
/// and other names (`meta.json`, checkpoints, their temporary files) are not directories ferry
/// made for a partition.
fn partition_dirs(
    disk: &dyn Disk,
    data_dir: &Path,
) -> Result<BTreeMap<String, BTreeSet<i32>>, BrokerError> {
    let mut found: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let names = disk
        .list_dir(data_dir)
        .map_err(|source| BrokerError::io("list data dir", data_dir, source))?;
    for name in names {
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<i32>() else {
            continue;
        };
        if index < 0 || index.to_string() != name[topic.len() + 1..] {
            continue;
        }
        if validate_topic_name(topic).is_err() {
            continue;
        }
        found.entry(topic.to_string()).or_default().insert(index);
    }
    Ok(found)
}

/// Removes the directories of topics whose deletion `meta.json` records as begun (see
/// `Topics::delete`); a crash may have removed some of them, or part of one, already.
pub(crate) fn finish_deletions(
    disk: &dyn Disk,
    data_dir: &Path,
    deleting: &BTreeMap<String, TopicMeta>,
) -> Result<(), BrokerError> {
    if deleting.is_empty() {
        return Ok(());
    }
    for (name, meta) in deleting {
        for index in 0..meta.partitions {
            let dir = data_dir.join(format!("{name}-{index}"));
            match disk.remove_dir_all(&dir) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(BrokerError::io("remove directory", &dir, source)),
            }
        }
        tracing::info!(
            topic = %name,
            "finished the deletion of a topic interrupted by a crash"
        );
    }
    disk.sync_dir(data_dir)
        .map_err(|source| BrokerError::io("sync directory", data_dir, source))
}

/// Checks the partition directories against the partitions `recorded` (see the module
/// comment); removes the directories that never held a record and are not recorded.
pub(crate) fn reconcile(
    disk: &dyn Disk,
    data_dir: &Path,
    recorded: &BTreeMap<String, TopicMeta>,
) -> Result<(), BrokerError> {
    let found = partition_dirs(disk, data_dir)?;
    let mut differences = Vec::new();
    let mut leftovers = Vec::new();
    for (topic, indexes) in &found {
        let partitions = recorded.get(topic).map(|meta| meta.partitions);
        for &index in indexes {
            let dir = format!("{topic}-{index}");
            let difference = match partitions {
                None => DirDifference::Unrecorded { dir: dir.clone() },
                Some(partitions) if index >= partitions => DirDifference::BeyondCount {
                    dir: dir.clone(),
                    partitions,
                },
                Some(_) => continue,
            };
            let empty = PartitionLog::never_held_records(disk, &data_dir.join(&dir))
                .map_err(|source| BrokerError::log(topic, index, source))?;
            if empty {
                leftovers.push(dir);
            } else {
                differences.push(difference);
            }
        }
    }
    for (topic, meta) in recorded {
        for index in 0..meta.partitions {
            if !found.get(topic).is_some_and(|set| set.contains(&index)) {
                differences.push(DirDifference::Missing {
                    dir: format!("{topic}-{index}"),
                });
            }
        }
    }
    if !differences.is_empty() {
        return Err(BrokerError::DataDirMismatch {
            data_dir: data_dir.to_path_buf(),
            differences: DirDifferences(differences),
        });
    }
    if leftovers.is_empty() {
        return Ok(());
    }
    for dir in &leftovers {
        tracing::warn!(
            dir = %dir,
            "removing a partition directory that meta.json does not record and that never held a record (left by an interrupted topic or partition creation)"
        );
        let path = data_dir.join(dir);
        disk.remove_dir_all(&path)
            .map_err(|source| BrokerError::io("remove directory", &path, source))?;
    }
    disk.sync_dir(data_dir)
        .map_err(|source| BrokerError::io("sync directory", data_dir, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::SimDisk;

    #[test]
    fn partition_directory_names() {
        let disk = SimDisk::new();
        let data = Path::new("/data");
        for name in [
            "orders-0",
            "orders-12",
            "a-1-0",
            "__consumer_offsets-0",
            "__transaction_state-0",
            "meta.json",
            "producer-ids.checkpoint",
            "x-01",
            "x--1",
            "bad name-0",
        ] {
            disk.create_dir_all(&data.join(name)).unwrap();
        }
        let found = partition_dirs(&disk, data).unwrap();
        let expect: BTreeMap<String, BTreeSet<i32>> = [
            ("a-1".to_string(), BTreeSet::from([0])),
            ("orders".to_string(), BTreeSet::from([0, 12])),
            // Topic "x-", partition 1.
            ("x-".to_string(), BTreeSet::from([1])),
        ]
        .into();
        assert_eq!(found, expect);
    }
}
