//! The machine's limits, measured in the same run as the brokers: sequential append + fdatasync
//! bandwidth and fdatasync latency of the disk that holds the data directories, and loopback TCP
//! bandwidth. Every broker figure is read against these.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stats::{Latency, Percentiles};
use crate::{progress, secs, Plan};

/// Chunk sizes of the bandwidth probe: one append of this many bytes, then one fdatasync. A
/// group commit round of ferry looks like the smaller one under load; the larger one is close to
/// the disk's best.
const DISK_CHUNKS: [usize; 2] = [1 << 20, 8 << 20];
/// The append of the latency probe: about one small produce batch.
const FSYNC_PROBE_BYTES: usize = 4096;
const LOOPBACK_CHUNK_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// The best of the chunk sizes: the disk's durable sequential write bandwidth.
    pub disk_fdatasync_bytes_per_s: f64,
    pub disk_chunks: Vec<DiskChunk>,
    /// Latency of a 4 KiB append followed by fdatasync.
    pub fsync_latency: Percentiles,
    /// A group commit round's floor: 4 KiB appended to each of `round_files` files, all
    /// fdatasynced at once (a thread each, as the broker does), until the last one returns.
    #[serde(default)]
    pub fsync_round_latency: Percentiles,
    #[serde(default)]
    pub round_files: u32,
    pub loopback_tcp_bytes_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskChunk {
    pub chunk_bytes: u64,
    pub bytes_per_s: f64,
}

pub fn probe(plan: &Plan, dir: &Path) -> Result<Machine> {
    let mut machine = Machine::default();
    // The fdatasync latency is probed twice, first and after the other disk probes, and the
    // quieter of the two is the disk's: a stall of a shared machine during one probe would
    // otherwise inflate the p99 that acknowledgement latency is judged against.
    progress("disk: fdatasync latency");
    let first_fsync_latency = fsync_latency(dir, plan.fsync_samples)?;
    for chunk in DISK_CHUNKS {
        progress(&format!("disk: append {} KiB + fdatasync", chunk >> 10));
        let bytes_per_s = disk_bandwidth(dir, chunk, plan.disk_seconds)?;
        machine.disk_chunks.push(DiskChunk {
            chunk_bytes: chunk as u64,
            bytes_per_s,
        });
        machine.disk_fdatasync_bytes_per_s = machine.disk_fdatasync_bytes_per_s.max(bytes_per_s);
    }
    let files = plan.partitions.max(1) as usize;
    progress(&format!("disk: fdatasync latency, {files} files at once"));
    machine.fsync_round_latency = fsync_round_latency(dir, files, plan.fsync_samples)?;
    progress("disk: fdatasync latency, again");
    let second_fsync_latency = fsync_latency(dir, plan.fsync_samples)?;
    machine.fsync_latency = if second_fsync_latency.p99_us < first_fsync_latency.p99_us {
        second_fsync_latency
    } else {
        first_fsync_latency
    };
    machine.round_files = files as u32;
    progress("loopback TCP bandwidth");
    machine.loopback_tcp_bytes_per_s = loopback_bandwidth(plan.loopback_seconds)?;
    Ok(machine)
}

/// Appends `chunk` bytes and fdatasyncs, again and again, to a new file (as a log segment
/// grows, so the file size is part of each sync).
fn disk_bandwidth(dir: &Path, chunk: usize, seconds: f64) -> Result<f64> {
    let path = dir.join(format!("disk-probe-{chunk}"));
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let buffer: Vec<u8> = (0..chunk).map(|i| (i * 31 % 251) as u8).collect();
    let limit = secs(seconds);
    let start = Instant::now();
    let mut written = 0u64;
    // At least three rounds, so a very slow disk still gives a figure.
    while written < 3 * chunk as u64 || start.elapsed() < limit {
        file.write_all(&buffer)
            .with_context(|| format!("write {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        written += chunk as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(written as f64 / elapsed)
}

fn fsync_latency(dir: &Path, samples: usize) -> Result<Percentiles> {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let buffer = vec![0x5Au8; FSYNC_PROBE_BYTES];
    let mut latency = Latency::default();
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&buffer)
            .with_context(|| format!("write {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        latency.record_us(start.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(latency.percentiles())
}

/// `fsync_latency` over `files` files at once: each sample appends to and fdatasyncs every file
/// on a thread of its own, and lasts until the slowest is done.
fn fsync_round_latency(dir: &Path, files: usize, samples: usize) -> Result<Percentiles> {
    let paths: Vec<_> = (0..files)
        .map(|i| dir.join(format!("fsync-round-probe-{i}")))
        .collect();
    let mut opened = Vec::with_capacity(files);
    for path in &paths {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        opened.push(file);
    }
    let buffer = vec![0x5Au8; FSYNC_PROBE_BYTES];
    let mut latency = Latency::default();
    for _ in 0..samples {
        let start = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let syncs: Vec<_> = opened
                .iter_mut()
                .map(|file| {
                    let buffer = &buffer;
                    scope.spawn(move || -> std::io::Result<()> {
                        file.write_all(buffer)?;
                        file.sync_data()
                    })
                })
                .collect();
            for sync in syncs {
                sync.join()
                    .map_err(|_| anyhow::anyhow!("fdatasync thread panicked"))?
                    .context("append and fdatasync a round probe file")?;
            }
            Ok(())
        })?;
        latency.record_us(start.elapsed().as_micros() as u64);
    }
    drop(opened);
    for path in &paths {
        std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(latency.percentiles())
}

/// One writer thread, one reader: bytes per second through 127.0.0.1.
fn loopback_bandwidth(seconds: f64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind loopback probe")?;
    let addr = listener
        .local_addr()
        .context("read loopback probe address")?;
    let limit = secs(seconds);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        let buffer = vec![0xC3u8; LOOPBACK_CHUNK_BYTES];
        let start = Instant::now();
        while start.elapsed() < limit {
            stream.write_all(&buffer)?;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept().context("accept loopback probe")?;
    let mut buffer = vec![0u8; LOOPBACK_CHUNK_BYTES];
    let mut received = 0u64;
    let start = Instant::now();
    loop {
        let n = stream.read(&mut buffer).context("read loopback probe")?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("loopback writer panicked"))?
        .context("write loopback probe")?;
    Ok(received as f64 / elapsed)
}
