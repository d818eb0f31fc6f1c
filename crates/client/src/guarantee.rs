//! The three delivery contracts and the librdkafka settings and commit order that implement each,
//! as in the design brief's guarantee mapping. Everything here is data, so the table can be
//! tested, printed by the lab and read by a person deciding which guarantee to pay for.

use serde::{Deserialize, Serialize};

/// A delivery contract between a producer and a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Fire-and-forget: `acks=0`, no retries; the consumer commits before processing. Loss is
    /// expected, duplicates are not.
    AtMostOnce,
    /// `acks=all` (fsynced by ferry), retries until acknowledged, no idempotence; the consumer
    /// commits after processing. No loss; duplicates are expected, so the consumer must be
    /// idempotent (see [`crate::dedup`]).
    AtLeastOnce,
    /// An idempotent, transactional producer; the consumer reads committed data only and its
    /// offsets are committed inside the producer's transaction (consume-transform-produce).
    ExactlyOnce,
}

/// Where a consumer commits its position relative to processing a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitPoint {
    BeforeProcessing,
    AfterProcessing,
    /// Offsets are part of the transaction that carries the processing's output.
    InTransaction,
}

impl Guarantee {
    pub const ALL: [Guarantee; 3] = [
        Guarantee::AtMostOnce,
        Guarantee::AtLeastOnce,
        Guarantee::ExactlyOnce,
    ];

    /// The name used on the command line and in reports: `at-most-once` and so on.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::AtMostOnce => "at-most-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }

    /// The producer settings (librdkafka names) that implement the guarantee. The transactional
    /// id of [`Guarantee::ExactlyOnce`] is per application instance and comes from
    /// [`crate::Settings::transactional_id`].
    pub fn producer_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // No acknowledgement, so nothing to wait for and nothing to retry on. librdkafka
            // reports such a message delivered once it is written to the socket.
            Guarantee::AtMostOnce => &[
                ("acks", "0"),
                ("enable.idempotence", "false"),
                ("message.send.max.retries", "0"),
            ],
            // Retries without idempotence are what turn a lost acknowledgement into a duplicate:
            // the broker wrote the batch, the producer never heard and sends it again. A delivery
            // timeout of 0 means librdkafka retries until the batch is acknowledged.
            Guarantee::AtLeastOnce => &[
                ("acks", "all"),
                ("enable.idempotence", "false"),
                ("message.send.max.retries", "2147483647"),
                ("message.timeout.ms", "0"),
            ],
            Guarantee::ExactlyOnce => &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.send.max.retries", "2147483647"),
            ],
        }
    }

    /// The consumer settings that implement the guarantee. Offsets are always committed by the
    /// consumer loop, never automatically: the commit point is the whole difference.
    pub fn consumer_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Guarantee::AtMostOnce | Guarantee::AtLeastOnce => &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
            // Records of aborted (or still open) transactions are never handed out.
            Guarantee::ExactlyOnce => &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("isolation.level", "read_committed"),
            ],
        }
    }

    pub fn commit_point(self) -> CommitPoint {
        match self {
            Guarantee::AtMostOnce => CommitPoint::BeforeProcessing,
            Guarantee::AtLeastOnce => CommitPoint::AfterProcessing,
            Guarantee::ExactlyOnce => CommitPoint::InTransaction,
        }
    }

    /// The mechanism in a few words, for tables.
    pub fn mechanism(self) -> &'static str {
        match self {
            Guarantee::AtMostOnce => "acks=0, no retry; commit, then process",
            Guarantee::AtLeastOnce => "acks=all + retries; process, then commit",
            Guarantee::ExactlyOnce => "idempotent txn producer; read_committed",
        }
    }

    /// The broker APIs the guarantee needs beyond produce, fetch and consumer groups.
    pub fn required_api_keys(self) -> &'static [i16] {
        match self {
            Guarantee::AtMostOnce | Guarantee::AtLeastOnce => &[],
            // InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit.
            Guarantee::ExactlyOnce => &[22, 24, 25, 26, 28],
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;

    fn from_str(s: &str) -> Result<Guarantee, String> {
        Guarantee::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown guarantee {s}: expected at-most-once, at-least-once or exactly-once"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn mapping_as_a_table() {
        let mut out = String::new();
        for g in Guarantee::ALL {
            let producer: Vec<String> = g
                .producer_settings()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let consumer: Vec<String> = g
                .consumer_settings()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "{g}: {:?}\n  producer {}\n  consumer {}\n",
                g.commit_point(),
                producer.join(" "),
                consumer.join(" ")
            ));
        }
        expect![[r#"
            at-most-once: BeforeProcessing
              producer acks=0 enable.idempotence=false message.send.max.retries=0
              consumer enable.auto.commit=false enable.auto.offset.store=false auto.offset.reset=earliest
            at-least-once: AfterProcessing
              producer acks=all enable.idempotence=false message.send.max.retries=2147483647 message.timeout.ms=0
              consumer enable.auto.commit=false enable.auto.offset.store=false auto.offset.reset=earliest
            exactly-once: InTransaction
              producer acks=all enable.idempotence=true message.send.max.retries=2147483647
              consumer enable.auto.commit=false enable.auto.offset.store=false auto.offset.reset=earliest isolation.level=read_committed
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn names_round_trip() {
        for g in Guarantee::ALL {
            assert_eq!(g.name().parse::<Guarantee>(), Ok(g));
        }
        assert!("twice".parse::<Guarantee>().is_err());
    }
}
