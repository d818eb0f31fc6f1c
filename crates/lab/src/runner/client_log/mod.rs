//! What librdkafka says during a run, kept off the terminal when the run's faults explain it:
//! a killed broker makes every client report "all brokers down", a crashed consumer's successor
//! fences it. Those are counted per kind into the row's notes and traced at debug level; what
//! the profile does not explain is still traced as an error.
//!
//! The lab's own librdkafka contexts report here directly (their `log` and `error` callbacks
//! run on librdkafka's threads). The sink's consumers report through traces with target
//! `librdkafka` on the lab's threads, which [`ClientLog::capture`] takes in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use crate::profile::Profile;

mod classify;

use classify::{classify, Expectation};

/// The most kinds of message a run counts apart; the rest are counted as [`OTHER_KIND`].
const KINDS_MAX: usize = 16;
const OTHER_KIND: &str = "other";
/// The trace target of librdkafka's log lines (the rdkafka crate's) and of the sink's client
/// errors.
const LIBRDKAFKA_TARGET: &str = "librdkafka";

/// One run's librdkafka messages, counted by kind and by whether the profile explains them.
pub(crate) struct ClientLog {
    profile: Profile,
    /// Count per kind and, if expected, why.
    counts: Mutex<BTreeMap<(String, Option<&'static str>), u64>>,
    /// The traces the run had when it started, which everything not captured goes on to.
    inner: Dispatch,
}

impl ClientLog {
    pub(crate) fn new(profile: Profile) -> Arc<ClientLog> {
        Arc::new(ClientLog {
            profile,
            counts: Mutex::default(),
            inner: tracing::dispatcher::get_default(Dispatch::clone),
        })
    }

    /// A librdkafka log line of `client` (a context's `log` callback).
    pub(crate) fn log(&self, client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let text = format!("{fac} {message}");
        tracing::trace!(client, ?level, text, "librdkafka log line");
        self.report(client, fac, &text);
    }

    /// A client-wide error of `client` (a context's `error` callback).
    pub(crate) fn error(&self, client: &str, error: &KafkaError, reason: &str) {
        let fallback = error
            .rdkafka_error_code()
            .map_or_else(|| "error".to_string(), |code| format!("{code:?}"));
        self.report(client, &fallback, &format!("{error}: {reason}"));
    }

    /// Counts `text` under its kind (or `fallback`, for a message the lab does not know); an
    /// error trace if the profile does not explain it.
    fn report(&self, client: &str, fallback: &str, text: &str) {
        let profile = self.profile.name();
        let (kind, why) = match classify(self.profile, text) {
            Expectation::Expected { kind, why } => {
                tracing::debug!(client, profile, why, "librdkafka: {text}");
                (kind.to_string(), Some(why))
            }
            Expectation::Unexpected { kind } => {
                tracing::error!(client, profile, "librdkafka: {text}");
                (kind.unwrap_or(fallback).to_string(), None)
            }
        };
        let mut counts = self.counts.lock().expect("client log lock poisoned");
        let key = if counts.len() < KINDS_MAX || counts.contains_key(&(kind.clone(), why)) {
            (kind, why)
        } else {
            (OTHER_KIND.to_string(), why)
        };
        *counts.entry(key).or_insert(0) += 1;
    }

    /// One note per kind, e.g. `librdkafka: 3× FencedInstanceId (expected: …)`.
    pub(crate) fn notes(&self) -> Vec<String> {
        let counts = self.counts.lock().expect("client log lock poisoned");
        counts
            .iter()
            .map(|((kind, why), count)| match why {
                Some(why) => format!("librdkafka: {count}× {kind} (expected: {why})"),
                None => format!(
                    "librdkafka: {count}× {kind} (not explained by {})",
                    self.profile.name()
                ),
            })
            .collect()
    }

    /// Runs `f` with its traces captured: those with target `librdkafka` (the rdkafka crate's
    /// log lines, the sink's client errors) at warn level or above are reported here as from
    /// `client`, the rest go where the run's traces went.
    pub(crate) fn capture<R>(self: &Arc<Self>, client: &'static str, f: impl FnOnce() -> R) -> R {
        let capture = Capture {
            log: self.clone(),
            client,
            level_hint: LevelFilter::current().max(LevelFilter::WARN),
        };
        tracing::dispatcher::with_default(&Dispatch::new(capture), f)
    }
}

/// The subscriber of [`ClientLog::capture`].
struct Capture {
    log: Arc<ClientLog>,
    client: &'static str,
    /// At least warn, so librdkafka's warnings reach `enabled`; at least what the run's
    /// traces asked for.
    level_hint: LevelFilter,
}

/// Whether `metadata` belongs to a librdkafka message worth reporting. A log line the `log`
/// crate brought over asks here with its own target; its event then arrives under the bridge's
/// target, with the original in its `log.target` field.
fn captured(metadata: &Metadata<'_>) -> bool {
    captured_target(metadata.target(), *metadata.level())
}

fn captured_target(target: &str, level: Level) -> bool {
    target == LIBRDKAFKA_TARGET && level <= Level::WARN
}

impl Subscriber for Capture {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if captured(metadata) {
            Interest::always()
        } else {
            self.log.inner.register_callsite(metadata)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level_hint)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        captured(metadata) || self.log.inner.enabled(metadata)
    }

    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        let target = text.log_target.as_deref().unwrap_or(metadata.target());
        if captured_target(target, *metadata.level()) {
            self.log.report(self.client, "log", &text.line);
        } else {
            self.log.inner.event(event);
        }
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.log.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.log.inner.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.log.inner.record_follows_from(span, follows)
    }

    fn enter(&self, span: &Id) {
        self.log.inner.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.log.inner.exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.log.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.log.inner.try_close(id)
    }

    // `current_span` keeps its default (unknown): its type is tracing-core's, which the lab
    // does not depend on, and the lab's traces do not ask for the current span.
}

/// An event's message and fields as one line, and the target of a `log` crate record.
#[derive(Default)]
struct Text {
    line: String,
    log_target: Option<String>,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_string());
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        // The `log` crate's module, file and line say where in rdkafka, not what happened.
        if name.starts_with("log.") {
            return;
        }
        if !self.line.is_empty() {
            self.line.push(' ');
        }
        let _ = if name == "message" {
            write!(self.line, "{value:?}")
        } else {
            write!(self.line, "{name}={value:?}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "FAIL [thrd:127.0.0.1:9092/1]: Connect to ipv4#127.0.0.1:9092 \
        failed: Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn notes_count_each_kind_once() {
        let log = ClientLog::new(Profile::BrokerKill);
        let all_down = KafkaError::Global(rdkafka::error::RDKafkaErrorCode::AllBrokersDown);
        log.error("consumer", &all_down, "1/1 brokers are down");
        log.error("producer", &all_down, "1/1 brokers are down");
        log.log("producer", RDKafkaLogLevel::Error, "FAIL", &REFUSED[5..]);
        log.log("consumer", RDKafkaLogLevel::Error, "ODD", "something else");
        expect_test::expect![[r#"
            [
                "librdkafka: 2× AllBrokersDown (expected: the broker was killed)",
                "librdkafka: 1× BrokerTransportFailure (expected: the broker was killed)",
                "librdkafka: 1× ODD (not explained by broker-kill)",
            ]
        "#]]
        .assert_debug_eq(&log.notes());
    }

    /// The sink's consumers reach the client log through traces: their `error` callback as a
    /// trace with target `librdkafka`, their log lines through the `log` crate's bridge.
    #[test]
    fn capture_takes_in_librdkafka_traces_only() {
        let log = ClientLog::new(Profile::BrokerKill);
        log.capture("sink consumer", || {
            let error = "AllBrokersDown (Local: All broker connections are down)";
            tracing::warn!(target: "librdkafka", error, "librdkafka error");
            let line = format_args!("librdkafka: {}", &REFUSED);
            let record = tracing_log::log::Record::builder()
                .args(line)
                .level(tracing_log::log::Level::Error)
                .target("librdkafka")
                .build();
            tracing_log::format_trace(&record).unwrap();
            tracing::info!(target: "librdkafka", "below warn: not taken in");
            tracing::warn!(target: "elsewhere", "not librdkafka: not taken in");
        });
        expect_test::expect![[r#"
            [
                "librdkafka: 1× AllBrokersDown (expected: the broker was killed)",
                "librdkafka: 1× BrokerTransportFailure (expected: the broker was killed)",
            ]
        "#]]
        .assert_debug_eq(&log.notes());
    }
}
