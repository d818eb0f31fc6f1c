//! Routing of answers that come later. A request the broker answers with `Outcome::Later`
//! registers a one-shot slot under its token: a consumer group or transaction request before its
//! call (it is handled holding the broker shared, and a call on another connection may route its
//! answer at the same time), any other while the broker is still held exclusively, before the
//! call's routed answers are handed out; whatever the broker routes to that token, in this call or a later one
//! (a JoinGroup waits for the whole group, an EndTxn for its markers), is delivered to the slot,
//! and the connection's writer sends it in request order once its records are fsynced.

use broker::Routed;
use tokio::sync::oneshot;

use crate::{fatal, Delivery, Shared};

/// Registers a response slot for `token`, before any answer to it can be routed (see the module
/// comment).
pub(crate) fn register(shared: &Shared, token: u64) -> oneshot::Receiver<Delivery> {
    let (sender, receiver) = oneshot::channel();
    waiting(shared).insert(token, sender);
    receiver
}

/// Drops the slot of a request registered before its call and answered in it after all.
pub(crate) fn cancel(shared: &Shared, token: u64) {
    waiting(shared).remove(&token);
}

/// Hands each routed response to its request's slot. A slot whose connection is gone is dropped.
pub(crate) fn deliver(shared: &Shared, routed: Vec<Routed>) {
    let mut waiting = waiting(shared);
    for Routed {
        token,
        sync_ticket,
        response,
    } in routed
    {
        if let Some(slot) = waiting.remove(&token) {
            let _ = slot.send(Delivery {
                sync_ticket,
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
        Err(_) => fatal("routed response table lock poisoned by an earlier panic"),
    }
}
