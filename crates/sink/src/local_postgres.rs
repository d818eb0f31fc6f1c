//! A throwaway PostgreSQL server from the system packages, for tests and the lab: `initdb` on a
//! temporary data directory, `pg_ctl start` on a free loopback port, `pg_ctl stop` on drop.
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
//! Debian package creates, on a data directory handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's `postgresql` package puts the server binaries (one folder per major version).
pub const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// The account the server runs as when the caller is root.
const SERVER_USER: &str = "postgres";
/// The database user `initdb` creates (trust authentication on loopback only).
const DB_USER: &str = "ferry";

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "PostgreSQL server binaries not found: run scripts/install-deps (it installs the \
         postgresql package), or set FERRY_PG_BIN to a folder holding initdb (no initdb under \
         {DEBIAN_ROOT}/*/bin, nor in FERRY_PG_BIN if set)"
    )]
    BinariesMissing,
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} failed ({status}): {stderr}")]
    Command {
        action: &'static str,
        status: String,
        stderr: String,
    },
}

/// A running server; stopped (and its data directory removed) on drop.
pub struct LocalPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl LocalPostgres {
    /// The folder holding `initdb`, `pg_ctl` and `postgres`: `$FERRY_PG_BIN`, else the newest
    /// version under [`DEBIAN_ROOT`].
    pub fn find_binaries() -> Result<PathBuf, LocalPostgresError> {
        find_binaries_in(std::env::var_os("FERRY_PG_BIN"), Path::new(DEBIAN_ROOT))
    }

    /// Creates a cluster in a temporary directory and starts it on a free loopback port.
    pub fn start() -> Result<LocalPostgres, LocalPostgresError> {
        let bin = LocalPostgres::find_binaries()?;
        let io = |action| move |source| LocalPostgresError::Io { action, source };
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .map_err(io("create postgres directory"))?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            run("hand the data directory to postgres", {
                let mut c = Command::new("chown");
                c.arg(format!("{SERVER_USER}:")).arg(dir.path());
                c
            })?;
        }
        let port = free_port().map_err(io("find a free port"))?;
        let server = LocalPostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = server.data_dir();
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            DB_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run("initdb", initdb)?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50",
            server.dir.path().display()
        );
        let mut start = server.command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(server.dir.path().join("server.log"))
            .args(["-w", "start"]);
        run("pg_ctl start", start)?;
        Ok(server)
    }

    /// The connection configuration for `tokio-postgres`.
    pub fn config(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={DB_USER} dbname=postgres",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVER_USER, "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"]);
        if let Err(error) = run("pg_ctl stop", stop) {
            tracing::warn!(%error, "stop postgres");
        }
    }
}

fn run(action: &'static str, mut command: Command) -> Result<Output, LocalPostgresError> {
    let output = command
        .output()
        .map_err(|source| LocalPostgresError::Io { action, source })?;
    if !output.status.success() {
        return Err(LocalPostgresError::Command {
            action,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}

/// [`LocalPostgres::find_binaries`] with the variable's value and the Debian root given.
fn find_binaries_in(
    env_bin: Option<std::ffi::OsString>,
    root: &Path,
) -> Result<PathBuf, LocalPostgresError> {
    if let Some(bin) = env_bin {
        let bin = PathBuf::from(bin);
        if bin.join("initdb").exists() {
            return Ok(bin);
        }
        return Err(LocalPostgresError::BinariesMissing);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(LocalPostgresError::BinariesMissing)
}

/// A loopback port nobody listens on right now (the server binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_initdb(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("initdb"), b"").unwrap();
    }

    #[test]
    fn missing_binaries_name_install_deps() {
        let empty = tempfile::tempdir().unwrap();
        let cases = [
            find_binaries_in(None, empty.path()),
            find_binaries_in(None, &empty.path().join("absent")),
            find_binaries_in(Some(empty.path().into()), empty.path()),
        ];
        for case in cases {
            let error = case.expect_err("no initdb anywhere");
            assert!(matches!(error, LocalPostgresError::BinariesMissing));
            let message = error.to_string();
            assert!(message.contains("scripts/install-deps"), "{message}");
            assert!(message.contains("FERRY_PG_BIN"), "{message}");
        }
    }

    #[test]
    fn binaries_are_the_newest_version_or_the_variables() {
        let root = tempfile::tempdir().unwrap();
        for version in ["15", "17", "9"] {
            touch_initdb(&root.path().join(version).join("bin"));
        }
        std::fs::create_dir_all(root.path().join("18")).unwrap(); // no bin/initdb
        let found = find_binaries_in(None, root.path()).unwrap();
        assert_eq!(found, root.path().join("17").join("bin"));
        let own = root.path().join("own");
        touch_initdb(&own);
        let found = find_binaries_in(Some(own.clone().into()), root.path()).unwrap();
        assert_eq!(found, own);
    }
}
