//! A segment file created on its first use rather than when the log rolls to it: a roll happens
//! in `append`, under the broker's lock, and creating a file is file-system work (ext4 can stall
//! it behind a journal commit). The first use is the group commit's write of the segment's first
//! batches, outside the lock.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tracing::warn;

use crate::disk::{Disk, DiskFile, Release};

/// A new segment's `.log` file, not yet on disk. Creating it empties a stale file of the same
/// name (only a file beyond the log end can have it, and nothing beyond the log end was ever
/// acknowledged), as a roll always did.
pub(crate) struct LazyFile {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    file: OnceLock<Arc<dyn DiskFile>>,
    creating: parking_lot::Mutex<()>,
}

impl LazyFile {
    pub(crate) fn new(disk: Arc<dyn Disk>, path: &Path) -> LazyFile {
        LazyFile {
            disk,
            path: path.to_path_buf(),
            file: OnceLock::new(),
            creating: parking_lot::Mutex::new(()),
        }
    }

    fn file(&self) -> io::Result<&Arc<dyn DiskFile>> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let _creating = self.creating.lock();
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let file = self.disk.open(&self.path, true)?;
        let len = file.len()?;
        if len > 0 {
            warn!(path = %self.path.display(), dropped_bytes = len, "emptying a stale segment file at the log end");
            file.truncate(0)?;
        }
        Ok(self.file.get_or_init(|| file))
    }
}

impl DiskFile for LazyFile {
    fn len(&self) -> io::Result<u64> {
        match self.file.get() {
            Some(file) => file.len(),
            // Nothing was written to it yet.
            None => Ok(0),
        }
    }

    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file()?.read_exact_at(position, buf)
    }

    fn read_shared(&self, position: u64, len: usize) -> io::Result<Bytes> {
        self.file()?.read_shared(position, len)
    }

    fn write_all_at(&self, position: u64, buf: &[u8]) -> io::Result<()> {
        self.file()?.write_all_at(position, buf)
    }

    fn write_all_vectored_at(&self, position: u64, bufs: &[Bytes]) -> io::Result<()> {
        self.file()?.write_all_vectored_at(position, bufs)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    fn start_writeback(&self, position: u64, len: u64) -> io::Result<()> {
        self.file()?.start_writeback(position, len)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file()?.truncate(len)
    }

    fn release(&self) -> Release {
        self.file
            .get()
            .map_or(Release::Nothing, |file| file.release())
    }

    fn keep_open(&self) -> io::Result<()> {
        self.file()?.keep_open()
    }

    fn modified(&self) -> io::Result<std::time::SystemTime> {
        self.file()?.modified()
    }
}
