//! Counts over sliding windows: one-second slices kept for the longest window (15 minutes),
//! plus a running total since the start, so a window's counts are the sum of its slices and
//! memory does not grow with the run's length. Each slice also holds a latency histogram with
//! logarithmic buckets (about 9 % wide), so p50 and p99 of any window come from merging them.
//!
//! Time is passed in (milliseconds); nothing here reads a clock.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The width of one slice.
pub const SLICE_MS: u64 = 1_000;

/// The sliding windows reported, from the shortest; "since start" is reported beside them.
pub const WINDOWS: [Window; 3] = [Window::Minute, Window::Quarter, Window::SinceStart];

/// A window the auditor reports over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "15m")]
    Quarter,
    #[serde(rename = "all")]
    SinceStart,
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::Minute => "1m",
            Window::Quarter => "15m",
            Window::SinceStart => "all",
        }
    }

    /// The window's length; `None` for since start.
    pub fn length_ms(self) -> Option<u64> {
        match self {
            Window::Minute => Some(60_000),
            Window::Quarter => Some(15 * 60_000),
            Window::SinceStart => None,
        }
    }
}

/// The longest sliding window: slices older than this are dropped.
pub const WINDOW_LONGEST_MS: u64 = 15 * 60_000;

/// What the auditor counts, one counter each per slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Handed to the producer.
    Sent,
    /// Acknowledged by the broker (under `acks=0`: written to the socket).
    Acked,
    /// The producer reported it not (or possibly not) written.
    SendFailed,
    /// Records handed to the lane's processing (every delivery, or the idempotent consumer's
    /// effects).
    Consumed,
    /// Expected and not consumed within the grace window after its send.
    Lost,
    /// Consumed after it had been counted lost (it stays counted as lost in the windows).
    Late,
    /// Consumptions beyond the first.
    Duplicated,
    /// Consumed for the first time after a record sent later.
    Reordered,
    /// Sent in a transaction that was aborted (on purpose or after a failure): not expected.
    Aborted,
    /// A record of an aborted transaction was consumed.
    AbortedRead,
    /// Deliveries the consumer recognised and skipped: the idempotent consumer's duplicates,
    /// the exactly-once consumer's records read again below its stored position.
    DedupSkipped,
    /// Sends acknowledged within the acknowledgement timeout.
    Available,
    /// Sends failed, or not acknowledged within the acknowledgement timeout.
    Unavailable,
    /// Records of an earlier run of the auditor: not judged against this run.
    EarlierRun,
    /// Records of this run older than the state the auditor keeps: neither duplicate nor late
    /// can be told.
    Stale,
    /// Consumed but never sent by this run, or not a stamp at all.
    Phantom,
}

impl Outcome {
    pub const ALL: [Outcome; 16] = [
        Outcome::Sent,
        Outcome::Acked,
        Outcome::SendFailed,
        Outcome::Consumed,
        Outcome::Lost,
        Outcome::Late,
        Outcome::Duplicated,
        Outcome::Reordered,
        Outcome::Aborted,
        Outcome::AbortedRead,
        Outcome::DedupSkipped,
        Outcome::Available,
        Outcome::Unavailable,
        Outcome::EarlierRun,
        Outcome::Stale,
        Outcome::Phantom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Acked => "acked",
            Outcome::SendFailed => "send_failed",
            Outcome::Consumed => "consumed",
            Outcome::Lost => "lost",
            Outcome::Late => "late",
            Outcome::Duplicated => "duplicated",
            Outcome::Reordered => "reordered",
            Outcome::Aborted => "aborted",
            Outcome::AbortedRead => "aborted_read",
            Outcome::DedupSkipped => "dedup_skipped",
            Outcome::Available => "available",
            Outcome::Unavailable => "unavailable",
            Outcome::EarlierRun => "earlier_run",
            Outcome::Stale => "stale",
            Outcome::Phantom => "phantom",
        }
    }
}

/// Latency buckets: exact below `LINEAR_MS`, then `SUB_BUCKETS` per power of two.
const LINEAR_MS: u64 = 16;
const SUB_BUCKETS: u64 = 8;
/// Buckets up to 2^40 ms (35 years); longer latencies land in the last one.
const BUCKETS: usize = (LINEAR_MS + (40 - 4) * SUB_BUCKETS) as usize;

/// A latency histogram in milliseconds with logarithmic buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Empty until the first sample, so quiet slices cost nothing.
    buckets: Vec<u64>,
    samples: u64,
}

fn bucket_of(ms: u64) -> usize {
    if ms < LINEAR_MS {
        return ms as usize;
    }
    let power = 63 - u64::from(ms.leading_zeros()); // >= 4
    let sub = (ms >> (power - 3)) & (SUB_BUCKETS - 1);
    let index = LINEAR_MS + (power - 4) * SUB_BUCKETS + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The largest value of bucket `index`: what a percentile falling in it reports.
fn bucket_upper_ms(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR_MS {
        return index;
    }
    let power = (index - LINEAR_MS) / SUB_BUCKETS + 4;
    let sub = (index - LINEAR_MS) % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << (power - 3)) - 1
}

impl Histogram {
    pub fn record(&mut self, ms: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.buckets[bucket_of(ms)] += 1;
        self.samples += 1;
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn add(&mut self, other: &Histogram) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.samples += other.samples;
    }

    /// The nearest-rank percentile `q` (0..=1), as its bucket's upper bound; `None` if empty.
    pub fn percentile_ms(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper_ms(index));
            }
        }
        unreachable!("the buckets hold every sample")
    }
}

/// What one slice (or a window, their sum) counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; Outcome::ALL.len()],
    pub latency: Histogram,
}

impl Tally {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[outcome as usize]
    }

    fn add(&mut self, other: &Tally) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.latency.add(&other.latency);
    }

    /// Available sends over judged ones; `None` before any send is judged.
    pub fn availability(&self) -> Option<f64> {
        let available = self.get(Outcome::Available);
        let judged = available + self.get(Outcome::Unavailable);
        (judged > 0).then(|| available as f64 / judged as f64)
    }
}

/// The slices of the longest window and the total since the start.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    /// (slice start, tally), oldest first, at most the longest window's worth.
    slices: VecDeque<(u64, Tally)>,
    total: Tally,
}

impl Windows {
    pub fn count(&mut self, outcome: Outcome, at_ms: u64, n: u64) {
        self.total.counts[outcome as usize] += n;
        self.slice(at_ms).counts[outcome as usize] += n;
    }

    pub fn latency(&mut self, at_ms: u64, latency_ms: u64) {
        self.total.latency.record(latency_ms);
        self.slice(at_ms).latency.record(latency_ms);
    }

    /// The slice `at_ms` falls in. Events come in time order per lane, except that an event a
    /// little older than the newest slice (another thread's) joins the newest slice.
    fn slice(&mut self, at_ms: u64) -> &mut Tally {
        let start = at_ms - at_ms % SLICE_MS;
        let newest = self.slices.back().map(|(s, _)| *s);
        if newest.is_none_or(|newest| start > newest) {
            self.slices.push_back((start, Tally::default()));
            while self
                .slices
                .front()
                .is_some_and(|(s, _)| s + WINDOW_LONGEST_MS < start)
            {
                self.slices.pop_front();
            }
        }
        &mut self.slices.back_mut().expect("just pushed").1
    }

    /// The counts of `window` as of `now_ms`.
    pub fn tally(&self, window: Window, now_ms: u64) -> Tally {
        let Some(length_ms) = window.length_ms() else {
            return self.total.clone();
        };
        let from = now_ms.saturating_sub(length_ms);
        let mut out = Tally::default();
        for (_, tally) in self
            .slices
            .iter()
            .filter(|(start, _)| start + SLICE_MS > from)
        {
            out.add(tally);
        }
        out
    }

    pub fn slices(&self) -> usize {
        self.slices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for ms in (0..100_000).chain([u64::MAX / 2, u64::MAX]) {
            let index = bucket_of(ms);
            assert!(index >= previous, "bucket of {ms} went back");
            previous = index;
            if index < BUCKETS - 1 {
                assert!(bucket_upper_ms(index) >= ms, "{ms} above its bucket");
                // About 12.5 % wide at most.
                assert!(
                    bucket_upper_ms(index) <= ms + ms / 8 + 1,
                    "{ms} in a wide bucket"
                );
            }
        }
    }

    #[test]
    fn windows_as_data() {
        // (at_ms, outcome) events, then what each window holds at `now`.
        let check = |events: &[(u64, Outcome)], now: u64, expect: [u64; 3]| {
            let mut windows = Windows::default();
            for (at, outcome) in events {
                windows.count(*outcome, *at, 1);
            }
            let got = WINDOWS.map(|w| windows.tally(w, now).get(Outcome::Sent));
            assert_eq!(got, expect, "{events:?} at {now}");
        };
        check(&[], 0, [0, 0, 0]);
        check(
            &[(0, Outcome::Sent), (500, Outcome::Sent)],
            1_000,
            [2, 2, 2],
        );
        check(
            &[(0, Outcome::Sent), (61_000, Outcome::Sent)],
            61_500,
            [1, 2, 2],
        );
        check(
            &[(0, Outcome::Sent), (30 * 60_000, Outcome::Sent)],
            30 * 60_000,
            [1, 1, 2],
        );
        // Another outcome does not count as sent.
        check(&[(0, Outcome::Lost)], 0, [0, 0, 0]);
    }

    #[test]
    fn slices_stay_bounded() {
        let mut windows = Windows::default();
        for second in 0..10_000 {
            windows.count(Outcome::Sent, second * SLICE_MS, 1);
        }
        assert!(windows.slices() <= (WINDOW_LONGEST_MS / SLICE_MS + 1) as usize);
        assert_eq!(
            windows.tally(Window::SinceStart, 0).get(Outcome::Sent),
            10_000
        );
    }

    #[test]
    fn percentiles_agree_with_nearest_rank_within_a_bucket() {
        let samples: Vec<u64> = (0..1000).map(|i| (i * i) % 7919 + 3).collect();
        let mut histogram = Histogram::default();
        for s in &samples {
            histogram.record(*s);
        }
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.99] {
            let exact = sorted[((q * 1000.0_f64).ceil() as usize).clamp(1, 1000) - 1];
            let got = histogram.percentile_ms(q).unwrap();
            assert!(
                got >= exact && got <= exact + exact / 8 + 1,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(Histogram::default().percentile_ms(0.5), None);
    }
}
