//! The auditor's Prometheus families, built from the lanes' summaries when `/metrics` is
//! scraped (the same figures the terminal view shows):
//!
//! - `ferry_audit_records_total{lane, outcome}` (counter): records by outcome since the
//!   auditor started (`sent`, `acked`, `send_failed`, `consumed`, `lost`, `late`, `duplicated`,
//!   `reordered`, `aborted_read`, `dedup_skipped`, `available`, `unavailable`, `earlier_run`,
//!   `stale`, `phantom`);
//! - `ferry_audit_window_records{lane, window, outcome}` (gauge): the same over the sliding
//!   windows `1m` and `15m` (and `all`);
//! - `ferry_audit_latency_seconds{lane, window, percentile}` (gauge): send to first
//!   consumption, percentiles `50` and `99` (not a `quantile` label: Prometheus keeps that
//!   for summaries, and promtool refuses it on a gauge; a summary's count and sum would not
//!   be counters over a sliding window);
//! - `ferry_audit_availability_ratio{lane, window}` (gauge): sends acknowledged within the
//!   acknowledgement timeout over sends judged;
//! - `ferry_audit_pending_records{lane}` (gauge): expected, not yet seen, within the grace;
//! - `ferry_audit_run{lane}` (gauge): the auditor run the lane counts;
//! - `ferry_audit_client_restarts_total{lane, client}` (counter): a lane's producer or
//!   consumer replaced after a fatal error (a fenced consumer, a transaction of unknown end).

use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::lane::LaneSummary;
use crate::window::Outcome;

/// The families for `lanes`, fresh for one scrape.
/// Every family `families` exports (the docs and the Grafana dashboard are checked against it).
pub const NAMES: [&str; 7] = [
    "ferry_audit_records_total",
    "ferry_audit_window_records",
    "ferry_audit_latency_seconds",
    "ferry_audit_availability_ratio",
    "ferry_audit_pending_records",
    "ferry_audit_run",
    "ferry_audit_client_restarts_total",
];

pub fn families(lanes: &[LaneSummary]) -> Vec<MetricFamily> {
    let registry = Registry::new();
    let records = IntCounterVec::new(
        Opts::new(
            "ferry_audit_records_total",
            "Audit records by lane and outcome since the auditor started.",
        ),
        &["lane", "outcome"],
    )
    .expect("valid metric");
    let window_records = IntGaugeVec::new(
        Opts::new(
            "ferry_audit_window_records",
            "Audit records by lane and outcome over a sliding window.",
        ),
        &["lane", "window", "outcome"],
    )
    .expect("valid metric");
    let latency = GaugeVec::new(
        Opts::new(
            "ferry_audit_latency_seconds",
            "Send to first consumption of audit records, by quantile over a sliding window.",
        ),
        &["lane", "window", "percentile"],
    )
    .expect("valid metric");
    let availability = GaugeVec::new(
        Opts::new(
            "ferry_audit_availability_ratio",
            "Sends acknowledged within the acknowledgement timeout over sends judged.",
        ),
        &["lane", "window"],
    )
    .expect("valid metric");
    let pending = IntGaugeVec::new(
        Opts::new(
            "ferry_audit_pending_records",
            "Expected audit records not yet seen and still within the grace window.",
        ),
        &["lane"],
    )
    .expect("valid metric");
    let run = IntGaugeVec::new(
        Opts::new("ferry_audit_run", "The auditor run a lane counts."),
        &["lane"],
    )
    .expect("valid metric");
    let restarts = IntCounterVec::new(
        Opts::new(
            "ferry_audit_client_restarts_total",
            "A lane's producer or consumer replaced after a fatal error.",
        ),
        &["lane", "client"],
    )
    .expect("valid metric");
    for lane in lanes {
        let name = lane.lane.name();
        for (client, n) in &lane.restarts {
            restarts
                .with_label_values(&[name, client.name()])
                .inc_by(*n);
        }
        pending.with_label_values(&[name]).set(lane.pending as i64);
        run.with_label_values(&[name]).set(lane.run as i64);
        for window in &lane.windows {
            let w = window.window.name();
            for outcome in Outcome::ALL {
                let n = window.get(outcome);
                window_records
                    .with_label_values(&[name, w, outcome.name()])
                    .set(n as i64);
                if window.window == crate::window::Window::SinceStart {
                    records.with_label_values(&[name, outcome.name()]).inc_by(n);
                }
            }
            for (percentile, ms) in [("50", window.latency_p50_ms), ("99", window.latency_p99_ms)] {
                if let Some(ms) = ms {
                    latency
                        .with_label_values(&[name, w, percentile])
                        .set(ms as f64 / 1000.0);
                }
            }
            if let Some(ratio) = window.availability {
                availability.with_label_values(&[name, w]).set(ratio);
            }
        }
    }
    for collector in [
        Box::new(records) as Box<dyn prometheus::core::Collector>,
        Box::new(window_records),
        Box::new(latency),
        Box::new(availability),
        Box::new(pending),
        Box::new(run),
        Box::new(restarts),
    ] {
        registry.register(collector).expect("names do not repeat");
    }
    registry.gather()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::{scripted, Client};
    use crate::stamp::Lane;

    #[test]
    fn names_lists_every_family() {
        let mut lane = scripted(Lane::AtLeastOnce, 3, &[(0, 0)], &[(0, 5), (0, 6)], 100);
        lane.restarts.insert(Client::Consumer, 2);
        let mut exported: Vec<String> = families(&[lane])
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        exported.sort();
        let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(exported, names);
    }

    #[test]
    fn families_render_in_the_text_format() {
        let mut lane = scripted(Lane::AtLeastOnce, 3, &[(0, 0)], &[(0, 5), (0, 6)], 100);
        lane.restarts.insert(Client::Consumer, 2);
        let families = families(&[lane]);
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &families, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            "# TYPE ferry_audit_records_total counter",
            r#"ferry_audit_records_total{lane="at-least-once",outcome="duplicated"} 1"#,
            r#"ferry_audit_records_total{lane="at-least-once",outcome="consumed"} 2"#,
            r#"ferry_audit_records_total{lane="at-least-once",outcome="sent"} 1"#,
            r#"ferry_audit_latency_seconds{lane="at-least-once",percentile="99",window="1m"} 0.005"#,
            r#"ferry_audit_availability_ratio{lane="at-least-once",window="all"} 1"#,
            r#"ferry_audit_run{lane="at-least-once"} 3"#,
            r#"ferry_audit_client_restarts_total{client="consumer",lane="at-least-once"} 2"#,
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
