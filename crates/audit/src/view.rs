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

/// The figures of the table's columns after the window, and of a log line, in this order.
const FIGURES: [&str; 11] = [
    "sent", "acked", "consumed", "lost", "late", "dup", "reord", "abrt-rd", "p50 ms", "p99 ms",
    "avail",
];

fn figures(w: &WindowSummary) -> [String; 11] {
    let count = |outcome| w.get(outcome).to_string();
    [
        count(Outcome::Sent),
        count(Outcome::Acked),
        count(Outcome::Consumed),
        count(Outcome::Lost),
        count(Outcome::Late),
        count(Outcome::Duplicated),
        count(Outcome::Reordered),
        count(Outcome::AbortedRead),
        latency(w.latency_p50_ms),
        latency(w.latency_p99_ms),
        availability(w.availability),
    ]
}

/// One table line: the lane (or nothing), the window, then the figures right-aligned.
fn row(lane: &str, window: &str, figures: &[String]) -> String {
    let widths = [8, 8, 8, 6, 6, 6, 6, 7, 7, 7, 8];
    let mut out = format!("{lane:<33} {window:<4}");
    for (figure, width) in figures.iter().zip(widths) {
        out.push_str(&format!(" {figure:>width$}"));
    }
    out
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
    let titles = FIGURES.map(String::from);
    out.push_str(&row("lane", "win", &titles));
    out.push('\n');
    for lane in lanes {
        for (i, window) in lane.windows.iter().enumerate() {
            let name = if i == 0 {
                format!("{} (run {})", lane.lane, lane.run)
            } else {
                String::new()
            };
            out.push_str(&row(&name, window.window.name(), &figures(window)));
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
        let named: Vec<String> = FIGURES
            .iter()
            .zip(figures(w))
            .map(|(name, figure)| format!("{name} {figure}"))
            .collect();
        out.push_str(&format!(
            "audit {}s {}: {}, pending {}\n",
            elapsed_ms / 1000,
            lane.lane,
            named.join(", "),
            lane.pending
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::scripted;
    use crate::stamp::Lane;
    use expect_test::expect;

    fn lanes() -> Vec<LaneSummary> {
        let sent = [(0, 0), (1, 1), (2, 2)];
        let consumed = [(0, 4), (1, 4), (1, 4)];
        vec![scripted(Lane::AtLeastOnce, 2, &sent, &consumed, 70_000)]
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
            lane                              win      sent    acked consumed   lost   late    dup  reord abrt-rd  p50 ms  p99 ms    avail
            at-least-once (run 2)             1m          0        0        0      1      0      0      0       0       -       -        -
                                              15m         3        3        3      1      0      1      0       0       3       4  100.00%
                                              all         3        3        3      1      0      1      0       0       3       4  100.00%
        "#]]
        .assert_eq(&table(&header, &lanes()));
        expect![[r#"
            audit 70s at-least-once: sent 3, acked 3, consumed 3, lost 1, late 0, dup 1, reord 0, abrt-rd 0, p50 ms 3, p99 ms 4, avail 100.00%, pending 0
        "#]]
        .assert_eq(&lines(70_000, &lanes()));
    }
}
