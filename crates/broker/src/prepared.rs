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
