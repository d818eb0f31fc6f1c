//! What a call into the broker asks of the server: how to answer a request ([`Outcome`]), and
//! the answers it routes to earlier requests ([`Routed`], taken with `Broker::take_routed`).

use kafka_protocol::messages::ResponseKind;

/// Who a request acts as: the `acl` crate's, since the authorizer matches ACLs against it.
pub use acl::Principal;

pub use crate::handlers::fetch::{FetchRead, PendingFetch, WaitingFetch};

/// What the server must do with a handled request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response now.
    Respond(ResponseKind),
    /// Send this response once everything appended up to `ticket` is fsynced (`acks=all`, and
    /// every coordinator answer whose records must be durable first).
    AfterSync { ticket: u64, response: ResponseKind },
    /// Send this response once everything appended up to `ticket` reached the OS (`acks=1`):
    /// appends are written by the group commit round that then fsyncs them, so the response
    /// waits for the write half of that round, not for its fsyncs.
    AfterWrite { ticket: u64, response: ResponseKind },
    /// The answer comes later, routed to this request's token by a later call (a JoinGroup
    /// waits for its group, an EndTxn for its markers): see `Broker::take_routed`.
    Later,
    /// A Fetch, planned: run its reads outside the broker lock ([`PendingFetch::read`]); if they
    /// come short of `min_bytes`, ask again with `Broker::fetch_again` when a group-commit round
    /// has made data visible, or at the fetch's deadline.
    Fetch(PendingFetch),
    /// Send nothing (`acks=0`).
    NoResponse,
    /// Close the connection; used for `acks=0` produce errors, which have no other way to reach
    /// the client (Kafka does the same).
    Close(String),
}

/// A response to the request of `token`, sent once `sync_ticket` (if any) is fsynced.
#[derive(Debug)]
pub struct Routed {
    pub token: u64,
    pub sync_ticket: Option<u64>,
    pub response: ResponseKind,
}

/// Who sent a request, beyond its header: what the group coordinator records of a member, and
/// who the request acts as for authorization.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The peer's address, as DescribeGroups reports it (`client.id` comes from the header).
    pub host: String,
    /// Who the connection authenticated as; `User:ANONYMOUS` on a listener without
    /// authentication.
    pub principal: Principal,
}
