//! The SCRAM credential store: `users.json` in the data directory (format in
//! `docs/credentials.md`), read at start and replaced atomically and durably on every change.
//! It holds salted keys only (salt, iterations, StoredKey, ServerKey per user and mechanism),
//! never a password: SCRAM and PLAIN logins are both checked against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sasl::{ScramCredential, ScramMechanism};
use serde::{Deserialize, Serialize};
use storage::Disk;

use crate::durable::{read_file, write_file_atomic, FileWrite};

/// The store's file name in the data directory.
pub const USERS_FILE: &str = "users.json";

/// The format version `users.json` is written with; another version refuses the start.
const USERS_VERSION: u32 = 1;

/// The longest user name the store accepts (Kafka has no limit; a name is a map key in a file
/// read at start, and a principal in every ACL check).
pub const USER_NAME_BYTES_MAX: usize = 256;

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but is not a valid store: the broker refuses to start rather than serve
    /// with no users (or some missing).
    #[error("{} is damaged: {detail}; restore it from a backup or remove it to start with no users", path.display())]
    Damaged { path: PathBuf, detail: String },
}

/// Every user's SCRAM credentials, by name and mechanism.
pub struct Users {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    users: UserMap,
    /// The store as the request at hand changed it, until its admin job has written it
    /// (`take_staged`, then `install`).
    staged: Option<UserMap>,
}

/// Each user's credentials by mechanism.
pub(crate) type UserMap = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    version: u32,
    users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCredential {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

impl Users {
    /// Reads the store in `dir`; no file is an empty store. A damaged file is an error naming it.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<Users, UsersError> {
        let path = dir.join(USERS_FILE);
        let bytes = read_file(&*disk, &path).map_err(|source| UsersError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let users = match bytes {
            Some(bytes) => parse(&bytes).map_err(|detail| UsersError::Damaged {
                path: path.clone(),
                detail,
            })?,
            None => BTreeMap::new(),
        };
        Ok(Users {
            disk,
            dir: dir.to_path_buf(),
            users,
            staged: None,
        })
    }

    pub fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// Every user and the mechanisms it has credentials for, by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, Vec<(ScramMechanism, u32)>)> {
        self.users.iter().map(|(name, credentials)| {
            let mechanisms = credentials
                .iter()
                .map(|(m, c)| (*m, c.iterations))
                .collect();
            (name.as_str(), mechanisms)
        })
    }

    /// Applies deletions then upserts, all at once, durably (the file is replaced before this
    /// returns); nothing is written when nothing changes. For `ferry users`, which holds the
    /// data directory's lock; the broker stages its changes instead (`stage`).
    pub fn apply(
        &mut self,
        deletions: &[(String, ScramMechanism)],
        upserts: Vec<(String, ScramMechanism, ScramCredential)>,
    ) -> Result<(), UsersError> {
        self.stage(deletions, upserts);
        let Some((users, _)) = self.take_staged() else {
            return Ok(());
        };
        let path = self.dir.join(USERS_FILE);
        write_file_atomic(&*self.disk, &self.dir, USERS_FILE, &serialize(&users)).map_err(
            |source| UsersError::Io {
                op: "write",
                path,
                source,
            },
        )?;
        self.install(users);
        Ok(())
    }

    /// Stages deletions then upserts, all at once: they apply once `users.json` holds them
    /// (`take_staged` gives the write, `install` puts them in force). Nothing is staged when
    /// nothing changes.
    pub(crate) fn stage(
        &mut self,
        deletions: &[(String, ScramMechanism)],
        upserts: Vec<(String, ScramMechanism, ScramCredential)>,
    ) {
        assert!(self.staged.is_none(), "one change of the store at a time");
        let mut users = self.users.clone();
        for (name, mechanism) in deletions {
            if let Some(credentials) = users.get_mut(name) {
                credentials.remove(mechanism);
                if credentials.is_empty() {
                    users.remove(name);
                }
            }
        }
        for (name, mechanism, credential) in upserts {
            users.entry(name).or_default().insert(mechanism, credential);
        }
        if users != self.users {
            self.staged = Some(users);
        }
    }

    /// The staged store and the write of `users.json` that makes it durable.
    pub(crate) fn take_staged(&mut self) -> Option<(UserMap, FileWrite)> {
        let users = self.staged.take()?;
        let bytes = serialize(&users);
        Some((
            users,
            FileWrite::new(self.disk.clone(), &self.dir, USERS_FILE, bytes),
        ))
    }

    /// Puts a store written durably in force.
    pub(crate) fn install(&mut self, users: UserMap) {
        self.users = users;
    }
}

/// Why a user name cannot be stored (None: it can).
pub fn check_user_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the user name is empty")
    } else if name.len() > USER_NAME_BYTES_MAX {
        Some("the user name is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("the user name holds a control character")
    } else {
        None
    }
}

fn serialize(users: &UserMap) -> Vec<u8> {
    let file = UsersFile {
        version: USERS_VERSION,
        users: users
            .iter()
            .map(|(name, credentials)| {
                let credentials = credentials
                    .iter()
                    .map(|(mechanism, c)| {
                        let stored = StoredCredential {
                            salt: BASE64.encode(&c.salt),
                            iterations: c.iterations,
                            stored_key: BASE64.encode(&c.stored_key),
                            server_key: BASE64.encode(&c.server_key),
                        };
                        (mechanism.name().to_string(), stored)
                    })
                    .collect();
                (name.clone(), credentials)
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("the store serializes");
    bytes.push(b'\n');
    bytes
}

/// Parses and checks the file: its version, every mechanism's name, base64 fields, the keys'
/// lengths (the mechanism's hash length) and the iteration bounds.
fn parse(
    bytes: &[u8],
) -> Result<BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>, String> {
    let file: UsersFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != USERS_VERSION {
        return Err(format!(
            "version {} (this ferry reads version {USERS_VERSION})",
            file.version
        ));
    }
    let mut users = BTreeMap::new();
    for (name, credentials) in file.users {
        if let Some(why) = check_user_name(&name) {
            return Err(format!("user {name:?}: {why}"));
        }
        if credentials.is_empty() {
            return Err(format!("user {name:?} has no credentials"));
        }
        let mut parsed = BTreeMap::new();
        for (mechanism_name, stored) in credentials {
            let mechanism = ScramMechanism::parse(&mechanism_name)
                .ok_or_else(|| format!("user {name:?}: unknown mechanism {mechanism_name:?}"))?;
            let credential = check_credential(mechanism, stored)
                .map_err(|detail| format!("user {name:?} {mechanism}: {detail}"))?;
            parsed.insert(mechanism, credential);
        }
        users.insert(name, parsed);
    }
    Ok(users)
}

fn check_credential(
    mechanism: ScramMechanism,
    stored: StoredCredential,
) -> Result<ScramCredential, String> {
    let decode = |field: &str, text: &str| {
        BASE64
            .decode(text)
            .map_err(|e| format!("{field} is not base64: {e}"))
    };
    let hash_bytes = match mechanism {
        ScramMechanism::Sha256 => 32,
        ScramMechanism::Sha512 => 64,
    };
    let credential = ScramCredential {
        salt: decode("salt", &stored.salt)?,
        iterations: stored.iterations,
        stored_key: decode("stored_key", &stored.stored_key)?,
        server_key: decode("server_key", &stored.server_key)?,
    };
    if credential.salt.is_empty() {
        return Err("empty salt".into());
    }
    if !(sasl::ITERATIONS_MIN..=sasl::ITERATIONS_MAX).contains(&credential.iterations) {
        return Err(format!(
            "iterations {} out of bounds",
            credential.iterations
        ));
    }
    for (field, key) in [
        ("stored_key", &credential.stored_key),
        ("server_key", &credential.server_key),
    ] {
        if key.len() != hash_bytes {
            return Err(format!("{field} is {} bytes, not {hash_bytes}", key.len()));
        }
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(mechanism: ScramMechanism, password: &[u8]) -> ScramCredential {
        ScramCredential::from_password(mechanism, password, b"salt", 4096).unwrap()
    }

    #[test]
    fn the_store_survives_a_reopen_and_holds_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(storage::FsDisk);
        let mut users = Users::open(disk.clone(), dir.path()).unwrap();
        let upserts = ScramMechanism::ALL
            .into_iter()
            .map(|m| ("alice".to_string(), m, credential(m, b"pencil-secret")))
            .collect();
        users.apply(&[], upserts).unwrap();
        users
            .apply(&[("alice".into(), ScramMechanism::Sha256)], vec![])
            .unwrap();
        let again = Users::open(disk, dir.path()).unwrap();
        assert!(again.credential("alice", ScramMechanism::Sha256).is_none());
        assert_eq!(
            again.credential("alice", ScramMechanism::Sha512),
            Some(&credential(ScramMechanism::Sha512, b"pencil-secret"))
        );
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains("pencil-secret"));
        assert!(!dir.path().join("users.json.tmp").exists());
    }

    /// Damaged files, each refused with its reason; the control (the same file undamaged) loads.
    #[test]
    fn a_damaged_store_is_refused_naming_the_file() {
        let good = serialize(&BTreeMap::from([(
            "alice".to_string(),
            BTreeMap::from([(
                ScramMechanism::Sha256,
                credential(ScramMechanism::Sha256, b"p"),
            )]),
        )]));
        let good = String::from_utf8(good).unwrap();
        let check = |text: String, expect: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(USERS_FILE), text).unwrap();
            let got = match Users::open(Arc::new(storage::FsDisk), dir.path()) {
                Ok(_) => "ok".to_string(),
                Err(error) => {
                    let message = error.to_string();
                    assert!(message.contains(USERS_FILE), "{message}");
                    message
                }
            };
            assert!(got.contains(expect), "{got} lacks {expect}");
        };
        check(good.clone(), "ok");
        check(good[..good.len() / 2].to_string(), "EOF while parsing");
        check(
            good.replace("\"version\": 1", "\"version\": 2"),
            "version 2",
        );
        check(
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            "unknown mechanism",
        );
        check(good.replace("4096", "100"), "iterations 100 out of bounds");
        check(
            good.replace("\"stored_key\": \"", "\"stored_key\": \"AAAA"),
            "stored_key is 35 bytes",
        );
        check(
            good.replace("\"salt\": \"", "\"salt\": \"!"),
            "salt is not base64",
        );
        check(
            good.replace("\"iterations\"", "\"password\": \"x\", \"iterations\""),
            "unknown field",
        );
        check(String::new(), "EOF while parsing");
    }
}
