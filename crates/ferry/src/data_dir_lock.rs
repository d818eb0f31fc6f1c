//! The data directory's lock: `ferry serve` holds an exclusive `flock` on `<data dir>/.lock`
//! (Kafka's name for its log directories' lock file) for as long as it runs, so a second broker,
//! or `ferry users` editing the credential store behind a running broker's back, is refused
//! instead of corrupting the directory. The kernel drops the lock when the process dies, even
//! by `kill -9`, so no stale lock needs cleaning.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; dropping it (or the process ending) releases it.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates the data directory if needed and locks it, or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create data directory {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                bail!(
                    "data directory {} is in use by a running ferry (it holds {}); stop it first",
                    data_dir.display(),
                    path.display()
                );
            }
            return Err(error).with_context(|| format!("lock {}", path.display()));
        }
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_data_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(refused.contains("in use by a running ferry"), "{refused}");
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
