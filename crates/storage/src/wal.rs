//! The group commit's write-ahead log: one file in the data directory that makes a round of small
//! appends durable with one fdatasync, however many partitions the round wrote to.
//!
//! A round's appends are written to their segment files as always (into the page cache); with the
//! write-ahead log, the same bytes also go into one frame of this file, and only this file is
//! fsynced. The segment files are fsynced later, by a round that syncs them directly (a big round,
//! a roll, a checkpoint) or by [`Wal::reset`], which every log's change of shape (roll, segment
//! deletion, compaction's swap, topic deletion) and a full log are preceded by. After a crash,
//! [`Wal::open`] writes every frame's appends again at their positions (the same bytes where
//! they were, or where the crash lost them) before any log is opened, so recovery finds every
//! acknowledged batch in its segment. The format is drawn in `docs/storage-format.md`.
//!
//! Why it is safe to write the bytes again: a frame only ever holds appends to a log's active
//! segment file, which existed durably when the frame was written (a roll syncs its new file
//! and directory in a round of its own) and whose bytes below its end never change. Everything
//! that gives a name to other bytes (a roll sealing the segment, after which it can be compacted
//! or deleted; a topic's deletion, after which it can be created again) resets the log first, so
//! no frame of the current epoch names a file that is not the one it was written for.
//!
//! Why it is faster: an append to a file changes its size, so its fdatasync commits the file
//! system's journal (or, on ext4 without one, as on the bench's machine, writes the inode and
//! waits for it); a round over four partitions is four of them. The write-ahead log, once it
//! wrapped around, overwrites its own blocks: one fdatasync, one data write and one cache flush.
//! (Writing frames with O_DIRECT|O_DSYNC instead, padded to 4 KiB, was tried on 2026-12-05: it is
//! the same write and flush, and the fsync's mean went from 266-284 to 252-264 us, the
//! acknowledgement p99 not at all.)

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tracing::info;

use crate::disk::{Disk, DiskFile};
use crate::error::LogError;
use crate::log::SyncWork;

/// The file's name in the data directory.
pub const WAL_FILE: &str = "group-commit.wal";
/// The largest round (appended bytes) the log takes; a bigger one syncs its files directly, as
/// writing it twice would cost more disk bandwidth than one fdatasync per file.
pub const WAL_ROUND_BYTES_MAX: u64 = 256 * 1024;
/// The size the log grows to at most: a frame that would end past it resets the log first.
/// Small, so that the file soon has its full size and frames overwrite blocks it already has
/// (an fdatasync that changes no file size commits no journal); large beside a round
/// (`WAL_ROUND_BYTES_MAX`), so that resets, which sync every segment the frames name, are rare
/// (at 10 MB/s of small rounds, about one a second).
pub const WAL_BYTES_MAX: u64 = 8 * 1024 * 1024;

const HEADER_MAGIC: &[u8; 8] = b"FERRYWAL";
const VERSION: u32 = 1;
/// magic [8], version u32, epoch u64, CRC-32C u32 of the first 20 bytes: one sector, so it is
/// written whole or not at all.
const HEADER_BYTES: usize = 24;
/// Frames start here, a page away from the header that a reset overwrites.
const FRAMES_START: u64 = 4096;
const FRAME_MAGIC: u32 = 0x4657_414c; // "FWAL"
/// magic u32, body length u32, CRC-32C u32 of epoch, sequence and body; epoch u64, sequence u64.
const FRAME_HEADER_BYTES: usize = 28;
/// path length u16, path, position u64, length u32, then the bytes.
const ENTRY_FIXED_BYTES: usize = 2 + 8 + 4;

/// The write-ahead log of the group commit (see the module comment).
pub struct Wal {
    disk: Arc<dyn Disk>,
    root: PathBuf,
    path: PathBuf,
    /// The file, for the fsyncs that run outside the lock (the state holds it too).
    file: Arc<dyn DiskFile>,
    state: Mutex<State>,
}

struct State {
    file: Arc<dyn DiskFile>,
    /// Frames of another epoch are void; a reset starts the next one. Drawn at random, so no
    /// stale frame beyond the current epoch's end (which may hold any client's bytes) can be
    /// made to pass for the next frame of it.
    epoch: u64,
    /// The next frame's number in its epoch: replay stops at a gap.
    sequence: u64,
    /// Where the next frame goes.
    position: u64,
    /// The files whose appends are durable only through this epoch's frames (noted when a frame
    /// is written, so a reset meanwhile syncs them even if that frame's own fsync is still to
    /// come): a reset fsyncs them before it voids the frames.
    owed: Vec<(PathBuf, Arc<dyn DiskFile>)>,
}

/// What [`Wal::open`] found and wrote again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub frames: u64,
    pub appends: u64,
    pub bytes: u64,
    /// Appends to files no longer there (a segment deleted, a topic deletion finished).
    pub skipped: u64,
}

/// One append as a frame holds it.
struct Entry<'a> {
    path: &'a str,
    position: u64,
    data: &'a [u8],
}

impl Wal {
    /// Opens the log in `root` (the data directory), creating it if missing, and replays the
    /// current epoch's frames into the files they name (relative to `root`), fsyncs those, and
    /// starts a new epoch. Run it before any log in `root` is opened.
    pub fn open(disk: Arc<dyn Disk>, root: &Path) -> Result<(Wal, Replayed), LogError> {
        let path = root.join(WAL_FILE);
        disk.create_dir_all(root)
            .map_err(LogError::io("create data dir", root))?;
        let (file, created) = match disk.open(&path, false) {
            Ok(file) => (file, false),
            Err(error) if error.kind() == io::ErrorKind::NotFound => (
                disk.open(&path, true)
                    .map_err(LogError::io("create write-ahead log", &path))?,
                true,
            ),
            Err(error) => return Err(LogError::io("open write-ahead log", &path)(error)),
        };
        let header = if created {
            None
        } else {
            read_header(&*file, &path)?
        };
        let (epoch, replayed) = match header {
            Some(epoch) => (epoch, replay(&*disk, root, &path, &*file, epoch)?),
            None => {
                // New, or torn by a crash while it was created or reset: either way no frame is
                // needed (a reset voids frames only once their files are synced), and stale frames
                // of a torn one go so that none can pass for the new epoch's.
                if !created {
                    file.truncate(0)
                        .map_err(LogError::io("truncate write-ahead log", &path))?;
                }
                (0, Replayed::default())
            }
        };
        let wal = Wal {
            disk,
            root: root.to_path_buf(),
            path: path.clone(),
            file: file.clone(),
            state: Mutex::new(State {
                file,
                epoch,
                sequence: 0,
                position: FRAMES_START,
                owed: Vec::new(),
            }),
        };
        // A start that found no frame writes nothing (so it starts on a full disk too): new
        // frames go on in the epoch found, from the first.
        if header.is_none() || replayed.frames > 0 {
            wal.reset()
                .map_err(LogError::io("reset write-ahead log", &path))?;
        }
        if created || header.is_none() {
            wal.disk
                .sync_dir(root)
                .map_err(LogError::io("sync directory", root))?;
        }
        if replayed.frames > 0 {
            info!(
                frames = replayed.frames,
                appends = replayed.appends,
                bytes = replayed.bytes,
                skipped = replayed.skipped,
                "wrote the write-ahead log's appends again"
            );
        }
        Ok((wal, replayed))
    }

    /// Whether this round can be made durable by one frame: every log's work is appends only
    /// (see [`SyncWork::only_appends`]) to files under the data directory, and the round is
    /// small.
    pub fn takes<'a>(&self, round: impl IntoIterator<Item = &'a SyncWork>) -> bool {
        let mut bytes = 0;
        for work in round {
            if !work.only_appends() || !work.dir().starts_with(&self.root) {
                return false;
            }
            bytes += work.appended_bytes();
        }
        bytes <= WAL_ROUND_BYTES_MAX
    }

    /// Makes a round durable, after its works' `run_writes`: [`Wal::write`], then [`Wal::sync`].
    pub fn log<'a>(&self, round: impl IntoIterator<Item = &'a SyncWork>) -> io::Result<()> {
        self.write(round)?;
        self.sync()
    }

    /// Makes durable every frame written before the call (fdatasync of this file only), which
    /// makes their rounds durable. Calls may overlap: the group commit writes the next round's
    /// frame while the previous one's fsync runs. An error means the process must stop.
    pub fn sync(&self) -> io::Result<()> {
        if cfg!(feature = "unsafe-ack-before-fsync") {
            // The deliberately broken control build: report durable without any fsync.
            return Ok(());
        }
        self.file.sync_data()
    }

    /// Writes one frame with all the appends of a round, after its works' `run_writes` (to
    /// the OS; [`Wal::sync`] makes it durable). Resets the log first when the frame would not
    /// fit. Only for a round [`Wal::takes`]. An error means the process must stop.
    pub fn write<'a>(&self, round: impl IntoIterator<Item = &'a SyncWork>) -> io::Result<()> {
        let round: Vec<&SyncWork> = round.into_iter().collect();
        let mut heads = Vec::new();
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut body_len = 4usize;
        let mut count = 0u32;
        let mut files = Vec::new();
        for work in &round {
            let relative = work
                .dir()
                .strip_prefix(&self.root)
                .expect("a round the log takes is under its directory");
            for (name, file, position, chunks) in work.appends() {
                let path = relative.join(name);
                let path_text = path.to_str().expect("ferry names its files in UTF-8");
                let len: usize = chunks.iter().map(Bytes::len).sum();
                let mut head = BytesMut::with_capacity(ENTRY_FIXED_BYTES + path_text.len());
                head.put_u16(path_text.len() as u16);
                head.put_slice(path_text.as_bytes());
                head.put_u64(position);
                head.put_u32(len as u32);
                body_len += head.len() + len;
                heads.push((head.freeze(), chunks));
                count += 1;
                if !files.iter().any(|(p, _): &(PathBuf, _)| *p == path) {
                    files.push((path, file.clone()));
                }
            }
        }
        let mut state = self.state.lock();
        let frame_len = (FRAME_HEADER_BYTES + body_len) as u64;
        if state.position + frame_len > WAL_BYTES_MAX {
            reset(&self.path, &mut state)?;
        }
        let mut crc = crc32c::crc32c(&state.epoch.to_be_bytes());
        crc = crc32c::crc32c_append(crc, &state.sequence.to_be_bytes());
        crc = crc32c::crc32c_append(crc, &count.to_be_bytes());
        for (head, chunks) in &heads {
            crc = crc32c::crc32c_append(crc, head);
            for chunk in *chunks {
                crc = crc32c::crc32c_append(crc, chunk);
            }
        }
        let mut header = BytesMut::with_capacity(FRAME_HEADER_BYTES + 4);
        header.put_u32(FRAME_MAGIC);
        header.put_u32(body_len as u32);
        header.put_u32(crc);
        header.put_u64(state.epoch);
        header.put_u64(state.sequence);
        header.put_u32(count);
        pieces.push(header.freeze());
        for (head, chunks) in heads {
            pieces.push(head);
            pieces.extend(chunks.iter().cloned());
        }
        state.file.write_all_vectored_at(state.position, &pieces)?;
        state.position += frame_len;
        state.sequence += 1;
        for (path, file) in files {
            if !state.owed.iter().any(|(p, _)| *p == path) {
                state.owed.push((path, file));
            }
        }
        drop(state);
        for work in round {
            work.release_paths();
        }
        Ok(())
    }

    /// Makes every append the current epoch's frames hold durable in its own file (fdatasync),
    /// then starts a new epoch, which voids those frames. Before anything that could give a
    /// frame's file name to other bytes: a roll's seal, a segment's deletion, a topic's
    /// deletion.
    pub fn reset(&self) -> io::Result<()> {
        reset(&self.path, &mut self.state.lock())
    }

    /// Whether a frame of the current epoch holds appends not yet synced in their files.
    pub fn owes(&self) -> bool {
        !self.state.lock().owed.is_empty()
    }
}

fn reset(path: &Path, state: &mut State) -> io::Result<()> {
    sync_all(&std::mem::take(&mut state.owed))?;
    let epoch = next_epoch(state.epoch);
    state
        .file
        .write_all_at(0, &encode_header(epoch))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    state.file.sync_data()?;
    state.epoch = epoch;
    state.sequence = 0;
    state.position = FRAMES_START;
    Ok(())
}

/// fdatasyncs the files at once, a thread each: a reset holds the log's lock, so no frame is
/// written meanwhile, and four segments synced one after another held it for 1.1 to 2.4 ms
/// (median 1.3) every 0.8 s at 10k records/s; run together, their flushes overlap (0.8 to 1.6,
/// median 1.2; 0.7 to 1.5, median 0.9, with `WRITEBACK_BYTES_MIN` at 64 KiB instead of 256).
fn sync_all(files: &[(PathBuf, Arc<dyn DiskFile>)]) -> io::Result<()> {
    crate::disk::at_once(files, "ferry-wal-reset", |(_, file)| file.sync_data())
}

/// A random epoch other than `current`.
fn next_epoch(current: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(current);
        let epoch = hasher.finish();
        if epoch != current {
            return epoch;
        }
    }
}

fn encode_header(epoch: u64) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[..8].copy_from_slice(HEADER_MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.to_be_bytes());
    bytes[12..20].copy_from_slice(&epoch.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..20]);
    bytes[20..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// The current epoch, or None when the header is missing or torn (a crash during the file's
/// creation or a reset). A header of another version is an error: this ferry cannot replay it.
fn read_header(file: &dyn DiskFile, path: &Path) -> Result<Option<u64>, LogError> {
    let len = file
        .len()
        .map_err(LogError::io("stat write-ahead log", path))?;
    if len < HEADER_BYTES as u64 {
        return Ok(None);
    }
    let mut bytes = [0u8; HEADER_BYTES];
    file.read_exact_at(0, &mut bytes)
        .map_err(LogError::io("read write-ahead log", path))?;
    let crc = u32::from_be_bytes(bytes[20..].try_into().expect("4 bytes"));
    if &bytes[..8] != HEADER_MAGIC || crc32c::crc32c(&bytes[..20]) != crc {
        return Ok(None);
    }
    let version = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(LogError::corrupt(
            path,
            8,
            format!("write-ahead log version {version}, this ferry reads {VERSION}"),
        ));
    }
    Ok(Some(u64::from_be_bytes(
        bytes[12..20].try_into().expect("8 bytes"),
    )))
}

/// Writes the appends of `epoch`'s frames again, in order, then fsyncs the files written. Stops
/// at the first frame that is not whole and valid: the frame a crash tore, or one of an older
/// epoch beyond the current epoch's end.
fn replay(
    disk: &dyn Disk,
    root: &Path,
    path: &Path,
    file: &dyn DiskFile,
    epoch: u64,
) -> Result<Replayed, LogError> {
    let len = file
        .len()
        .map_err(LogError::io("stat write-ahead log", path))?;
    let mut replayed = Replayed::default();
    let mut written: Vec<(PathBuf, Arc<dyn DiskFile>)> = Vec::new();
    let mut position = FRAMES_START;
    let mut sequence = 0u64;
    while let Some(body) = read_frame(file, path, len, position, epoch, sequence)? {
        let entries = parse_body(&body).map_err(|reason| {
            LogError::corrupt(path, position, format!("frame {sequence}: {reason}"))
        })?;
        for entry in entries {
            let target = root.join(entry.path);
            let index = match written.iter().position(|(p, _)| *p == target) {
                Some(index) => Some(index),
                None => match disk.open(&target, false) {
                    Ok(opened) => {
                        written.push((target.clone(), opened));
                        Some(written.len() - 1)
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => return Err(LogError::io("open segment", &target)(error)),
                },
            };
            let Some(index) = index else {
                replayed.skipped += 1;
                continue;
            };
            let target_file = &written[index].1;
            let target_len = target_file
                .len()
                .map_err(LogError::io("stat segment", &target))?;
            if entry.position > target_len {
                // The bytes before it were durable when the frame was written (synced directly
                // or held by an earlier frame): a gap means a file that is not the frame's.
                return Err(LogError::corrupt(
                    &target,
                    entry.position,
                    format!(
                        "the write-ahead log's frame {sequence} appends at byte {} of a file of {target_len} bytes",
                        entry.position
                    ),
                ));
            }
            target_file
                .write_all_at(entry.position, entry.data)
                .map_err(LogError::io("write segment", &target))?;
            replayed.appends += 1;
            replayed.bytes += entry.data.len() as u64;
        }
        replayed.frames += 1;
        position += (FRAME_HEADER_BYTES + body.len()) as u64;
        sequence += 1;
    }
    for (target, written) in written {
        written
            .sync_data()
            .map_err(LogError::io("sync segment", &target))?;
    }
    Ok(replayed)
}

/// The body of the frame at `position` if it is whole, of `epoch`, numbered `sequence` and
/// passes its CRC.
fn read_frame(
    file: &dyn DiskFile,
    path: &Path,
    len: u64,
    position: u64,
    epoch: u64,
    sequence: u64,
) -> Result<Option<Vec<u8>>, LogError> {
    if position + FRAME_HEADER_BYTES as u64 > len {
        return Ok(None);
    }
    let mut head = [0u8; FRAME_HEADER_BYTES];
    file.read_exact_at(position, &mut head)
        .map_err(LogError::io("read write-ahead log", path))?;
    let field = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let wide = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    let (magic, body_len, crc) = (field(0), field(4) as u64, field(8));
    if magic != FRAME_MAGIC
        || wide(12) != epoch
        || wide(20) != sequence
        || position + FRAME_HEADER_BYTES as u64 + body_len > len
        || body_len > WAL_BYTES_MAX
    {
        return Ok(None);
    }
    let mut body = vec![0u8; body_len as usize];
    file.read_exact_at(position + FRAME_HEADER_BYTES as u64, &mut body)
        .map_err(LogError::io("read write-ahead log", path))?;
    let expected = crc32c::crc32c_append(crc32c::crc32c(&head[12..28]), &body);
    Ok((expected == crc).then_some(body))
}

/// The appends of a frame's body; an error means a frame that passed its CRC does not parse,
/// which only a bug can write.
fn parse_body(body: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let mut rest = body;
    let count = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let mut entries = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let path_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
        let path = std::str::from_utf8(take(&mut rest, path_len as usize)?)
            .map_err(|_| "a path is not UTF-8".to_string())?;
        if !Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!("path {path:?} leaves the data directory"));
        }
        let position = u64::from_be_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
        let data = take(&mut rest, len as usize)?;
        entries.push(Entry {
            path,
            position,
            data,
        });
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last append", rest.len()));
    }
    Ok(entries)
}

/// The next `n` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err(format!("ends {} bytes early", n - rest.len()));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}
