//! A broker under test as a child process: start it, time it to its first answered request, read
//! its memory from /proc, `kill -9` it, restart it on the same data and port.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a broker may take to answer its first request (recovery of a large log included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running broker. Dropping it kills it.
pub struct Broker {
    child: Option<Child>,
}

impl Broker {
    /// Spawns `command` (stdout and stderr appended to `log`) and waits until `ready` answers;
    /// returns the broker and the time from spawn to that first answer.
    pub fn start<T>(
        mut command: Command,
        addr: SocketAddr,
        log: &Path,
        ready: impl Fn(SocketAddr, Instant) -> Result<T>,
    ) -> Result<(Broker, Duration, T)> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone().context("duplicate log file")?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if let Some(cpus) = BROKER_CPUS.get() {
            let set = cpus.set;
            // SAFETY: between fork and exec the closure only makes one system call
            // (sched_setaffinity, async-signal-safe) on a set copied before the fork.
            unsafe {
                command.pre_exec(move || set_affinity(&set));
            }
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("spawn {:?}", command.get_program()))?;
        let mut broker = Broker { child: Some(child) };
        if let (Some(cpus), Some(pid)) = (BROKER_CPUS.get(), broker.pid()) {
            // The other side of `pre_exec`: the broker runs where it was put, or not at all.
            let running_on = affinity(pid as libc::pid_t)?;
            anyhow::ensure!(
                running_on == cpus.cpus,
                "broker {pid} runs on CPUs {running_on:?}, not {:?}",
                cpus.cpus
            );
        }
        let answer = match ready(addr, started + READY_TIMEOUT) {
            Ok(answer) => answer,
            Err(error) => {
                let exited = broker.exit_status();
                return Err(error.context(format!(
                    "{:?} never answered on {addr} (exit: {exited:?}; log: {})",
                    command.get_program(),
                    log.display()
                )));
            }
        };
        Ok((broker, started.elapsed(), answer))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory now (VmRSS).
    pub fn rss_bytes(&self) -> Option<u64> {
        self.status_kib("VmRSS:").map(|kib| kib * 1024)
    }

    /// Peak resident memory since start (VmHWM).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.status_kib("VmHWM:").map(|kib| kib * 1024)
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `kill -9`: no shutdown, no final fsync.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then `kill -9` if it has not exited within a few seconds.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A free loopback port, chosen by the kernel. The broker binds it a moment later; the window in
/// which another process could take it is accepted for a bench.
pub fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("pick a free port")?;
    listener.local_addr().context("read the free port")
}

/// Retries `attempt` until it succeeds or `deadline` passes. Connection refused is immediate, so
/// a short pause keeps the start-up figure precise without spinning.
pub fn retry_until<T>(deadline: Instant, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

/// The total size of the files under `dir`: the log a broker holds.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The first line of `program --version`, if it runs.
pub fn version_of(program: &Path) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.lines().next().map(|line| line.trim().to_string())
}

/// A program named by an environment variable, or else found on PATH.
pub fn find_program(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Where `scripts/bench-peers` installs the peers: $FERRY_BENCH_CACHE or ~/.cache/ferry-bench.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRY_BENCH_CACHE") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/ferry-bench"))
}

/// CPU time used by the broker and by the bench itself (librdkafka's threads included) over a
/// workload, in cores: where the CPU went on a machine that client and broker share.
pub struct CpuMeter {
    pid: Option<u32>,
    broker_start_s: f64,
    own_start_s: f64,
    started: Instant,
}

impl CpuMeter {
    pub fn start(broker: &Broker) -> CpuMeter {
        let pid = broker.pid();
        CpuMeter {
            pid,
            broker_start_s: pid.and_then(process_cpu_seconds).unwrap_or(0.0),
            own_start_s: own_cpu_seconds(),
            started: Instant::now(),
        }
    }

    /// `broker_cpu_cores` and `client_cpu_cores` since `start`, and the CPU seconds each spent
    /// per GB (10^9 bytes) of the `bytes` the workload moved: the cost of the work itself,
    /// whatever the rate.
    pub fn metrics(&self, bytes: u64) -> [(&'static str, f64); 4] {
        let wall_s = self.started.elapsed().as_secs_f64().max(1e-6);
        let broker_s = self.pid.and_then(process_cpu_seconds).unwrap_or(0.0) - self.broker_start_s;
        let own_s = own_cpu_seconds() - self.own_start_s;
        let gb = (bytes as f64 / 1e9).max(1e-12);
        [
            ("broker_cpu_cores", (broker_s / wall_s).max(0.0)),
            ("client_cpu_cores", (own_s / wall_s).max(0.0)),
            ("broker_cpu_s_per_gb", (broker_s / gb).max(0.0)),
            ("client_cpu_s_per_gb", (own_s / gb).max(0.0)),
        ]
    }
}

/// utime + stime of a process, from /proc/PID/stat.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The CPUs every broker process runs on, when the bench was told to keep its clients apart
/// (`--broker-cpus`); set once, before the first broker starts.
static BROKER_CPUS: OnceLock<CpuSet> = OnceLock::new();

/// A set of CPUs, as listed and as sched_setaffinity takes it.
struct CpuSet {
    cpus: Vec<usize>,
    set: libc::cpu_set_t,
}

impl CpuSet {
    /// CPUs from the allowed set (`affinity`), so below CPU_SETSIZE.
    fn of(cpus: &[usize]) -> CpuSet {
        // SAFETY: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            // SAFETY: a plain bit set on a set we own; the CPU is below CPU_SETSIZE.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        let mut cpus = cpus.to_vec();
        cpus.sort_unstable();
        cpus.dedup();
        CpuSet { cpus, set }
    }
}

/// The CPUs a process (its main thread; 0: the calling thread) may run on, in order.
fn affinity(pid: libc::pid_t) -> Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set, then filled in by the kernel.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`.
    let read = unsafe { libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) };
    anyhow::ensure!(
        read == 0,
        "sched_getaffinity({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: CPU_ISSET reads the set within CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Puts the calling thread (and the threads it starts later) on `set`.
fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: the pointer and size describe the set; pid 0 is the calling thread.
    let done = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts every broker started from now on `broker_cpus`, and this thread (so every thread it
/// starts from now on: the clients, their librdkafka threads) on the other CPUs it may use.
/// Returns the clients' CPUs, as the kernel now has them.
pub(crate) fn split_cpus(broker_cpus: &[usize]) -> Result<Vec<usize>> {
    let allowed = affinity(0)?;
    if let Some(cpu) = broker_cpus.iter().find(|cpu| !allowed.contains(cpu)) {
        anyhow::bail!("--broker-cpus: CPU {cpu} is not one this process may use ({allowed:?})");
    }
    let clients: Vec<usize> = allowed
        .into_iter()
        .filter(|cpu| !broker_cpus.contains(cpu))
        .collect();
    anyhow::ensure!(
        !clients.is_empty(),
        "--broker-cpus {broker_cpus:?} leaves no CPU for the clients"
    );
    set_affinity(&CpuSet::of(&clients).set)
        .context("move the bench's clients off the broker CPUs")?;
    let _ = BROKER_CPUS.set(CpuSet::of(broker_cpus));
    affinity(0)
}
