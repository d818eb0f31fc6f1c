//! The terminal view: a table of every lane's figures over each window, redrawn in place when
//! stdout is a terminal; one plain line per lane (the whole run's figures) otherwise, for logs.
//! Pure functions of the summaries; the runner decides when and where to write them.

use crate::lane::{LaneSummary, WindowSummary};
use crate::window::{Outcome, Window};

/// ANSI: cursor to the top left, clear to the end of the screen.
pub const CLEAR: &str = "\x1b[H\x1b[J";

/// What the header says about the run.
pub struct Header<'a> {
    pub bootstrap: &'a str,
    pub rate_per_second: u64,
    pub grace_ms: u64,
    pub elapsed_ms: u64,
}

fn latency(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| ms.to_string())
}

fn availability(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".into(), |r| format!("{:.2}%", r * 100.0))
}

fn row(lane: &str, w: &WindowSummary) -> String {
    format!(
        "{lane:<33} {:<4} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>8}",
        w.window.name(),
        w.get(Outcome::Sent),
        w.get(Outcome::Acked),
        w.get(Outcome::Consumed),
        w.get(Outcome::Lost),
        w.get(Outcome::Late),
        w.get(Outcome::Duplicated),
        w.get(Outcome::Reordered),
        w.get(Outcome::AbortedRead),
        latency(w.latency_p50_ms),
        latency(w.latency_p99_ms),
        availability(w.availability),
    )
}

/// The table: a header, then per lane one row per window.
pub fn table(header: &Header<'_>, lanes: &[LaneSummary]) -> String {
    let mut out = format!(
        "ferry audit  {}  {}/s per lane  grace {} ms  up {} s\n",
        header.bootstrap,
        header.rate_per_second,
        header.grace_ms,
        header.elapsed_ms / 1000
    );
    out.push_str(&format!(
        "{:<33} {:<4} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>8}\n",
        "lane",
        "win",
        "sent",
        "acked",
        "consumed",
        "lost",
        "late",
        "dup",
        "reord",
        "abort",
        "p50 ms",
        "p99 ms",
        "avail"
    ));
    for lane in lanes {
        for (i, window) in lane.windows.iter().enumerate() {
            let name = if i == 0 {
                format!("{} (run {})", lane.lane, lane.run)
            } else {
                String::new()
            };
            out.push_str(&row(&name, window));
            out.push('\n');
        }
    }
    out
}

/// One line per lane with the whole run's figures, for a log.
pub fn lines(elapsed_ms: u64, lanes: &[LaneSummary]) -> String {
    let mut out = String::new();
    for lane in lanes {
        let w = lane.window(Window::SinceStart);
        out.push_str(&format!(
            "audit {}s {}: sent {} acked {} consumed {} lost {} late {} duplicated {} reordered {} aborted_read {} pending {} p50 {} ms p99 {} ms availability {}\n",
            elapsed_ms / 1000,
            lane.lane,
            w.get(Outcome::Sent),
            w.get(Outcome::Acked),
            w.get(Outcome::Consumed),
            w.get(Outcome::Lost),
            w.get(Outcome::Late),
            w.get(Outcome::Duplicated),
            w.get(Outcome::Reordered),
            w.get(Outcome::AbortedRead),
            lane.pending,
            latency(w.latency_p50_ms),
            latency(w.latency_p99_ms),
            availability(w.availability),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::{LaneState, Limits};
    use crate::stamp::{Lane, Stamp};
    use expect_test::expect;

    fn lanes() -> Vec<LaneSummary> {
        let limits = Limits {
            grace_ms: 10,
            ack_timeout_ms: 10,
        };
        let mut lane = LaneState::new(Lane::AtLeastOnce, 2, limits, 0);
        for seq in 0..3 {
            lane.sent(seq, seq);
            lane.acked(seq, true, seq + 1);
        }
        for seq in [0, 1, 1] {
            let stamp = Stamp {
                lane: Lane::AtLeastOnce,
                run: 2,
                seq,
                sent_ms: 0,
            };
            lane.consumed(Some(&stamp), true, 4);
        }
        lane.tick(70_000);
        vec![lane.summary(70_000)]
    }

    #[test]
    fn table_and_lines() {
        let header = Header {
            bootstrap: "127.0.0.1:9092",
            rate_per_second: 100,
            grace_ms: 10_000,
            elapsed_ms: 70_000,
        };
        expect![[r#"
            ferry audit  127.0.0.1:9092  100/s per lane  grace 10000 ms  up 70 s
            lane                              win      sent    acked consumed   lost   late    dup  reord  abort  p50 ms  p99 ms    avail
            at-least-once (run 2)             1m          0        0        0      1      0      0      0      0       -       -        -
                                              15m         3        3        3      1      0      1      0      0       3       4  100.00%
                                              all         3        3        3      1      0      1      0      0       3       4  100.00%
        "#]]
        .assert_eq(&table(&header, &lanes()));
        expect![[r#"
            audit 70s at-least-once: sent 3 acked 3 consumed 3 lost 1 late 0 duplicated 1 reordered 0 aborted_read 0 pending 0 p50 3 ms p99 4 ms availability 100.00%
        "#]]
        .assert_eq(&lines(70_000, &lanes()));
    }
}
