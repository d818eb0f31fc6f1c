//! Small whole-file helpers over the `Disk` trait for broker metadata: read a file if it exists,
//! and replace a file atomically and durably (temp file, fsync, rename, directory fsync).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::Disk;

use crate::BrokerError;

/// A metadata file (`acls.json`, `users.json`) to replace atomically and durably: made under the
/// broker lock, written by an admin job without it (`admin.rs`).
pub(crate) struct FileWrite {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    name: &'static str,
    bytes: Vec<u8>,
}

impl FileWrite {
    pub(crate) fn new(disk: Arc<dyn Disk>, dir: &Path, name: &'static str, bytes: Vec<u8>) -> Self {
        FileWrite {
            disk,
            dir: dir.to_path_buf(),
            name,
            bytes,
        }
    }

    pub(crate) fn run(&self) -> Result<(), BrokerError> {
        write_file_atomic(&*self.disk, &self.dir, self.name, &self.bytes).map_err(|source| {
            BrokerError::io("write metadata file", &self.dir.join(self.name), source)
        })
    }
}

pub(crate) fn read_file(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match disk.open(path, false) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut bytes = vec![0; file.len()? as usize];
    file.read_exact_at(0, &mut bytes)?;
    Ok(Some(bytes))
}

pub(crate) fn write_file_atomic(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let file = disk.open(&temp, true)?;
    file.truncate(0)?;
    file.write_all_at(0, bytes)?;
    file.sync_data()?;
    disk.rename(&temp, &dir.join(name))?;
    disk.sync_dir(dir)
}
