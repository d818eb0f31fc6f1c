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
    /// A ListOffsets whose timestamp lookups were planned: run them outside the broker lock
    /// ([`crate::PendingOffsets::run`]), then send the answer it makes.
    Offsets(crate::PendingOffsets),
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
    /// The listener the connection came in on: Metadata and FindCoordinator answer with that
    /// listener's advertised address, as Kafka does, so a client on an SSL port is never sent
    /// to the plaintext one.
    pub listener: ListenerName,
}

/// A listener's name, as in Kafka's `listeners` (`PLAINTEXT`, `SSL`, or a custom name mapped by
/// `listener.security.protocol.map`); upper case, as Kafka compares them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerName(String);

impl ListenerName {
    /// The name of the listener `--listen` opens, and of a connection made without a server.
    pub const PLAINTEXT: &'static str = "PLAINTEXT";

    /// The name, upper-cased (Kafka upper-cases listener names when it parses them).
    pub fn new(name: &str) -> ListenerName {
        ListenerName(name.to_ascii_uppercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ListenerName {
    fn default() -> ListenerName {
        ListenerName(ListenerName::PLAINTEXT.to_string())
    }
}

impl std::fmt::Display for ListenerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
