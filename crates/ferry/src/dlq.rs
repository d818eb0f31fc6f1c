//! `ferry dlq list|show|replay TOPIC.dlq`: look into a dead-letter topic written by the client's
//! retrying consumer (`client::retry`, headers in `docs/dead-letters.md`) and put its records
//! back into their original topics once the cause is fixed (`client::retry::replay`: the
//! re-produced records and the position under `--group` commit in one transaction). Through
//! librdkafka, so it works against any Kafka cluster.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use clap::Subcommand;
use client::connect::ConnectArgs;
use client::retry::headers::{self as h, header_str};
use client::retry::replay::{read_all, replay, Filter, REPLAY_GROUP_DEFAULT};
use client::{Record, Settings};

/// The most bytes of a payload `show` prints.
const SHOW_PAYLOAD_BYTES_MAX: usize = 200;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Count the dead-lettered records by original topic and error.
    List(Target),
    /// Print the dead-lettered records with their headers.
    Show(Target),
    /// Produce the records back to their original topics, marked `ferry.replayed`, and commit
    /// the dead-letter topic's position under --group in the same transaction.
    Replay {
        #[command(flatten)]
        target: Target,
        /// The consumer group whose committed position says what was replayed already.
        #[arg(long, default_value = REPLAY_GROUP_DEFAULT)]
        group: String,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// The dead-letter topic, such as `orders.dlq`.
    topic: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

impl Target {
    /// The cluster to read: the bootstrap with the client settings.
    fn cluster(&self) -> Result<Settings> {
        Ok(Settings::new(&self.bootstrap).with_client(&self.connect.resolve()?))
    }
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Only records whose `ferry.error` contains this text.
    #[arg(long)]
    error: Option<String>,
    /// Only records dead-lettered at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    since: Option<String>,
    /// Only records dead-lettered before this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    until: Option<String>,
}

/// The filter `args` ask for.
fn filter(args: &FilterArgs) -> Result<Filter> {
    Ok(Filter {
        error: args.error.clone(),
        since_ms: args.since.as_deref().map(parse_time_ms).transpose()?,
        until_ms: args.until.as_deref().map(parse_time_ms).transpose()?,
    })
}

/// `2026-12-03T15:00:00Z` or milliseconds since the epoch.
fn parse_time_ms(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("parse time {text:?} (RFC 3339 or epoch milliseconds)"))?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

pub fn run(command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List(target) => {
            let filter = filter(&target.filter)?;
            let records = read_all(&target.cluster()?, &target.topic)?;
            print!("{}", summary(records.iter().filter(|r| filter.matches(r))));
            Ok(())
        }
        DlqCommand::Show(target) => {
            let filter = filter(&target.filter)?;
            for record in read_all(&target.cluster()?, &target.topic)? {
                if filter.matches(&record) {
                    print!("{}", show(&record));
                }
            }
            Ok(())
        }
        DlqCommand::Replay { target, group } => {
            let filter = filter(&target.filter)?;
            let replayed = replay(&target.cluster()?, &target.topic, &group, &filter)?;
            println!(
                "replayed {} of {} records read from {}",
                replayed.replayed, replayed.read, target.topic
            );
            Ok(())
        }
    }
}

/// The records counted by original topic and error, as a table.
pub fn summary<'r>(records: impl Iterator<Item = &'r Record>) -> String {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in records {
        let topic = header_str(record, h::ORIGINAL_TOPIC)
            .unwrap_or("?")
            .to_string();
        let error = header_str(record, h::ERROR).unwrap_or("?").to_string();
        *counts.entry((topic, error)).or_default() += 1;
    }
    let mut out = format!("{:<24} {:>8}  ERROR\n", "ORIGINAL-TOPIC", "RECORDS");
    for ((topic, error), count) in &counts {
        out.push_str(&format!("{topic:<24} {count:>8}  {error}\n"));
    }
    out.push_str(&format!(
        "{:<24} {:>8}\n",
        "total",
        counts.values().sum::<usize>()
    ));
    out
}

/// One record as `show` prints it: where it is, its key, headers and the start of its payload.
pub fn show(record: &Record) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut out = format!(
        "{}/{} @{} key={}\n",
        record.topic,
        record.partition,
        record.offset,
        record.key.as_deref().map_or("-".into(), text)
    );
    for (name, value) in &record.headers {
        out.push_str(&format!("  {name}: {}\n", text(value)));
    }
    let payload = record.payload.as_deref().unwrap_or_default();
    let shown = &payload[..payload.len().min(SHOW_PAYLOAD_BYTES_MAX)];
    let more = if shown.len() < payload.len() {
        "…"
    } else {
        ""
    };
    out.push_str(&format!("  payload: {}{more}\n", text(shown)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn record(error: &str, at_ms: i64) -> Record {
        Record {
            topic: "orders.dlq".into(),
            partition: 0,
            offset: 3,
            key: Some(b"order-1".to_vec()),
            payload: Some(b"{\"total\": 12}".to_vec()),
            timestamp_ms: Some(at_ms),
            headers: vec![
                (h::ORIGINAL_TOPIC.into(), b"orders".to_vec()),
                (h::ERROR.into(), error.as_bytes().to_vec()),
            ],
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_epoch_ms() {
        assert_eq!(parse_time_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time_ms("yesterday").is_err());
    }

    #[test]
    fn summary_and_show() {
        let records = [
            record("permanent: bad", 1),
            record("permanent: bad", 2),
            record("transient: db", 3),
        ];
        expect![[r#"
            ORIGINAL-TOPIC            RECORDS  ERROR
            orders                          2  permanent: bad
            orders                          1  transient: db
            total                           3
        "#]]
        .assert_eq(&summary(records.iter()));
        expect![[r#"
            orders.dlq/0 @3 key=order-1
              ferry.original.topic: orders
              ferry.error: permanent: bad
              payload: {"total": 12}
        "#]]
        .assert_eq(&show(&records[0]));
    }
}
