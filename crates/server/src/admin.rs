//! The topic changes' file work (`broker::AdminJob`: partition directories, `meta.json` and its
//! fsyncs, removals), run one job at a time on a blocking thread without the broker lock, each
//! reported back under it (`Broker::admin_done`), which routes the request's answer. The broker
//! makes at most one job at a time; `Locked`'s drop sends it here.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{fatal, Shared};

pub(crate) async fn run(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<broker::AdminJob>) {
    // Ends when the server drops its sender at shutdown, after the connections are done: a
    // job made by then still runs.
    while let Some(job) = jobs.recv().await {
        let done = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(done) => done,
            Err(error) => fatal(format!("a topic change's file work panicked: {error}")),
        };
        let Some(mut broker) = shared.lock() else {
            return;
        };
        let now = broker.now;
        if let Err(error) = broker.admin_done(now, done) {
            fatal(error);
        }
    }
}
