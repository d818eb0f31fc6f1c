//! The chaos proxy end to end: a raw frame client, the proxy, and an echo broker, over 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use chaos::{Direction, Fault, FaultEvent, Plan, ProxyHandle};
use expect_test::{expect, Expect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{echo_response, request, request_ids, response_correlation_id, Next, Setup};

/// One line per event, without the time, sorted so the two directions' interleaving (which
/// depends on scheduling) does not show.
fn show_events(events: &[FaultEvent]) -> String {
    let mut lines: Vec<String> = events
        .iter()
        .map(|e| {
            let direction = match e.direction {
                Direction::Request => "request",
                Direction::Response => "response",
                Direction::Both => "both",
            };
            let key = e.api_key.map_or("?".to_string(), |k| k.to_string());
            let corr = e.correlation_id.map_or("?".to_string(), |c| c.to_string());
            let rule = e
                .rule
                .map_or("operator".to_string(), |r| format!("rule {r}"));
            format!(
                "c{} {direction} {key}:{corr} {:?} {rule}",
                e.connection, e.action
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

fn show_requests(frames: &[Vec<u8>]) -> String {
    let ids: Vec<String> = frames
        .iter()
        .map(|f| {
            let (key, corr) = request_ids(f);
            format!("{key}:{corr}")
        })
        .collect();
    ids.join(" ")
}

/// Sends `requests` as (api_key, correlation_id) pipelined through a proxy running `plan_json`,
/// reads until the proxy falls silent or closes, and prints what each side saw.
async fn run_script(plan_json: &str, requests: &[(i16, i32)]) -> (String, ProxyHandle) {
    let setup = Setup::start(Plan::from_json(plan_json).unwrap()).await;
    let mut client = setup.client().await;
    for &(api_key, correlation_id) in requests {
        client.send(&request(api_key, correlation_id, b"x")).await;
    }
    let (responses, end) = client.drain().await;
    let corrs: Vec<String> = responses
        .iter()
        .map(|f| response_correlation_id(f).to_string())
        .collect();
    let shown = format!(
        "client:  {}\nbroker:  {}\nend:     {end:?}\n{}",
        corrs.join(" "),
        show_requests(&setup.broker.requests()),
        show_events(&setup.proxy.events()),
    );
    (shown, setup.proxy)
}

async fn check(plan_json: &str, requests: &[(i16, i32)], expect: Expect) {
    let (shown, _proxy) = run_script(plan_json, requests).await;
    expect.assert_eq(&shown);
}

const MIXED: &[(i16, i32)] = &[(0, 1), (1, 2), (0, 3), (3, 4), (8, 5), (0, 6)];

#[tokio::test]
async fn no_rules_pass_everything() {
    check(
        r#"{"seed": 1}"#,
        MIXED,
        expect![[r#"
        client:  1 2 3 4 5 6
        broker:  0:1 1:2 0:3 3:4 8:5 0:6
        end:     Silent
    "#]],
    )
    .await;
}

#[tokio::test]
async fn dropped_produce_responses_are_lost_acks() {
    // The request reaches the broker; only the client's answer is lost.
    let plan = r#"{"seed": 1, "rules": [
        {"api_keys": [0], "direction": "response", "action": {"type": "drop_frame"}}
    ]}"#;
    check(
        plan,
        MIXED,
        expect![[r#"
        client:  2 4 5
        broker:  0:1 1:2 0:3 3:4 8:5 0:6
        end:     Silent
        c0 response 0:1 DropFrame rule 0
        c0 response 0:3 DropFrame rule 0
        c0 response 0:6 DropFrame rule 0"#]],
    )
    .await;
}

#[tokio::test]
async fn dropped_requests_never_reach_the_broker() {
    let plan = r#"{"seed": 1, "rules": [
        {"api_keys": [0], "direction": "request", "action": {"type": "drop_frame"}}
    ]}"#;
    check(
        plan,
        MIXED,
        expect![[r#"
        client:  2 4 5
        broker:  1:2 3:4 8:5
        end:     Silent
        c0 request 0:1 DropFrame rule 0
        c0 request 0:3 DropFrame rule 0
        c0 request 0:6 DropFrame rule 0"#]],
    )
    .await;
}

#[tokio::test]
async fn duplicated_requests_reach_the_broker_twice_and_answer_once() {
    let plan = r#"{"seed": 1, "rules": [
        {"api_keys": [0], "direction": "both", "action": {"type": "duplicate"}}
    ]}"#;
    check(
        plan,
        MIXED,
        expect![[r#"
        client:  1 2 3 4 5 6
        broker:  0:1 0:1 1:2 0:3 0:3 3:4 8:5 0:6 0:6
        end:     Silent
        c0 request 0:1 Duplicate rule 0
        c0 request 0:3 Duplicate rule 0
        c0 request 0:6 Duplicate rule 0"#]],
    )
    .await;
}

#[tokio::test]
async fn random_drops_follow_the_seed() {
    let plan = r#"{"seed": 7, "rules": [
        {"direction": "both", "action": {"type": "drop_frame"}, "probability": 0.3}
    ]}"#;
    let requests: Vec<(i16, i32)> = (0..16).map(|i| ((i % 3) as i16, i)).collect();
    check(
        plan,
        &requests,
        expect![[r#"
        client:  0 3 8 9 10 11 14 15
        broker:  0:0 0:3 1:4 1:7 2:8 0:9 1:10 2:11 1:13 2:14 0:15
        end:     Silent
        c0 request 0:12 DropFrame rule 0
        c0 request 0:6 DropFrame rule 0
        c0 request 1:1 DropFrame rule 0
        c0 request 2:2 DropFrame rule 0
        c0 request 2:5 DropFrame rule 0
        c0 response 1:13 DropFrame rule 0
        c0 response 1:4 DropFrame rule 0
        c0 response 1:7 DropFrame rule 0"#]],
    )
    .await;
}

#[tokio::test]
async fn same_seed_same_faults_other_seed_differs() {
    let plan = |seed: u64| {
        format!(
            r#"{{"seed": {seed}, "rules": [
                {{"direction": "both", "action": {{"type": "drop_frame"}}, "probability": 0.3}},
                {{"direction": "request", "action": {{"type": "duplicate"}}, "probability": 0.3}}
            ]}}"#
        )
    };
    let requests: Vec<(i16, i32)> = (0..40).map(|i| ((i % 4) as i16, i)).collect();
    let (first, _) = run_script(&plan(11), &requests).await;
    let (again, _) = run_script(&plan(11), &requests).await;
    let (other, _) = run_script(&plan(12), &requests).await;
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[tokio::test]
async fn delays_keep_order_and_bounds() {
    let plan = r#"{"seed": 3, "rules": [
        {"direction": "both", "action": {"type": "delay", "min_ms": 5, "max_ms": 40}}
    ]}"#;
    let requests: Vec<(i16, i32)> = (0..10).map(|i| (0, i)).collect();
    let started = Instant::now();
    let (shown, proxy) = run_script(plan, &requests).await;
    // Each request and each response waited at least 5 ms, one after another per direction.
    assert!(started.elapsed() >= Duration::from_millis(10 * 5));
    for event in proxy.events() {
        let Fault::Delay { delay_ms } = event.action else {
            panic!("unexpected event {event:?}");
        };
        assert!((5..=40).contains(&delay_ms), "delay {delay_ms}");
    }
    let client_line = shown.lines().next().unwrap();
    assert_eq!(client_line, "client:  0 1 2 3 4 5 6 7 8 9");
    assert_eq!(proxy.events().len(), 20);
}

#[tokio::test]
async fn cut_connection_closes_both_sides() {
    let plan = r#"{"seed": 1, "rules": [
        {"api_keys": [3], "direction": "request", "action": {"type": "cut_connection"}}
    ]}"#;
    let setup = Setup::start(Plan::from_json(plan).unwrap()).await;
    let mut client = setup.client().await;
    client.send(&request(0, 1, b"a")).await;
    assert_eq!(response_correlation_id(&client.next_frame().await), 1);
    client.send(&request(3, 2, b"b")).await;
    client.send(&request(0, 3, b"c")).await;
    assert_eq!(client.next_within(2_000).await, Next::Closed);
    assert!(
        setup.broker.wait_closed(1).await,
        "the broker side was not closed"
    );
    expect![[r#"
        0:1
        c0 request 3:2 CutConnection rule 0"#]]
    .assert_eq(&format!(
        "{}\n{}",
        show_requests(&setup.broker.requests()),
        show_events(&setup.proxy.events())
    ));
}

#[tokio::test]
async fn black_hole_is_silence_then_a_cut() {
    let plan = r#"{"seed": 1, "rules": [
        {"api_keys": [3], "direction": "request", "action": {"type": "black_hole", "duration_ms": 400}}
    ]}"#;
    let setup = Setup::start(Plan::from_json(plan).unwrap()).await;
    let mut client = setup.client().await;
    client.send(&request(0, 1, b"a")).await;
    assert_eq!(response_correlation_id(&client.next_frame().await), 1);
    let started = Instant::now();
    client.send(&request(3, 2, b"b")).await;
    client.send(&request(0, 3, b"c")).await;
    assert_eq!(client.next_within(3_000).await, Next::Closed);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        setup.broker.wait_closed(1).await,
        "the broker side was not closed"
    );
    expect![[r#"
        0:1
        c0 request 3:2 BlackHole { duration_ms: 400 } rule 0"#]]
    .assert_eq(&format!(
        "{}\n{}",
        show_requests(&setup.broker.requests()),
        show_events(&setup.proxy.events())
    ));
}

#[tokio::test]
async fn frames_pass_byte_identical() {
    let setup = Setup::start(Plan::none(1)).await;
    let stream = TcpStream::connect(setup.proxy.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Sizes around and well above the proxy's 64 KiB read buffer.
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|i: i32| {
            let payload: Vec<u8> = (0..(i * 7_919) % 200_000).map(|b| b as u8).collect();
            request((i % 20) as i16, i, &payload)
        })
        .collect();
    let to_send = frames.clone();
    let writer = tokio::spawn(async move {
        for frame in &to_send {
            write.write_all(frame).await.unwrap();
        }
        write
    });
    for frame in &frames {
        let expected = echo_response(frame);
        let mut got = vec![0u8; expected.len()];
        read.read_exact(&mut got).await.unwrap();
        assert!(
            got == expected,
            "response to {:?} differs",
            request_ids(frame)
        );
    }
    let _write = writer.await.unwrap();
    assert!(
        setup.broker.requests() == frames,
        "the broker saw different bytes"
    );
    assert!(setup.proxy.events().is_empty());
}

#[tokio::test]
async fn oversize_frame_cuts_only_its_connection() {
    let setup = Setup::start(Plan::none(1)).await;
    let mut good = setup.client().await;
    let mut bad = setup.client().await;
    // A length prefix announcing 200 MiB: the proxy refuses before reading (or allocating) it.
    bad.send(&(200 * 1024 * 1024i32).to_be_bytes()).await;
    assert_eq!(bad.next_within(2_000).await, Next::Closed);
    good.send(&request(1, 7, b"still here")).await;
    assert_eq!(response_correlation_id(&good.next_frame().await), 7);
    let mut later = setup.client().await;
    later.send(&request(1, 8, b"new")).await;
    assert_eq!(response_correlation_id(&later.next_frame().await), 8);
}

#[tokio::test]
async fn frame_limit_is_configurable() {
    let setup = Setup::start_with(Plan::none(1), |c| c.limits.frame_bytes_max = 1024).await;
    let mut client = setup.client().await;
    // The echo answer (4 + 4 + 8 + 1008 = 1024 bytes) is exactly at the limit.
    client.send(&request(0, 1, &[7; 1008])).await;
    assert_eq!(response_correlation_id(&client.next_frame().await), 1);
    // A request of 4 + 8 + 1013 = 1025 bytes is over it.
    client.send(&request(0, 2, &[7; 1013])).await;
    assert_eq!(client.next_within(2_000).await, Next::Closed);
}

#[tokio::test]
async fn set_plan_changes_faults_at_run_time() {
    let setup = Setup::start(Plan::lossy_network(1, 1.0)).await;
    let mut client = setup.client().await;
    client.send(&request(0, 1, b"lost")).await;
    assert_eq!(client.next_within(200).await, Next::Silent);
    setup.proxy.set_plan(Plan::none(1)).unwrap();
    client.send(&request(0, 2, b"kept")).await;
    assert_eq!(response_correlation_id(&client.next_frame().await), 2);
    assert_eq!(show_requests(&setup.broker.requests()), "0:2");
    let bad = Plan::lossy_network(1, 2.0);
    expect!["check plan"].assert_eq(&setup.proxy.set_plan(bad).unwrap_err().to_string());
}

#[tokio::test]
async fn cut_all_closes_every_connection() {
    let setup = Setup::start(Plan::none(1)).await;
    let mut clients = vec![setup.client().await, setup.client().await];
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&request(0, i as i32, b"hello")).await;
        client.next_frame().await;
    }
    setup.proxy.cut_all();
    for client in &mut clients {
        assert_eq!(client.next_within(2_000).await, Next::Closed);
    }
    assert!(setup.broker.wait_closed(2).await);
    expect![[r#"
        c0 both ?:? CutConnection operator
        c1 both ?:? CutConnection operator"#]]
    .assert_eq(&show_events(&setup.proxy.events()));
}

#[tokio::test]
async fn pause_holds_frames_until_resume() {
    let setup = Setup::start(Plan::none(1)).await;
    let mut client = setup.client().await;
    client.send(&request(0, 1, b"before")).await;
    client.next_frame().await;
    setup.proxy.pause_all();
    client.send(&request(0, 2, b"held")).await;
    client.send(&request(0, 3, b"held too")).await;
    assert_eq!(client.next_within(200).await, Next::Silent);
    setup.proxy.resume_all();
    assert_eq!(response_correlation_id(&client.next_frame().await), 2);
    assert_eq!(response_correlation_id(&client.next_frame().await), 3);
    expect![[r#"
        c0 both ?:? Pause operator
        c0 both ?:? Resume operator"#]]
    .assert_eq(&show_events(&setup.proxy.events()));
}

#[tokio::test]
async fn events_are_appended_to_a_file_as_json_lines() {
    let path = std::env::temp_dir().join(format!("chaos-events-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let setup = Setup::start_with(Plan::lost_acks(5, 1.0), |c| {
        c.events_path = Some(path.clone())
    })
    .await;
    let mut client = setup.client().await;
    for corr in 0..3 {
        client.send(&request(0, corr, b"p")).await;
    }
    client.send(&request(1, 3, b"f")).await;
    assert_eq!(response_correlation_id(&client.next_frame().await), 3);
    let text = std::fs::read_to_string(&path).unwrap();
    let from_file: Vec<FaultEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(from_file, setup.proxy.events());
    assert_eq!(from_file.len(), 3);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_listener() {
    let setup = Setup::start(Plan::none(1)).await;
    let addr = setup.proxy.local_addr();
    let mut client = setup.client().await;
    client.send(&request(0, 1, b"x")).await;
    client.next_frame().await;
    setup.proxy.shutdown().await;
    assert_eq!(client.next_within(2_000).await, Next::Closed);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn plan_files_are_checked() {
    let missing = chaos::load_plan(std::path::Path::new("/nonexistent/plan.json")).unwrap_err();
    expect!["read plan /nonexistent/plan.json"].assert_eq(&missing.to_string());
}
