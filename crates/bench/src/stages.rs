//! Where a workload's request time went, from ferry's own `/metrics`: the stage histograms
//! (`ferry_request_stage_seconds`) and the fsync histogram, scraped before and after the
//! workload so only its requests count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

/// One `GET /metrics`; fails unless the answer is 200 with ferry's metrics in it.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).context("connect to /metrics")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("read /metrics")?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.1 200") && response.contains("ferry_requests_total"),
        "unexpected /metrics answer: {}",
        response.lines().next().unwrap_or("")
    );
    let (_, body) = response.split_once("\r\n\r\n").context("an HTTP body")?;
    Ok(body.to_string())
}

/// A histogram's cumulative bucket counts by upper bound, its sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// What `later` counted that `self` (an earlier scrape of the same histogram) had not.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before: BTreeMap<u64, f64> = earlier
            .buckets
            .iter()
            .map(|(le, n)| (le.to_bits(), *n))
            .collect();
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n - before.get(&le.to_bits()).unwrap_or(&0.0)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    pub fn count(&self) -> f64 {
        self.count
    }

    pub fn mean_us(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count * 1e6
        } else {
            0.0
        }
    }

    /// The upper bound of the bucket holding quantile `q`, in microseconds (the histogram's
    /// resolution: buckets double); +Inf when it lies past the last bound.
    pub fn quantile_bound_us(&self, q: f64) -> f64 {
        let rank = q * self.count;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank && *n > 0.0)
            .map_or(f64::INFINITY, |(le, _)| le * 1e6)
    }
}

/// The histogram of `name` whose labels are exactly `labels` (written as in the exposition,
/// `api="Produce",stage="queued"`; empty for none) in `text`.
pub fn histogram(text: &str, name: &str, labels: &str) -> Histogram {
    let mut histogram = Histogram::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        match series_name.strip_prefix(name) {
            Some("_sum") if series_labels == labels => histogram.sum = value,
            Some("_count") if series_labels == labels => histogram.count = value,
            Some("_bucket") => {
                // The bucket's labels are the histogram's with `le` last.
                let Some((rest, le)) = series_labels.rsplit_once("le=\"") else {
                    continue;
                };
                if rest.trim_end_matches(',') != labels {
                    continue;
                }
                let le = le.trim_end_matches('"');
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                histogram.buckets.push((bound, value));
            }
            _ => {}
        }
    }
    histogram
}

/// The stages of a produce with `acks=all`, in order.
pub const PRODUCE_STAGES: [&str; 4] = ["queued", "handled", "group_commit", "write"];

/// Per produce stage and for the fsync: the mean and the bucket bound of the p99, in
/// microseconds, of what was counted between the two scrapes; as row metrics.
pub fn produce_breakdown(before: &str, after: &str) -> Vec<(String, f64)> {
    let mut metrics = Vec::new();
    let mut requests = 0.0;
    let mut add = |what: &str, histogram: Histogram| {
        metrics.push((format!("{what}_mean_us"), histogram.mean_us()));
        // Past the last bound (or nothing counted), the bucket says nothing: left out.
        let bound = histogram.quantile_bound_us(0.99);
        if bound.is_finite() {
            metrics.push((format!("{what}_p99_bound_us"), bound));
        }
    };
    for stage in PRODUCE_STAGES {
        let labels = format!("api=\"Produce\",stage=\"{stage}\"");
        let name = "ferry_request_stage_seconds";
        let measured = histogram(after, name, &labels).since(&histogram(before, name, &labels));
        if stage == PRODUCE_STAGES[0] {
            requests = measured.count();
        }
        add(&format!("produce_{stage}"), measured);
    }
    let name = "ferry_fsync_duration_seconds";
    add(
        "fsync",
        histogram(after, name, "").since(&histogram(before, name, "")),
    );
    metrics.push(("produce_requests".into(), requests));
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE ferry_request_stage_seconds histogram
ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="0.0001"} 10
ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="0.0002"} 10
ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="+Inf"} 10
ferry_request_stage_seconds_sum{api="Produce",stage="queued"} 0.0005
ferry_request_stage_seconds_count{api="Produce",stage="queued"} 10
ferry_request_stage_seconds_bucket{api="Fetch",stage="queued",le="0.0001"} 99
"#;

    const AFTER: &str = r#"ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="0.0001"} 108
ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="0.0002"} 109
ferry_request_stage_seconds_bucket{api="Produce",stage="queued",le="+Inf"} 110
ferry_request_stage_seconds_sum{api="Produce",stage="queued"} 1.0105
ferry_request_stage_seconds_count{api="Produce",stage="queued"} 110
ferry_request_stage_seconds_bucket{api="Fetch",stage="queued",le="0.0001"} 5000
"#;

    #[test]
    fn only_what_came_between_two_scrapes_counts() {
        let labels = r#"api="Produce",stage="queued""#;
        let name = "ferry_request_stage_seconds";
        let between = histogram(AFTER, name, labels).since(&histogram(BEFORE, name, labels));
        assert_eq!(between.count(), 100.0);
        assert!((between.mean_us() - 10_100.0).abs() < 1e-6);
        // 98 of 100 in the first bucket, 99 by the second, the last past every bound.
        assert_eq!(between.quantile_bound_us(0.5), 100.0);
        assert_eq!(between.quantile_bound_us(0.99), 200.0);
        assert_eq!(between.quantile_bound_us(1.0), f64::INFINITY);
        // Fetch's buckets are not Produce's.
        assert_eq!(between.buckets.len(), 3);
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        let empty = histogram("", "ferry_fsync_duration_seconds", "");
        assert_eq!(empty.count(), 0.0);
        assert_eq!(empty.mean_us(), 0.0);
        assert_eq!(empty.quantile_bound_us(0.99), f64::INFINITY);
    }
}
