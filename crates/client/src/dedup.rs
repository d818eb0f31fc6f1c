//! The idempotent consumer that at-least-once needs: a store of message ids already applied, so
//! a record delivered twice takes effect once.
//!
//! The store must change together with the effect. If the effect is committed and the id is not
//! (or the other way round) a crash between the two brings the duplicate (or the loss) back. In
//! memory, as here, that holds when the store and the effect live side by side and survive the
//! consumer together (the lab keeps both in its sink); in production, insert the id in the same
//! database transaction as the effect.

use std::collections::{HashSet, VecDeque};

use crate::consumer::Record;

/// Where a record's id is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageId {
    /// The record key (an order id, a transfer id).
    Key,
    /// A header with this name.
    Header(String),
}

impl MessageId {
    /// The id of `record`, if it has one (the first header of that name).
    pub fn of<'r>(&self, record: &'r Record) -> Option<&'r [u8]> {
        match self {
            MessageId::Key => record.key.as_deref(),
            MessageId::Header(name) => record
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_slice()),
        }
    }
}

/// Remembers which ids have taken effect.
pub trait DedupStore {
    fn contains(&self, id: &[u8]) -> bool;
    /// Records that `id` took effect.
    fn insert(&mut self, id: &[u8]);
}

/// The default limit on ids a [`MemoryDedupStore`] remembers.
pub const IDS_MAX_DEFAULT: usize = 1_000_000;

/// A bounded in-memory store: the `ids_max` most recent ids. A duplicate older than that window
/// takes effect again, so size the window beyond the longest redelivery (records since the last
/// commit, times the retries a producer may make).
#[derive(Debug)]
pub struct MemoryDedupStore {
    ids: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
    ids_max: usize,
}

impl MemoryDedupStore {
    pub fn new(ids_max: usize) -> MemoryDedupStore {
        assert!(ids_max > 0, "a dedup store remembers at least one id");
        MemoryDedupStore {
            ids: HashSet::new(),
            order: VecDeque::new(),
            ids_max,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Default for MemoryDedupStore {
    fn default() -> MemoryDedupStore {
        MemoryDedupStore::new(IDS_MAX_DEFAULT)
    }
}

impl DedupStore for MemoryDedupStore {
    fn contains(&self, id: &[u8]) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: &[u8]) {
        if !self.ids.insert(id.to_vec()) {
            return;
        }
        self.order.push_back(id.to_vec());
        if self.order.len() > self.ids_max {
            let oldest = self
                .order
                .pop_front()
                .expect("over the limit, so not empty");
            self.ids.remove(&oldest);
        }
    }
}

/// What [`Idempotent::apply`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// First time: the effect ran and the id was stored.
    Applied,
    /// The id was in the store: the effect did not run.
    Duplicate,
    /// The record has no id, so it cannot be deduplicated: the effect ran.
    NoId,
}

/// Wraps a record handler so that each message id takes effect once.
#[derive(Debug)]
pub struct Idempotent<S> {
    store: S,
    id: MessageId,
}

impl<S: DedupStore> Idempotent<S> {
    pub fn new(store: S, id: MessageId) -> Idempotent<S> {
        Idempotent { store, id }
    }

    /// Runs `effect` unless `record`'s id has taken effect before. The id is stored only after
    /// the effect succeeded, so a failed effect is tried again on redelivery.
    pub fn apply<E>(
        &mut self,
        record: &Record,
        effect: impl FnOnce(&Record) -> Result<(), E>,
    ) -> Result<Applied, E> {
        let Some(id) = self.id.of(record) else {
            effect(record)?;
            return Ok(Applied::NoId);
        };
        if self.store.contains(id) {
            return Ok(Applied::Duplicate);
        }
        effect(record)?;
        self.store.insert(id);
        Ok(Applied::Applied)
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn record(key: Option<&str>) -> Record {
        Record {
            topic: "orders".into(),
            partition: 0,
            offset: 0,
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    /// Feeds keys through an idempotent handler with a store of `ids_max`; `!` marks a key whose
    /// effect fails. Prints what happened to each and the effects that ran.
    fn check(ids_max: usize, keys: &[&str], expect: Expect) {
        let mut idempotent = Idempotent::new(MemoryDedupStore::new(ids_max), MessageId::Key);
        let mut effects = Vec::new();
        let mut out = Vec::new();
        for key in keys {
            let (key, fails) = match key.strip_suffix('!') {
                Some(key) => (key, true),
                None => (*key, false),
            };
            let key = (!key.is_empty()).then_some(key);
            let result = idempotent.apply(&record(key), |r| {
                if fails {
                    return Err("boom");
                }
                effects
                    .push(String::from_utf8_lossy(r.key.as_deref().unwrap_or(b"-")).into_owned());
                Ok(())
            });
            out.push(format!("{result:?}"));
        }
        expect.assert_eq(&format!("{}\neffects {}", out.join(" "), effects.join(",")));
    }

    #[test]
    fn dedup_as_data() {
        check(
            10,
            &["a", "b", "a", "c", "b"],
            expect![[r#"
                Ok(Applied) Ok(Applied) Ok(Duplicate) Ok(Applied) Ok(Duplicate)
                effects a,b,c"#]],
        );
        // A failed effect is not remembered, so the redelivery applies it.
        check(
            10,
            &["a!", "a", "a"],
            expect![[r#"
                Err("boom") Ok(Applied) Ok(Duplicate)
                effects a"#]],
        );
        // Records without an id cannot be deduplicated.
        check(
            10,
            &["", ""],
            expect![[r#"
                Ok(NoId) Ok(NoId)
                effects -,-"#]],
        );
        // The window: with room for 2 ids, "a" is forgotten once "b" and "c" are stored.
        check(
            2,
            &["a", "b", "c", "a"],
            expect![[r#"
                Ok(Applied) Ok(Applied) Ok(Applied) Ok(Applied)
                effects a,b,c,a"#]],
        );
    }
}
