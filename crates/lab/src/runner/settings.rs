//! The librdkafka settings of the lab's clients, one place for every row, so the rows differ in
//! their guarantee and not in their tuning.

use client::Settings;

use crate::profile::Profile;
use crate::target::Target;

/// librdkafka settings shared by the lab's clients: short timeouts, so a dropped frame costs a
/// second rather than a minute, and Kafka's default of 5 requests in flight, so a slow link
/// makes batches larger instead of queueing requests behind each other.
///
/// librdkafka's own logs stop at errors: disconnects are what the faults are for, and the
/// history records what matters about them. The errors a run's faults explain become the row's
/// notes instead of terminal lines (`client_log/`).
const CLIENT_SETTINGS: &[(&str, &str)] = &[
    ("socket.timeout.ms", "2000"),
    // librdkafka doubles its reconnect back-off up to 10 s by default; a run that resets
    // connections on purpose would measure that back-off rather than the guarantee.
    ("reconnect.backoff.max.ms", "1000"),
    ("client.id", "ferry-lab"),
    ("log_level", "3"),
];
pub(crate) const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("request.timeout.ms", "1000"),
    ("retry.backoff.ms", "50"),
    ("max.in.flight.requests.per.connection", "5"),
    ("queue.buffering.max.messages", "1000000"),
];
pub(crate) const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "50"),
    // librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s by default) once its
    // local queue passes queued.min.messages; a consumer that had fallen behind a 300,000-record
    // burst then sat idle for 0.7 s at a time with records waiting, which the lab measured as
    // the guarantee's throughput.
    ("fetch.queue.backoff.ms", "10"),
];

/// The settings every client of a run under `profile` starts from: where the target says such
/// a run connects (with its client settings), the run's group.
pub(crate) fn client_settings(target: &Target, profile: Profile, group: &str) -> Settings {
    with(
        target.cluster(profile.uses_proxy()).group_id(group),
        CLIENT_SETTINGS,
    )
}

/// `settings` with `more` set on top.
pub(crate) fn with(mut settings: Settings, more: &[(&str, &str)]) -> Settings {
    for (name, value) in more {
        settings = settings.set(*name, *value);
    }
    settings
}
