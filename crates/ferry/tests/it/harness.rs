//! Starts and stops the real `ferry serve` binary on a temporary data directory, and builds
//! rdkafka clients pointed at it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A running `ferry serve` child process.
pub struct Ferry {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The metrics endpoint, when started with `metrics.listen` set.
    pub metrics: Option<SocketAddr>,
    /// Every listener by name, as ferry printed them (`PLAINTEXT` alone unless `listeners=`).
    pub listeners: Vec<(String, SocketAddr)>,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// The file descriptor limit (soft and hard) ferry runs under, if set.
    descriptor_limit: Option<u64>,
}

impl Ferry {
    /// Starts ferry on a free port with `data_dir` and extra `--set name=value` settings.
    pub fn start(data_dir: &Path, settings: &[&str]) -> Ferry {
        Ferry::launch(data_dir, settings, None, None)
    }

    /// `start`, under a file descriptor limit of `limit` (soft and hard, as `ulimit -n`), kept
    /// across restarts.
    pub fn start_with_descriptor_limit(data_dir: &Path, settings: &[&str], limit: u64) -> Ferry {
        Ferry::launch(data_dir, settings, None, Some(limit))
    }

    /// Starts ferry on a free port, its traces to a file at a level if given, under a
    /// descriptor limit if given.
    fn launch(
        data_dir: &Path,
        settings: &[&str],
        traces: Option<(&Path, &str)>,
        descriptor_limit: Option<u64>,
    ) -> Ferry {
        let args: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn_with(data_dir, "127.0.0.1:0", &args, traces, descriptor_limit);
        Ferry {
            child: Some(child),
            addr: addr.kafka,
            metrics: addr.metrics,
            listeners: addr.listeners,
            data_dir: data_dir.to_path_buf(),
            args,
            descriptor_limit,
        }
    }

    /// The descriptors the broker process holds open (`/proc/<pid>/fd`).
    pub fn open_descriptors(&self) -> usize {
        let pid = self.child.as_ref().expect("ferry is running").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("list descriptors")
            .count()
    }

    /// The log segment files (`*.log`) the broker process maps (`/proc/<pid>/maps`).
    pub fn mapped_segments(&self) -> usize {
        let pid = self.child.as_ref().expect("ferry is running").id();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
        let files: std::collections::HashSet<&str> = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .filter(|path| path.ends_with(".log"))
            .collect();
        files.len()
    }

    /// `start`, with ferry's traces (at `FERRY_LOG`, default `info`) appended to the file
    /// `traces` instead of going to the test's stderr. A `restart` traces to stderr again.
    pub fn start_traced(data_dir: &Path, settings: &[&str], traces: &Path) -> Ferry {
        Ferry::start_traced_at(data_dir, settings, traces, "info")
    }

    /// `start_traced`, at the trace filter `level` (`FERRY_LOG` still wins when set).
    pub fn start_traced_at(
        data_dir: &Path,
        settings: &[&str],
        traces: &Path,
        level: &str,
    ) -> Ferry {
        Ferry::launch(data_dir, settings, Some((traces, level)), None)
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The bound address of the listener `name` (`PLAINTEXT`, `SSL`, ...).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
            .1
    }

    /// `kill -9`: no shutdown, no final fsync.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 ferry");
            child.wait().expect("reap ferry");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = child.wait().expect("wait for ferry");
            assert!(status.success(), "ferry exited with {status} after SIGTERM");
        }
    }

    /// Starts again on the same data directory and the same port (a broker started with
    /// `listeners=` binds those again, so port-0 listeners would move: only fixed ports are
    /// supported, as `reserve_port` gives).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running broker");
        let moving = self
            .args
            .iter()
            .filter_map(|s| s.strip_prefix("listeners="))
            .any(|list| list.split(',').any(|entry| entry.trim().ends_with(":0")));
        assert!(
            !moving,
            "restart of a broker started with port-0 listeners="
        );
        let listen = self.addr.to_string();
        let (child, addr) = spawn_with(
            &self.data_dir,
            &listen,
            &self.args,
            None,
            self.descriptor_limit,
        );
        assert_eq!(addr.kafka, self.addr);
        self.metrics = addr.metrics;
        self.child = Some(child);
    }

    /// The broker's resident memory in bytes (Linux `/proc/<pid>/status` VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The broker's resident anonymous memory (heap and stacks) in bytes (`RssAnon`): unlike
    /// VmRSS it leaves out mapped file pages, which are the page cache's.
    pub fn rss_anon_bytes(&self) -> u64 {
        self.status_bytes("RssAnon:")
    }

    /// A `/proc/<pid>/status` line in kB, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("ferry is running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} line"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{field} in kB"));
        kib * 1024
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("poll ferry").is_none(),
            None => false,
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a started ferry serves: the first Kafka listener, every listener by name and, with
/// `metrics.listen`, the metrics.
struct Addresses {
    kafka: SocketAddr,
    listeners: Vec<(String, SocketAddr)>,
    metrics: Option<SocketAddr>,
}

/// Spawns `ferry serve` on `listen` (unless the settings hold `listeners=`), with the traces (stderr) appended to a file at a level
/// (`FERRY_LOG` wins) if given, under a descriptor limit if given; waits for its first lines.
fn spawn_with(
    data_dir: &Path,
    listen: &str,
    settings: &[String],
    traces: Option<(&Path, &str)>,
    descriptor_limit: Option<u64>,
) -> (Child, Addresses) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    if let Some(limit) = descriptor_limit {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command.arg("serve").arg("--data-dir").arg(data_dir);
    let listeners = settings
        .iter()
        .find_map(|s| s.strip_prefix("listeners="))
        .map_or(1, |list| list.split(',').count());
    if !settings.iter().any(|s| s.starts_with("listeners=")) {
        command.arg("--listen").arg(listen);
    }
    for setting in settings {
        command.arg("--set").arg(setting);
    }
    // Test knobs like FERRY_TEST_RECORDS would read as broker settings.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
        command.env_remove(key);
    }
    let level = traces.map_or("warn", |(_, level)| level);
    command.env(
        "FERRY_LOG",
        std::env::var("FERRY_LOG").unwrap_or_else(|_| level.into()),
    );
    let stderr = match traces {
        Some((path, _)) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the traces file"),
        ),
        None => Stdio::inherit(),
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn ferry");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read ferry's first line");
    let kafka = line
        .trim()
        .strip_prefix("ferry: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from ferry: {line:?}"))
        .parse()
        .expect("listen address");
    // One line per listener follows, then the metrics line.
    let listeners = (0..listeners)
        .map(|_| {
            line.clear();
            stdout.read_line(&mut line).expect("read a listener line");
            let (name, address) = line
                .trim()
                .strip_prefix("ferry: listener ")
                .and_then(|rest| rest.split_once(" on "))
                .unwrap_or_else(|| panic!("unexpected listener line from ferry: {line:?}"));
            (name.to_string(), address.parse().expect("listener address"))
        })
        .collect();
    let metrics = settings
        .iter()
        .any(|s| s.starts_with("metrics.listen="))
        .then(|| {
            line.clear();
            stdout
                .read_line(&mut line)
                .expect("read ferry's metrics line");
            line.trim()
                .strip_prefix("ferry: metrics on ")
                .unwrap_or_else(|| panic!("unexpected metrics line from ferry: {line:?}"))
                .parse()
                .expect("metrics address")
        });
    (
        child,
        Addresses {
            kafka,
            listeners,
            metrics,
        },
    )
}

pub fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create().expect("create producer")
}

/// A consumer assigned to partitions `0..partitions` of `topic` from the beginning.
pub fn consumer_from_start(bootstrap: &str, topic: &str, partitions: i32) -> BaseConsumer {
    consumer_from_start_with(bootstrap, topic, partitions, &[])
}

/// `consumer_from_start` with more client settings (`isolation.level`, say).
pub fn consumer_from_start_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    settings: &[(&str, &str)],
) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ferry-test-assign")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("create consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign offset");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// The key and value of record `seq` of `partition`: values compress well and carry their own
/// identity, so a garbled or misplaced record is detected.
pub fn record(partition: i32, seq: u64) -> (String, String) {
    let key = format!("p{partition}-{seq}");
    let value = format!("{key}|").repeat(8);
    (key, value)
}

/// Reads `expected` records from a consumer, returning per partition the (offset, key, value)
/// in delivery order.
pub fn consume(
    consumer: &BaseConsumer,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<Vec<(i64, String, String)>> {
    use rdkafka::Message;
    let mut received = vec![Vec::new(); partitions as usize];
    let mut count = 0;
    let deadline = std::time::Instant::now() + timeout;
    while count < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: consumed {count} of {expected} records"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume without error");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
        let value =
            String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8 value");
        received[message.partition() as usize].push((message.offset(), key, value));
        count += 1;
    }
    received
}

/// A free loopback port: bound to port 0, then released, for a listener started a moment later
/// (a fault proxy whose address the broker must advertise before the proxy exists).
pub fn reserve_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("bound address").port()
}

/// How many times a kill test kills the broker (`slow` with `FERRY_SLOW=1`) and the random
/// source of its moments, seeded by `FERRY_SEED` or at random; the seed is printed to repeat a
/// run.
pub fn kill_plan(test: &str, default: usize, slow: usize) -> (usize, rand::rngs::StdRng) {
    use rand::SeedableRng;
    let kills = if std::env::var_os("FERRY_SLOW").is_some() {
        slow
    } else {
        default
    };
    let seed: u64 = std::env::var("FERRY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed}, {kills} kills");
    (kills, rand::rngs::StdRng::seed_from_u64(seed))
}
