//! `ferry lab --require 'loss=0,duplicates=0,p99<=250ms'`: what a use case needs from its
//! delivery guarantee, and the cheapest row that met it. A row qualifies when every clause held
//! under every fault profile the row was measured in; the cheapest qualifier is the fastest
//! without faults. [`recommend`] is a pure function of the results, so it is tested on
//! hand-made results.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::report::table::{ms, rate};
use crate::results::{ProfileResult, RowResult, Status, SummaryRow};
use crate::workload::Row;

/// The figure a clause constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// Records lost (`counts.lost`).
    Loss,
    /// Processings beyond the first (`counts.duplicated`).
    Duplicates,
    /// Send-to-processed p99 latency, in microseconds (`latency.p99_us`).
    P99,
    /// Records per second of the burst (`throughput.per_second`).
    Rate,
}

const KEYS: &str = "loss, duplicates, p99, rate";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    AtMost,
    AtLeast,
}

/// One `key op value` of a requirement, with the value in the figure's own unit (records,
/// microseconds, records per second).
#[derive(Clone, Debug, PartialEq)]
struct Clause {
    key: Key,
    cmp: Cmp,
    value: f64,
    /// The clause as written, without spaces, for reasons.
    text: String,
}

/// A parsed `--require`: clauses that must all hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    clauses: Vec<Clause>,
}

impl Requirement {
    /// The requirement as written, without spaces.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.clauses.iter().map(|c| c.text.as_str()).collect();
        texts.join(",")
    }
}

impl FromStr for Requirement {
    type Err = String;

    fn from_str(s: &str) -> Result<Requirement, String> {
        let clauses = s
            .split(',')
            .map(parse_clause)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Requirement { clauses })
    }
}

fn parse_clause(text: &str) -> Result<Clause, String> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() {
        return Err("empty clause in --require: expected e.g. 'loss=0,p99<=250ms'".into());
    }
    let Some(at) = text.find(['<', '>', '=']) else {
        return Err(format!(
            "clause '{text}' in --require has no operator: expected =, <= or >="
        ));
    };
    let key = parse_key(&text[..at])?;
    let (cmp, value) = match &text[at..] {
        rest if rest.starts_with("<=") => (Cmp::AtMost, &rest[2..]),
        rest if rest.starts_with(">=") => (Cmp::AtLeast, &rest[2..]),
        rest if rest.starts_with('=') && !rest[1..].starts_with(['<', '>', '=']) => {
            (Cmp::Eq, &rest[1..])
        }
        _ => {
            return Err(format!(
                "operator of '{text}' in --require: expected =, <= or >="
            ))
        }
    };
    let value = parse_value(key, value).ok_or_else(|| value_error(key, value))?;
    Ok(Clause {
        key,
        cmp,
        value,
        text,
    })
}

fn parse_key(key: &str) -> Result<Key, String> {
    match key {
        "loss" => Ok(Key::Loss),
        "duplicates" => Ok(Key::Duplicates),
        "p99" => Ok(Key::P99),
        "rate" => Ok(Key::Rate),
        _ => Err(format!("unknown key '{key}' in --require: expected {KEYS}")),
    }
}

/// The value in the figure's unit, if it reads as one.
fn parse_value(key: Key, value: &str) -> Option<f64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match (key, unit) {
        (Key::Loss | Key::Duplicates, "") if number.fract() == 0.0 => 1.0,
        (Key::P99, "us" | "µs") => 1.0,
        (Key::P99, "" | "ms") => 1_000.0,
        (Key::P99, "s") => 1_000_000.0,
        (Key::Rate, "") => 1.0,
        (Key::Rate, "k") => 1_000.0,
        _ => return None,
    };
    Some(number * scale)
}

fn value_error(key: Key, value: &str) -> String {
    let expected = match key {
        Key::Loss | Key::Duplicates => "a whole number of records",
        Key::P99 => "a duration such as 250ms, 800us or 1.5s (a bare number is milliseconds)",
        Key::Rate => "records per second such as 50000 or 50k",
    };
    let key = match key {
        Key::Loss => "loss",
        Key::Duplicates => "duplicates",
        Key::P99 => "p99",
        Key::Rate => "rate",
    };
    format!("value '{value}' of {key} in --require: expected {expected}")
}

impl Clause {
    /// Why the clause does not hold for `result`, if it does not.
    fn broken_by(&self, result: &RowResult) -> Option<String> {
        let (figure, missing) = match self.key {
            Key::Loss => (result.counts.as_ref().map(|c| c.lost as f64), "counts"),
            Key::Duplicates => (
                result.counts.as_ref().map(|c| c.duplicated as f64),
                "counts",
            ),
            Key::P99 => (result.latency.as_ref().map(|l| l.p99_us as f64), "latency"),
            Key::Rate => (
                result.throughput.as_ref().map(|t| t.per_second),
                "throughput",
            ),
        };
        let Some(figure) = figure else {
            return Some(format!("no {missing} measured"));
        };
        let holds = match self.cmp {
            Cmp::Eq => figure == self.value,
            Cmp::AtMost => figure <= self.value,
            Cmp::AtLeast => figure >= self.value,
        };
        (!holds).then(|| describe(self.key, figure))
    }
}

/// A figure in a reason: "37 lost", "p99 812ms", "rate 4.1k/s".
fn describe(key: Key, figure: f64) -> String {
    match key {
        Key::Loss => format!("{figure} lost"),
        Key::Duplicates => format!("{figure} duplicated"),
        Key::P99 => format!("p99 {}", duration(figure as u64)),
        Key::Rate => format!("rate {}/s", rate(figure)),
    }
}

/// Microseconds with a unit: "0.4ms", "812ms", "1.2s".
fn duration(us: u64) -> String {
    let text = ms(us);
    if text.ends_with('s') {
        text
    } else {
        text + "ms"
    }
}

/// What `--require` found: the row to use (none if no row met every clause) and, for every
/// other row, why not. Written into the results JSON as `recommendation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub requirement: String,
    pub row: Option<Row>,
    pub reasons: Vec<RowReason>,
}

/// Why a row is not the recommendation: the first clause it broke and under which profile, or
/// (with no clause) that it was measured nowhere or qualified but is slower.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowReason {
    pub row: Row,
    pub clause: Option<String>,
    pub profile: Option<Profile>,
    pub detail: String,
}

impl RowReason {
    /// The reason in one line: "at-most-once: loss=0 broken under lost-acks (37 lost)".
    pub fn line(&self) -> String {
        match (&self.clause, self.profile) {
            (Some(clause), Some(profile)) => format!(
                "{}: {clause} broken under {} ({})",
                self.row.name(),
                profile.name(),
                self.detail
            ),
            _ => format!("{}: {}", self.row.name(), self.detail),
        }
    }
}

/// The cheapest row of `summary` meeting `requirement` in `profiles`, and why each other row is
/// not it. The cheapest qualifier has the highest throughput without faults; a qualifier with
/// no such figure ranks after those with one, and ties keep the table's order (simplest first).
pub fn recommend(
    requirement: &Requirement,
    profiles: &[ProfileResult],
    summary: &[SummaryRow],
) -> Recommendation {
    let judged: Vec<(&SummaryRow, Option<RowReason>)> = summary
        .iter()
        .map(|s| (s, first_broken(requirement, s.row, profiles)))
        .collect();
    let mut qualifiers: Vec<&SummaryRow> = judged
        .iter()
        .filter(|(_, broken)| broken.is_none())
        .map(|(s, _)| *s)
        .collect();
    qualifiers.sort_by(|a, b| baseline(b).total_cmp(&baseline(a)));
    let chosen = qualifiers.first().copied();
    let reasons = judged
        .into_iter()
        .filter(|(s, _)| chosen.is_none_or(|c| c.row != s.row))
        .map(|(s, broken)| broken.unwrap_or_else(|| slower(s, chosen.expect("a qualifier"))))
        .collect();
    Recommendation {
        requirement: requirement.text(),
        row: chosen.map(|c| c.row),
        reasons,
    }
}

/// Baseline records per second; no baseline ranks last.
fn baseline(s: &SummaryRow) -> f64 {
    s.baseline_throughput
        .as_ref()
        .map_or(f64::NEG_INFINITY, |t| t.per_second)
}

/// The first clause `row` broke, in clause order, and the first profile it broke it in; or that
/// it was measured nowhere, so it proves nothing; or that a run of it failed.
fn first_broken(
    requirement: &Requirement,
    row: Row,
    profiles: &[ProfileResult],
) -> Option<RowReason> {
    let results: Vec<(Profile, &RowResult)> = profiles
        .iter()
        .filter_map(|p| Some((p.profile, p.rows.iter().find(|r| r.row == row)?)))
        .collect();
    let measured: Vec<&(Profile, &RowResult)> = results
        .iter()
        .filter(|(_, r)| r.status == Status::Measured)
        .collect();
    if measured.is_empty() {
        return Some(RowReason {
            row,
            clause: None,
            profile: None,
            detail: unmeasured_detail(&results),
        });
    }
    if let Some(failed) = failed_run(row, &results) {
        return Some(failed);
    }
    requirement.clauses.iter().find_map(|clause| {
        measured.iter().find_map(|(profile, result)| {
            Some(RowReason {
                row,
                clause: Some(clause.text.clone()),
                profile: Some(*profile),
                detail: clause.broken_by(result)?,
            })
        })
    })
}

/// The first profile whose run of `row` failed: what the row does there is unknown, so it
/// cannot be said to meet anything.
fn failed_run(row: Row, results: &[(Profile, &RowResult)]) -> Option<RowReason> {
    results.iter().find_map(|(profile, r)| match &r.status {
        Status::Failed { error } => Some(RowReason {
            row,
            clause: None,
            profile: Some(*profile),
            detail: format!("its run failed under {}: {error}", profile.name()),
        }),
        _ => None,
    })
}

/// "measured under no profile", with the first reason a profile gave.
fn unmeasured_detail(results: &[(Profile, &RowResult)]) -> String {
    let why = results.iter().find_map(|(_, r)| match &r.status {
        Status::Measured => None,
        Status::NotApplicable { reason } => Some(format!("n/a: {reason}")),
        Status::Skipped { reason } => Some(format!("skipped: {reason}")),
        Status::NeedsTransactions { reason } => Some(reason.clone()),
        Status::Failed { error } => Some(format!("failed: {error}")),
    });
    match why {
        Some(why) => format!("measured under no profile ({why})"),
        None => "measured under no profile".into(),
    }
}

/// Why a qualifier that is not `chosen` ranks after it.
fn slower(s: &SummaryRow, chosen: &SummaryRow) -> RowReason {
    let detail = match (&s.baseline_throughput, &chosen.baseline_throughput) {
        (Some(mine), Some(best)) if mine.per_second < best.per_second => format!(
            "qualifies but slower ({}/s vs {}/s)",
            rate(mine.per_second),
            rate(best.per_second)
        ),
        (Some(mine), Some(_)) => format!(
            "qualifies, tied at {}/s; {} is first in the table",
            rate(mine.per_second),
            chosen.row.name()
        ),
        (None, Some(_)) => "qualifies, unranked: not measured without faults (profile none)".into(),
        (_, None) => format!(
            "qualifies, unranked (no profile none); {} is first in the table",
            chosen.row.name()
        ),
    };
    RowReason {
        row: s.row,
        clause: None,
        profile: None,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Counts, Latency, Throughput};
    use crate::results::summarize;

    /// A measured row: lost, duplicated, p99 in ms (none: no latency), burst rate.
    fn measured(row: Row, lost: u64, duplicated: u64, p99_ms: Option<u64>, rate: f64) -> RowResult {
        let mut result = RowResult::unmeasured(row, Status::Measured);
        result.counts = Some(Counts {
            lost,
            duplicated,
            ..Counts::default()
        });
        result.latency = p99_ms.map(|ms| Latency {
            samples: 600,
            p50_us: ms * 500,
            p99_us: ms * 1000,
            p999_us: ms * 1200,
            max_us: ms * 1500,
        });
        result.throughput = Some(Throughput {
            records: 3000,
            elapsed_us: 1_000_000,
            per_second: rate,
        });
        result
    }

    fn unmeasured(row: Row, status: &str) -> RowResult {
        let reason = "in this test".to_string();
        let status = match status {
            "n/a" => Status::NotApplicable { reason },
            _ => Status::Skipped { reason },
        };
        RowResult::unmeasured(row, status)
    }

    fn profile(profile: Profile, rows: Vec<RowResult>) -> ProfileResult {
        ProfileResult {
            profile,
            title: profile.title().into(),
            description: String::new(),
            rows,
        }
    }

    /// The runs every case below starts from: at-most-once is fastest and loses under lost
    /// acks, at-least-once duplicates, its idempotent reading does neither, exactly-once is
    /// slow and its p99 grows under the slow network, the producer crash applies to
    /// exactly-once only, the SQLite sink ran without faults only, and the PostgreSQL sink
    /// nowhere.
    fn lab() -> Vec<ProfileResult> {
        use Row::*;
        vec![
            profile(
                Profile::None,
                vec![
                    measured(AtMostOnce, 0, 0, Some(8), 210_000.0),
                    measured(AtLeastOnce, 0, 0, Some(15), 30_200.0),
                    measured(AtLeastOnceIdempotent, 0, 0, Some(15), 30_200.0),
                    measured(ExactlyOnce, 0, 0, Some(40), 12_000.0),
                    measured(SinkSqlite, 0, 0, Some(90), 4_100.0),
                    unmeasured(SinkPostgres, "skipped"),
                ],
            ),
            profile(
                Profile::LostAcks,
                vec![
                    measured(AtMostOnce, 37, 0, Some(9), 190_000.0),
                    measured(AtLeastOnce, 0, 12, Some(300), 25_000.0),
                    measured(AtLeastOnceIdempotent, 0, 0, Some(300), 25_000.0),
                    measured(ExactlyOnce, 0, 0, Some(120), 9_000.0),
                    unmeasured(SinkSqlite, "skipped"),
                    unmeasured(SinkPostgres, "skipped"),
                ],
            ),
            profile(
                Profile::SlowNetwork,
                vec![
                    measured(AtMostOnce, 0, 0, None, 40_000.0),
                    measured(AtLeastOnce, 0, 0, Some(200), 20_000.0),
                    measured(AtLeastOnceIdempotent, 0, 0, Some(200), 20_000.0),
                    measured(ExactlyOnce, 0, 0, Some(1_800), 1_500.0),
                    unmeasured(SinkSqlite, "skipped"),
                    unmeasured(SinkPostgres, "skipped"),
                ],
            ),
            profile(
                Profile::ProducerCrash,
                vec![
                    unmeasured(AtMostOnce, "n/a"),
                    unmeasured(AtLeastOnce, "n/a"),
                    unmeasured(AtLeastOnceIdempotent, "n/a"),
                    measured(ExactlyOnce, 0, 0, Some(100), 8_000.0),
                    unmeasured(SinkSqlite, "skipped"),
                    unmeasured(SinkPostgres, "skipped"),
                ],
            ),
        ]
    }

    /// The recommendation for `requirement` over `profiles`, one line per row: the chosen row
    /// as "→ row", then each other row's reason.
    fn check(requirement: &str, profiles: &[ProfileResult], expect: &[&str]) {
        let requirement: Requirement = requirement.parse().unwrap();
        let recommendation = recommend(&requirement, profiles, &summarize(profiles));
        let chosen = recommendation
            .row
            .map_or("none".into(), |r| r.name().to_string());
        let mut lines = vec![format!("→ {chosen}")];
        lines.extend(recommendation.reasons.iter().map(RowReason::line));
        assert_eq!(lines, expect, "{requirement:?}");
    }

    #[test]
    fn recommendations_as_data() {
        let postgres = "sink-postgres: measured under no profile (skipped: in this test)";
        // Everything qualifies: the fastest without faults wins.
        check(
            "loss=0",
            &lab()[..1],
            &[
                "→ at-most-once",
                "at-least-once: qualifies but slower (30.2k/s vs 210.0k/s)",
                "at-least-once-idempotent: qualifies but slower (30.2k/s vs 210.0k/s)",
                "exactly-once: qualifies but slower (12.0k/s vs 210.0k/s)",
                "sink-sqlite: qualifies but slower (4.1k/s vs 210.0k/s)",
                postgres,
            ],
        );
        // Loss under one profile breaks at-most-once; not applicable profiles do not count.
        check(
            "loss=0,duplicates=0",
            &lab(),
            &[
                "→ at-least-once-idempotent",
                "at-most-once: loss=0 broken under lost-acks (37 lost)",
                "at-least-once: duplicates=0 broken under lost-acks (12 duplicated)",
                "exactly-once: qualifies but slower (12.0k/s vs 30.2k/s)",
                "sink-sqlite: qualifies but slower (4.1k/s vs 30.2k/s)",
                postgres,
            ],
        );
        // p99 in seconds; a measured row without latency fails the clause.
        check(
            "duplicates = 0, p99 <= 0.25s",
            &lab(),
            &[
                "→ sink-sqlite",
                "at-most-once: p99<=0.25s broken under slow-network (no latency measured)",
                "at-least-once: duplicates=0 broken under lost-acks (12 duplicated)",
                "at-least-once-idempotent: p99<=0.25s broken under lost-acks (p99 300ms)",
                "exactly-once: p99<=0.25s broken under slow-network (p99 1.8s)",
                postgres,
            ],
        );
        // A bare p99 is milliseconds; without the none profile no row has a baseline.
        check(
            "p99<=2000",
            &lab()[1..],
            &[
                "→ at-least-once",
                "at-most-once: p99<=2000 broken under slow-network (no latency measured)",
                "at-least-once-idempotent: qualifies, unranked (no profile none); at-least-once \
                 is first in the table",
                "exactly-once: qualifies, unranked (no profile none); at-least-once is first in \
                 the table",
                "sink-sqlite: measured under no profile (skipped: in this test)",
                postgres,
            ],
        );
        // rate>= in thousands, p99 in microseconds; equal rates keep the table's order.
        check(
            "rate>=10k,p99<=1500000us",
            &lab(),
            &[
                "→ at-least-once",
                "at-most-once: p99<=1500000us broken under slow-network (no latency measured)",
                "at-least-once-idempotent: qualifies, tied at 30.2k/s; at-least-once is first in \
                 the table",
                "exactly-once: rate>=10k broken under lost-acks (rate 9.0k/s)",
                "sink-sqlite: rate>=10k broken under none (rate 4.1k/s)",
                postgres,
            ],
        );
        // A run that failed disqualifies its row.
        let mut failed = lab();
        failed[1].rows[3].status = Status::Failed {
            error: "broker gone".into(),
        };
        check(
            "loss=0",
            &failed,
            &[
                "→ at-least-once",
                "at-most-once: loss=0 broken under lost-acks (37 lost)",
                "at-least-once-idempotent: qualifies, tied at 30.2k/s; at-least-once is first in \
                 the table",
                "exactly-once: its run failed under lost-acks: broker gone",
                "sink-sqlite: qualifies but slower (4.1k/s vs 30.2k/s)",
                postgres,
            ],
        );
        // No row meets every clause.
        check(
            "loss=0,duplicates=0,rate>=100k",
            &lab(),
            &[
                "→ none",
                "at-most-once: loss=0 broken under lost-acks (37 lost)",
                "at-least-once: duplicates=0 broken under lost-acks (12 duplicated)",
                "at-least-once-idempotent: rate>=100k broken under none (rate 30.2k/s)",
                "exactly-once: rate>=100k broken under none (rate 12.0k/s)",
                "sink-sqlite: rate>=100k broken under none (rate 4.1k/s)",
                postgres,
            ],
        );
    }

    fn check_error(requirement: &str, expect: &str) {
        assert_eq!(
            requirement.parse::<Requirement>(),
            Err(expect.to_string()),
            "{requirement}"
        );
    }

    #[test]
    fn parse_errors_as_data() {
        let keys = "expected loss, duplicates, p99, rate";
        check_error(
            "lat<=5ms",
            &format!("unknown key 'lat' in --require: {keys}"),
        );
        check_error("=0", &format!("unknown key '' in --require: {keys}"));
        check_error(
            "loss",
            "clause 'loss' in --require has no operator: expected =, <= or >=",
        );
        check_error(
            "loss<1",
            "operator of 'loss<1' in --require: expected =, <= or >=",
        );
        check_error(
            "loss=>1",
            "operator of 'loss=>1' in --require: expected =, <= or >=",
        );
        check_error(
            "loss=0,",
            "empty clause in --require: expected e.g. 'loss=0,p99<=250ms'",
        );
        check_error(
            "loss=1.5",
            "value '1.5' of loss in --require: expected a whole number of records",
        );
        check_error(
            "duplicates=-1",
            "value '-1' of duplicates in --require: expected a whole number of records",
        );
        let duration = "expected a duration such as 250ms, 800us or 1.5s (a bare number is \
                        milliseconds)";
        check_error(
            "p99<=250m",
            &format!("value '250m' of p99 in --require: {duration}"),
        );
        check_error(
            "p99<=ms",
            &format!("value 'ms' of p99 in --require: {duration}"),
        );
        check_error(
            "p99<=",
            &format!("value '' of p99 in --require: {duration}"),
        );
        check_error(
            "rate>=50M",
            "value '50M' of rate in --require: expected records per second such as 50000 or 50k",
        );
    }

    #[test]
    fn values_in_the_figures_units_as_data() {
        let cases = [
            ("loss=0", 0.0),
            ("duplicates<=12", 12.0),
            ("p99<=250ms", 250_000.0),
            ("p99<=250", 250_000.0),
            ("p99<=800us", 800.0),
            ("p99<=800µs", 800.0),
            ("p99<=1.5s", 1_500_000.0),
            ("rate>=50k", 50_000.0),
            ("rate>=2.5k", 2_500.0),
            ("rate>=900", 900.0),
        ];
        for (text, value) in cases {
            let requirement: Requirement = text.parse().unwrap();
            assert_eq!(requirement.clauses[0].value, value, "{text}");
            assert_eq!(requirement.text(), text);
        }
    }
}
