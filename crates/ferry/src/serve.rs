//! `ferry serve`: resolve settings, open (recover) the data directory, bind, serve until SIGINT or
//! SIGTERM, then shut down gracefully.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::listeners::ListenerSpec;
use crate::settings::Settings;

#[derive(Args)]
pub struct ServeArgs {
    /// Where partitions and metadata live (Kafka: log.dirs).
    #[arg(long, env = "FERRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the one PLAINTEXT listener (default 127.0.0.1:9092; port 0 picks a free port);
    /// the shorthand for listeners=PLAINTEXT://ADDR, which opens several (PLAINTEXT, SSL).
    #[arg(long, env = "FERRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// host:port that clients are told to connect to (Kafka: advertised.listeners, here for the
    /// first listener); defaults to the bound address.
    #[arg(long, env = "FERRY_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// A TOML file of settings by their Kafka names, e.g. `"num.partitions" = 4`.
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// A setting by its Kafka name, overriding file and environment: --set num.partitions=4.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mut settings = Settings::default();
    if let Some(path) = &args.config {
        settings.apply_file(path)?;
    }
    settings.apply_env(std::env::vars())?;
    for pair in &args.set {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair}: expected NAME=VALUE"))?;
        settings.apply(name.trim(), value.trim())?;
    }
    if let Some(dir) = args.data_dir {
        settings.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        settings.listen = Some(listen);
    }
    if let Some(advertised) = args.advertised_listener {
        settings.network.advertised = Some(advertised);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.network_threads {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .thread_name("ferry")
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(mut settings: Settings) -> Result<()> {
    let disk: Arc<dyn storage::Disk> = Arc::new(storage::FsDisk);
    let specs = settings.network.resolve(settings.listen)?;
    if let Some(spec) = specs.iter().find(|s| s.protocol.uses_sasl()) {
        anyhow::ensure!(
            !settings.sasl_mechanisms.is_empty(),
            "listener {}: a {} listener needs sasl.enabled.mechanisms (PLAIN, SCRAM-SHA-256, \
             SCRAM-SHA-512), and it is empty",
            spec.name,
            spec.protocol
        );
    }
    let (listeners, advertised) = bind(&specs, &settings.network.tls).await?;
    let local = listeners[0].local_addr();
    // The metrics endpoint serves from before recovery, so /healthz answers and /readyz says
    // "not yet" while a large data directory is recovered.
    let metrics = match settings.metrics_listen {
        Some(address) => Some(serve_metrics(address).await?),
        None => None,
    };
    let mut config = settings.broker_config();
    config.max_partitions = descriptor_budget(&mut settings)?;
    config.advertised = advertised;
    // The one clock of the process: recovery and every later call into the broker read it.
    let _lock = crate::data_dir_lock::DataDirLock::acquire(&settings.data_dir)?;
    let clock = server::Clock::start();
    let opening = std::time::Instant::now();
    let broker = broker::Broker::open(config, disk, clock.now())
        .with_context(|| format!("open data directory {}", settings.data_dir.display()))?;
    let recovery = opening.elapsed();
    let bound: Vec<_> = listeners
        .iter()
        .map(|l| (l.name.clone(), l.local_addr()))
        .collect();
    let sasl = listeners.iter().any(|l| l.protocol.uses_sasl());
    let mut server = server::Server::new(
        listeners,
        broker,
        clock,
        settings.limits.clone(),
        metrics.as_ref().map(|(metrics, _, _)| metrics.clone()),
    );
    if sasl {
        let mechanisms = settings.sasl_mechanisms.clone();
        server = server.with_sasl(server::sasl::SaslConfig { mechanisms });
    }
    let stop = stop_signal()?;
    // Tests and scripts read this line to learn the port when listening on port 0: the first
    // listener's. Then one line per listener, by name, for those that open several; a reader
    // gone after the first line is no error.
    println!("ferry: listening on {local}");
    for (name, address) in &bound {
        let _ = writeln!(std::io::stdout(), "ferry: listener {name} on {address}");
    }
    tracing::info!(%local, data_dir = %settings.data_dir.display(), recovery_ms = recovery.as_millis() as u64, "serving");
    let Some((metrics, endpoint, address)) = metrics else {
        server.run(stop).await.map_err(ShutdownFailed)?;
        return Ok(());
    };
    metrics.recovered(recovery);
    let stats = server.stats_source();
    endpoint.add_source(move || stats().map_or_else(Vec::new, |s| observe::broker_families(&s)));
    endpoint.set_ready(true);
    // After the listeners' lines, for the same reason.
    let _ = writeln!(std::io::stdout(), "ferry: metrics on {address}");
    let stop = async {
        stop.await;
        endpoint.set_ready(false);
    };
    server.run(stop).await.map_err(ShutdownFailed)?;
    Ok(())
}

/// Binds every listener (with the TLS configuration, built once, on those that use TLS) and
/// returns them with what each advertises: its `advertised.listeners` entry, or else its bound
/// address.
async fn bind(
    specs: &[ListenerSpec],
    tls: &server::tls::TlsSettings,
) -> Result<(Vec<server::Listener>, Vec<broker::Advertised>)> {
    let tls_config = match specs.iter().find(|s| s.protocol.uses_tls()) {
        Some(spec) => Some(
            server::tls::server_config(tls).with_context(|| format!("listener {}", spec.name))?,
        ),
        None => None,
    };
    let mut listeners = Vec::new();
    let mut advertised = Vec::new();
    for spec in specs {
        let socket = tokio::net::TcpListener::bind((spec.host.as_str(), spec.port))
            .await
            .with_context(|| format!("listen on {}://{}:{}", spec.name, spec.host, spec.port))?;
        let bound = socket.local_addr().context("read listen address")?;
        let (host, port) = spec
            .advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        advertised.push(broker::Advertised {
            listener: spec.name.clone(),
            host,
            port: i32::from(port),
        });
        tracing::info!(listener = %spec.name, protocol = %spec.protocol, %bound, "listening");
        listeners.push(server::Listener {
            name: spec.name.clone(),
            protocol: spec.protocol,
            socket,
            tls: spec
                .protocol
                .uses_tls()
                .then(|| tls_config.clone())
                .flatten(),
        });
    }
    Ok((listeners, advertised))
}

/// Binds `metrics.listen` and serves the endpoint on a task of its own, with the server's
/// metrics (the broker's snapshot is added once it is open); returns those metrics, the
/// endpoint and the bound address.
async fn serve_metrics(
    address: SocketAddr,
) -> Result<(
    Arc<observe::ServerMetrics>,
    Arc<observe::Endpoint>,
    SocketAddr,
)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("metrics.listen: bind {address}"))?;
    let bound = listener.local_addr().context("read metrics address")?;
    let metrics = Arc::new(observe::ServerMetrics::new());
    let endpoint = observe::Endpoint::new();
    let live = metrics.clone();
    endpoint.add_source(move || live.gather());
    tokio::spawn(observe::http::serve(listener, endpoint.clone()));
    tracing::info!(%bound, "metrics endpoint: /metrics, /healthz, /readyz");
    Ok((metrics, endpoint, bound))
}

/// Raises the descriptor limit, caps `max.connections` to the connections' share of it, and
/// returns `max.partitions`: as set, if the limit has room for it, or else what the limit leaves.
fn descriptor_budget(settings: &mut Settings) -> Result<usize> {
    let (before, limit) = crate::descriptors::raise_limit().context("read the descriptor limit")?;
    let budget = crate::descriptors::budget(limit, settings.limits.connections_max);
    if budget.connections < settings.limits.connections_max {
        tracing::warn!(
            limit,
            max_connections = settings.limits.connections_max,
            connections = budget.connections,
            "max.connections is more than half the file descriptor limit: lowered"
        );
        settings.limits.connections_max = budget.connections;
    }
    let partitions = match settings.max_partitions {
        Some(wanted) if wanted > budget.partitions => anyhow::bail!(
            "max.partitions={wanted} needs a descriptor per partition, but the file descriptor \
             limit ({limit}) leaves room for {} beside {} connections: raise the limit \
             (ulimit -n) or lower max.partitions or max.connections",
            budget.partitions,
            budget.connections
        ),
        Some(wanted) => wanted,
        None => budget.partitions,
    };
    tracing::info!(
        limit,
        raised_from = before,
        max_connections = budget.connections,
        max_partitions = partitions,
        "file descriptors"
    );
    Ok(partitions)
}

/// The clean shutdown failed (a full disk fails the index and checkpoint writes of closing the
/// logs). Every acknowledged record was fsynced before the close began; recovery at the next
/// start re-derives what the close could not write. The binary exits with
/// [`server::EXIT_FATAL`], as for any failed write.
#[derive(Debug)]
pub struct ShutdownFailed(pub server::ServerError);

impl std::fmt::Display for ShutdownFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "clean shutdown failed: {}; acknowledged records were fsynced before it, and the next \
             start recovers the logs from their last recovery point",
            self.0
        )
    }
}

impl std::error::Error for ShutdownFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Registers SIGTERM and SIGINT handlers now (before the broker says it is listening, so a
/// signal sent right after start-up is not lost to the default action) and returns the future
/// that resolves on the first of them.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
