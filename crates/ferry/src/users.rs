//! `ferry users add|delete|list --data-dir DIR`: the SCRAM credential store of a stopped broker
//! (`broker::users`, format in `docs/credentials.md`). The password is read from stdin, one line,
//! never from a flag (flags show in `ps` and shell history); only its salted keys are stored. A
//! running broker holds the data directory's lock, so this refuses rather than write behind its
//! back (use AlterUserScramCredentials against a running broker instead).

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use broker::users::{check_user_name, Users};
use rand::RngCore;
use sasl::{ScramCredential, ScramMechanism};

use crate::data_dir_lock::DataDirLock;

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user or change its password (read from stdin, one line).
    Add {
        name: String,
        #[command(flatten)]
        dir: DataDir,
        /// SCRAM mechanisms to store keys for (default: both).
        #[arg(long = "mechanism", value_parser = parse_mechanism)]
        mechanisms: Vec<ScramMechanism>,
        /// PBKDF2 iterations (Kafka's bounds: 4096..=16384).
        #[arg(long, default_value_t = sasl::ITERATIONS_DEFAULT)]
        iterations: u32,
    },
    /// Delete a user's credentials (all of them, or those of --mechanism).
    Delete {
        name: String,
        #[command(flatten)]
        dir: DataDir,
        #[arg(long = "mechanism", value_parser = parse_mechanism)]
        mechanisms: Vec<ScramMechanism>,
    },
    /// List users and their mechanisms (never keys).
    List {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Args)]
pub struct DataDir {
    /// The broker's data directory (`log.dirs`); the broker must be stopped.
    #[arg(long)]
    data_dir: PathBuf,
}

fn parse_mechanism(name: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::parse(name)
        .ok_or_else(|| format!("unknown SCRAM mechanism {name:?} (SCRAM-SHA-256 or SCRAM-SHA-512)"))
}

pub fn run(command: UsersCommand) -> Result<()> {
    let data_dir = match &command {
        UsersCommand::Add { dir, .. }
        | UsersCommand::Delete { dir, .. }
        | UsersCommand::List { dir } => dir.data_dir.clone(),
    };
    let _lock = DataDirLock::acquire(&data_dir)?;
    let mut users = Users::open(Arc::new(storage::FsDisk), &data_dir)
        .with_context(|| format!("open the credential store in {}", data_dir.display()))?;
    match command {
        UsersCommand::Add {
            name,
            mechanisms,
            iterations,
            ..
        } => {
            if let Some(why) = check_user_name(&name) {
                bail!("{why}");
            }
            let password = read_password()?;
            let upserts = or_all(mechanisms)
                .into_iter()
                .map(|mechanism| {
                    let mut salt = [0; sasl::SALT_BYTES];
                    rand::rngs::OsRng.fill_bytes(&mut salt);
                    let credential = ScramCredential::from_password(
                        mechanism,
                        password.as_bytes(),
                        &salt,
                        iterations,
                    )?;
                    Ok((name.clone(), mechanism, credential))
                })
                .collect::<Result<Vec<_>>>()?;
            users.apply(&[], upserts)?;
            println!("user {name} stored");
        }
        UsersCommand::Delete {
            name, mechanisms, ..
        } => {
            let deletions: Vec<_> = or_all(mechanisms)
                .into_iter()
                .filter(|m| users.credential(&name, *m).is_some())
                .map(|m| (name.clone(), m))
                .collect();
            if deletions.is_empty() {
                bail!("no such user credential: {name}");
            }
            users.apply(&deletions, vec![])?;
            println!("user {name} deleted");
        }
        UsersCommand::List { .. } => {
            for (name, mechanisms) in users.list() {
                let mechanisms: Vec<String> = mechanisms
                    .iter()
                    .map(|(m, iterations)| format!("{m} (iterations {iterations})"))
                    .collect();
                println!("{name}\t{}", mechanisms.join(", "));
            }
        }
    }
    Ok(())
}

/// The mechanisms named, or both.
fn or_all(mechanisms: Vec<ScramMechanism>) -> Vec<ScramMechanism> {
    if mechanisms.is_empty() {
        ScramMechanism::ALL.to_vec()
    } else {
        mechanisms
    }
}

/// One line of stdin, without its line ending; an empty password is refused.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on stdin (give it as one line: `echo \"$PASSWORD\" | ferry users add NAME ...`)");
    }
    Ok(password.to_string())
}
