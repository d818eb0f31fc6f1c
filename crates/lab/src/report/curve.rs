//! The cost curve in both reports: a terminal table (rate and p99 per commit interval) and, in
//! the HTML page, a table and two line charts (throughput and p99 latency against the commit
//! interval, on a logarithmic axis).

use std::fmt::Write;

use crate::curve::{of_row, CurvePoint, ROWS};
use crate::report::html::{colour, esc};
use crate::report::table::{fit, ms, rate};
use crate::results::LabResults;

const LABEL: usize = 21;
const CELL: usize = 14;

/// The intervals measured, in order.
fn intervals(points: &[CurvePoint]) -> Vec<u64> {
    let mut intervals: Vec<u64> = points.iter().map(|p| p.commit_interval_ms).collect();
    intervals.sort_unstable();
    intervals.dedup();
    intervals
}

/// "212.0k 9.1": records/s and p99 ms of one point.
fn cell(point: Option<&&CurvePoint>) -> String {
    match point {
        Some(CurvePoint {
            per_second: Some(per_second),
            p99_us,
            ..
        }) => format!("{} {}", rate(*per_second), p99_us.map_or("-".into(), ms)),
        _ => "-".into(),
    }
}

/// The terminal section; empty when no curve was measured.
pub fn text(results: &LabResults) -> String {
    let points = &results.cost_curve;
    if points.is_empty() {
        return String::new();
    }
    let intervals = intervals(points);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n━━ the cost curve ━━ no faults; rec/s and p99 ms by commit interval (--commit-interval)"
    );
    let mut header = format!(" {:<LABEL$}", "guarantee");
    for ms in &intervals {
        let _ = write!(header, " {:>CELL$}", format!("{ms} ms"));
    }
    let _ = writeln!(out, "{}", fit(&header));
    for row in ROWS {
        let of_row = of_row(points, row);
        if of_row.is_empty() {
            continue;
        }
        let mut line = format!(" {:<LABEL$}", row.label());
        for ms in &intervals {
            let point = of_row.iter().find(|p| p.commit_interval_ms == *ms);
            let _ = write!(line, " {:>CELL$}", cell(point));
        }
        let _ = writeln!(out, "{}", fit(&line));
    }
    out
}

/// The HTML section; empty when no curve was measured.
pub fn html(results: &LabResults) -> String {
    let points = &results.cost_curve;
    if points.is_empty() {
        return String::new();
    }
    let intervals = intervals(points);
    let mut out = String::from(
        "<h2>The cost curve</h2>\n<p class=\"desc\">No faults. Each guarantee that commits after \
         processing, at each commit interval (<code>--commit-interval</code>): a short interval \
         pays a synchronous commit often; a long one makes transactional records wait for their \
         commit before a reader sees them.</p>\n<table><tr><th>guarantee</th>",
    );
    for ms in &intervals {
        let _ = write!(out, "<th>{ms} ms: rec/s · p50 · p99</th>");
    }
    out.push_str("</tr>\n");
    for row in ROWS {
        let of_row = of_row(points, row);
        if of_row.is_empty() {
            continue;
        }
        let _ = write!(out, "<tr><td>{}</td>", esc(row.label()));
        for ms in &intervals {
            let point = of_row.iter().find(|p| p.commit_interval_ms == *ms);
            let text = match point {
                Some(p) if p.per_second.is_some() => format!(
                    "{} · {} · {} ms",
                    rate(p.per_second.unwrap_or_default()),
                    p.p50_us.map_or("-".into(), ms_of),
                    p.p99_us.map_or("-".into(), ms_of)
                ),
                Some(p) => p.unmeasured.clone().unwrap_or_else(|| "-".into()),
                None => "-".into(),
            };
            let _ = write!(out, "<td class=\"num\">{}</td>", esc(&text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<div class=\"charts\">");
    out.push_str(&chart("records per second", points, &intervals, |p| {
        p.per_second
    }));
    out.push_str(&chart("p99 latency, ms", points, &intervals, |p| {
        p.p99_us.map(|us| us as f64 / 1000.0)
    }));
    out.push_str("</div>\n");
    out
}

fn ms_of(us: u64) -> String {
    ms(us)
}

/// A line chart of `value` against the commit interval (log scale), one line per row.
fn chart(
    title: &str,
    points: &[CurvePoint],
    intervals: &[u64],
    value: impl Fn(&CurvePoint) -> Option<f64>,
) -> String {
    let (width, height, left, right, top, bottom) = (480.0, 260.0, 56.0, 36.0, 30.0, 64.0);
    let max = points.iter().filter_map(&value).fold(0.0_f64, f64::max);
    let (lo, hi) = (
        (*intervals.first().unwrap_or(&1) as f64).max(1.0).ln(),
        (*intervals.last().unwrap_or(&1) as f64).max(1.0).ln(),
    );
    let x = |ms: u64| {
        let span = (hi - lo).max(f64::EPSILON);
        left + ((ms as f64).max(1.0).ln() - lo) / span * (width - left - right)
    };
    let y = |v: f64| top + (1.0 - if max > 0.0 { v / max } else { 0.0 }) * (height - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{0}\">\
         <text x=\"10\" y=\"20\" font-size=\"13\" font-weight=\"600\">{0}</text>\
         <text x=\"10\" y=\"{1:.1}\" font-size=\"10\">{2}</text>",
        esc(title),
        y(max) + 4.0,
        esc(&axis_number(max))
    );
    for &ms in intervals {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{ms} ms</text>",
            x(ms),
            height - bottom + 14.0
        );
    }
    for (i, row) in ROWS.iter().enumerate() {
        let line: Vec<String> = of_row(points, *row)
            .iter()
            .filter_map(|p| {
                Some(format!(
                    "{:.1},{:.1}",
                    x(p.commit_interval_ms),
                    y(value(p)?)
                ))
            })
            .collect();
        if line.is_empty() {
            continue;
        }
        let (lx, ly) = (10.0 + 115.0 * (i % 4) as f64, height - 30.0);
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\
             <rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"10\" height=\"10\" fill=\"{c}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            line.join(" "),
            lx + 14.0,
            ly + 9.0,
            esc(row.label()),
            c = colour(*row),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn axis_number(value: f64) -> String {
    if value >= 1000.0 {
        rate(value)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;
    use crate::workload::Row;

    #[test]
    fn the_curve_shows_every_interval_and_row() {
        let results = sample_results();
        let text = text(&results);
        assert!(text.contains("10 ms"), "{text}");
        assert!(text.contains("1000 ms"), "{text}");
        assert!(text.contains(Row::ExactlyOnce.label()), "{text}");
        assert!(text.contains("240.0k"), "{text}");
        let html = html(&results);
        assert_eq!(html.matches("<polyline").count(), 4, "two rows, two charts");
    }

    #[test]
    fn no_curve_no_section() {
        let mut results = sample_results();
        results.cost_curve.clear();
        assert_eq!(text(&results), "");
        assert_eq!(html(&results), "");
    }
}
