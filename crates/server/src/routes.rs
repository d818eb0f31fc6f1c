//! Routing of answers that come later. A request the broker answers with `Outcome::Later`
//! registers a one-shot slot under its token (under the broker lock, before the call's routed
//! answers are handed out); whatever the broker routes to that token, in this call or a later one
//! (a JoinGroup waits for the whole group, an EndTxn for its markers), is delivered to the slot,
//! and the connection's writer sends it in request order once its records are fsynced.

use broker::Routed;
use tokio::sync::oneshot;

use crate::{fatal, Delivery, Shared};

/// Registers a response slot for `token`. Called with the broker locked, so no answer to it can
/// be routed before the slot exists.
pub(crate) fn register(shared: &Shared, token: u64) -> oneshot::Receiver<Delivery> {
    let (sender, receiver) = oneshot::channel();
    waiting(shared).insert(token, sender);
    receiver
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
