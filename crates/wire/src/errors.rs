//! The Kafka error codes a response carries, wherever they sit in it (top level, per topic, per
//! partition, per group, per member), so a trace can name them: a client problem can then be
//! diagnosed from the broker's side without decoding the traffic.

use kafka_protocol::messages::ResponseKind;

/// The distinct non-zero error codes in `response`, in ascending order; empty when it reports
/// no error (or is of an API this does not look into).
pub fn error_codes(response: &ResponseKind) -> Vec<i16> {
    let mut codes = Vec::new();
    collect(response, &mut codes);
    codes.retain(|&code| code != 0);
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// The `error_code` of every item of every `$inner` list of the items of `$outer`.
macro_rules! nested {
    ($outer:expr, $inner:ident) => {
        $outer.iter().flat_map(|t| &t.$inner).map(|p| p.error_code)
    };
}

fn collect(response: &ResponseKind, codes: &mut Vec<i16>) {
    match response {
        ResponseKind::Produce(r) => codes.extend(nested!(r.responses, partition_responses)),
        ResponseKind::Fetch(r) => {
            codes.push(r.error_code);
            codes.extend(nested!(r.responses, partitions));
        }
        ResponseKind::ListOffsets(r) => codes.extend(nested!(r.topics, partitions)),
        ResponseKind::Metadata(r) => {
            for topic in &r.topics {
                codes.push(topic.error_code);
                codes.extend(topic.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::ApiVersions(r) => codes.push(r.error_code),
        ResponseKind::CreateTopics(r) => codes.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => codes.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::DeleteRecords(r) => codes.extend(nested!(r.topics, partitions)),
        ResponseKind::CreatePartitions(r) => codes.extend(r.results.iter().map(|t| t.error_code)),
        ResponseKind::DescribeConfigs(r) => codes.extend(r.results.iter().map(|t| t.error_code)),
        ResponseKind::AlterConfigs(r) => codes.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            codes.extend(r.responses.iter().map(|t| t.error_code))
        }
        ResponseKind::InitProducerId(r) => codes.push(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            codes.push(r.error_code);
            codes.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        ResponseKind::JoinGroup(r) => codes.push(r.error_code),
        ResponseKind::SyncGroup(r) => codes.push(r.error_code),
        ResponseKind::Heartbeat(r) => codes.push(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            codes.push(r.error_code);
            codes.extend(r.members.iter().map(|m| m.error_code));
        }
        ResponseKind::OffsetCommit(r) => codes.extend(nested!(r.topics, partitions)),
        ResponseKind::OffsetFetch(r) => {
            codes.push(r.error_code);
            codes.extend(nested!(r.topics, partitions));
            for group in &r.groups {
                codes.push(group.error_code);
                codes.extend(nested!(group.topics, partitions));
            }
        }
        ResponseKind::ListGroups(r) => codes.push(r.error_code),
        ResponseKind::DescribeGroups(r) => codes.extend(r.groups.iter().map(|g| g.error_code)),
        ResponseKind::DeleteGroups(r) => codes.extend(r.results.iter().map(|g| g.error_code)),
        ResponseKind::AddPartitionsToTxn(r) => {
            codes.push(r.error_code);
            let topics = r.results_by_topic_v3_and_below.iter().chain(
                r.results_by_transaction
                    .iter()
                    .flat_map(|t| &t.topic_results),
            );
            codes.extend(
                topics
                    .flat_map(|t| &t.results_by_partition)
                    .map(|p| p.partition_error_code),
            );
        }
        ResponseKind::AddOffsetsToTxn(r) => codes.push(r.error_code),
        ResponseKind::EndTxn(r) => codes.push(r.error_code),
        ResponseKind::TxnOffsetCommit(r) => codes.extend(nested!(r.topics, partitions)),
        ResponseKind::ListTransactions(r) => codes.push(r.error_code),
        ResponseKind::DescribeTransactions(r) => {
            codes.extend(r.transaction_states.iter().map(|t| t.error_code))
        }
        ResponseKind::DescribeLogDirs(r) => {
            codes.push(r.error_code);
            codes.extend(r.results.iter().map(|d| d.error_code));
        }
        ResponseKind::DescribeProducers(r) => codes.extend(nested!(r.topics, partitions)),
        ResponseKind::OffsetDelete(r) => {
            codes.push(r.error_code);
            codes.extend(nested!(r.topics, partitions));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{EndTxnResponse, ProduceResponse};

    #[test]
    fn codes_are_found_at_every_level_once_each() {
        let partitions = [0, 47, 0, 47, 10]
            .into_iter()
            .map(|code| PartitionProduceResponse::default().with_error_code(code))
            .collect();
        let produce = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(partitions),
        ]));
        assert_eq!(error_codes(&produce), [10, 47]);
        let ok = ResponseKind::EndTxn(EndTxnResponse::default());
        assert!(error_codes(&ok).is_empty());
        let fenced = ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(47));
        assert_eq!(error_codes(&fenced), [47]);
    }
}
