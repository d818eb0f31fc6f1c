//! What can be checked of a request without the broker's state, done before the broker lock is
//! taken (on the connection's own task, so connections check in parallel): the CRC-32C and
//! structure of every produce batch. The broker then only applies the checks that need its
//! state (the topic's size limit, producer state, timestamps).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::RequestKind;
use wire::Request;

use crate::handlers::produce::check_structure;

/// A decoded request, with its state-free checks done.
pub struct Prepared {
    pub(crate) request: Request,
    /// For a Produce: per topic, per partition (in request order), the structure check of its
    /// records: `Err((batch index, error))` for the first batch that failed.
    pub(crate) produce: Option<ProduceChecks>,
}

pub(crate) type ProduceChecks = Vec<Vec<Result<(), (usize, ResponseError)>>>;

impl Prepared {
    /// Whether the answer may come in a later call, routed there ([`crate::Outcome::Later`])
    /// by a call that may run at the same time as this one: a consumer group or transaction
    /// request, handled holding the broker shared (a JoinGroup is answered when the last member
    /// joins, on another connection). Its slot must be registered before the call. Any other
    /// request answered later is handled holding the broker exclusively, so its slot may be
    /// registered after the call, before the broker is let go.
    pub fn may_be_answered_later(&self) -> bool {
        let api = self.request.api_key;
        crate::groups::is_group_api(api) || crate::transactions::is_txn_api(api)
    }

    /// Checks `request` (CPU work: a produce's CRCs), without the broker.
    pub fn new(request: Request) -> Prepared {
        let version = request.header.request_api_version;
        let produce = match &request.body {
            RequestKind::Produce(produce) => Some(
                produce
                    .topic_data
                    .iter()
                    .map(|topic| {
                        topic
                            .partition_data
                            .iter()
                            .map(|p| {
                                check_structure(p.records.as_deref().unwrap_or_default(), version)
                            })
                            .collect()
                    })
                    .collect(),
            ),
            _ => None,
        };
        Prepared { request, produce }
    }
}

impl From<Request> for Prepared {
    fn from(request: Request) -> Prepared {
        Prepared::new(request)
    }
}
