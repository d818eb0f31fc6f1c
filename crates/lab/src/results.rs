//! The lab's results: what `--json` writes (schema in docs/lab.md), what the table and the HTML
//! report are drawn from, and the verdict of each row against the seed's promises.

use serde::{Deserialize, Serialize};

use crate::check::{Counts, Faults, Latency, Throughput, Timeline};
use crate::profile::{Params, Profile};
use crate::workload::Row;

/// Bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabResults {
    pub schema: u32,
    pub ferry_version: String,
    /// `release` or `debug`: a debug build's latency and throughput are indicative only.
    pub build: String,
    pub seed: u64,
    /// `quick` or `thorough`.
    pub mode: String,
    pub target: TargetInfo,
    pub params: Params,
    pub started_unix_ms: u64,
    pub elapsed_ms: u64,
    pub profiles: Vec<ProfileResult>,
    pub summary: Vec<SummaryRow>,
    /// Throughput and latency by commit interval, no faults (`--no-curve`: empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cost_curve: Vec<crate::curve::CurvePoint>,
    /// The cheapest row meeting `--require`; absent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<crate::require::Recommendation>,
    /// The poison-messages profile's table; absent when it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<crate::poison::PoisonResults>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `embedded` (the lab's own `ferry serve`) or `bootstrap` (a cluster given by address).
    pub kind: String,
    /// The broker's own address.
    pub broker: String,
    /// The chaos proxy clients bootstrap from.
    pub proxy: String,
    /// The addresses the cluster advertises in Metadata.
    pub advertised: Vec<String>,
    /// Whether clients reach the brokers through the proxy.
    pub proxy_in_path: bool,
    /// Whether the broker advertises every API exactly-once needs.
    pub transactions: bool,
    /// (api key, min version, max version) as advertised; empty if the probe failed.
    pub apis: Vec<(i16, i16, i16)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileResult {
    pub profile: Profile,
    pub title: String,
    pub description: String,
    pub rows: Vec<RowResult>,
}

/// How a row came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    Measured,
    /// The profile has no meaning for this guarantee.
    NotApplicable {
        reason: String,
    },
    /// The profile could not run against this target.
    Skipped {
        reason: String,
    },
    /// Exactly-once against a broker without the transaction APIs.
    NeedsTransactions {
        reason: String,
    },
    /// The run itself broke (setup, a consumer that never joined).
    Failed {
        error: String,
    },
}

/// A measured row held against the seed's promises for its guarantee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Faults were injected and the promises held.
    Holds,
    /// The baseline (no faults) and the promises held.
    Baseline,
    /// A promise was broken; each reason names one.
    Violated {
        reasons: Vec<String>,
    },
    /// The profile injected nothing, so the row proves nothing.
    NoFaultInjected,
    NotMeasured,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RowResult {
    pub row: Row,
    pub label: String,
    pub guarantee: String,
    pub workload: String,
    pub mechanism: String,
    pub status: Status,
    pub verdict: Verdict,
    /// The topic the run used (rows of one run share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// Send-to-processed latency of the paced records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Records per second of the burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// Records acknowledged per second of the burst: the producer's side alone, beside
    /// `throughput` (send to processed), to tell which side limits the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_throughput: Option<Throughput>,
    /// Baseline rows run several times: every trial's figures and their spread. `latency`,
    /// `throughput` and `counts` are then the trial with the median throughput's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<crate::trials::Spread>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// The ledger invariant (exactly-once rows, whose workload is the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<crate::check::Ledger>,
    /// Sink rows: what SQL found in the database the sink wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
    /// Where the run's history was written (`--histories`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_file: Option<String>,
}

impl RowResult {
    /// A row that was not measured.
    pub fn unmeasured(row: Row, status: Status) -> RowResult {
        RowResult {
            row,
            label: row.label().into(),
            guarantee: row.guarantee().name().into(),
            workload: row.workload().name().into(),
            mechanism: row.mechanism().into(),
            status,
            verdict: Verdict::NotMeasured,
            topic: None,
            counts: None,
            latency: None,
            throughput: None,
            acked_throughput: None,
            spread: None,
            faults: None,
            timeline: None,
            ledger: None,
            sink: None,
            notes: Vec::new(),
            elapsed_ms: 0,
            history_file: None,
        }
    }
}

/// What SQL found in a sink row's database after the run, and what its consumers met.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCheck {
    /// `sqlite` or `postgresql`.
    pub backend: String,
    /// Rows of the ledger's `applied` table: one per application of a transfer.
    pub applied_rows: u64,
    /// `COUNT(DISTINCT transfer_id)` of the same table.
    pub distinct_transfers: u64,
    pub total_initial: i64,
    /// `SUM(balance)` of the accounts.
    pub total_balance: i64,
    /// Whether every account holds what applying each distinct applied transfer once leaves.
    pub balances_match: bool,
    /// Sink transactions committed.
    pub transactions: u64,
    /// Commits the database rejected because a newer consumer had claimed the partition.
    pub fenced_commits: u64,
    /// Consumer instances paused between poll and commit while a successor took over (the
    /// zombies of the consumer-crash profile); each should be fenced.
    pub paused_consumers: u64,
    /// Steps that failed because librdkafka had lost the brokers; nothing was written and the
    /// consumer went on.
    pub broker_unreachable: u64,
}

impl SinkCheck {
    /// The broken promises SQL shows, each as a reason.
    pub fn violations(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.applied_rows != self.distinct_transfers {
            reasons.push(format!(
                "SQL: {} transfers applied more than once",
                self.applied_rows - self.distinct_transfers
            ));
        }
        if self.total_balance != self.total_initial {
            reasons.push(format!(
                "SQL: total balance {} (was {})",
                self.total_balance, self.total_initial
            ));
        }
        if !self.balances_match {
            reasons.push("SQL: balances are not the applied transfers' once each".into());
        }
        reasons
    }
}

/// Holds a measured row against its guarantee's promises.
pub fn verdict(row: Row, profile: Profile, counts: &Counts, faults: &Faults) -> Verdict {
    let (no_loss, no_duplicates) = row.promises();
    let mut reasons = Vec::new();
    if no_loss && counts.lost > 0 {
        reasons.push(format!("{} records lost", counts.lost));
    }
    if no_duplicates && counts.duplicated > 0 {
        reasons.push(format!("{} duplicate processings", counts.duplicated));
    }
    if counts.aborted_reads > 0 {
        reasons.push(format!("{} aborted reads", counts.aborted_reads));
    }
    if counts.phantom > 0 {
        reasons.push(format!(
            "{} records processed that were never sent",
            counts.phantom
        ));
    }
    if !reasons.is_empty() {
        return Verdict::Violated { reasons };
    }
    match (profile.injects(), faults.injected) {
        (false, _) => Verdict::Baseline,
        (true, 0) => Verdict::NoFaultInjected,
        (true, _) => Verdict::Holds,
    }
}

/// One line of the seed's summary table, measured: a row across every profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SummaryRow {
    pub row: Row,
    pub label: String,
    pub mechanism: String,
    /// Profiles in which the row was measured.
    pub profiles_measured: u32,
    pub lost: u64,
    pub profiles_with_loss: u32,
    pub duplicated: u64,
    pub profiles_with_duplicates: u32,
    pub violations: u32,
    /// Latency and throughput with no faults (of the median trial).
    pub baseline_latency: Option<Latency>,
    pub baseline_throughput: Option<Throughput>,
    /// Their spread over the baseline trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_spread: Option<crate::trials::Spread>,
    /// Why the row was not measured anywhere, if it was not.
    pub unmeasured_reason: Option<String>,
}

pub fn summarize(profiles: &[ProfileResult]) -> Vec<SummaryRow> {
    Row::ALL
        .iter()
        .map(|&row| {
            let mut summary = SummaryRow {
                row,
                label: row.label().into(),
                mechanism: row.mechanism().into(),
                profiles_measured: 0,
                lost: 0,
                profiles_with_loss: 0,
                duplicated: 0,
                profiles_with_duplicates: 0,
                violations: 0,
                baseline_latency: None,
                baseline_throughput: None,
                baseline_spread: None,
                unmeasured_reason: None,
            };
            for profile in profiles {
                let Some(result) = profile.rows.iter().find(|r| r.row == row) else {
                    continue;
                };
                let Some(counts) = &result.counts else {
                    if let Status::NeedsTransactions { reason } = &result.status {
                        summary.unmeasured_reason = Some(reason.clone());
                    }
                    continue;
                };
                summary.profiles_measured += 1;
                summary.lost += counts.lost;
                summary.profiles_with_loss += u32::from(counts.lost > 0);
                summary.duplicated += counts.duplicated;
                summary.profiles_with_duplicates += u32::from(counts.duplicated > 0);
                summary.violations += u32::from(matches!(result.verdict, Verdict::Violated { .. }));
                if profile.profile == Profile::None {
                    summary.baseline_latency = result.latency.clone();
                    summary.baseline_throughput = result.throughput.clone();
                    summary.baseline_spread = result.spread.clone();
                }
            }
            if summary.profiles_measured > 0 {
                summary.unmeasured_reason = None;
            }
            summary
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(lost: u64, duplicated: u64) -> Counts {
        Counts {
            lost,
            duplicated,
            ..Counts::default()
        }
    }

    fn faults(injected: u64) -> Faults {
        Faults {
            injected,
            ..Faults::default()
        }
    }

    #[test]
    fn verdicts_as_data() {
        let cases = [
            (
                Row::AtMostOnce,
                Profile::LostAcks,
                counts(5, 0),
                faults(3),
                "Holds",
            ),
            (
                Row::AtMostOnce,
                Profile::DuplicatingNetwork,
                counts(0, 2),
                faults(9),
                "Violated { reasons: [\"2 duplicate processings\"] }",
            ),
            (
                Row::AtLeastOnce,
                Profile::LostAcks,
                counts(0, 7),
                faults(3),
                "Holds",
            ),
            (
                Row::AtLeastOnce,
                Profile::BrokerKill,
                counts(1, 0),
                faults(1),
                "Violated { reasons: [\"1 records lost\"] }",
            ),
            (
                Row::AtLeastOnceIdempotent,
                Profile::LostAcks,
                counts(0, 1),
                faults(3),
                "Violated { reasons: [\"1 duplicate processings\"] }",
            ),
            (
                Row::AtLeastOnce,
                Profile::LossyNetwork,
                counts(0, 0),
                faults(0),
                "NoFaultInjected",
            ),
            (
                Row::AtLeastOnce,
                Profile::None,
                counts(0, 0),
                faults(0),
                "Baseline",
            ),
        ];
        for (row, profile, counts, faults, expected) in cases {
            assert_eq!(
                format!("{:?}", verdict(row, profile, &counts, &faults)),
                expected,
                "{row:?} {profile:?}"
            );
        }
    }
}
