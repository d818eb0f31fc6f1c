//! Where a failed record goes and what it carries there: the names of retry and dead-letter
//! topics, the `ferry.*` headers of a moved record, and the record a move produces, as pure
//! functions of the failed record, the failure and the time (`now_ms`, wall-clock milliseconds,
//! since due times cross processes). Format: `docs/dead-letters.md`.

use std::time::Duration;

use crate::consumer::Record;

/// The topic the record was first produced to.
pub const ORIGINAL_TOPIC: &str = "ferry.original.topic";
/// Its partition there, decimal.
pub const ORIGINAL_PARTITION: &str = "ferry.original.partition";
/// Its offset there, decimal.
pub const ORIGINAL_OFFSET: &str = "ferry.original.offset";
/// The last failure, as the handler gave it (`transient: …` or `permanent: …`).
pub const ERROR: &str = "ferry.error";
/// How many attempts have failed so far, decimal.
pub const ATTEMPT: &str = "ferry.attempt";
/// When the first attempt failed, wall-clock milliseconds since the Unix epoch, decimal.
pub const FIRST_FAILURE_MS: &str = "ferry.first.failure.ms";
/// Retry topics only: the earliest time the next attempt may run, as above.
pub const DUE_MS: &str = "ferry.due.ms";
/// Set by `ferry dlq replay` on the record it puts back into the original topic: the dead-letter
/// topic, partition and offset it came from.
pub const REPLAYED: &str = "ferry.replayed";

/// The headers a move writes; any older values of them are dropped first.
const MOVE_HEADERS: [&str; 7] = [
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ERROR,
    ATTEMPT,
    FIRST_FAILURE_MS,
    DUE_MS,
];

/// The longest error text a header carries; a longer one is cut (on a character boundary).
pub const ERROR_BYTES_MAX: usize = 1024;

/// A delay as a topic name part: `500ms`, `1s`, `30s`, `2m`.
pub fn delay_name(delay: Duration) -> String {
    let ms = delay.as_millis();
    // `%` rather than `is_multiple_of` (Rust 1.87), for the workspace's rust-version 1.85.
    if ms == 0 || ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// `orders` → `orders.retry.30s`.
pub fn retry_topic(topic: &str, delay: Duration) -> String {
    format!("{topic}.retry.{}", delay_name(delay))
}

/// `orders` → `orders.dlq`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Where a failed record came from and how far its attempts went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Attempts that failed before this delivery.
    pub attempts_failed: u32,
    pub first_failure_ms: Option<i64>,
}

impl Origin {
    /// The origin of `record`. A record of a retry topic carries it in headers; any other record
    /// is its own origin with no failed attempts, even one replayed from a dead-letter topic
    /// (its old `ferry.*` headers describe its last life: a replay starts over).
    pub fn of(record: &Record) -> Origin {
        let own = Origin {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            attempts_failed: 0,
            first_failure_ms: None,
        };
        let Some(topic) = header_str(record, ORIGINAL_TOPIC) else {
            return own;
        };
        if topic == record.topic || !record.topic.starts_with(&format!("{topic}.retry.")) {
            return own;
        }
        Origin {
            topic: topic.to_string(),
            partition: header_num(record, ORIGINAL_PARTITION).unwrap_or(-1),
            offset: header_num(record, ORIGINAL_OFFSET).unwrap_or(-1),
            attempts_failed: header_num(record, ATTEMPT).unwrap_or(0),
            first_failure_ms: header_num(record, FIRST_FAILURE_MS),
        }
    }

    /// The number of the attempt this delivery makes.
    pub fn attempt(&self) -> u32 {
        self.attempts_failed + 1
    }
}

/// A record to produce to a retry or dead-letter topic. The key is the failed record's own, so
/// the moved record lands in the same partition order by key and an idempotent consumer keyed
/// on it recognises it after a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The record that carries `record` to `topic` after its attempt `attempt` failed with `error`
/// at `now_ms`; `due_ms` for a retry topic.
pub fn moved(
    record: &Record,
    topic: String,
    attempt: u32,
    error: &str,
    now_ms: i64,
    due_ms: Option<i64>,
) -> Moved {
    let origin = Origin::of(record);
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(name, _)| !MOVE_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect();
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value.into_bytes()));
    add(ORIGINAL_TOPIC, origin.topic);
    add(ORIGINAL_PARTITION, origin.partition.to_string());
    add(ORIGINAL_OFFSET, origin.offset.to_string());
    add(ERROR, cut(error, ERROR_BYTES_MAX).to_string());
    add(ATTEMPT, attempt.to_string());
    add(
        FIRST_FAILURE_MS,
        origin.first_failure_ms.unwrap_or(now_ms).to_string(),
    );
    if let Some(due_ms) = due_ms {
        add(DUE_MS, due_ms.to_string());
    }
    Moved {
        topic,
        key: record.key.clone(),
        payload: record.payload.clone(),
        headers,
    }
}

/// When a record of a retry topic may be attempted again (`None`: now, it has no due time).
pub fn due_ms(record: &Record) -> Option<i64> {
    header_num(record, DUE_MS)
}

/// The value of the first header `name` of `record`, if it is UTF-8.
pub fn header_str<'r>(record: &'r Record, name: &str) -> Option<&'r str> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}

/// The value of the first header `name` of `record` as a decimal number.
pub fn header_num<T: std::str::FromStr>(record: &Record, name: &str) -> Option<T> {
    header_str(record, name).and_then(|s| s.parse().ok())
}

/// `text` cut to at most `bytes_max` bytes on a character boundary.
fn cut(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn record(topic: &str, headers: &[(&str, &str)]) -> Record {
        Record {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            key: Some(b"order-7".to_vec()),
            payload: Some(b"{}".to_vec()),
            timestamp_ms: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn delay_names() {
        let name = |ms| delay_name(Duration::from_millis(ms));
        assert_eq!(name(0), "0ms");
        assert_eq!(name(250), "250ms");
        assert_eq!(name(1000), "1s");
        assert_eq!(name(1500), "1500ms");
        assert_eq!(name(30_000), "30s");
        assert_eq!(name(120_000), "2m");
        assert_eq!(
            retry_topic("orders", Duration::from_secs(30)),
            "orders.retry.30s"
        );
        assert_eq!(dlq_topic("orders"), "orders.dlq");
    }

    /// Moves `record` (attempt 2 failed at time 5000, due at 9000 when `due`) and prints the
    /// moved record's topic and headers.
    fn check_move(record: Record, topic: &str, due: Option<i64>, expect: Expect) {
        let moved = moved(&record, topic.into(), 2, "transient: db down", 5000, due);
        let headers: Vec<String> = moved
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect();
        expect.assert_eq(&format!(
            "{} key={}\n{}",
            moved.topic,
            String::from_utf8_lossy(moved.key.as_deref().unwrap_or_default()),
            headers.join("\n")
        ));
    }

    #[test]
    fn moves_as_data() {
        // From the original topic: the record is its own origin, the first failure is now.
        check_move(
            record("orders", &[("trace", "abc")]),
            "orders.retry.1s",
            Some(9000),
            expect![[r#"
                orders.retry.1s key=order-7
                trace=abc
                ferry.original.topic=orders
                ferry.original.partition=2
                ferry.original.offset=41
                ferry.error=transient: db down
                ferry.attempt=2
                ferry.first.failure.ms=5000
                ferry.due.ms=9000"#]],
        );
        // From a retry topic: origin and first failure come along, old values are replaced.
        check_move(
            record(
                "orders.retry.1s",
                &[
                    (ORIGINAL_TOPIC, "orders"),
                    (ORIGINAL_PARTITION, "0"),
                    (ORIGINAL_OFFSET, "7"),
                    (ERROR, "transient: old"),
                    (ATTEMPT, "1"),
                    (FIRST_FAILURE_MS, "1234"),
                    (DUE_MS, "2000"),
                ],
            ),
            "orders.dlq",
            None,
            expect![[r#"
                orders.dlq key=order-7
                ferry.original.topic=orders
                ferry.original.partition=0
                ferry.original.offset=7
                ferry.error=transient: db down
                ferry.attempt=2
                ferry.first.failure.ms=1234"#]],
        );
    }

    /// The origin of a record of `topic` with an original-topic header of `original` and
    /// `attempt` failed attempts: (origin topic, partition, offset, attempt of this delivery).
    fn check_origin(topic: &str, original: Option<&str>, expect: (&str, i32, i64, u32)) {
        let mut headers = vec![
            (ORIGINAL_PARTITION, "0"),
            (ORIGINAL_OFFSET, "7"),
            (ATTEMPT, "3"),
        ];
        if let Some(original) = original {
            headers.push((ORIGINAL_TOPIC, original));
        }
        let origin = Origin::of(&record(topic, &headers));
        assert_eq!(
            (
                origin.topic.as_str(),
                origin.partition,
                origin.offset,
                origin.attempt()
            ),
            expect,
            "{topic} from {original:?}"
        );
    }

    #[test]
    fn origins() {
        check_origin("orders", None, ("orders", 2, 41, 1));
        check_origin("orders.retry.1s", Some("orders"), ("orders", 0, 7, 4));
        // Replayed into the original topic: a new life, attempts start over.
        check_origin("orders", Some("orders"), ("orders", 2, 41, 1));
        // A header naming some other topic is not this record's retry history.
        check_origin(
            "payments.retry.1s",
            Some("orders"),
            ("payments.retry.1s", 2, 41, 1),
        );
    }
}
