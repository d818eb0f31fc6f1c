//! An in-memory [`Disk`] that remembers what was synced, so tests can crash it.
//!
//! Each file keeps its synced content and the writes and truncations issued since its last
//! `sync_data`; each directory keeps its synced entries and the current ones. [`SimDisk::crash`]
//! throws away everything that was not synced, exactly the loss a power cut allows (and no more),
//! so "crash between write and fsync" is a case a test can build. Switches inject the other
//! failures the log must survive: a failing fsync, a failing write, a full disk, a torn last
//! write, a flipped bit in data that was synced. Files carry a last-modified time stamped from a
//! settable clock, and the disk counts the operations that change it, so a test can tell that
//! something wrote nothing.
//!
//! Every file system operation takes one lock: this is a test tool, simple beats fast.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::disk::{Disk, DiskFile, Space};

/// The in-memory disk. Clones share the same state, so a test can keep one to crash the disk while
/// the log owns another.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

#[derive(Default)]
struct SimState {
    /// The names as the running system sees them.
    names: BTreeMap<PathBuf, Node>,
    /// The names as they would be found after a crash (before removing orphans).
    names_durable: BTreeMap<PathBuf, Node>,
    files: HashMap<u64, Inode>,
    inode_next: u64,
    write_sequence_next: u64,
    fail_next_sync: bool,
    /// Syncs to let through before one fails (`fail_sync_after`).
    syncs_before_failure: Option<u64>,
    fail_next_write: bool,
    fail_next_remove: bool,
    /// Every write fails with ENOSPC until cleared (`set_full`).
    full: bool,
    tear_keep_bytes: Option<usize>,
    /// What stamps a file's last-modified time when it is written; the real clock if unset.
    clock: Option<SystemTime>,
    /// Operations that changed the disk: names created, removed or renamed, writes, truncations.
    mutations: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Node {
    Dir,
    File(u64),
}

struct Inode {
    synced: Vec<u8>,
    current: Vec<u8>,
    /// Operations since the last sync_data, in order, so a crash can replay a prefix of them.
    pending: Vec<Pending>,
    /// Last-modified time. A crash keeps it (the sim does not model lost metadata updates).
    modified: SystemTime,
}

impl Inode {
    fn new(modified: SystemTime) -> Inode {
        Inode {
            synced: Vec::new(),
            current: Vec::new(),
            pending: Vec::new(),
            modified,
        }
    }
}

enum Pending {
    Write {
        sequence: u64,
        position: u64,
        data: Vec<u8>,
    },
    Truncate {
        len: u64,
    },
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Simulates a power cut: every write not followed by a `sync_data` of its file is lost, and
    /// every name created, removed or renamed since its directory's last `sync_dir` reverts.
    /// Handles opened before the crash fail from now on, and pending injected failures are
    /// cleared.
    pub fn crash(&self) {
        let mut state = self.state.lock();
        let torn = state.tear_keep_bytes.take().and_then(|keep| {
            let last = state.files.iter().filter_map(|(inode, file)| {
                file.pending.iter().rev().find_map(|op| match op {
                    Pending::Write { sequence, .. } => Some((*sequence, *inode)),
                    Pending::Truncate { .. } => None,
                })
            });
            last.max().map(|(sequence, inode)| (inode, sequence, keep))
        });
        let durable = state.names_durable.clone();
        let mut names = BTreeMap::new();
        let mut files = HashMap::new();
        let mut renumbered: HashMap<u64, u64> = HashMap::new();
        for (path, node) in &durable {
            if !ancestors_are_dirs(&durable, path) {
                continue;
            }
            let node = match *node {
                Node::Dir => Node::Dir,
                Node::File(old) => {
                    let new = *renumbered.entry(old).or_insert_with(|| {
                        state.inode_next += 1;
                        state.inode_next
                    });
                    if let Some(file) = state.files.get(&old) {
                        let content = match torn {
                            Some((inode, sequence, keep)) if inode == old => {
                                file.replay(sequence, keep)
                            }
                            _ => file.synced.clone(),
                        };
                        files.insert(
                            new,
                            Inode {
                                synced: content.clone(),
                                current: content,
                                pending: Vec::new(),
                                modified: file.modified,
                            },
                        );
                    }
                    Node::File(new)
                }
            };
            names.insert(path.clone(), node);
        }
        state.names_durable = names.clone();
        state.names = names;
        state.files = files;
        // An injected failure that did not fire is gone with the power.
        state.fail_next_sync = false;
        state.syncs_before_failure = None;
        state.fail_next_write = false;
        state.fail_next_remove = false;
    }

    /// Makes the next `sync_data` or `sync_dir` fail (and not sync anything).
    pub fn fail_next_sync(&self) {
        self.state.lock().fail_next_sync = true;
    }

    /// Lets `syncs` more `sync_data` or `sync_dir` calls through, then makes the next one fail:
    /// with a crash after it, a power cut at each point of a multi-step file operation.
    pub fn fail_sync_after(&self, syncs: u64) {
        self.state.lock().syncs_before_failure = Some(syncs);
    }

    /// Whether a failure set by `fail_sync_after` has yet to fire.
    pub fn sync_failure_pending(&self) -> bool {
        self.state.lock().syncs_before_failure.is_some()
    }

    /// Makes the next `write_all_at` fail (and not write anything).
    pub fn fail_next_write(&self) {
        self.state.lock().fail_next_write = true;
    }

    /// Makes the next `remove_file` or `remove_dir_all` fail (and not remove anything).
    pub fn fail_next_remove(&self) {
        self.state.lock().fail_next_remove = true;
    }

    /// A full disk: while `full`, every write fails with ENOSPC (and writes nothing); reads,
    /// fsyncs, renames and removals still work, as on a full file system.
    pub fn set_full(&self, full: bool) {
        self.state.lock().full = full;
    }

    /// From now on, writes stamp files with `now` as their last-modified time.
    pub fn set_clock(&self, now: SystemTime) {
        self.state.lock().clock = Some(now);
    }

    /// Sets a file's last-modified time (as `touch -d` would).
    pub fn set_modified(&self, path: &Path, modified: SystemTime) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.file_inode(path)?;
        state.files.get_mut(&inode).ok_or_else(stale)?.modified = modified;
        Ok(())
    }

    /// How many operations changed the disk so far: names created, removed or renamed, writes
    /// and truncations (fsyncs and reads change nothing).
    pub fn mutations(&self) -> u64 {
        self.state.lock().mutations
    }

    /// At the next crash, the most recent unsynced write keeps only its first `keep_bytes` bytes
    /// (and the unsynced writes before it in the same file survive whole): a torn write, as when
    /// the power fails while the page cache is being written back.
    pub fn tear_on_crash(&self, keep_bytes: usize) {
        self.state.lock().tear_keep_bytes = Some(keep_bytes);
    }

    /// XORs `mask` into the byte at `position` of the file, synced content included: media
    /// corruption that no fsync protects against.
    pub fn corrupt(&self, path: &Path, position: u64, mask: u8) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.file_inode(path)?;
        let file = state.files.get_mut(&inode).ok_or_else(stale)?;
        for content in [&mut file.synced, &mut file.current] {
            if let Some(byte) = content.get_mut(position as usize) {
                *byte ^= mask;
            }
        }
        Ok(())
    }

    /// The current content of a file, or None if there is no such file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.file_inode(path).ok()?;
        state.files.get(&inode).map(|file| file.current.clone())
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.state.lock().names.contains_key(path)
    }
}

impl Inode {
    /// The content after replaying the pending operations up to the write `sequence`, of which only
    /// `keep` bytes land.
    fn replay(&self, sequence: u64, keep: usize) -> Vec<u8> {
        let mut content = self.synced.clone();
        for op in &self.pending {
            match op {
                Pending::Write {
                    sequence: s,
                    position,
                    data,
                } => {
                    let torn = *s == sequence;
                    let data = if torn {
                        &data[..keep.min(data.len())]
                    } else {
                        &data[..]
                    };
                    write_into(&mut content, *position, data);
                    if torn {
                        break;
                    }
                }
                Pending::Truncate { len } => content.resize(*len as usize, 0),
            }
        }
        content
    }
}

impl SimState {
    fn file_inode(&self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Node::File(inode)) => Ok(*inode),
            Some(Node::Dir) => Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn require_dir(&self, path: &Path) -> io::Result<()> {
        match self.names.get(path) {
            Some(Node::Dir) => Ok(()),
            _ if is_root(path) => Ok(()),
            Some(Node::File(_)) => Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn require_parent_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) => self.require_dir(parent),
            None => Ok(()),
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.unwrap_or_else(SystemTime::now)
    }

    fn take_remove_failure(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.fail_next_remove) {
            return Err(io::Error::other("injected removal failure"));
        }
        Ok(())
    }

    fn take_sync_failure(&mut self) -> io::Result<()> {
        match self.syncs_before_failure {
            Some(0) => {
                self.syncs_before_failure = None;
                return Err(io::Error::other("injected fsync failure"));
            }
            Some(n) => self.syncs_before_failure = Some(n - 1),
            None => {}
        }
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let mut missing: Vec<&Path> = Vec::new();
        for ancestor in path.ancestors().filter(|p| !is_root(p)) {
            match state.names.get(ancestor) {
                Some(Node::Dir) => break,
                Some(Node::File(_)) => {
                    return Err(io::Error::other(format!(
                        "{} is a file",
                        ancestor.display()
                    )));
                }
                None => missing.push(ancestor),
            }
        }
        if !missing.is_empty() {
            state.mutations += 1;
        }
        for dir in missing {
            state.names.insert(dir.to_path_buf(), Node::Dir);
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        state.require_dir(path)?;
        let names = state.names.keys().filter(|p| p.parent() == Some(path));
        Ok(names
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.state.lock();
        let inode = match state.file_inode(path) {
            Ok(inode) => inode,
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
                state.require_parent_dir(path)?;
                state.inode_next += 1;
                state.mutations += 1;
                let inode = state.inode_next;
                let now = state.now();
                state.files.insert(inode, Inode::new(now));
                state.names.insert(path.to_path_buf(), Node::File(inode));
                inode
            }
            Err(error) => return Err(error),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.file_inode(path)?;
        state.take_remove_failure()?;
        // The inode stays alive for open handles, as on Unix; a crash collects it.
        state.names.remove(path);
        state.mutations += 1;
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.require_dir(path)?;
        state.take_remove_failure()?;
        state.names.retain(|p, _| !p.starts_with(path));
        state.mutations += 1;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.file_inode(from)?;
        state.require_parent_dir(to)?;
        if let Some(Node::Dir) = state.names.get(to) {
            return Err(io::Error::other(format!("{} is a directory", to.display())));
        }
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), Node::File(inode));
        state.mutations += 1;
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.require_dir(path)?;
        state.take_sync_failure()?;
        let children: Vec<(PathBuf, Node)> = state
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, node)| (p.clone(), *node))
            .collect();
        state.names_durable.retain(|p, _| p.parent() != Some(path));
        state.names_durable.extend(children);
        Ok(())
    }

    /// A simulated disk of `SIM_DISK_BYTES`, its files' current bytes used; none usable when
    /// it is full (`set_full`).
    fn space(&self, path: &Path) -> io::Result<Space> {
        let state = self.state.lock();
        state.require_dir(path)?;
        let used: u64 = state.files.values().map(|f| f.current.len() as u64).sum();
        let usable = if state.full {
            0
        } else {
            SIM_DISK_BYTES.saturating_sub(used)
        };
        Ok(Space {
            total_bytes: SIM_DISK_BYTES,
            usable_bytes: usable,
        })
    }
}

/// The size the simulated disk reports.
pub const SIM_DISK_BYTES: u64 = 1 << 30;

struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut SimState, u64) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock();
        if !state.files.contains_key(&self.inode) {
            return Err(stale());
        }
        f(&mut state, self.inode)
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|state, inode| Ok(state.files[&inode].current.len() as u64))
    }

    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|state, inode| {
            let content = &state.files[&inode].current;
            let start = position as usize;
            let source = content.get(start..start + buf.len()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                )
            })?;
            buf.copy_from_slice(source);
            Ok(())
        })
    }

    fn write_all_at(&self, position: u64, buf: &[u8]) -> io::Result<()> {
        self.with(|state, inode| {
            if std::mem::take(&mut state.fail_next_write) {
                return Err(io::Error::other("injected write failure"));
            }
            if state.full {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            state.write_sequence_next += 1;
            state.mutations += 1;
            let sequence = state.write_sequence_next;
            let now = state.now();
            let file = state.files.get_mut(&inode).ok_or_else(stale)?;
            file.modified = now;
            write_into(&mut file.current, position, buf);
            file.pending.push(Pending::Write {
                sequence,
                position,
                data: buf.to_vec(),
            });
            Ok(())
        })
    }

    /// One write, as `pwritev` is one system call: a crash may tear it anywhere.
    fn write_all_vectored_at(&self, position: u64, bufs: &[bytes::Bytes]) -> io::Result<()> {
        self.write_all_at(position, &bufs.concat())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|state, inode| {
            state.take_sync_failure()?;
            let file = state.files.get_mut(&inode).ok_or_else(stale)?;
            file.synced = file.current.clone();
            file.pending.clear();
            Ok(())
        })
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with(|state, inode| {
            if state.full && len > state.files[&inode].current.len() as u64 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            state.mutations += 1;
            let now = state.now();
            let file = state.files.get_mut(&inode).ok_or_else(stale)?;
            file.modified = now;
            file.current.resize(len as usize, 0);
            file.pending.push(Pending::Truncate { len });
            Ok(())
        })
    }

    fn modified(&self) -> io::Result<SystemTime> {
        self.with(|state, inode| Ok(state.files[&inode].modified))
    }
}

fn write_into(content: &mut Vec<u8>, position: u64, data: &[u8]) {
    let start = position as usize;
    let end = start + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(data);
}

fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

fn ancestors_are_dirs(names: &BTreeMap<PathBuf, Node>, path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .filter(|p| !is_root(p))
        .all(|p| names.get(p) == Some(&Node::Dir))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn stale() -> io::Error {
    io::Error::other("stale file handle: the simulated disk crashed since it was opened")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimDisk, Arc<dyn DiskFile>) {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let file = disk.open(Path::new("/d/f"), true).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        (disk, file)
    }

    fn contents(disk: &SimDisk) -> Option<Vec<u8>> {
        disk.contents(Path::new("/d/f"))
    }

    #[test]
    fn crash_keeps_synced_writes_only() {
        let (disk, file) = setup();
        file.write_all_at(0, b"abc").unwrap();
        file.sync_data().unwrap();
        file.write_all_at(3, b"def").unwrap();
        assert_eq!(contents(&disk).unwrap(), b"abcdef");
        disk.crash();
        assert_eq!(contents(&disk).unwrap(), b"abc");
        assert!(file.len().is_err(), "old handles are stale after a crash");
    }

    #[test]
    fn crash_drops_names_of_unsynced_directories() {
        let (disk, _file) = setup();
        let other = disk.open(Path::new("/d/g"), true).unwrap();
        other.write_all_at(0, b"x").unwrap();
        other.sync_data().unwrap();
        disk.rename(Path::new("/d/f"), Path::new("/d/h")).unwrap();
        disk.crash();
        assert_eq!(
            disk.list_dir(Path::new("/d")).unwrap(),
            vec!["f".to_string()]
        );
    }

    #[test]
    fn crash_keeps_renames_of_synced_directories() {
        let (disk, file) = setup();
        file.write_all_at(0, b"x").unwrap();
        file.sync_data().unwrap();
        disk.rename(Path::new("/d/f"), Path::new("/d/h")).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.crash();
        assert_eq!(disk.contents(Path::new("/d/h")).unwrap(), b"x");
        assert!(!disk.exists(Path::new("/d/f")));
    }

    #[test]
    fn unsynced_directory_loses_its_children() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/a/b")).unwrap();
        disk.sync_dir(Path::new("/a")).unwrap();
        disk.crash();
        assert!(!disk.exists(Path::new("/a/b")));
        assert!(!disk.exists(Path::new("/a")));
    }

    #[test]
    fn torn_write_keeps_a_prefix_of_the_last_write() {
        let (disk, file) = setup();
        file.write_all_at(0, b"abc").unwrap();
        file.sync_data().unwrap();
        file.write_all_at(3, b"def").unwrap();
        file.write_all_at(6, b"ghij").unwrap();
        disk.tear_on_crash(2);
        disk.crash();
        assert_eq!(contents(&disk).unwrap(), b"abcdefgh");
    }

    #[test]
    fn injected_failures_fire_once() {
        let (disk, file) = setup();
        disk.fail_next_write();
        assert!(file.write_all_at(0, b"a").is_err());
        file.write_all_at(0, b"a").unwrap();
        disk.fail_next_sync();
        assert!(file.sync_data().is_err());
        disk.crash();
        assert_eq!(
            contents(&disk).unwrap(),
            b"",
            "a failed fsync syncs nothing"
        );
    }

    #[test]
    fn a_full_disk_fails_every_write_until_freed() {
        let (disk, file) = setup();
        disk.set_full(true);
        let error = file.write_all_at(0, b"a").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
        assert!(file.write_all_at(0, b"a").is_err(), "still full");
        assert_eq!(contents(&disk).unwrap(), b"");
        disk.set_full(false);
        file.write_all_at(0, b"a").unwrap();
        assert_eq!(contents(&disk).unwrap(), b"a");
    }

    #[test]
    fn writes_stamp_the_modified_time_and_count() {
        let (disk, file) = setup();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let t1 = t0 + std::time::Duration::from_secs(60);
        disk.set_clock(t0);
        let before = disk.mutations();
        file.write_all_at(0, b"a").unwrap();
        assert_eq!(file.modified().unwrap(), t0);
        assert_eq!(disk.mutations(), before + 1);
        file.sync_data().unwrap();
        let mut buf = [0u8; 1];
        file.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(
            disk.mutations(),
            before + 1,
            "reads and fsyncs change nothing"
        );
        disk.set_modified(Path::new("/d/f"), t1).unwrap();
        assert_eq!(file.modified().unwrap(), t1);
    }

    #[test]
    fn corruption_reaches_synced_content() {
        let (disk, file) = setup();
        file.write_all_at(0, b"a").unwrap();
        file.sync_data().unwrap();
        disk.corrupt(Path::new("/d/f"), 0, 0x01).unwrap();
        disk.crash();
        assert_eq!(contents(&disk).unwrap(), b"`");
    }
}
