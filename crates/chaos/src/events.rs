//! The record of every fault the proxy injected: kept in memory (bounded) for tests and the lab,
//! and optionally appended to a file as JSON lines so a run can be audited afterwards.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::plan::{Direction, Fault};

/// The default limit on events kept in memory; older events are forgotten first (the file, if
/// any, keeps them all).
pub const EVENTS_MAX_DEFAULT: usize = 100_000;

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Milliseconds since the proxy started.
    pub at_ms: u64,
    /// The connection number, counted from 0 in accept order.
    pub connection: u64,
    /// The frame's direction; `Both` for faults that hit the whole connection by operator command.
    pub direction: Direction,
    /// The frame's API key, when known.
    pub api_key: Option<i16>,
    /// The frame's correlation id, when known.
    pub correlation_id: Option<i32>,
    pub action: Fault,
    /// The index of the plan rule that fired; `None` for operator commands.
    pub rule: Option<usize>,
}

/// Events in memory, bounded, plus the optional JSON-lines file.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    events: VecDeque<FaultEvent>,
    events_max: usize,
    events_forgotten: u64,
    file: Option<LineWriter<File>>,
}

impl EventLog {
    pub fn new(events_max: usize, file: Option<File>) -> EventLog {
        EventLog {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                events_max,
                events_forgotten: 0,
                file: file.map(LineWriter::new),
            }),
        }
    }

    /// Records an event. A failed file append is traced and stops further appends; the in-memory
    /// record goes on, since the proxy's job (injecting faults) does not depend on the file.
    pub fn record(&self, event: FaultEvent) {
        tracing::debug!(?event, "fault injected");
        let mut inner = self.inner.lock().expect("event log lock poisoned");
        if let Some(file) = inner.file.as_mut() {
            let mut line = serde_json::to_vec(&event).expect("an event always serializes");
            line.push(b'\n');
            // A small blocking append: fault events are rare next to frames, and a line writer
            // flushes each line so the file is complete if the process is killed.
            if let Err(error) = file.write_all(&line) {
                tracing::warn!(%error, "append fault event to file; stopping appends");
                inner.file = None;
            }
        }
        if inner.events_max == 0 {
            inner.events_forgotten += 1;
            return;
        }
        if inner.events.len() == inner.events_max {
            inner.events.pop_front();
            inner.events_forgotten += 1;
        }
        inner.events.push_back(event);
    }

    /// The events still in memory, oldest first.
    pub fn snapshot(&self) -> Vec<FaultEvent> {
        let inner = self.inner.lock().expect("event log lock poisoned");
        inner.events.iter().copied().collect()
    }

    /// How many events were dropped from memory to respect the limit.
    pub fn forgotten(&self) -> u64 {
        self.inner
            .lock()
            .expect("event log lock poisoned")
            .events_forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64) -> FaultEvent {
        FaultEvent {
            at_ms,
            connection: 0,
            direction: Direction::Response,
            api_key: Some(0),
            correlation_id: Some(7),
            action: Fault::DropFrame,
            rule: Some(0),
        }
    }

    #[test]
    fn memory_is_bounded_and_keeps_the_newest() {
        let log = EventLog::new(3, None);
        for at_ms in 0..5 {
            log.record(event(at_ms));
        }
        let kept: Vec<u64> = log.snapshot().iter().map(|e| e.at_ms).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(log.forgotten(), 2);
    }

    #[test]
    fn json_line_format() {
        expect_test::expect![[r#"{"at_ms":12,"connection":0,"direction":"response","api_key":0,"correlation_id":7,"action":{"type":"drop_frame"},"rule":0}"#]]
            .assert_eq(&serde_json::to_string(&event(12)).unwrap());
    }
}
