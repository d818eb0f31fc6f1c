//! The stamp every audit record carries: its lane, the auditor run that sent it, its sequence
//! number in the lane and its send time. The value is one short line of text, so a person
//! reading the topic with kcat sees what it is; the key names the record (`run-seq`), which is
//! what the idempotent consumer deduplicates on.
//!
//! ```text
//! ferry-audit/1 <lane> <run> <seq> <sent_ms>
//! ferry-audit/1 at-least-once 3 120455 1764776400123
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The first word of every stamp: the format and its version.
pub const STAMP_MAGIC: &str = "ferry-audit/1";

/// One lane per guarantee the auditor checks, each on its own topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lane {
    /// `acks=0`, no retries; loss is allowed, so it is the control lane.
    AtMostOnce,
    /// `acks=all` and retries, every delivery counted: duplicates are allowed.
    AtLeastOnce,
    /// The same producer, read through the idempotent consumer (`client::dedup::Idempotent`):
    /// the effects, which must have neither loss nor duplicates.
    AtLeastOnceIdempotent,
    /// Transactional producer, `read_committed` consumer; some transactions aborted on purpose.
    ExactlyOnce,
}

impl Lane {
    pub const ALL: [Lane; 4] = [
        Lane::AtMostOnce,
        Lane::AtLeastOnce,
        Lane::AtLeastOnceIdempotent,
        Lane::ExactlyOnce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Lane::AtMostOnce => "at-most-once",
            Lane::AtLeastOnce => "at-least-once",
            Lane::AtLeastOnceIdempotent => "at-least-once-idempotent",
            Lane::ExactlyOnce => "exactly-once",
        }
    }

    /// The lane's topic: one partition, so order and reordering are the partition's.
    pub fn topic(self) -> String {
        format!("ferry-audit-{}", self.name())
    }

    /// The guarantee whose producer settings the lane uses.
    pub fn guarantee(self) -> client::Guarantee {
        match self {
            Lane::AtMostOnce => client::Guarantee::AtMostOnce,
            Lane::AtLeastOnce | Lane::AtLeastOnceIdempotent => client::Guarantee::AtLeastOnce,
            Lane::ExactlyOnce => client::Guarantee::ExactlyOnce,
        }
    }

    /// Whether the producer waits for `acks=all`: the lanes that must lose nothing.
    pub fn acks_all(self) -> bool {
        self != Lane::AtMostOnce
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Lane {
    type Err = String;

    fn from_str(s: &str) -> Result<Lane, String> {
        Lane::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Lane::ALL.iter().map(|l| l.name()).collect();
                format!("unknown lane {s}: expected one of {}", names.join(", "))
            })
    }
}

/// What a record says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub lane: Lane,
    /// The auditor run that sent it: each start of `ferry audit` is the next run of the lane.
    pub run: u64,
    /// The record's number in its lane; runs continue the sequence of the run before.
    pub seq: u64,
    /// When it was handed to the producer, wall-clock milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// Why a record's value is not a stamp.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StampError {
    #[error("not a ferry audit stamp (expected {STAMP_MAGIC} first)")]
    Magic,
    #[error("stamp is not UTF-8")]
    Utf8,
    #[error("stamp has {0} fields, expected 5")]
    Fields(usize),
    #[error("stamp field {field}: {value:?} is not a number")]
    Number { field: &'static str, value: String },
    #[error("stamp lane: {0}")]
    Lane(String),
}

impl Stamp {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{STAMP_MAGIC} {} {} {} {}",
            self.lane, self.run, self.seq, self.sent_ms
        )
        .into_bytes()
    }

    /// The record key: the record's identity within its lane.
    pub fn key(&self) -> Vec<u8> {
        format!("{}-{}", self.run, self.seq).into_bytes()
    }

    pub fn decode(value: &[u8]) -> Result<Stamp, StampError> {
        let text = std::str::from_utf8(value).map_err(|_| StampError::Utf8)?;
        let fields: Vec<&str> = text.split(' ').collect();
        if fields.first() != Some(&STAMP_MAGIC) {
            return Err(StampError::Magic);
        }
        let [_, lane, run, seq, sent_ms] = fields[..] else {
            return Err(StampError::Fields(fields.len()));
        };
        let number = |field: &'static str, value: &str| {
            value.parse::<u64>().map_err(|_| StampError::Number {
                field,
                value: value.to_string(),
            })
        };
        Ok(Stamp {
            lane: lane.parse().map_err(StampError::Lane)?,
            run: number("run", run)?,
            seq: number("seq", seq)?,
            sent_ms: number("sent_ms", sent_ms)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(value: &str, expect: Expect) {
        let out = match Stamp::decode(value.as_bytes()) {
            Ok(stamp) => {
                assert_eq!(Stamp::decode(&stamp.encode()), Ok(stamp), "round trip");
                format!("{stamp:?} key {}", String::from_utf8_lossy(&stamp.key()))
            }
            Err(error) => format!("error: {error}"),
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn stamps_as_data() {
        check(
            "ferry-audit/1 at-least-once 3 120455 1764776400123",
            expect!["Stamp { lane: AtLeastOnce, run: 3, seq: 120455, sent_ms: 1764776400123 } key 3-120455"],
        );
        check(
            "ferry-audit/1 exactly-once 1 0 0",
            expect!["Stamp { lane: ExactlyOnce, run: 1, seq: 0, sent_ms: 0 } key 1-0"],
        );
        check(
            "hello",
            expect!["error: not a ferry audit stamp (expected ferry-audit/1 first)"],
        );
        check(
            "ferry-audit/1 exactly-once 1 0",
            expect!["error: stamp has 4 fields, expected 5"],
        );
        check(
            "ferry-audit/1 exactly-once 1 -2 0",
            expect![[r#"error: stamp field seq: "-2" is not a number"#]],
        );
        check(
            "ferry-audit/1 twice 1 2 0",
            expect!["error: stamp lane: unknown lane twice: expected one of at-most-once, at-least-once, at-least-once-idempotent, exactly-once"],
        );
    }

    #[test]
    fn not_utf8() {
        assert_eq!(Stamp::decode(&[0xff, 0xfe]), Err(StampError::Utf8));
    }
}
