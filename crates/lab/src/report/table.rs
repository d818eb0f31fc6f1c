//! The terminal report: per fault profile the seed's table (guarantee, data loss, duplicates,
//! latency, throughput, mechanism) with measured numbers, then the seed's summary table across
//! profiles. Every line fits in 100 columns.

use std::fmt::Write;

use crate::check::{Counts, Latency, Throughput};
use crate::profile::Profile;
use crate::results::{LabResults, ProfileResult, RowResult, Status, SummaryRow, Verdict};
use crate::trials::{Figure, Spread};
use crate::workload::Row;

/// The widest line the report prints.
pub const COLUMNS_MAX: usize = 100;

const LABEL: usize = 21;
const LOST: usize = 10;
const DUPS: usize = 13;
const LATENCY: usize = 15;
const RATE: usize = 6;

/// The whole terminal report.
pub fn render(results: &LabResults) -> String {
    let mut out = String::new();
    let target = &results.target;
    let _ = writeln!(
        out,
        "ferry lab · {} · seed {} · {} broker {} via proxy {}",
        results.mode, results.seed, target.kind, target.broker, target.proxy
    );
    if results.build != "release" {
        let _ = writeln!(
            out,
            "{} build: latency and throughput are indicative only (measure a release build)",
            results.build
        );
    }
    let p = &results.params;
    let _ = writeln!(
        out,
        "each run: {} records at {}/s (latency), then {} as fast as possible (throughput), {} partitions",
        p.paced_records, p.rate_per_second, p.burst_records, p.partitions
    );
    if p.baseline_burst_records > p.burst_records {
        let _ = writeln!(
            out,
            "baseline and cost-curve runs: a burst of {}; commit interval {} ms",
            p.baseline_burst_records, p.commit_interval_ms
        );
    }
    for profile in &results.profiles {
        out.push('\n');
        render_profile(&mut out, profile);
    }
    out.push('\n');
    render_summary(&mut out, results);
    render_spread(&mut out, results);
    render_limits(&mut out, results);
    out.push_str(&super::curve::text(results));
    out
}

/// The baseline's figures over their trials, when the baseline ran more than once.
fn render_spread(out: &mut String, results: &LabResults) {
    let spreads: Vec<(&str, &Spread)> = results
        .summary
        .iter()
        .filter_map(|s| Some((s.label.as_str(), s.baseline_spread.as_ref()?)))
        .collect();
    let Some(trials) = spreads.iter().map(|(_, s)| s.trials.len()).max() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n━━ the baseline over {trials} trials ━━ median ± half the range; ~ marks a spread over {:.0}%",
        crate::trials::SPREAD_WIDE_PCT
    );
    let _ = writeln!(
        out,
        " {:<LABEL$} {:>14} {:>14} {:>14}",
        "guarantee", "rec/s", "p50 ms", "p99 ms"
    );
    for (label, spread) in spreads {
        let rate = figure_cell(spread.per_second.as_ref(), rate);
        let p50 = figure_cell(spread.p50_us.as_ref(), |us| ms(us as u64));
        let p99 = figure_cell(spread.p99_us.as_ref(), |us| ms(us as u64));
        let _ = writeln!(
            out,
            "{}",
            fit(&format!(" {label:<LABEL$} {rate:>14} {p50:>14} {p99:>14}"))
        );
    }
}

/// How much faster the producer's side must be than send-to-processed for the consuming side to
/// be named as the limit.
const CONSUMER_LIMITS_RATIO: f64 = 1.25;

/// Which side limits each baseline row's rate: records acknowledged per second (the producer and
/// the broker alone) beside records processed per second (end to end).
fn render_limits(out: &mut String, results: &LabResults) {
    let Some(baseline) = results.profiles.iter().find(|p| p.profile == Profile::None) else {
        return;
    };
    let lines: Vec<String> = baseline
        .rows
        .iter()
        .filter(|r| r.row == r.row.run_row())
        .filter_map(|r| {
            let (acked, processed) = (r.acked_throughput.as_ref()?, r.throughput.as_ref()?);
            let side = if acked.per_second >= processed.per_second * CONSUMER_LIMITS_RATIO {
                "the consuming side limits it"
            } else {
                "the producing side limits it"
            };
            Some(format!(
                " {:<LABEL$} acknowledged {:>7}/s, processed {:>7}/s: {side}",
                r.label,
                rate(acked.per_second),
                rate(processed.per_second)
            ))
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n━━ what limits the rate ━━ the burst acknowledged to the producer vs processed, no faults"
    );
    for line in lines {
        let _ = writeln!(out, "{}", fit(&line));
    }
}

/// A figure as "212.0k ±4%", with "~" in front when its spread is wide.
pub fn figure_cell(figure: Option<&Figure>, show: impl Fn(f64) -> String) -> String {
    match figure {
        None => "-".into(),
        Some(f) => {
            let mark = if f.is_wide() { "~" } else { "" };
            format!("{mark}{} ±{:.0}%", show(f.median), f.spread_pct)
        }
    }
}

fn render_profile(out: &mut String, profile: &ProfileResult) {
    let _ = writeln!(
        out,
        "{}",
        fit(&format!("━━ {} ━━ {}", profile.title, profile.description))
    );
    let _ = writeln!(
        out,
        " {:<LABEL$} {:<LOST$} {:<DUPS$} {:<LATENCY$} {:>RATE$} mechanism",
        "guarantee", "data loss", "duplicates", "p50/p99/p999 ms", "rec/s"
    );
    for row in &profile.rows {
        let _ = writeln!(out, "{}", fit(&row_line(row)));
    }
    for line in footnotes(profile) {
        let _ = writeln!(out, "{}", fit(&line));
    }
}

fn row_line(row: &RowResult) -> String {
    let mark = match &row.verdict {
        Verdict::Violated { .. } => '✗',
        Verdict::NoFaultInjected => '?',
        _ => ' ',
    };
    let label = row.label.as_str();
    let Some(counts) = &row.counts else {
        let status = match &row.status {
            Status::Measured => "measured, no counts".to_string(),
            Status::NotApplicable { reason } => format!("n/a: {reason}"),
            Status::Skipped { reason } => format!("skipped: {reason}"),
            Status::NeedsTransactions { reason } => reason.clone(),
            Status::Failed { error } => format!("FAILED: {error}"),
        };
        return format!("{mark}{label:<LABEL$} {status}");
    };
    format!(
        "{mark}{label:<LABEL$} {:<LOST$} {:<DUPS$} {:<LATENCY$} {:>RATE$} {}",
        loss_cell(counts),
        duplicates_cell(row.row, counts),
        latency_cell(row.latency.as_ref()),
        rate_cell(row.throughput.as_ref()),
        row.mechanism
    )
}

fn loss_cell(counts: &Counts) -> String {
    with_share(counts.lost, counts.expected)
}

fn duplicates_cell(row: Row, counts: &Counts) -> String {
    if row == Row::AtLeastOnceIdempotent && counts.dedup_skipped > 0 {
        return format!(
            "{} ({} dedup)",
            counts.duplicated,
            compact(counts.dedup_skipped)
        );
    }
    with_share(counts.duplicated, counts.processed)
}

/// A count in at most four characters: "37", "1106" stays, "12.3k".
fn compact(n: u64) -> String {
    if n < 10_000 {
        n.to_string()
    } else {
        format!("{:.1}k", n as f64 / 1000.0)
    }
}

/// `n` and its share of `of`: "0", "12 0.40%".
fn with_share(n: u64, of: u64) -> String {
    if n == 0 || of == 0 {
        return n.to_string();
    }
    let pct = n as f64 * 100.0 / of as f64;
    if pct < 10.0 {
        format!("{n} {pct:.2}%")
    } else {
        format!("{n} {pct:.0}%")
    }
}

pub fn latency_cell(latency: Option<&Latency>) -> String {
    match latency {
        None => "-".into(),
        Some(l) => format!("{}/{}/{}", ms(l.p50_us), ms(l.p99_us), ms(l.p999_us)),
    }
}

/// Microseconds as milliseconds in at most four characters: "0.4", "12", "1.2s".
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}")
    } else if ms < 1000.0 {
        format!("{ms:.0}")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

pub fn rate_cell(throughput: Option<&Throughput>) -> String {
    match throughput {
        None => "-".into(),
        Some(t) => rate(t.per_second),
    }
}

/// Records per second in at most six characters: "980", "45.1k", "1.20M".
pub fn rate(per_second: f64) -> String {
    if per_second < 1000.0 {
        format!("{per_second:.0}")
    } else if per_second < 1_000_000.0 {
        format!("{:.1}k", per_second / 1000.0)
    } else {
        format!("{:.2}M", per_second / 1_000_000.0)
    }
}

/// What was injected into each run, and why a row is marked.
fn footnotes(profile: &ProfileResult) -> Vec<String> {
    let mut lines = Vec::new();
    for row in &profile.rows {
        // Rows of one run share faults; name them once, on the run's own row.
        if row.row != row.row.run_row() {
            continue;
        }
        if let Some(faults) = &row.faults {
            if faults.injected == 0 && !faults.by_kind.is_empty() {
                continue;
            }
            let kinds = faults.listed();
            let injected = if kinds.is_empty() {
                "nothing".to_string()
            } else {
                format!("{} faults: {}", faults.injected, kinds.join(", "))
            };
            lines.push(format!("   injected into {}: {injected}", row.label));
        }
    }
    for row in &profile.rows {
        match &row.verdict {
            Verdict::Violated { reasons } => lines.push(format!(
                "   ✗ {}: promise broken: {}",
                row.label,
                reasons.join(", ")
            )),
            Verdict::NoFaultInjected => lines.push(format!(
                "   ? {}: the profile injected no fault, so this row shows nothing",
                row.label
            )),
            _ => {}
        }
        if row.row == row.row.run_row() {
            for note in &row.notes {
                lines.push(format!("   note ({}): {note}", row.label));
            }
        }
    }
    lines
}

fn render_summary(out: &mut String, results: &LabResults) {
    let measured = results.profiles.len();
    let _ = writeln!(
        out,
        "━━ the seed's table, measured ━━ across {measured} fault profiles; latency and rate without faults"
    );
    let _ = writeln!(
        out,
        " {:<LABEL$} {:<20} {:<20} {:>7} {:>7}  complexity",
        "guarantee", "data loss?", "duplicates?", "p99 ms", "rec/s"
    );
    for summary in &results.summary {
        let _ = writeln!(out, "{}", fit(&summary_line(summary)));
    }
}

fn summary_line(s: &SummaryRow) -> String {
    let mark = if s.violations > 0 { '✗' } else { ' ' };
    let label = s.label.as_str();
    if s.profiles_measured == 0 {
        let reason = s.unmeasured_reason.as_deref().unwrap_or("not measured");
        return format!("{mark}{label:<LABEL$} {reason}");
    }
    let of = s.profiles_measured;
    let loss = match s.lost {
        0 => format!("no (0 in {of})"),
        n => format!("yes: {n} in {} of {of}", s.profiles_with_loss),
    };
    let duplicates = match s.duplicated {
        0 => format!("no (0 in {of})"),
        n => format!("yes: {n} in {} of {of}", s.profiles_with_duplicates),
    };
    // With trials, the medians of each figure, "~" marking a wide spread.
    let spread = s.baseline_spread.as_ref();
    let median = |figure: Option<&Figure>, show: &dyn Fn(f64) -> String| {
        figure.map(|f| format!("{}{}", if f.is_wide() { "~" } else { "" }, show(f.median)))
    };
    let p99 = median(spread.and_then(|s| s.p99_us.as_ref()), &|us| ms(us as u64))
        .or_else(|| s.baseline_latency.as_ref().map(|l| ms(l.p99_us)))
        .unwrap_or_else(|| "-".into());
    let per_second = median(spread.and_then(|s| s.per_second.as_ref()), &rate)
        .unwrap_or_else(|| rate_cell(s.baseline_throughput.as_ref()));
    format!(
        "{mark}{label:<LABEL$} {loss:<20} {duplicates:<20} {p99:>7} {per_second:>7}  {}",
        complexity(s.row)
    )
}

/// The seed's own word for each guarantee's complexity.
fn complexity(row: Row) -> &'static str {
    match row {
        Row::AtMostOnce => "simple",
        Row::AtLeastOnce => "moderate",
        Row::AtLeastOnceIdempotent => "moderate + dedup",
        Row::ExactlyOnce => "high",
        Row::SinkSqlite | Row::SinkPostgres => "high (library)",
    }
}

/// Cuts a line to [`COLUMNS_MAX`] characters, marking the cut.
pub(crate) fn fit(line: &str) -> String {
    let line = line.trim_end();
    if line.chars().count() <= COLUMNS_MAX {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(COLUMNS_MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;

    #[test]
    fn every_line_fits_in_100_columns() {
        let text = render(&sample_results());
        for line in text.lines() {
            assert!(
                line.chars().count() <= COLUMNS_MAX,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn the_table_reads() {
        expect_test::expect![[r#"
            ferry lab · quick · seed 7 · embedded broker 127.0.0.1:1 via proxy 127.0.0.1:2
            each run: 600 records at 2000/s (latency), then 3000 as fast as possible (throughput), 3 partitions

            ━━ lost acks ━━ the proxy loses 8% of produce/commit responses, resetting the connection
             guarantee             data loss  duplicates    p50/p99/p999 ms  rec/s mechanism
             at-most-once          12 0.33%   0             2.1/8.0/12       45.1k acks=0 · commit, then process
             at-least-once         0          37 1.03%      3.4/15/1.2s      30.2k acks=all+retry · commit after
             + idempotent consumer 0          0 (37 dedup)  3.4/15/1.2s      30.2k + dedup store by message id
             exactly-once          needs transactions (not yet in this broker)
               injected into at-most-once: 4 faults: 4 × drop_frame offset_commit response
               injected into at-least-once: 41 faults: 41 × drop_frame produce response

            ━━ the seed's table, measured ━━ across 1 fault profiles; latency and rate without faults
             guarantee             data loss?           duplicates?           p99 ms   rec/s  complexity
             at-most-once          yes: 12 in 1 of 1    no (0 in 1)                -       -  simple
             at-least-once         no (0 in 1)          yes: 37 in 1 of 1          -       -  moderate
             + idempotent consumer no (0 in 1)          no (0 in 1)                -       -  moderate + dedup
             exactly-once          needs transactions (not yet in this broker)
             sink → SQLite         not measured
             sink → PostgreSQL     not measured

            ━━ the cost curve ━━ no faults; rec/s and p99 ms by commit interval (--commit-interval)
             guarantee                      10 ms         100 ms        1000 ms
             at-least-once              200.0k 15     240.0k 105    280.0k 1.0s
             exactly-once               150.0k 15     180.0k 105    210.0k 1.0s
        "#]]
        .assert_eq(&render(&sample_results()));
    }

    #[test]
    fn units_as_data() {
        let cases = [
            (400, "0.4"),
            (2_100, "2.1"),
            (15_000, "15"),
            (1_234_000, "1.2s"),
        ];
        for (us, expected) in cases {
            assert_eq!(ms(us), expected);
        }
        let cases = [(980.0, "980"), (45_123.0, "45.1k"), (1_200_000.0, "1.20M")];
        for (per_second, expected) in cases {
            assert_eq!(rate(per_second), expected);
        }
        assert_eq!(with_share(12, 3600), "12 0.33%");
        assert_eq!(with_share(0, 3600), "0");
        assert_eq!(with_share(500, 1000), "500 50%");
    }
}
