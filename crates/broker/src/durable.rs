//! Small whole-file helpers over the `Disk` trait for broker metadata: read a file if it exists,
//! and replace a file atomically and durably (temp file, fsync, rename, directory fsync).

use std::io;
use std::path::Path;

use storage::Disk;

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
