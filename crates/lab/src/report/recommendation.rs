//! The `--require` recommendation in the reports: a few lines after the terminal table, a short
//! section near the top of the HTML page. Drawn from the results alone, like the rest.

use std::fmt::Write;

use crate::report::html::esc;
use crate::report::table::{fit, rate};
use crate::require::Recommendation;
use crate::results::LabResults;

/// The sentence naming the chosen row: "sink-sqlite (4.1k/s without faults)", or that no row
/// met every clause.
fn verdict_line(results: &LabResults, recommendation: &Recommendation) -> String {
    let Some(row) = recommendation.row else {
        return "no row met every clause".into();
    };
    let baseline = results
        .summary
        .iter()
        .find(|s| s.row == row)
        .and_then(|s| s.baseline_throughput.as_ref());
    match baseline {
        Some(t) => format!("{} ({}/s without faults)", row.name(), rate(t.per_second)),
        None => row.name().to_string(),
    }
}

/// The terminal lines, every one within the table's width; empty without `--require`.
pub fn text(results: &LabResults) -> String {
    let Some(recommendation) = &results.recommendation else {
        return String::new();
    };
    // A blank line parts it from the table above.
    let mut out = String::from("\n");
    let _ = writeln!(
        out,
        "{}",
        fit(&format!(
            "━━ --require {} ━━ the cheapest row meeting every clause wherever it was measured",
            recommendation.requirement
        ))
    );
    let _ = writeln!(
        out,
        "{}",
        fit(&format!(" → {}", verdict_line(results, recommendation)))
    );
    for reason in &recommendation.reasons {
        let _ = writeln!(out, "{}", fit(&format!("   {}", reason.line())));
    }
    out
}

/// The HTML section; empty without `--require`.
pub fn html(results: &LabResults) -> String {
    let Some(recommendation) = &results.recommendation else {
        return String::new();
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<section><h2>Cheapest row for <code>{}</code></h2>\n<p class=\"desc\">A row qualifies \
         when every clause held under every fault profile it was measured in; the cheapest \
         qualifier is the fastest without faults.</p>\n<p><strong>→ {}</strong></p>\n\
         <ul class=\"notes\">",
        esc(&recommendation.requirement),
        esc(&verdict_line(results, recommendation))
    );
    for reason in &recommendation.reasons {
        let _ = write!(out, "<li>{}</li>", esc(&reason.line()));
    }
    out.push_str("</ul></section>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_results;
    use crate::require::recommend;

    fn with_requirement(requirement: &str) -> LabResults {
        let mut results = sample_results();
        let requirement = requirement.parse().unwrap();
        results.recommendation = Some(recommend(&requirement, &results.profiles, &results.summary));
        results
    }

    #[test]
    fn the_terminal_lines_read() {
        expect_test::expect![[r#"

            ━━ --require loss=0,duplicates=0 ━━ the cheapest row meeting every clause wherever it was measured
             → at-least-once-idempotent
               at-most-once: loss=0 broken under lost-acks (12 lost)
               at-least-once: duplicates=0 broken under lost-acks (37 duplicated)
               exactly-once: measured under no profile (needs transactions (not yet in this broker))
               sink-sqlite: measured under no profile
               sink-postgres: measured under no profile
        "#]]
        .assert_eq(&text(&with_requirement("loss=0,duplicates=0")));
        assert_eq!(text(&sample_results()), "");
    }

    #[test]
    fn the_html_section_is_escaped() {
        let html = html(&with_requirement("p99<=10ms"));
        assert!(html.contains("<code>p99&lt;=10ms</code>"), "{html}");
        assert!(html.contains("→ at-most-once</strong>"), "{html}");
        assert!(
            html.contains("<li>at-least-once: p99&lt;=10ms broken under lost-acks (p99 15ms)</li>"),
            "{html}"
        );
    }
}
