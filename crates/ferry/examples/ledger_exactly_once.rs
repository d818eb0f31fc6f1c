//! A ledger, exactly-once into PostgreSQL: money transfers between accounts, each applied once,
//! so the total never changes and no transfer is lost or doubled.
//!
//! - The producer is transactional (`client::transactional::TxnProducer`): transfers become
//!   visible to read_committed consumers a transaction at a time.
//! - The consumer is the `sink` crate's `Sink`: each batch's effects and the partitions' next
//!   offsets commit in one PostgreSQL transaction; the broker's committed offsets are never read.
//!
//! ```text
//! ferry serve &
//! FERRY_EXAMPLE_POSTGRES='host=127.0.0.1 user=postgres' \
//!     cargo run --example ledger_exactly_once [-- HOST:PORT]
//! ```
//!
//! Without `FERRY_EXAMPLE_POSTGRES` it starts a throwaway PostgreSQL of its own (`initdb` and
//! `pg_ctl` on the machine, see `sink::local_postgres`). Exits 0 when every transfer was applied
//! exactly once and the ledger balances.

mod common;

use std::time::{Duration, Instant};

use client::transactional::{Output, TxnProducer};
use client::Settings;
use sink::local_postgres::LocalPostgres;
use sink::postgres::PostgresBackend;
use sink::Sink;

const TRANSFERS: u64 = 2_000;
const ACCOUNTS: i64 = 10;
const INITIAL_BALANCE: i64 = 1_000;
/// Transfers per producer transaction.
const PER_TRANSACTION: u64 = 100;
/// How long the sink may take to apply everything.
const DEADLINE: Duration = Duration::from_secs(60);

/// Transfer `id`: from one account to the next, a small amount (a pure function of the id).
fn transfer(id: u64) -> (i32, i32, i64) {
    let from = (id % ACCOUNTS as u64) as i32;
    let to = ((id + 1 + id / 7 % (ACCOUNTS as u64 - 1)) % ACCOUNTS as u64) as i32;
    let to = if to == from {
        (to + 1) % ACCOUNTS as i32
    } else {
        to
    };
    (from, to, (id * 37 % 50 + 1) as i64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = common::bootstrap();
    let topic = common::fresh("ledger");
    common::create_topics(&bootstrap, std::slice::from_ref(&topic), 3)?;

    // A database of this run's own, on the given server or a throwaway one.
    let (_server, server_config) = match std::env::var("FERRY_EXAMPLE_POSTGRES") {
        Ok(config) => (None, config),
        Err(_) => {
            let server = LocalPostgres::start()?;
            let config = server.config();
            (Some(server), config)
        }
    };
    let database = topic.replace('-', "_");
    PostgresBackend::connect(&server_config)?
        .batch_execute(&format!("CREATE DATABASE {database}"))?;
    let config = format!("{server_config} dbname={database}");
    let mut db = PostgresBackend::connect(&config)?;
    db.batch_execute(&format!(
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL);
         CREATE TABLE applied (transfer_id BIGINT NOT NULL);
         INSERT INTO accounts SELECT g, {INITIAL_BALANCE} FROM generate_series(0, {}) g;",
        ACCOUNTS - 1
    ))?;

    let settings = Settings::new(&bootstrap)
        .group_id(format!("{topic}-ledger"))
        .transactional_id(format!("{topic}-bank"));
    let producer = TxnProducer::new(&settings)?;
    for first in (0..TRANSFERS).step_by(PER_TRANSACTION as usize) {
        producer.begin()?;
        for id in first..(first + PER_TRANSACTION).min(TRANSFERS) {
            producer.send(&Output {
                topic: topic.clone(),
                partition: None,
                key: id.to_string().into_bytes(),
                payload: format!("{:?}", transfer(id)).into_bytes(),
            })?;
        }
        producer.commit()?;
    }

    let sink = Sink::new(&settings, PostgresBackend::connect(&config)?)?;
    sink.subscribe(&[&topic])?;
    let deadline = Instant::now() + DEADLINE;
    while applied(&mut db)? < TRANSFERS as i64 && Instant::now() < deadline {
        sink.step(Duration::from_millis(100), |records, tx| {
            for record in records {
                let id: u64 =
                    std::str::from_utf8(record.key.as_deref().unwrap_or_default())?.parse()?;
                let (from, to, amount) = transfer(id);
                tx.execute(
                    "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
                    &[&amount, &from],
                )?;
                tx.execute(
                    "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
                    &[&amount, &to],
                )?;
                tx.execute(
                    "INSERT INTO applied (transfer_id) VALUES ($1)",
                    &[&(id as i64)],
                )?;
            }
            Ok::<(), Box<dyn std::error::Error>>(())
        })?;
    }

    let rows = db.query(
        "SELECT (SELECT COUNT(*) FROM applied), (SELECT COUNT(DISTINCT transfer_id) FROM applied),
                (SELECT SUM(balance)::BIGINT FROM accounts)",
        &[],
    )?;
    let (applied, distinct, total): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    println!(
        "ledger: {applied} transfers applied ({distinct} distinct) of {TRANSFERS}; total {total} \
         (was {})",
        ACCOUNTS * INITIAL_BALANCE
    );
    if applied != TRANSFERS as i64 || distinct != applied || total != ACCOUNTS * INITIAL_BALANCE {
        return Err("exactly-once broken".into());
    }
    println!("exactly-once held: every transfer applied once, the ledger balances");
    Ok(())
}

fn applied(db: &mut PostgresBackend) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(db.query("SELECT COUNT(*) FROM applied", &[])?[0].get(0))
}
