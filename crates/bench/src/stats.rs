//! Latency histograms (HdrHistogram, microseconds) and their summary as reported.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub samples: u64,
}

/// The e2e_latency row's figures, the same for every target: `records` sent over `seconds`,
/// send-to-receive percentiles `e2e`, send-to-acknowledgement percentiles `ack`.
pub fn latency_figures(
    records: u64,
    seconds: f64,
    e2e: &Percentiles,
    ack: &Percentiles,
) -> Vec<(&'static str, f64)> {
    vec![
        ("records", records as f64),
        ("rate_per_s", records as f64 / seconds),
        ("samples", e2e.samples as f64),
        ("p50_us", e2e.p50_us),
        ("p99_us", e2e.p99_us),
        ("p999_us", e2e.p999_us),
        ("max_us", e2e.max_us),
        ("ack_p50_us", ack.p50_us),
        ("ack_p99_us", ack.p99_us),
        ("ack_p999_us", ack.p999_us),
    ]
}

/// A latency histogram from 1 µs to 100 s at 3 significant digits.
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl Latency {
    pub fn record_us(&mut self, us: u64) {
        // Saturates at the upper bound instead of dropping an outlier.
        self.histogram.saturating_record(us.max(1));
    }

    pub fn percentiles(&self) -> Percentiles {
        let h = &self.histogram;
        Percentiles {
            p50_us: h.value_at_quantile(0.50) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
            samples: h.len(),
        }
    }
}

/// The median of a few measurements (start-up runs).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let mut latency = Latency::default();
        for us in 1..=1000 {
            latency.record_us(us);
        }
        let p = latency.percentiles();
        assert_eq!(p.samples, 1000);
        assert_eq!(p.p50_us, 500.0);
        assert_eq!(p.p99_us, 990.0);
        assert_eq!(p.max_us, 1000.0);
    }
}
