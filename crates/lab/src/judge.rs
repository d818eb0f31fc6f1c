//! Judging one row's history: the pure checkers and the verdict in one function, so a live run
//! and `ferry lab check` on a saved history reach the same numbers and the same verdict by the
//! same code.

use crate::check;
use crate::history::Op;
use crate::profile::{Params, Profile};
use crate::results::{self, RowResult, Status, Verdict};
use crate::workload::{self, Row, Workload};

/// A measured row as `history` shows it: counts, latency (over the paced ids of `params`),
/// throughput (over its burst ids), faults, the ledger for ledger rows, and the verdict. What
/// only a live run knows (topic, timeline, the sink's SQL check, notes, elapsed time) is left
/// for the caller to add.
pub fn judge(row: Row, profile: Profile, params: &Params, history: &[Op]) -> RowResult {
    let counts = check::counts(history, row.view());
    let faults = check::faults(history);
    let mut result = RowResult::unmeasured(row, Status::Measured);
    result.verdict = results::verdict(row, profile, &counts, &faults);
    result.counts = Some(counts);
    result.latency = check::latency(history, params.paced_ids());
    result.throughput = check::throughput(history, params.burst_ids());
    result.acked_throughput = check::acked_throughput(history, params.burst_ids());
    result.faults = Some(faults);
    if row.workload() == Workload::Ledger {
        let ledger = check::ledger(
            history,
            workload::LEDGER_ACCOUNTS,
            workload::LEDGER_INITIAL_BALANCE,
            workload::transfer,
        );
        if !ledger.holds {
            let reason = format!(
                "ledger invariant broken: total {} (was {}), {} accounts off",
                ledger.total_observed, ledger.total_initial, ledger.accounts_off
            );
            add_violations(&mut result.verdict, vec![reason]);
        }
        result.ledger = Some(ledger);
    }
    result
}

/// Adds broken promises to a verdict: a violated verdict keeps its reasons and gains these, any
/// other becomes violated. No reasons leave it as it is.
pub fn add_violations(verdict: &mut Verdict, reasons: Vec<String>) {
    if reasons.is_empty() {
        return;
    }
    match verdict {
        Verdict::Violated { reasons: all } => all.extend(reasons),
        verdict => *verdict = Verdict::Violated { reasons },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_as_data() {
        let violated = |reasons: &[&str]| Verdict::Violated {
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        };
        let check = |mut verdict: Verdict, reasons: &[&str], expect: Verdict| {
            add_violations(
                &mut verdict,
                reasons.iter().map(|r| r.to_string()).collect(),
            );
            assert_eq!(verdict, expect);
        };
        check(Verdict::Holds, &[], Verdict::Holds);
        check(Verdict::Baseline, &["a"], violated(&["a"]));
        check(Verdict::NoFaultInjected, &["a", "b"], violated(&["a", "b"]));
        check(violated(&["a"]), &["b"], violated(&["a", "b"]));
        check(violated(&["a"]), &[], violated(&["a"]));
    }
}
