//! The HTML report: one self-contained file (inline CSS and SVG, no script, no external asset)
//! with the seed's summary table, and per fault profile its table, bar charts of loss,
//! duplicates, latency and throughput, and a timeline of each run with its faults.

use std::fmt::Write;

use crate::check::Timeline;
use crate::report::table::{figure_cell, latency_cell, ms, rate, rate_cell};
use crate::results::{LabResults, ProfileResult, RowResult, Status, SummaryRow, Verdict};
use crate::workload::Row;

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #1d2430; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 2px solid #d8dde6; padding-bottom: 0.2em; }
p.meta, p.desc { color: #556; margin-top: 0.2em; }
table { border-collapse: collapse; width: 100%; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #e3e7ee; vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
tr.violated td { background: #fdecec; } tr.nofault td { background: #fff7e0; }
.verdict { font-weight: 600; white-space: nowrap; } .ok { color: #1b7a3d; } .bad { color: #b3261e; } .warn { color: #946200; } .muted { color: #778; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .charts svg { background: #fbfcfe; border: 1px solid #e3e7ee; max-width: 100%; height: auto; }
ul.notes { color: #445; font-size: 0.92em; } code { background: #f3f5f9; padding: 0 0.25em; }
"#;

/// Series colours by row.
pub(crate) fn colour(row: Row) -> &'static str {
    match row {
        Row::AtMostOnce => "#4e79a7",
        Row::AtLeastOnce => "#f28e2b",
        Row::AtLeastOnceIdempotent => "#59a14f",
        Row::ExactlyOnce => "#b07aa1",
        Row::SinkSqlite => "#76b7b2",
        Row::SinkPostgres => "#9c755f",
    }
}

/// Escapes text for HTML and SVG.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(results: &LabResults) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>ferry lab · seed {}</title><style>{STYLE}</style></head><body>\n",
        results.seed
    );
    let t = &results.target;
    let p = &results.params;
    let _ = write!(
        out,
        "<h1>ferry lab: delivery guarantees, measured</h1>\n<p class=\"meta\">{} run · seed \
         <code>{}</code> · {} broker <code>{}</code> through the chaos proxy <code>{}</code> · \
         transactions {} · {} build · {:.1} s</p>\n<p class=\"desc\">Each run sends {} records at {}/s \
         (latency is measured from send to processed on these), then {} as fast as the producer \
         takes them (throughput; {} in the baseline and cost-curve runs), over {} partitions, with \
         the fault active; then the faults stop and everything still in flight is drained before \
         the history is checked. Loops that commit after processing commit every {} ms.</p>\n",
        esc(&results.mode),
        results.seed,
        esc(&t.kind),
        esc(&t.broker),
        esc(&t.proxy),
        if t.transactions { "advertised" } else { "not advertised" },
        esc(&results.build),
        results.elapsed_ms as f64 / 1000.0,
        p.paced_records,
        p.rate_per_second,
        p.burst_records,
        p.baseline_burst_records.max(p.burst_records),
        p.partitions,
        p.commit_interval_ms,
    );
    out.push_str(&super::recommendation::html(results));
    summary(&mut out, results);
    out.push_str(&super::curve::html(results));
    for profile in &results.profiles {
        profile_section(&mut out, profile);
    }
    out.push_str(
        "<p class=\"meta\">Histories are Jepsen-style: invoke, then ok / fail / info, with the \
         faults as nemesis operations. The raw results are the JSON written by <code>ferry lab \
         --json</code>; the format is in <code>docs/lab.md</code>.</p>\n</body></html>\n",
    );
    out
}

fn summary(out: &mut String, results: &LabResults) {
    let _ = write!(
        out,
        "<h2>The seed's table, measured</h2>\n<p class=\"desc\">Across {} fault profiles; \
         latency and throughput without faults: with several baseline trials, their median ± half \
         their range, <code>~</code> marking a spread over 15%.</p>\n<table><tr><th>guarantee</th><th>data \
         loss?</th><th>duplicates?</th><th>p99 latency</th><th>records/s</th><th>mechanism</th>\
         <th>promises</th></tr>\n",
        results.profiles.len()
    );
    for s in &results.summary {
        if s.profiles_measured == 0 {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td colspan=\"6\" class=\"muted\">{}</td></tr>",
                esc(&s.label),
                esc(s.unmeasured_reason.as_deref().unwrap_or("not measured"))
            );
            continue;
        }
        let of = s.profiles_measured;
        let yes_no = |n: u64, profiles: u32| match n {
            0 => format!("no <span class=\"muted\">(0 in {of} profiles)</span>"),
            n => format!("yes: {n} <span class=\"muted\">in {profiles} of {of} profiles</span>"),
        };
        let promises = if s.violations == 0 {
            "<span class=\"verdict ok\">kept</span>".to_string()
        } else {
            format!(
                "<span class=\"verdict bad\">broken in {} profiles</span>",
                s.violations
            )
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{promises}</td></tr>",
            esc(&s.label),
            yes_no(s.lost, s.profiles_with_loss),
            yes_no(s.duplicated, s.profiles_with_duplicates),
            baseline_p99(s),
            baseline_rate(s),
            esc(&s.mechanism),
        );
    }
    out.push_str("</table>\n");
}

/// The baseline's p99: with trials, their median ± spread (`~` when wide).
fn baseline_p99(s: &SummaryRow) -> String {
    match s.baseline_spread.as_ref().and_then(|t| t.p99_us.as_ref()) {
        Some(figure) => esc(&figure_cell(Some(figure), |us| {
            format!("{} ms", ms(us as u64))
        })),
        None => s
            .baseline_latency
            .as_ref()
            .map_or("-".to_string(), |l| format!("{} ms", ms(l.p99_us))),
    }
}

/// The baseline's records/s: with trials, their median ± spread (`~` when wide).
fn baseline_rate(s: &SummaryRow) -> String {
    match s
        .baseline_spread
        .as_ref()
        .and_then(|t| t.per_second.as_ref())
    {
        Some(figure) => esc(&figure_cell(Some(figure), rate)),
        None => rate_cell(s.baseline_throughput.as_ref()),
    }
}

fn profile_section(out: &mut String, profile: &ProfileResult) {
    let _ = write!(
        out,
        "<section><h2>{}</h2>\n<p class=\"desc\">{}</p>\n<table><tr><th>guarantee</th>\
         <th>use case</th><th>data loss</th><th>duplicates</th><th>reordered</th>\
         <th>p50 / p99 / p99.9 ms</th><th>records/s</th><th>mechanism</th><th>verdict</th></tr>\n",
        esc(&profile.title),
        esc(&profile.description)
    );
    for row in &profile.rows {
        row_html(out, row);
    }
    out.push_str("</table>\n");
    let measured: Vec<&RowResult> = profile.rows.iter().filter(|r| r.counts.is_some()).collect();
    if !measured.is_empty() {
        out.push_str("<div class=\"charts\">\n");
        out.push_str(&counts_chart(&measured));
        out.push_str(&latency_chart(&measured));
        out.push_str(&throughput_chart(&measured));
        out.push_str("</div>\n<div class=\"charts\">\n");
        for row in &measured {
            if let (true, Some(timeline)) = (row.row == row.row.run_row(), &row.timeline) {
                out.push_str(&timeline_chart(&row.label, row.row, timeline));
            }
        }
        out.push_str("</div>\n");
    }
    let mut notes = Vec::new();
    for row in &profile.rows {
        if row.row != row.row.run_row() {
            continue;
        }
        if let Some(faults) = &row.faults {
            let kinds = faults.listed();
            let injected = if kinds.is_empty() {
                "nothing".into()
            } else {
                kinds.join(", ")
            };
            notes.push(format!("injected into the {} run: {injected}", row.label));
        }
        for note in &row.notes {
            notes.push(format!("{}: {note}", row.label));
        }
    }
    if !notes.is_empty() {
        out.push_str("<ul class=\"notes\">");
        for note in notes {
            let _ = write!(out, "<li>{}</li>", esc(&note));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn row_html(out: &mut String, row: &RowResult) {
    let Some(counts) = &row.counts else {
        let status = match &row.status {
            Status::Measured => "measured".to_string(),
            Status::NotApplicable { reason } => format!("not applicable: {reason}"),
            Status::Skipped { reason } => format!("skipped: {reason}"),
            Status::NeedsTransactions { reason } => reason.clone(),
            Status::Failed { error } => format!("failed: {error}"),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td colspan=\"7\" class=\"muted\">{}</td></tr>",
            esc(&row.label),
            esc(&row.workload),
            esc(&status)
        );
        return;
    };
    let (class, verdict) = match &row.verdict {
        Verdict::Holds => (
            "",
            "<span class=\"verdict ok\">promise kept</span>".to_string(),
        ),
        Verdict::Baseline => ("", "<span class=\"verdict ok\">baseline</span>".to_string()),
        Verdict::Violated { reasons } => (
            " class=\"violated\"",
            format!(
                "<span class=\"verdict bad\">broken: {}</span>",
                esc(&reasons.join(", "))
            ),
        ),
        Verdict::NoFaultInjected => (
            " class=\"nofault\"",
            "<span class=\"verdict warn\">no fault injected</span>".to_string(),
        ),
        Verdict::NotMeasured => ("", String::new()),
    };
    let duplicates = if row.row == Row::AtLeastOnceIdempotent && counts.dedup_skipped > 0 {
        format!(
            "{} <span class=\"muted\">({} caught by dedup)</span>",
            counts.duplicated, counts.dedup_skipped
        )
    } else {
        counts.duplicated.to_string()
    };
    let _ = writeln!(
        out,
        "<tr{class}><td>{}</td><td>{}</td><td class=\"num\">{} <span class=\"muted\">of {}</span></td>\
         <td class=\"num\">{duplicates}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td>{}</td><td>{verdict}</td></tr>",
        esc(&row.label),
        esc(&row.workload),
        counts.lost,
        counts.expected,
        counts.reordered,
        latency_cell(row.latency.as_ref()),
        rate_cell(row.throughput.as_ref()),
        esc(&row.mechanism),
    );
}

/// Horizontal bars, one group per row, one bar per series.
fn bar_chart(
    title: &str,
    unit: &str,
    rows: &[&RowResult],
    series: &[(&str, &str, Vec<f64>)],
) -> String {
    let (width, label_w, bar_h, gap) = (340.0, 150.0, 12.0, 10.0);
    let group_h = bar_h * series.len() as f64 + gap;
    let height = 40.0 + group_h * rows.len() as f64 + 20.0;
    let max = series
        .iter()
        .flat_map(|(_, _, values)| values.iter().copied())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 {
        (width - label_w - 60.0) / max
    } else {
        0.0
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\">\
         <text x=\"10\" y=\"20\" font-size=\"13\" font-weight=\"600\">{}</text>",
        esc(title),
        esc(title)
    );
    for (i, row) in rows.iter().enumerate() {
        let y0 = 34.0 + group_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"10\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            y0 + bar_h,
            esc(&row.label)
        );
        for (k, (_, colour, values)) in series.iter().enumerate() {
            let value = values[i];
            let y = y0 + bar_h * k as f64;
            let w = (value * scale).max(if value > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                svg,
                "<rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#333\">{}</text>",
                bar_h - 2.0,
                label_w + w + 4.0,
                y + bar_h - 3.0,
                esc(&number(value, unit))
            );
        }
    }
    let mut x = 10.0;
    let legend_y = height - 8.0;
    for (name, colour, _) in series {
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\" font-size=\"11\">{}</text>",
            legend_y - 9.0,
            x + 14.0,
            esc(name)
        );
        x += 20.0 + 7.0 * name.len() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

fn number(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{} ms", ms((value * 1000.0) as u64)),
        "rec/s" => format!("{}/s", crate::report::table::rate(value)),
        _ => format!("{value:.0}"),
    }
}

fn counts_chart(rows: &[&RowResult]) -> String {
    let lost = rows
        .iter()
        .map(|r| r.counts.as_ref().map_or(0.0, |c| c.lost as f64))
        .collect();
    let dups = rows
        .iter()
        .map(|r| r.counts.as_ref().map_or(0.0, |c| c.duplicated as f64))
        .collect();
    bar_chart(
        "records lost and duplicated",
        "",
        rows,
        &[("lost", "#d1495b", lost), ("duplicated", "#edae49", dups)],
    )
}

fn latency_chart(rows: &[&RowResult]) -> String {
    let pick = |f: fn(&crate::check::Latency) -> u64| -> Vec<f64> {
        rows.iter()
            .map(|r| r.latency.as_ref().map_or(0.0, |l| f(l) as f64 / 1000.0))
            .collect()
    };
    bar_chart(
        "latency, send to processed",
        "ms",
        rows,
        &[
            ("p50", "#9ecae1", pick(|l| l.p50_us)),
            ("p99", "#4292c6", pick(|l| l.p99_us)),
            ("p99.9", "#08519c", pick(|l| l.p999_us)),
        ],
    )
}

fn throughput_chart(rows: &[&RowResult]) -> String {
    let rates = rows
        .iter()
        .map(|r| r.throughput.as_ref().map_or(0.0, |t| t.per_second))
        .collect();
    bar_chart(
        "throughput (burst)",
        "rec/s",
        rows,
        &[("records/s", "#59a14f", rates)],
    )
}

/// Records sent and processed so far, over the run: the gap between the two lines is what is in
/// flight, a flat stretch is a stall. Faults are red ticks below the axis; kills, crashes, fault
/// start and heal are labelled vertical lines.
fn timeline_chart(name: &str, row: Row, t: &Timeline) -> String {
    let (width, height, left, top, plot_h) = (520.0, 190.0, 44.0, 28.0, 120.0);
    let plot_w = width - left - 10.0;
    let n = t.processed.len().max(1) as f64;
    let total: u32 = t
        .sent
        .iter()
        .sum::<u32>()
        .max(t.processed.iter().sum())
        .max(1);
    let seconds = t.bucket_us as f64 * n / 1e6;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline {0}\">\
         <text x=\"10\" y=\"18\" font-size=\"13\" font-weight=\"600\">{0} run: records sent and \
         processed over {1:.1} s</text>",
        esc(name),
        seconds
    );
    let line = |counts: &[u32]| {
        let mut points = format!("{left:.1},{:.1} ", top + plot_h);
        let mut sum = 0u32;
        for (i, count) in counts.iter().enumerate() {
            sum += count;
            let x = left + plot_w * (i as f64 + 1.0) / n;
            let y = top + plot_h - plot_h * f64::from(sum) / f64::from(total);
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        points
    };
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#99a\"/>\
         <text x=\"4\" y=\"{2}\" font-size=\"10\">{3}</text><text x=\"4\" y=\"{0}\" font-size=\"10\">0</text>\
         <polyline fill=\"none\" stroke=\"#aab\" stroke-width=\"1.5\" stroke-dasharray=\"4,2\" points=\"{4}\"/>\
         <polyline fill=\"none\" stroke=\"{5}\" stroke-width=\"2\" points=\"{6}\"/>",
        top + plot_h,
        left + plot_w,
        top + 8.0,
        total,
        line(&t.sent),
        colour(row),
        line(&t.processed)
    );
    for (i, faults) in t.faults.iter().enumerate().filter(|(_, f)| **f > 0) {
        let x = left + plot_w * (i as f64 + 0.5) / n;
        let h = (4.0 + f64::from(*faults)).min(14.0);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{0:.1}\" x2=\"{x:.1}\" y2=\"{1:.1}\" stroke=\"#d1495b\"/>",
            top + plot_h + 2.0,
            top + plot_h + 2.0 + h
        );
    }
    for (k, (time_us, what)) in t.marks.iter().enumerate() {
        let x = left + plot_w * (*time_us as f64 / (t.bucket_us as f64 * n)).min(1.0);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{0}\" stroke=\"#555\" stroke-dasharray=\"3,2\"/>\
             <text x=\"{1:.1}\" y=\"{2:.1}\" font-size=\"9\" fill=\"#333\">{3}</text>",
            top + plot_h,
            x + 2.0,
            top + 10.0 + 10.0 * (k % 4) as f64,
            esc(what)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{0}\" font-size=\"10\"><tspan fill=\"#889\">dashed: sent</tspan> · \
         <tspan fill=\"{1}\">solid: processed</tspan> · <tspan fill=\"#d1495b\">red ticks: faults \
         injected</tspan></text></svg>",
        height - 8.0,
        colour(row)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_report_is_self_contained() {
        let html = render(&sample_results());
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<svg"));
        for external in ["src=\"http", "href=\"http", "<script", "@import", "url("] {
            assert!(!html.contains(external), "found {external}");
        }
        assert!(html.contains("needs transactions (not yet in this broker)"));
    }
}
