//! Routing of consumer group responses. A group request registers a one-shot slot under a fresh
//! token before the coordinator sees it; whatever the coordinator answers, now or later (a
//! JoinGroup waits for the whole group), is delivered to the slot of the token it names, and
//! the connection's writer sends it in request order once its records are fsynced. The same
//! routing serves the transaction coordinator. A ticker fires both coordinators' timeouts
//! (session expiry, rebalance and join delays, transaction timeouts).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::Routed;
use tokio::sync::oneshot;

use crate::{fatal, now_ms, Delivery, Shared};

/// Longest sleep of the ticker when the coordinator has no deadline.
const TICK_IDLE: Duration = Duration::from_secs(1);

/// Registers a response slot and returns its token.
pub(crate) fn register(shared: &Shared) -> (u64, oneshot::Receiver<Delivery>) {
    let token = shared.next_token.fetch_add(1, Ordering::Relaxed);
    let (sender, receiver) = oneshot::channel();
    waiting(shared).insert(token, sender);
    (token, receiver)
}

/// Hands each routed response to its request's slot. A slot whose connection is gone is dropped.
pub(crate) fn deliver(shared: &Shared, routed: Routed) {
    let mut waiting = waiting(shared);
    for (token, response) in routed.responses {
        if let Some(slot) = waiting.remove(&token) {
            let _ = slot.send(Delivery {
                sync_ticket: routed.sync_ticket,
                response,
            });
        }
    }
}

fn waiting(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, oneshot::Sender<Delivery>>> {
    match shared.waiting.lock() {
        Ok(guard) => guard,
        Err(_) => fatal("group response table lock poisoned by an earlier panic"),
    }
}

pub(crate) async fn tick_loop(shared: Arc<Shared>) {
    loop {
        let deadline = {
            let broker = shared.broker();
            match (broker.group_deadline_ms(), broker.txn_deadline_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let wait = match deadline {
            Some(deadline) => {
                Duration::from_millis(deadline.saturating_sub(now_ms().max(0) as u64))
                    .min(TICK_IDLE)
            }
            None => TICK_IDLE,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.group_wake.notified() => continue,
        }
        let routed = {
            let mut broker = shared.broker();
            let now = now_ms();
            let routed = broker
                .group_tick(now)
                .and_then(|g| Ok((g, broker.txn_tick(now)?)));
            shared.publish_appends(broker.append_ticket());
            routed
        };
        match routed {
            Ok((groups, transactions)) => {
                deliver(&shared, groups);
                deliver(&shared, transactions);
            }
            Err(error) => fatal(error),
        }
    }
}
