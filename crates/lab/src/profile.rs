//! The fault profiles of the design brief, the run parameters of `--quick` and the default
//! thorough mode, and which profile applies to which guarantee.

use std::time::Duration;

use chaos::Plan;
use client::Guarantee;
use serde::{Deserialize, Serialize};

use crate::workload::Row;

/// One way the world goes wrong during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    None,
    LostAcks,
    LossyNetwork,
    DuplicatingNetwork,
    SlowNetwork,
    BrokerKill,
    ConsumerCrash,
    ProducerCrash,
    /// A third consumer joins the group mid-run and leaves again (sink rows only).
    Rebalance,
    /// 1% of records fail transiently, 0.1% always: the retry policy's own table
    /// (`poison.rs`), not a run of the rows above. Not in [`Profile::ALL`].
    PoisonMessages,
}

impl Profile {
    pub const ALL: [Profile; 9] = [
        Profile::None,
        Profile::LostAcks,
        Profile::LossyNetwork,
        Profile::DuplicatingNetwork,
        Profile::SlowNetwork,
        Profile::BrokerKill,
        Profile::ConsumerCrash,
        Profile::ProducerCrash,
        Profile::Rebalance,
    ];

    /// Every profile `--profile` takes: the fault profiles, then `poison-messages`.
    pub const SELECTABLE: [Profile; Profile::ALL.len() + 1] = {
        let mut selectable = [Profile::PoisonMessages; Profile::ALL.len() + 1];
        let mut i = 0;
        while i < Profile::ALL.len() {
            selectable[i] = Profile::ALL[i];
            i += 1;
        }
        selectable
    };

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::LostAcks => "lost-acks",
            Profile::LossyNetwork => "lossy-network",
            Profile::DuplicatingNetwork => "duplicating-network",
            Profile::SlowNetwork => "slow-network",
            Profile::BrokerKill => "broker-kill",
            Profile::ConsumerCrash => "consumer-crash",
            Profile::ProducerCrash => "producer-crash",
            Profile::Rebalance => "rebalance",
            Profile::PoisonMessages => "poison-messages",
        }
    }

    /// The heading in reports.
    pub fn title(self) -> &'static str {
        match self {
            Profile::None => "no faults",
            Profile::LostAcks => "lost acks",
            Profile::LossyNetwork => "lossy network",
            Profile::DuplicatingNetwork => "duplicating network",
            Profile::SlowNetwork => "slow network",
            Profile::BrokerKill => "broker kill -9 and restart",
            Profile::ConsumerCrash => "consumer crash between processing and commit",
            Profile::ProducerCrash => "producer crash inside a transaction",
            Profile::Rebalance => "a consumer joins the group and leaves again",
            Profile::PoisonMessages => "poison messages: handlers that fail",
        }
    }

    /// What the profile does, with its parameters.
    pub fn description(self, params: &Params) -> String {
        let pct = |p: f64| format!("{:.0}%", p * 100.0);
        match self {
            Profile::None => "the baseline: nothing is injected".into(),
            Profile::LostAcks => format!(
                "the proxy loses {} of produce/commit responses, resetting the connection",
                pct(params.lost_acks_probability)
            ),
            Profile::LossyNetwork => format!(
                "the proxy loses {} of all frames, both ways, and resets their connection",
                pct(params.lossy_probability)
            ),
            Profile::DuplicatingNetwork => format!(
                "the proxy sends {} of requests to the broker twice, as a retry would",
                pct(params.duplicate_probability)
            ),
            Profile::SlowNetwork => format!(
                "the proxy holds every frame {}..{} ms, one after another per connection and direction",
                params.slow_min_ms, params.slow_max_ms
            ),
            Profile::BrokerKill => format!(
                "kill -9 of the broker mid-run, restart after {} ms",
                params.kill_downtime_ms
            ),
            Profile::ConsumerCrash => format!(
                "{} consumer crashes after processing part of a batch, before its commit",
                params.consumer_crashes
            ),
            Profile::ProducerCrash => "the producer dies with a transaction open".into(),
            Profile::Rebalance => {
                "beside the sink's two consumers a third joins mid-run (a rebalance), applies, \
                 and leaves (another)"
                    .into()
            }
            Profile::PoisonMessages => {
                "1% of records fail transiently, 0.1% always; retried in place or through retry \
                 topics, dead-lettered, replayed after the fix"
                    .into()
            }
        }
    }

    /// The proxy plan during the run; process faults (kill, crash) run with no proxy faults.
    pub fn plan(self, seed: u64, params: &Params) -> Plan {
        match self {
            Profile::LostAcks => Plan::lost_acks_with_reset(seed, params.lost_acks_probability),
            Profile::LossyNetwork => Plan::lossy_network_with_reset(seed, params.lossy_probability),
            Profile::DuplicatingNetwork => {
                Plan::duplicating_network(seed, params.duplicate_probability)
            }
            Profile::SlowNetwork => {
                Plan::slow_network(seed, params.slow_min_ms, params.slow_max_ms)
            }
            Profile::None
            | Profile::BrokerKill
            | Profile::ConsumerCrash
            | Profile::ProducerCrash
            | Profile::Rebalance
            | Profile::PoisonMessages => Plan::none(seed),
        }
    }

    /// Whether the profile works through the proxy (and so needs clients to go through it).
    pub fn uses_proxy(self) -> bool {
        matches!(
            self,
            Profile::LostAcks
                | Profile::LossyNetwork
                | Profile::DuplicatingNetwork
                | Profile::SlowNetwork
        )
    }

    /// Whether the profile must start and stop the broker process.
    pub fn needs_broker_process(self) -> bool {
        self == Profile::BrokerKill
    }

    /// Whether a run under this profile must record at least one injected fault to count.
    pub fn injects(self) -> bool {
        self != Profile::None
    }

    /// Why the profile does not apply to `row`, if it does not.
    pub fn not_applicable(self, row: Row) -> Option<&'static str> {
        match (self, row.guarantee()) {
            (Profile::ProducerCrash, Guarantee::AtMostOnce | Guarantee::AtLeastOnce) => {
                Some("no transactions to crash inside")
            }
            // The other rows run one consumer; the sink rows run two, to rebalance between.
            (Profile::Rebalance, _) if !row.is_sink() => Some("run for the sink rows"),
            _ => None,
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        Profile::SELECTABLE
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::SELECTABLE.iter().map(|p| p.name()).collect();
                format!(
                    "unknown fault profile {s}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Everything that sizes a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub partitions: i32,
    /// Records sent at `rate_per_second`, for latency.
    pub paced_records: u64,
    pub rate_per_second: u64,
    /// Records sent as fast as the producer takes them, for throughput.
    pub burst_records: u64,
    /// The burst of the baseline (no faults) and cost-curve runs, whose throughput is the one
    /// rows are compared by: long enough that the wait for the last commit window is a small
    /// part of it (at 300k records/s, 300,000 records take a second; a 100 ms window is a
    /// tenth of that, a 30,000-record burst would be half).
    #[serde(default)]
    pub baseline_burst_records: u64,
    pub payload_bytes: usize,
    pub lost_acks_probability: f64,
    pub lossy_probability: f64,
    pub duplicate_probability: f64,
    pub slow_min_ms: u64,
    pub slow_max_ms: u64,
    pub kill_downtime_ms: u64,
    pub consumer_crashes: u32,
    /// How long the heal phase may take to deliver what is still in flight.
    pub drain_timeout_ms: u64,
    /// How often the loops that commit after processing commit: the at-least-once consumers'
    /// offsets, the exactly-once producer's transactions, the sinks' database transactions.
    #[serde(default = "commit_interval_ms_default")]
    pub commit_interval_ms: u64,
}

fn commit_interval_ms_default() -> u64 {
    client::commit::COMMIT_INTERVAL_DEFAULT.as_millis() as u64
}

impl Params {
    /// Small enough that the whole lab finishes in under a minute.
    pub fn quick() -> Params {
        Params {
            partitions: 3,
            paced_records: 600,
            rate_per_second: 2_000,
            burst_records: 3_000,
            baseline_burst_records: 3_000,
            payload_bytes: 100,
            lost_acks_probability: 0.08,
            lossy_probability: 0.02,
            duplicate_probability: 0.10,
            slow_min_ms: 2,
            slow_max_ms: 20,
            kill_downtime_ms: 300,
            consumer_crashes: 2,
            drain_timeout_ms: 20_000,
            commit_interval_ms: commit_interval_ms_default(),
        }
    }

    /// Enough records for stable percentiles and rates.
    pub fn thorough() -> Params {
        Params {
            partitions: 3,
            paced_records: 10_000,
            rate_per_second: 2_000,
            burst_records: 30_000,
            baseline_burst_records: 300_000,
            payload_bytes: 100,
            lost_acks_probability: 0.05,
            lossy_probability: 0.01,
            duplicate_probability: 0.05,
            slow_min_ms: 2,
            slow_max_ms: 20,
            kill_downtime_ms: 1_000,
            consumer_crashes: 5,
            drain_timeout_ms: 60_000,
            commit_interval_ms: commit_interval_ms_default(),
        }
    }

    /// These parameters for a baseline or cost-curve run: the longer burst.
    pub fn baseline(&self) -> Params {
        Params {
            burst_records: self.baseline_burst_records.max(self.burst_records),
            ..self.clone()
        }
    }

    /// Record ids sent at the paced rate (latency is measured on these).
    pub fn paced_ids(&self) -> std::ops::Range<u64> {
        0..self.paced_records
    }

    /// Record ids sent in the burst (throughput is measured on these).
    pub fn burst_ids(&self) -> std::ops::Range<u64> {
        self.paced_records..self.paced_records + self.burst_records
    }

    pub fn records(&self) -> u64 {
        self.paced_records + self.burst_records
    }

    /// The commit policy of every loop that commits after processing.
    pub fn commit_policy(&self) -> client::CommitPolicy {
        client::CommitPolicy::every(Duration::from_millis(self.commit_interval_ms))
    }

    /// How long the paced part takes.
    pub fn paced_ms(&self) -> u64 {
        self.paced_records * 1000 / self.rate_per_second.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_plans_are_valid() {
        for profile in Profile::SELECTABLE {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
            for params in [Params::quick(), Params::thorough()] {
                profile.plan(1, &params).validate().unwrap();
            }
        }
    }

    #[test]
    fn only_transactional_guarantees_take_a_producer_crash_in_a_transaction() {
        assert!(Profile::ProducerCrash
            .not_applicable(Row::AtLeastOnce)
            .is_some());
        assert!(Profile::ProducerCrash
            .not_applicable(Row::ExactlyOnce)
            .is_none());
        assert!(Profile::ProducerCrash
            .not_applicable(Row::SinkPostgres)
            .is_none());
        assert!(Profile::LostAcks.not_applicable(Row::AtMostOnce).is_none());
        assert!(Profile::Rebalance
            .not_applicable(Row::ExactlyOnce)
            .is_some());
        assert!(Profile::Rebalance.not_applicable(Row::SinkSqlite).is_none());
    }
}
