//! The narrow disk interface the log is written against, and its implementation on the real file
//! system.
//!
//! Everything the log does to a disk goes through [`Disk`] and [`DiskFile`], so a test can swap in
//! [`crate::SimDisk`] and drop unsynced writes, tear a write or fail an fsync. Durability is never
//! implicit: data reaches stable storage only through [`DiskFile::sync_data`], and a new, renamed or
//! removed name only through [`Disk::sync_dir`] on its directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// A file system: names, directories and their durability.
pub trait Disk: Send + Sync {
    /// Creates `path` and any missing parents (not durable until the parents are synced).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries in the directory `path`, sorted. Names that are not UTF-8 are
    /// skipped: the log never creates them.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing; with `create`, creates it empty if it is missing.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (both in the same directory for atomicity).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The size of the file system holding `path`, and the bytes still usable on it (what an
    /// unprivileged process may write), as DescribeLogDirs reports them.
    fn space(&self, path: &Path) -> io::Result<Space>;
}

/// A file system's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// An open file, addressed by position only so that readers never share a cursor.
pub trait DiskFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `position`; reading past the end is an `UnexpectedEof` error.
    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The `len` bytes from `position`, as shared bytes that stay valid after the call; reading
    /// past the end is an `UnexpectedEof` error. [`FsDisk`] maps the file, so the bytes are the
    /// page cache's and nothing is copied; the default copies them into the heap. Only for bytes
    /// that never change once written (a segment below its written end).
    fn read_shared(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0; len];
        self.read_exact_at(position, &mut buf)?;
        Ok(Bytes::from(buf))
    }
    /// Writes all of `buf` at `position`, extending the file if needed. Reaches the OS, not the
    /// disk: only `sync_data` makes it durable.
    fn write_all_at(&self, position: u64, buf: &[u8]) -> io::Result<()>;
    /// Writes `bufs` back to back from `position`, as `write_all_at` would one after another;
    /// [`FsDisk`] does it in one `pwritev` call where it can.
    fn write_all_vectored_at(&self, position: u64, bufs: &[Bytes]) -> io::Result<()> {
        let mut at = position;
        for buf in bufs {
            self.write_all_at(at, buf)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// fdatasync: makes every earlier write and truncation of this file durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Starts writing `len` bytes from `position` to the disk, without waiting and without
    /// making anything durable (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`): a later
    /// `sync_data` then finds little left to write. A no-op where there is no such call.
    fn start_writeback(&self, _position: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Closes the file's descriptor and drops its `read_shared` mapping until their next use,
    /// which opens (and maps) it again by its path, so files nobody uses hold no descriptor and
    /// no mapping. Only for a file whose writes are all synced: a
    /// writeback error is reported to the descriptors open when it happens, so a descriptor
    /// opened later could miss one. A no-op where there are no descriptors. A file whose
    /// mapping a read still holds is left as it is ([`Release::InUse`]).
    fn release(&self) -> Release {
        Release::Nothing
    }
    /// Opens the descriptor if it was released and keeps it open from now on: for a file whose
    /// name is about to be given to another file (compaction renames a cleaned segment over
    /// it), so that reads still under way see this file, never the one now under its name.
    fn keep_open(&self) -> io::Result<()> {
        Ok(())
    }
    /// The file's last-modified time: retention's age of a segment whose batches carry no
    /// valid timestamp, as in Kafka.
    fn modified(&self) -> io::Result<std::time::SystemTime>;
}

/// [`Disk`] on `std::fs` with positional I/O.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsDisk;

impl Disk for FsDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let file = Descriptor::open(path, create)?;
        Ok(Arc::new(FsFile {
            kept_open: std::sync::atomic::AtomicBool::new(false),
            path: path.to_path_buf(),
            file: Mutex::new(Some(Arc::new(file))),
            map: Mutex::new(None),
            written_end: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // On Linux a directory opened read-only can be fsynced; that is how its entries are made
        // durable.
        File::open(path)?.sync_all()
    }

    // statvfs's fields are 32-bit on some targets, so the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn space(&self, path: &Path) -> io::Result<Space> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is NUL-terminated and `stat` is written by a successful call only.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        let block = stat.f_frsize as u64;
        Ok(Space {
            total_bytes: stat.f_blocks as u64 * block,
            usable_bytes: stat.f_bavail as u64 * block,
        })
    }
}

/// A file mapping grows by this much at a time (rounded up), so a segment being appended to is
/// mapped again only every so often; mapping beyond the end of the file costs address space only,
/// and the mapping is never read there.
const MAP_GRANULE_BYTES: u64 = 64 << 20;

/// Descriptors of `FsDisk` files open right now, process-wide (see [`open_descriptors`]).
static OPEN_DESCRIPTORS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Released descriptors opened again, process-wide (see [`reopened_descriptors`]).
static REOPENED_DESCRIPTORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many released descriptors were opened again so far (a read of a sealed segment): while
/// it does not move, logs with nothing newly sealed have nothing to release.
pub fn reopened_descriptors() -> u64 {
    REOPENED_DESCRIPTORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many descriptors the files opened through [`FsDisk`] hold right now: the broker's logs
/// hold one per active segment and per segment in use, not one per segment.
pub fn open_descriptors() -> usize {
    OPEN_DESCRIPTORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `step` on every item at once, a thread each (named `name`), and returns the first
/// error once every thread is joined: fsyncs of different files overlap their flushes. One
/// item runs here; an item whose thread cannot be started (a thread limit) runs here too.
pub fn at_once<T: Sync>(
    items: &[T],
    name: &str,
    step: impl Fn(&T) -> io::Result<()> + Sync,
) -> io::Result<()> {
    if let [item] = items {
        return step(item);
    }
    let step = &step;
    std::thread::scope(|scope| {
        let started: Vec<_> = items
            .iter()
            .map(|item| {
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn_scoped(scope, move || step(item))
                    .map_err(|_| item)
            })
            .collect();
        let results: Vec<io::Result<()>> = started
            .into_iter()
            .map(|started| match started {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other(format!("{name} thread panicked")))),
                Err(item) => step(item),
            })
            .collect();
        results.into_iter().collect()
    })
}

/// An open file, counted in [`open_descriptors`] while it lives.
struct Descriptor(File);

impl Descriptor {
    fn open(path: &Path, create: bool) -> io::Result<Descriptor> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        OPEN_DESCRIPTORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Descriptor(file))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        OPEN_DESCRIPTORS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::ops::Deref for Descriptor {
    type Target = File;

    fn deref(&self) -> &File {
        &self.0
    }
}

/// A descriptor and mapping [`DiskFile::release`] took off its file: closed (`close(2)`) and
/// unmapped (`munmap(2)`) when dropped, or when the last read still using them is done. The
/// caller drops it where a close or an unmap may take its time: not under a lock others wait
/// for.
pub struct Released(#[allow(dead_code)] Box<dyn Send + Sync>);

/// What [`DiskFile::release`] did.
#[derive(Debug)]
pub enum Release {
    /// The descriptor and mapping, taken off the file for the caller to drop.
    Taken(Released),
    /// The file held neither (or is kept open).
    Nothing,
    /// A read still holds the file's mapping: nothing taken, for a later release to try again.
    InUse,
}

impl Release {
    pub fn taken(self) -> Option<Released> {
        match self {
            Release::Taken(released) => Some(released),
            Release::Nothing | Release::InUse => None,
        }
    }
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Released")
    }
}

struct FsFile {
    /// Where to open the file again after `release`.
    path: std::path::PathBuf,
    /// The descriptor; None once released, until the next use. Each use holds its own `Arc`, so
    /// a release during a call closes the descriptor only when the call is done.
    file: Mutex<Option<Arc<Descriptor>>>,
    /// Set by `keep_open`: `release` does nothing from then on.
    kept_open: std::sync::atomic::AtomicBool,
    /// The file mapped for `read_shared`, and the file length last seen: the mapping is only read
    /// below that length (a page wholly past the end of a file raises SIGBUS when touched).
    map: Mutex<Option<Mapped>>,
    /// The end of the furthest write through this handle since it was opened or truncated: the
    /// file holds at least this many bytes, so a read below it needs no stat (a fetch of an
    /// active segment's new data stat'ed the file on every read).
    written_end: std::sync::atomic::AtomicU64,
}

struct Mapped {
    /// Each read's `Bytes` holds a reference: while any does, the mapping is in use.
    mapping: Arc<Mapping>,
    file_len: u64,
}

/// A read-only mapping, unmapped when dropped.
struct Mapping(memmap2::Mmap);

/// A reference to a mapping as the owner of a `Bytes`.
struct MappingRef(Arc<Mapping>);

impl AsRef<[u8]> for MappingRef {
    fn as_ref(&self) -> &[u8] {
        &self.0 .0
    }
}

impl Mapped {
    fn bytes(&self) -> Bytes {
        Bytes::from_owner(MappingRef(self.mapping.clone()))
    }

    fn in_use(&self) -> bool {
        Arc::strong_count(&self.mapping) > 1
    }
}

impl FsFile {
    /// The descriptor, opened again by path if it was released.
    fn file(&self) -> io::Result<Arc<Descriptor>> {
        let mut file = self.file.lock();
        if let Some(open) = file.as_ref() {
            return Ok(open.clone());
        }
        let open = Arc::new(Descriptor::open(&self.path, false)?);
        REOPENED_DESCRIPTORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *file = Some(open.clone());
        Ok(open)
    }

    /// Notes a successful write up to `end` (see `written_end`).
    fn wrote_to(&self, end: u64) {
        self.written_end
            .fetch_max(end, std::sync::atomic::Ordering::Release);
    }

    /// The mapping, covering at least `end` bytes, all of which the file holds.
    fn mapped_to(&self, end: u64) -> io::Result<Bytes> {
        let mut map = self.map.lock();
        if let Some(mapped) = map.as_ref() {
            if end <= mapped.file_len && end <= mapped.mapping.0.len() as u64 {
                return Ok(mapped.bytes());
            }
        }
        let file = self.file()?;
        let written_end = self.written_end.load(std::sync::atomic::Ordering::Acquire);
        let file_len = if end <= written_end {
            written_end
        } else {
            file.metadata()?.len()
        };
        if end > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read to {end} past the end of a file of {file_len} bytes"),
            ));
        }
        let mapping = match map.as_ref() {
            Some(mapped) if end <= mapped.mapping.0.len() as u64 => mapped.mapping.clone(),
            _ => {
                let map_len = end.div_ceil(MAP_GRANULE_BYTES) * MAP_GRANULE_BYTES;
                let map_len = usize::try_from(map_len).map_err(io::Error::other)?;
                // SAFETY: the mapping is read only below a file length seen above, and a log
                // file never shrinks while it is open except through `truncate`, which drops
                // the mapping first (recovery, before any read). A file cut short by another
                // process would raise SIGBUS: the data directory is the broker's alone.
                // The mapping outlives the descriptor (`release`): it holds the file itself.
                let map = unsafe { memmap2::MmapOptions::new().len(map_len).map(&file.0)? };
                Arc::new(Mapping(map))
            }
        };
        let mapped = Mapped { mapping, file_len };
        let bytes = mapped.bytes();
        *map = Some(mapped);
        Ok(bytes)
    }
}

impl DiskFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file()?.metadata()?.len())
    }

    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file()?.read_exact_at(buf, position)
    }

    fn read_shared(&self, position: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = position
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::other("read range overflows"))?;
        Ok(self.mapped_to(end)?.slice(position as usize..end as usize))
    }

    fn write_all_at(&self, position: u64, buf: &[u8]) -> io::Result<()> {
        self.file()?.write_all_at(buf, position)?;
        self.wrote_to(position + buf.len() as u64);
        Ok(())
    }

    fn write_all_vectored_at(&self, position: u64, bufs: &[Bytes]) -> io::Result<()> {
        let file = self.file()?;
        let mut at = position;
        // Slices already written are skipped; `done` counts the bytes of the first one left.
        let (mut next, mut done) = (0usize, 0usize);
        loop {
            while next < bufs.len() && bufs[next].len() == done {
                next += 1;
                done = 0;
            }
            if next == bufs.len() {
                self.wrote_to(at);
                return Ok(());
            }
            let slices: Vec<IoSlice<'_>> = std::iter::once(&bufs[next][done..])
                .chain(bufs[next + 1..].iter().map(|b| &b[..]))
                .take(IOVECS_PER_WRITE_MAX)
                .map(IoSlice::new)
                .collect();
            let written = pwritev(&file, &slices, at)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            at += written as u64;
            let mut left = written;
            while left > 0 {
                let remaining = bufs[next].len() - done;
                if left < remaining {
                    done += left;
                    left = 0;
                } else {
                    left -= remaining;
                    next += 1;
                    done = 0;
                }
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, position: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = self.file()?;
        // SAFETY: the descriptor is open for the call (the `Arc` holds it); the call only
        // schedules writeback of the file's own pages.
        let done = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                position as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        *self.map.lock() = None;
        self.written_end
            .fetch_min(len, std::sync::atomic::Ordering::AcqRel);
        self.file()?.set_len(len)
    }

    fn modified(&self) -> io::Result<std::time::SystemTime> {
        self.file()?.metadata()?.modified()
    }

    fn release(&self) -> Release {
        if self.kept_open.load(std::sync::atomic::Ordering::Acquire) {
            return Release::Nothing;
        }
        // The mapping goes too: a segment nobody reads keeps no pages mapped (resident memory)
        // and no mapping (of the process's `vm.max_map_count`, 65,530 by default, which a
        // broker reading many segments would otherwise exhaust). Not while a read holds it:
        // its last reference would unmap it, a munmap(2) of up to a whole segment's pages, on
        // whatever thread drops it; the caller tries again.
        let mut map = self.map.lock();
        if map.as_ref().is_some_and(Mapped::in_use) {
            return Release::InUse;
        }
        let mapping = map.take().map(|mapped| mapped.mapping);
        let descriptor = self.file.lock().take();
        if descriptor.is_none() && mapping.is_none() {
            return Release::Nothing;
        }
        Release::Taken(Released(Box::new((descriptor, mapping))))
    }

    fn keep_open(&self) -> io::Result<()> {
        self.kept_open
            .store(true, std::sync::atomic::Ordering::Release);
        self.file().map(drop)
    }
}

/// The most slices one `pwritev` takes (Linux's `IOV_MAX` is 1024).
const IOVECS_PER_WRITE_MAX: usize = 1024;

/// One `pwritev(2)`, retried on EINTR; returns how many bytes it wrote (maybe fewer than asked).
fn pwritev(file: &fs::File, slices: &[IoSlice<'_>], position: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let offset = libc::off_t::try_from(position)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write position too large"))?;
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, the slices outlive the call,
        // and their count is below IOV_MAX.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len() as libc::c_int,
                offset,
            )
        };
        if written >= 0 {
            return Ok(written as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_once_runs_every_item_on_a_thread_of_its_own_and_returns_the_first_error() {
        let ran = Mutex::new(Vec::new());
        let result = at_once(&[1, 2, 3], "at-once-test", |item| {
            let thread = std::thread::current();
            ran.lock()
                .push((*item, thread.name().map(String::from), thread.id()));
            match item {
                2 => Err(io::Error::other("two")),
                _ => Ok(()),
            }
        });
        assert_eq!(result.unwrap_err().to_string(), "two");
        let mut ran = ran.into_inner();
        ran.sort_by_key(|(item, _, _)| *item);
        assert_eq!(
            ran.iter().map(|(item, ..)| *item).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(ran
            .iter()
            .all(|(_, name, _)| name.as_deref() == Some("at-once-test")));
        let threads: std::collections::HashSet<_> = ran.iter().map(|(.., id)| *id).collect();
        assert_eq!(threads.len(), 3, "a thread each");
        // One item runs on the caller's thread.
        let here = std::thread::current().id();
        at_once(&[1], "at-once-test", |_| {
            assert_eq!(std::thread::current().id(), here);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn fs_disk_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk;
        let sub = dir.path().join("a");
        disk.create_dir_all(&sub).unwrap();
        let file = disk.open(&sub.join("f"), true).unwrap();
        file.write_all_at(0, b"hello").unwrap();
        file.write_all_at(5, b" world").unwrap();
        file.sync_data().unwrap();
        let mut buf = [0u8; 11];
        file.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello world");
        file.truncate(5).unwrap();
        assert_eq!(file.len().unwrap(), 5);
        assert!(file.read_exact_at(0, &mut buf).is_err());
        disk.rename(&sub.join("f"), &sub.join("g")).unwrap();
        disk.sync_dir(&sub).unwrap();
        assert_eq!(disk.list_dir(&sub).unwrap(), vec!["g".to_string()]);
        assert!(disk.open(&sub.join("f"), false).is_err());
        disk.remove_file(&sub.join("g")).unwrap();
        disk.remove_dir_all(&sub).unwrap();
        assert!(disk.list_dir(&sub).is_err());
    }

    /// Whether this process holds a descriptor of `path` (from `/proc/self/fd`).
    fn holds_descriptor_of(path: &Path) -> bool {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .any(|target| target == path)
    }

    #[test]
    fn a_released_descriptor_is_closed_when_the_caller_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file = FsDisk.open(&path, true).unwrap();
        file.write_all_at(0, b"synced").unwrap();
        file.sync_data().unwrap();
        assert!(holds_descriptor_of(&path));
        let released = file
            .release()
            .taken()
            .expect("an open descriptor to release");
        assert!(
            holds_descriptor_of(&path),
            "still open: the caller closes it where it chooses"
        );
        assert!(
            matches!(file.release(), Release::Nothing),
            "nothing left to release"
        );
        drop(released);
        assert!(!holds_descriptor_of(&path), "closed once dropped");
        // The next use opens it again by path.
        let mut buf = [0u8; 6];
        file.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"synced");
        assert!(holds_descriptor_of(&path));
    }

    #[test]
    fn shared_reads_map_the_file_and_follow_its_growth() {
        let dir = tempfile::tempdir().unwrap();
        let file = FsDisk.open(&dir.path().join("f"), true).unwrap();
        file.write_all_at(0, b"hello").unwrap();
        let hello = file.read_shared(0, 5).unwrap();
        assert_eq!(&hello[..], b"hello");
        // Past the end is an error, never a mapping read beyond the file (SIGBUS).
        let error = file.read_shared(3, 5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        // Growth past the first mapping maps again; bytes handed out before stay valid.
        let far = MAP_GRANULE_BYTES + 10;
        file.write_all_at(far, b"world").unwrap();
        assert_eq!(&file.read_shared(far, 5).unwrap()[..], b"world");
        assert_eq!(&file.read_shared(1, 4).unwrap()[..], b"ello");
        assert_eq!(&hello[..], b"hello");
        assert!(file.read_shared(0, 0).unwrap().is_empty());
    }

    #[test]
    fn shared_reads_follow_another_handles_growth_and_stop_at_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = FsDisk.open(&path, true).unwrap();
        file.write_all_vectored_at(0, &[Bytes::from_static(b"hel"), Bytes::from_static(b"lo")])
            .unwrap();
        assert_eq!(&file.read_shared(0, 5).unwrap()[..], b"hello");
        // Grown through another handle: this one finds it by a stat.
        FsDisk
            .open(&path, false)
            .unwrap()
            .write_all_at(5, b" world")
            .unwrap();
        assert_eq!(&file.read_shared(5, 6).unwrap()[..], b" world");
        // Cut short: what this handle wrote past the cut is no longer read without a stat.
        file.truncate(2).unwrap();
        let error = file.read_shared(0, 5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(&file.read_shared(0, 2).unwrap()[..], b"he");
    }
}
