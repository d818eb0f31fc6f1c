//! One timer: `Broker::tick` fires everything due and `Broker::next_deadline` says when that is.
//! A JoinGroup waits out the group's initial rebalance delay and is answered, routed to its
//! token, by the tick at that deadline and not before.

use broker::{ClientInfo, Now, Outcome, HOUSEKEEPING_INTERVAL_MS};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::idempotence::{now, open, request, NOW_MS};

#[test]
fn a_join_group_is_answered_by_the_tick_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    broker.tick(now()).unwrap();
    assert_eq!(
        broker.next_deadline(),
        NOW_MS + HOUSEKEEPING_INTERVAL_MS,
        "the housekeeping is the only timer"
    );
    let client = ClientInfo {
        host: "127.0.0.1".to_string(),
        ..ClientInfo::default()
    };
    let token = 42;
    let outcome = broker.handle(now(), token, &client, join("")).unwrap();
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");

    // Tick at every deadline the broker names until the join is answered.
    let join_delay_ms = group::GroupConfig::default().group_initial_rebalance_delay_ms as i64;
    let mut answered_at = None;
    while answered_at.is_none() {
        let at = broker.next_deadline();
        assert!(at <= NOW_MS + join_delay_ms, "no deadline missed");
        broker.tick(Now::at_wall_ms(at)).unwrap();
        let routed = broker.take_routed();
        if let Some(answer) = routed.into_iter().find(|r| r.token == token) {
            assert!(matches!(answer.response, ResponseKind::JoinGroup(_)));
            answered_at = Some(at);
        }
    }
    assert_eq!(answered_at, Some(NOW_MS + join_delay_ms));
}

/// A JoinGroup v3 of member `member_id` ("" for a new member) to group `g`.
pub(crate) fn join(member_id: &str) -> wire::Request {
    let body = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"m"))]);
    request(ApiKey::JoinGroup, 3, RequestKind::JoinGroup(body))
}
