//! `--fail-on`: conditions on the final figures that make `ferry audit` exit non-zero, so a CI
//! job can use it as a canary. A condition is `[lane:]figure op number`, several separated by
//! commas: `loss>0,duplicates>0`, `at-least-once-idempotent:duplicates>0`, `availability<0.99`,
//! `p99_ms>500`. Without a lane it holds when it holds for any lane. Figures are those of the
//! whole run (the since-start window).

use std::fmt;
use std::str::FromStr;

use crate::lane::LaneSummary;
use crate::stamp::Lane;
use crate::window::{Outcome, Window};

/// What a condition looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// A count of records by outcome.
    Records(Outcome),
    /// Available sends over judged sends, 0..=1 (a lane with none judged is at 1).
    Availability,
    P50Ms,
    P99Ms,
}

/// The figure names a condition may use: the outcomes plus a few words people reach for.
fn figure(name: &str) -> Option<Figure> {
    let figure = match name {
        "loss" | "lost" => Figure::Records(Outcome::Lost),
        "duplicates" | "duplicated" => Figure::Records(Outcome::Duplicated),
        "reordered" | "reorders" => Figure::Records(Outcome::Reordered),
        "aborted_reads" | "aborted_read" => Figure::Records(Outcome::AbortedRead),
        "availability" => Figure::Availability,
        "p50_ms" => Figure::P50Ms,
        "p99_ms" => Figure::P99Ms,
        other => Figure::Records(*Outcome::ALL.iter().find(|o| o.name() == other)?),
    };
    Some(figure)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

impl Op {
    const ALL: [(&'static str, Op); 5] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];

    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
        }
    }
}

/// One condition, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub text: String,
    pub lane: Option<Lane>,
    pub figure: Figure,
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConditionError {
    #[error("condition {0:?}: expected FIGURE OP NUMBER, e.g. loss>0 (OP is one of > >= < <= ==)")]
    Shape(String),
    #[error("condition {text:?}: unknown figure {figure:?} (loss, duplicates, reordered, aborted_reads, availability, p50_ms, p99_ms, or a record outcome)")]
    Figure { text: String, figure: String },
    #[error("condition {text:?}: {reason}")]
    Lane { text: String, reason: String },
    #[error("condition {0:?}: the right side is not a number")]
    Number(String),
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Condition, ConditionError> {
        let text = text.trim();
        let (position, op_text, op) = Op::ALL
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|at| (at, *t, *op)))
            .min_by_key(|(at, t, _)| (*at, std::cmp::Reverse(t.len())))
            .ok_or_else(|| ConditionError::Shape(text.into()))?;
        let (left, right) = (&text[..position], &text[position + op_text.len()..]);
        let (lane, name) = match left.trim().split_once(':') {
            Some((lane, name)) => {
                let lane = lane.parse().map_err(|reason| ConditionError::Lane {
                    text: text.into(),
                    reason,
                })?;
                (Some(lane), name)
            }
            None => (None, left.trim()),
        };
        if name.is_empty() {
            return Err(ConditionError::Shape(text.into()));
        }
        let figure = figure(name).ok_or_else(|| ConditionError::Figure {
            text: text.into(),
            figure: name.into(),
        })?;
        let value = right
            .trim()
            .parse()
            .map_err(|_| ConditionError::Number(text.into()))?;
        Ok(Condition {
            text: text.into(),
            lane,
            figure,
            op,
            value,
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a comma-separated list of conditions.
pub fn parse_list(text: &str) -> Result<Vec<Condition>, ConditionError> {
    text.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(str::parse)
        .collect()
}

impl Condition {
    /// The lanes for which the condition holds in `lanes`' whole-run figures, with the value.
    pub fn holds_for(&self, lanes: &[LaneSummary]) -> Vec<(Lane, f64)> {
        lanes
            .iter()
            .filter(|l| self.lane.is_none_or(|lane| lane == l.lane))
            .filter_map(|l| {
                let all = l.window(Window::SinceStart);
                let value = match self.figure {
                    Figure::Records(outcome) => all.get(outcome) as f64,
                    Figure::Availability => all.availability.unwrap_or(1.0),
                    Figure::P50Ms => all.latency_p50_ms.unwrap_or(0) as f64,
                    Figure::P99Ms => all.latency_p99_ms.unwrap_or(0) as f64,
                };
                self.op.holds(value, self.value).then_some((l.lane, value))
            })
            .collect()
    }
}

/// Every condition that holds, as one line each: `loss>0: at-most-once = 12`.
pub fn failures(conditions: &[Condition], lanes: &[LaneSummary]) -> Vec<String> {
    conditions
        .iter()
        .flat_map(|c| {
            c.holds_for(lanes)
                .into_iter()
                .map(move |(lane, value)| format!("{c}: {lane} = {value}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::scripted;
    use expect_test::{expect, Expect};

    fn check_parse(text: &str, expect: Expect) {
        let out = match parse_list(text) {
            Ok(list) => list
                .iter()
                .map(|c| format!("{:?} {:?} {:?} {}", c.lane, c.figure, c.op, c.value))
                .collect::<Vec<_>>()
                .join("; "),
            Err(error) => format!("error: {error}"),
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn conditions_as_data() {
        check_parse(
            "loss>0,duplicates>0",
            expect!["None Records(Lost) Gt 0; None Records(Duplicated) Gt 0"],
        );
        check_parse(
            "at-least-once-idempotent:duplicates >= 1",
            expect!["Some(AtLeastOnceIdempotent) Records(Duplicated) Ge 1"],
        );
        check_parse("availability<0.99", expect!["None Availability Lt 0.99"]);
        check_parse(
            "p99_ms<=250, late==3",
            expect!["None P99Ms Le 250; None Records(Late) Eq 3"],
        );
        check_parse("", expect![""]);
        check_parse(
            "loss",
            expect![[
                r#"error: condition "loss": expected FIGURE OP NUMBER, e.g. loss>0 (OP is one of > >= < <= ==)"#
            ]],
        );
        check_parse(
            "speed>1",
            expect![[
                r#"error: condition "speed>1": unknown figure "speed" (loss, duplicates, reordered, aborted_reads, availability, p50_ms, p99_ms, or a record outcome)"#
            ]],
        );
        check_parse(
            "twice:loss>1",
            expect![[
                r#"error: condition "twice:loss>1": unknown lane twice: expected one of at-most-once, at-least-once, at-least-once-idempotent, exactly-once"#
            ]],
        );
        check_parse(
            "loss>many",
            expect![[r#"error: condition "loss>many": the right side is not a number"#]],
        );
    }

    #[test]
    fn failures_name_lane_and_value() {
        let lanes = [
            scripted(Lane::AtMostOnce, 1, &[(0, 0)], &[], 100),
            scripted(Lane::AtLeastOnce, 1, &[(0, 0)], &[(0, 2)], 100),
        ];
        let conditions = parse_list("loss>0,at-least-once:loss>0,availability<1").unwrap();
        expect![[r#"["loss>0: at-most-once = 1"]"#]]
            .assert_eq(&format!("{:?}", failures(&conditions, &lanes)));
        let conditions = parse_list("consumed>=1,at-most-once:consumed>=1").unwrap();
        expect![[r#"["consumed>=1: at-least-once = 1"]"#]]
            .assert_eq(&format!("{:?}", failures(&conditions, &lanes)));
    }
}
