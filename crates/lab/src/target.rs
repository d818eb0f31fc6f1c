//! Where the lab's records go: its own broker (a child `ferry serve` on a temporary directory,
//! so it can be killed with -9 and restarted) or any Kafka-compatible cluster given by
//! `--bootstrap`, in both cases behind the chaos proxy.
//!
//! Clients must talk to the broker through the proxy, so the broker has to advertise the proxy's
//! address: the embedded broker is started with `--advertised-listener` set to it. A cluster
//! given by `--bootstrap` advertises whatever it advertises; [`Target::proxy_in_path`] says
//! whether that is the proxy (see docs/lab.md for setting a listener up that way).
//!
//! A cluster reached over TLS (`-X security.protocol=SSL` or `SASL_SSL`) hides its frames from
//! the proxy. Runs without proxy faults then go to the secured listener directly; runs with
//! proxy faults go through the proxy to `--proxy-upstream`, a listener of the same cluster
//! without TLS (PLAINTEXT or SASL_PLAINTEXT, the SASL settings kept), or are skipped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chaos::{FaultEvent, Plan, Proxy, ProxyHandle};
use client::connect::ClientSettings;
use client::probe::{self, BrokerApis};
use client::{Guarantee, Settings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Time allowed for a metadata, admin or probe request during setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A `ferry serve` child process.
struct EmbeddedBroker {
    exe: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    advertised: SocketAddr,
    /// Fixed after the first start, so a restart comes back where the proxy forwards to.
    listen: SocketAddr,
    child: Option<Child>,
}

impl EmbeddedBroker {
    fn spawn(&mut self) -> Result<()> {
        assert!(self.child.is_none(), "spawn of a running broker");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--advertised-listener")
            .arg(self.advertised.to_string())
            // New consumer instances (after a crash) join at once instead of after 3 s.
            .arg("--set")
            .arg("group.initial.rebalance.delay.ms=0");
        // The lab's own environment must not configure its broker.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
            command.env_remove(key);
        }
        command.env("FERRY_LOG", "warn");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {} serve", self.exe.display()))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let listening = line
            .trim()
            .strip_prefix("ferry: listening on ")
            .map(str::parse);
        let Ok(Some(Ok(addr))) = read.map(|_| listening) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "broker did not start (first line {line:?}); see {}",
                self.log.display()
            );
        };
        self.listen = addr;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .context("kill a broker that is not running")?;
        child.kill().context("kill -9 broker")?;
        child.wait().context("reap broker")?;
        Ok(())
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The broker or cluster under test, its proxy, and the runtime the proxy runs on.
pub struct Target {
    runtime: tokio::runtime::Runtime,
    proxy: Option<ProxyHandle>,
    proxy_started: Instant,
    proxy_addr: SocketAddr,
    broker: Mutex<Option<EmbeddedBroker>>,
    /// The broker's own address (not through the proxy).
    broker_addr: String,
    /// The client settings of runs through the proxy (without TLS).
    proxied: ClientSettings,
    /// A cluster reached over TLS: its bootstrap and client settings, for the runs and the
    /// setup that need no proxy.
    secured: Option<(String, ClientSettings)>,
    /// Where the ApiVersions probe can talk (a listener without TLS), if anywhere.
    probe_addr: Option<String>,
    apis: Option<BrokerApis>,
    proxy_in_path: bool,
    advertised: Vec<String>,
    replication_factor: i32,
    // Declared last: the broker's files go after the broker is stopped.
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts `exe serve` on a temporary directory under `parent` (the system's when `None`),
    /// advertising a proxy in front of it.
    pub fn embedded(exe: &Path, parent: Option<&Path>) -> Result<Target> {
        let dir = match parent {
            Some(parent) => tempfile::Builder::new()
                .prefix("ferry-lab-")
                .tempdir_in(parent),
            None => tempfile::Builder::new().prefix("ferry-lab-").tempdir(),
        }
        .context("create the lab's temporary directory")?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).context("create the broker's data directory")?;
        let proxy_addr = free_port()?;
        let mut broker = EmbeddedBroker {
            exe: exe.to_path_buf(),
            data_dir,
            log: dir.path().join("broker.log"),
            advertised: proxy_addr,
            listen: "127.0.0.1:0".parse().expect("a literal address"),
            child: None,
        };
        broker.spawn()?;
        let broker_addr = broker.listen.to_string();
        let mut target = Target::with_proxy(
            proxy_addr,
            broker.listen,
            broker_addr.clone(),
            1,
            ClientSettings::default(),
        )?;
        target.probe_addr = Some(broker_addr);
        target.broker = Mutex::new(Some(broker));
        target._dir = Some(dir);
        target.inspect(false)?;
        Ok(target)
    }

    /// Uses the cluster at `bootstrap` with the client settings `client`, with a proxy
    /// listening on `proxy_listen` and forwarding to `bootstrap`, or to `proxy_upstream` (a
    /// listener without TLS) when `client` says TLS.
    pub fn external(
        bootstrap: &str,
        proxy_listen: SocketAddr,
        replication_factor: i32,
        client: ClientSettings,
        proxy_upstream: Option<&str>,
    ) -> Result<Target> {
        if proxy_upstream.is_some() && !client.encrypted() {
            bail!(
                "--proxy-upstream is for a cluster reached over TLS (-X security.protocol=SSL or \
                 SASL_SSL); without TLS the proxy forwards to --bootstrap"
            );
        }
        let resolve = |address: &str| -> Result<SocketAddr> {
            address
                .to_socket_addrs()
                .with_context(|| format!("resolve {address}"))?
                .next()
                .with_context(|| format!("{address} resolves to no address"))
        };
        let encrypted = client.encrypted();
        let upstream = proxy_upstream.unwrap_or(bootstrap);
        let mut target = Target::with_proxy(
            proxy_listen,
            resolve(upstream)?,
            bootstrap.to_string(),
            replication_factor,
            client.without_tls(),
        )?;
        // The probe speaks ApiVersions without TLS (SASL listeners answer it before
        // authentication).
        target.probe_addr = (!encrypted || proxy_upstream.is_some()).then(|| upstream.to_string());
        if encrypted {
            target.secured = Some((bootstrap.to_string(), client));
        }
        target.inspect(encrypted && proxy_upstream.is_none())?;
        Ok(target)
    }

    fn with_proxy(
        proxy_listen: SocketAddr,
        upstream: SocketAddr,
        broker_addr: String,
        replication_factor: i32,
        proxied: ClientSettings,
    ) -> Result<Target> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("lab-proxy")
            .on_thread_start(crate::quiet_this_thread)
            .build()
            .context("start the proxy's runtime")?;
        let proxy = runtime
            .block_on(Proxy::start(proxy_listen, upstream, Plan::none(0)))
            .with_context(|| format!("start the chaos proxy on {proxy_listen}"))?;
        let proxy_started = Instant::now();
        let proxy_addr = proxy.local_addr();
        Ok(Target {
            runtime,
            proxy: Some(proxy),
            proxy_started,
            proxy_addr,
            broker: Mutex::new(None),
            broker_addr,
            proxied,
            secured: None,
            probe_addr: None,
            apis: None,
            proxy_in_path: false,
            advertised: Vec::new(),
            replication_factor,
            _dir: None,
        })
    }

    /// Asks the broker what it supports and what it advertises: through the proxy, or
    /// directly when `proxy_unusable` (TLS and no listener without it).
    fn inspect(&mut self, proxy_unusable: bool) -> Result<()> {
        self.apis = match &self.probe_addr {
            None => None,
            Some(address) => match probe::api_versions(address, SETUP_TIMEOUT) {
                Ok(apis) => Some(apis),
                Err(error) => {
                    tracing::warn!(%error, "probe broker APIs");
                    None
                }
            },
        };
        let consumer: BaseConsumer = self
            .cluster(!proxy_unusable)
            .base_config()
            .create()
            .context("create metadata client")?;
        let through = if proxy_unusable {
            "directly"
        } else {
            "through the proxy"
        };
        let metadata = consumer
            .fetch_metadata(None, SETUP_TIMEOUT)
            .with_context(|| format!("fetch metadata {through} from {}", self.broker_addr))?;
        self.advertised = metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host(), b.port()))
            .collect();
        let proxy = self.proxy_addr;
        self.proxy_in_path = !proxy_unusable
            && !self.advertised.is_empty()
            && self.advertised.iter().all(|a| {
                a.to_socket_addrs()
                    .map(|mut addrs| addrs.any(|addr| addr == proxy))
                    .unwrap_or(false)
            });
        Ok(())
    }

    /// The proxy's address: where clients subject to proxy faults bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.proxy_addr.to_string()
    }

    /// Where a run's clients connect and with which client settings: through the proxy when
    /// `through_proxy` or when the cluster is not reached over TLS; otherwise the secured
    /// listener directly.
    pub fn cluster(&self, through_proxy: bool) -> Settings {
        match &self.secured {
            Some((bootstrap, client)) if !through_proxy => {
                Settings::new(bootstrap.clone()).with_client(client)
            }
            _ => Settings::new(self.bootstrap()).with_client(&self.proxied),
        }
    }

    /// Why runs with proxy faults cannot reach the cluster through the proxy, if they cannot.
    pub fn proxy_unusable(&self) -> Option<String> {
        if self.proxy_in_path {
            return None;
        }
        if self.secured.is_some() && self.probe_addr.is_none() {
            return Some(
                "TLS hides the Kafka frames from the chaos proxy: give --proxy-upstream a \
                 listener of the cluster without TLS that advertises --proxy-listen"
                    .into(),
            );
        }
        Some(format!(
            "the cluster advertises {}, not the proxy",
            self.advertised.join(", ")
        ))
    }

    /// The APIs `guarantee` needs that the broker does not advertise; empty when it has them
    /// or when they cannot be probed (TLS without a listener without it: the run finds out).
    pub fn missing_for(&self, guarantee: Guarantee) -> Vec<i16> {
        match (&self.apis, &self.probe_addr) {
            (Some(apis), _) => apis.missing_for(guarantee),
            (None, Some(_)) => vec![-1],
            (None, None) => Vec::new(),
        }
    }

    pub fn broker_addr(&self) -> &str {
        &self.broker_addr
    }

    pub fn advertised(&self) -> &[String] {
        &self.advertised
    }

    /// What the broker advertised in ApiVersions (None if the probe failed).
    pub fn apis(&self) -> Option<&BrokerApis> {
        self.apis.as_ref()
    }

    /// Whether clients reach every broker through the proxy, so proxy faults reach them.
    pub fn proxy_in_path(&self) -> bool {
        self.proxy_in_path
    }

    /// Whether the lab controls the broker process (kill -9, restart).
    pub fn controls_broker(&self) -> bool {
        self.broker_lock().is_some()
    }

    fn broker_lock(&self) -> std::sync::MutexGuard<'_, Option<EmbeddedBroker>> {
        self.broker.lock().expect("broker lock poisoned")
    }

    fn proxy(&self) -> &ProxyHandle {
        self.proxy
            .as_ref()
            .expect("the proxy lives as long as the target")
    }

    pub fn set_plan(&self, plan: Plan) -> Result<()> {
        self.proxy().set_plan(plan).context("set the proxy's plan")
    }

    /// A position in the proxy's event stream; events after it are [`Target::events_since`].
    pub fn events_cursor(&self) -> u64 {
        self.proxy().events_forgotten() + self.proxy().events().len() as u64
    }

    /// Proxy events after `cursor`, each with its instant.
    pub fn events_since(&self, cursor: u64) -> Vec<(Instant, FaultEvent)> {
        let forgotten = self.proxy().events_forgotten();
        let skip = cursor.saturating_sub(forgotten) as usize;
        if cursor < forgotten {
            tracing::warn!(
                lost = forgotten - cursor,
                "the proxy forgot fault events of this run (its memory limit)"
            );
        }
        self.proxy()
            .events()
            .into_iter()
            .skip(skip)
            .map(|e| (self.proxy_started + Duration::from_millis(e.at_ms), e))
            .collect()
    }

    /// `kill -9` of the lab's own broker.
    pub fn kill_broker(&self) -> Result<()> {
        self.broker_lock()
            .as_mut()
            .context("kill -9 needs the lab's own broker")?
            .kill9()
    }

    /// Starts the lab's own broker again, on the same directory and port.
    pub fn restart_broker(&self) -> Result<()> {
        self.broker_lock()
            .as_mut()
            .context("restart needs the lab's own broker")?
            .spawn()
    }

    /// Creates `topic` with `partitions` partitions, directly on the broker (setup is not
    /// subject to faults).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .cluster(false)
            .base_config()
            .create()
            .context("create admin client")?;
        let new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let options = AdminOptions::new().operation_timeout(Some(SETUP_TIMEOUT));
        let results = self
            .runtime
            .block_on(admin.create_topics([&new_topic], &options))
            .with_context(|| format!("create topic {topic}"))?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("create topic {name}: {code}");
            }
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            self.runtime.block_on(proxy.shutdown());
        }
    }
}

/// A free port on the loopback interface: bound, read, released. Another process could take
/// it in between; the proxy's bind would then fail with a clear error.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    listener.local_addr().context("read a free port")
}
