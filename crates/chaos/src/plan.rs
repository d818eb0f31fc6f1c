//! The fault plan: which frames to drop, delay, duplicate or cut, decided without any I/O.
//!
//! A [`Plan`] is a seed and an ordered list of [`FaultRule`]s. For every frame the proxy asks
//! [`Plan::decide`] with the connection number, the frame's direction, its API key and its index in
//! that direction. The rules are tried in order; the first rule that matches the frame and whose
//! probability draw succeeds wins.
//!
//! Reproducibility: the random draws for one frame come from a ChaCha8 generator keyed by the plan
//! seed and the connection number, on a stream chosen by the frame's direction and index. A
//! decision is therefore a pure function of `(seed, rules, connection, direction, api_key,
//! frame_index)`: it does not depend on how the two directions of a connection interleave in time,
//! so the same seed and the same frame sequence always give the same faults.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Kafka API keys that fault plans commonly name, spelled as in the Kafka protocol guide.
pub mod api_key {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const JOIN_GROUP: i16 = 11;
    pub const HEARTBEAT: i16 = 12;
    pub const LEAVE_GROUP: i16 = 13;
    pub const SYNC_GROUP: i16 = 14;
    pub const API_VERSIONS: i16 = 18;
    pub const INIT_PRODUCER_ID: i16 = 22;
    pub const ADD_PARTITIONS_TO_TXN: i16 = 24;
    pub const ADD_OFFSETS_TO_TXN: i16 = 25;
    pub const END_TXN: i16 = 26;
    pub const TXN_OFFSET_COMMIT: i16 = 28;
}

/// Which way a frame travels: client to broker (request) or broker to client (response).
///
/// Rules use `Both`; a single frame is always `Request` or `Response`. Events caused by an
/// operator command (cut all, pause all) affect both directions and are recorded as `Both`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Request,
    Response,
    Both,
}

impl Direction {
    fn covers(self, frame: Direction) -> bool {
        self == Direction::Both || self == frame
    }
}

/// What a rule does to a frame it selects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Do not forward the frame. On a response this is the seed's lost acknowledgement: the
    /// broker did the work, the client never hears. On a request the broker never sees it.
    DropFrame,
    /// Hold the frame for a uniformly drawn time in `min_ms..=max_ms`, then forward it. Later
    /// frames in the same direction wait behind it, so order is preserved as TCP would.
    Delay { min_ms: u64, max_ms: u64 },
    /// Send a request to the broker twice, as a client retry would arrive. Applies to requests
    /// only: the broker answers both copies, and the proxy swallows the second answer so the
    /// client sees exactly one response per correlation id.
    Duplicate,
    /// Close the client and the broker connection at once.
    CutConnection,
    /// Forward nothing in either direction for `duration_ms`, then close both sides: a network
    /// partition as a client sees it (silence, then a dead connection).
    BlackHole { duration_ms: u64 },
}

/// One line of a plan: which frames it selects and what happens to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The API keys this rule selects; `None` selects every frame, including frames whose API
    /// key is unknown (a response to a request the proxy did not see).
    #[serde(default)]
    pub api_keys: Option<Vec<i16>>,
    pub direction: Direction,
    pub action: Action,
    /// The chance, in `0.0..=1.0`, that a selected frame suffers the action. Defaults to 1.
    #[serde(default = "probability_default")]
    pub probability: f64,
}

fn probability_default() -> f64 {
    1.0
}

impl FaultRule {
    /// A rule that always applies `action` to every frame going `direction`.
    pub fn always(direction: Direction, action: Action) -> FaultRule {
        FaultRule {
            api_keys: None,
            direction,
            action,
            probability: 1.0,
        }
    }

    /// The same rule, restricted to the given API keys.
    pub fn for_api_keys(mut self, api_keys: &[i16]) -> FaultRule {
        self.api_keys = Some(api_keys.to_vec());
        self
    }

    /// The same rule, applied with the given probability.
    pub fn with_probability(mut self, probability: f64) -> FaultRule {
        self.probability = probability;
        self
    }

    fn selects(&self, direction: Direction, api_key: Option<i16>) -> bool {
        if !self.direction.covers(direction) {
            return false;
        }
        // Duplicating a response would hand the client a correlation id it has already
        // consumed; the action is defined for requests only (see `Action::Duplicate`).
        if self.action == Action::Duplicate && direction == Direction::Response {
            return false;
        }
        match (&self.api_keys, api_key) {
            (None, _) => true,
            (Some(keys), Some(key)) => keys.contains(&key),
            (Some(_), None) => false,
        }
    }
}

/// A seed and the rules it drives. Loaded from JSON by the lab and the CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// The concrete fault injected into a frame or a connection, as recorded in events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    DropFrame,
    Delay {
        delay_ms: u64,
    },
    Duplicate,
    CutConnection,
    BlackHole {
        duration_ms: u64,
    },
    /// An operator paused all forwarding ([`crate::ProxyHandle::pause_all`]).
    Pause,
    /// An operator resumed forwarding ([`crate::ProxyHandle::resume_all`]).
    Resume,
}

/// What to do with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Rule number `rule` (its index in [`Plan::rules`]) fired and injects `fault`.
    Inject {
        rule: usize,
        fault: Fault,
    },
}

/// Why a plan was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("parse plan: {0}")]
    Parse(String),
    #[error("rule {rule}: probability {probability} is not within 0..=1")]
    Probability { rule: usize, probability: f64 },
    #[error("rule {rule}: delay min_ms {min_ms} is above max_ms {max_ms}")]
    DelayRange {
        rule: usize,
        min_ms: u64,
        max_ms: u64,
    },
    #[error("rule {rule}: api_keys is empty, so the rule selects nothing (omit it to select all)")]
    ApiKeysEmpty { rule: usize },
    #[error("rule {rule}: duplicate applies to requests only, not to direction response")]
    DuplicateResponse { rule: usize },
}

impl Plan {
    /// A plan that injects nothing: every frame passes through unchanged.
    pub fn none(seed: u64) -> Plan {
        Plan {
            seed,
            rules: Vec::new(),
        }
    }

    /// Parses a JSON plan and checks it.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// The plan as pretty JSON, the format [`Plan::from_json`] reads.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    /// Checks every rule; the proxy refuses a plan that fails.
    pub fn validate(&self) -> Result<(), PlanError> {
        for (rule, r) in self.rules.iter().enumerate() {
            if !(0.0..=1.0).contains(&r.probability) {
                return Err(PlanError::Probability {
                    rule,
                    probability: r.probability,
                });
            }
            if let Action::Delay { min_ms, max_ms } = r.action {
                if min_ms > max_ms {
                    return Err(PlanError::DelayRange {
                        rule,
                        min_ms,
                        max_ms,
                    });
                }
            }
            if r.api_keys.as_ref().is_some_and(|keys| keys.is_empty()) {
                return Err(PlanError::ApiKeysEmpty { rule });
            }
            if r.action == Action::Duplicate && r.direction == Direction::Response {
                return Err(PlanError::DuplicateResponse { rule });
            }
        }
        Ok(())
    }

    /// Decides the fate of frame number `frame_index` (counted from 0 per connection and
    /// direction) going `direction` on connection number `connection`.
    ///
    /// `api_key` is `None` when it is unknown: a frame too short to carry a header, or a response
    /// whose request the proxy never saw.
    pub fn decide(
        &self,
        connection: u64,
        direction: Direction,
        api_key: Option<i16>,
        frame_index: u64,
    ) -> Decision {
        assert!(direction != Direction::Both, "a frame has one direction");
        let mut rng = frame_rng(self.seed, connection, direction, frame_index);
        for (rule, r) in self.rules.iter().enumerate() {
            if !r.selects(direction, api_key) {
                continue;
            }
            // `gen` is in 0..1, so probability 1 always fires and 0 never does.
            if rng.gen::<f64>() >= r.probability {
                continue;
            }
            let fault = match r.action {
                Action::DropFrame => Fault::DropFrame,
                Action::Delay { min_ms, max_ms } => Fault::Delay {
                    delay_ms: rng.gen_range(min_ms..=max_ms),
                },
                Action::Duplicate => Fault::Duplicate,
                Action::CutConnection => Fault::CutConnection,
                Action::BlackHole { duration_ms } => Fault::BlackHole { duration_ms },
            };
            return Decision::Inject { rule, fault };
        }
        Decision::Forward
    }
}

/// The generator for one frame: keyed by the plan seed and the connection, one ChaCha stream per
/// (direction, frame index). ChaCha is a keyed pseudo-random function, so neighbouring seeds,
/// connections and frames give unrelated draws without any extra mixing.
fn frame_rng(seed: u64, connection: u64, direction: Direction, frame_index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&connection.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    let direction_bit = u64::from(direction == Direction::Response);
    // Frame indexes stay far below 2^63 (one frame per nanosecond for 292 years).
    rng.set_stream(frame_index.wrapping_shl(1) | direction_bit);
    rng
}

/// Ready-made plans for the lab's fault profiles.
impl Plan {
    /// The seed's lost acknowledgement: produce and offset-commit responses are dropped with
    /// `probability` while their requests still reach the broker.
    pub fn lost_acks(seed: u64, probability: f64) -> Plan {
        Plan::acks_lost_by(seed, probability, Action::DropFrame)
    }

    /// Like [`Plan::lost_acks`], but the lost response also ends its connection, which is how a
    /// lost acknowledgement looks over TCP: a connection never loses one frame and delivers the
    /// next, so clients (librdkafka's idempotent producer among them) assume it does not.
    pub fn lost_acks_with_reset(seed: u64, probability: f64) -> Plan {
        Plan::acks_lost_by(seed, probability, Action::CutConnection)
    }

    fn acks_lost_by(seed: u64, probability: f64, action: Action) -> Plan {
        let rule = FaultRule::always(Direction::Response, action)
            .for_api_keys(&[
                api_key::PRODUCE,
                api_key::OFFSET_COMMIT,
                api_key::TXN_OFFSET_COMMIT,
            ])
            .with_probability(probability);
        Plan {
            seed,
            rules: vec![rule],
        }
    }

    /// Every frame in either direction is lost with `probability`.
    pub fn lossy_network(seed: u64, probability: f64) -> Plan {
        Plan::frames_lost_by(seed, probability, Action::DropFrame)
    }

    /// Like [`Plan::lossy_network`], but a lost frame also ends its connection, as a loss that
    /// TCP cannot repair shows itself to a client.
    pub fn lossy_network_with_reset(seed: u64, probability: f64) -> Plan {
        Plan::frames_lost_by(seed, probability, Action::CutConnection)
    }

    fn frames_lost_by(seed: u64, probability: f64, action: Action) -> Plan {
        let rule = FaultRule::always(Direction::Both, action).with_probability(probability);
        Plan {
            seed,
            rules: vec![rule],
        }
    }

    /// Every request reaches the broker twice with `probability`.
    pub fn duplicating_network(seed: u64, probability: f64) -> Plan {
        let rule =
            FaultRule::always(Direction::Request, Action::Duplicate).with_probability(probability);
        Plan {
            seed,
            rules: vec![rule],
        }
    }

    /// Every frame in either direction is delayed by `min_ms..=max_ms`.
    pub fn slow_network(seed: u64, min_ms: u64, max_ms: u64) -> Plan {
        let rule = FaultRule::always(Direction::Both, Action::Delay { min_ms, max_ms });
        Plan {
            seed,
            rules: vec![rule],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Decides `frames` frames of each direction on connection 0 and prints one character per
    /// frame: `.` forward, `D` drop, `2` duplicate, `X` cut, `B` black hole, digits of a delay.
    fn decisions(plan: &Plan, connection: u64, frames: u64) -> String {
        let mut out = String::new();
        for direction in [Direction::Request, Direction::Response] {
            for frame_index in 0..frames {
                let api_key = Some((frame_index % 4) as i16);
                let c = match plan.decide(connection, direction, api_key, frame_index) {
                    Decision::Forward => ".".to_string(),
                    Decision::Inject { fault, .. } => match fault {
                        Fault::DropFrame => "D".to_string(),
                        Fault::Delay { delay_ms } => format!("({delay_ms})"),
                        Fault::Duplicate => "2".to_string(),
                        Fault::CutConnection => "X".to_string(),
                        Fault::BlackHole { .. } => "B".to_string(),
                        Fault::Pause | Fault::Resume => unreachable!("operator faults only"),
                    },
                };
                out.push_str(&c);
            }
            out.push('\n');
        }
        out
    }

    fn check_decisions(plan_json: &str, expect: Expect) {
        let plan = Plan::from_json(plan_json).unwrap();
        expect.assert_eq(&decisions(&plan, 0, 24));
    }

    #[test]
    fn decisions_as_data() {
        check_decisions(
            r#"{"seed": 1}"#,
            expect![[r#"
            ........................
            ........................
        "#]],
        );
        check_decisions(
            r#"{"seed": 1, "rules": [{"api_keys": [0], "direction": "response", "action": {"type": "drop_frame"}}]}"#,
            expect![[r#"
                ........................
                D...D...D...D...D...D...
            "#]],
        );
        check_decisions(
            r#"{"seed": 7, "rules": [{"direction": "both", "action": {"type": "drop_frame"}, "probability": 0.25}]}"#,
            expect![[r#"
                .DD..DD.....D......DD..D
                ..DD.........D..D....DD.
            "#]],
        );
        check_decisions(
            r#"{"seed": 7, "rules": [{"direction": "both", "action": {"type": "duplicate"}, "probability": 0.5}]}"#,
            expect![[r#"
                .22..22...222222..222.22
                ........................
            "#]],
        );
        check_decisions(
            r#"{"seed": 3, "rules": [{"direction": "request", "action": {"type": "delay", "min_ms": 1, "max_ms": 9}, "probability": 0.5}]}"#,
            expect![[r#"
                ..(5).(2)(7)(6).(1)..(6)(9)(8)..(7)(9)(3)(5)....
                ........................
            "#]],
        );
        check_decisions(
            r#"{"seed": 3, "rules": [
                {"api_keys": [3], "direction": "request", "action": {"type": "cut_connection"}},
                {"api_keys": [2, 3], "direction": "both", "action": {"type": "black_hole", "duration_ms": 5}}
            ]}"#,
            expect![[r#"
                ..BX..BX..BX..BX..BX..BX
                ..BB..BB..BB..BB..BB..BB
            "#]],
        );
    }

    #[test]
    fn same_seed_same_decisions_and_other_seed_differs() {
        let plan = Plan::lossy_network(42, 0.5);
        let first = decisions(&plan, 3, 256);
        assert_eq!(first, decisions(&plan, 3, 256));
        assert_ne!(first, decisions(&Plan::lossy_network(43, 0.5), 3, 256));
        assert_ne!(
            first,
            decisions(&plan, 4, 256),
            "connections draw independently"
        );
    }

    #[test]
    fn probability_is_honoured() {
        let plan = Plan::lossy_network(9, 0.3);
        let dropped = (0..10_000)
            .filter(|&i| plan.decide(0, Direction::Request, Some(0), i) != Decision::Forward)
            .count();
        assert!((2_700..3_300).contains(&dropped), "dropped {dropped}");
    }

    #[test]
    fn delays_stay_within_bounds() {
        let plan = Plan::slow_network(5, 10, 20);
        for i in 0..1_000 {
            let Decision::Inject {
                fault: Fault::Delay { delay_ms },
                ..
            } = plan.decide(1, Direction::Response, None, i)
            else {
                panic!("frame {i} was not delayed");
            };
            assert!((10..=20).contains(&delay_ms), "delay {delay_ms}");
        }
    }

    #[test]
    fn unknown_api_key_matches_only_rules_without_api_keys() {
        let keyed = Plan {
            seed: 0,
            rules: vec![FaultRule::always(Direction::Both, Action::DropFrame).for_api_keys(&[0])],
        };
        assert_eq!(
            keyed.decide(0, Direction::Response, None, 0),
            Decision::Forward
        );
        let all = Plan::lossy_network(0, 1.0);
        assert_ne!(
            all.decide(0, Direction::Response, None, 0),
            Decision::Forward
        );
    }

    fn check_validate(plan_json: &str, expect: Expect) {
        let actual = match Plan::from_json(plan_json) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn validation_as_data() {
        check_validate(r#"{"seed": 1, "rules": []}"#, expect!["ok"]);
        check_validate(
            r#"{"seed": 1, "rules": [{"direction": "both", "action": {"type": "drop_frame"}, "probability": 1.5}]}"#,
            expect!["rule 0: probability 1.5 is not within 0..=1"],
        );
        check_validate(
            r#"{"seed": 1, "rules": [{"direction": "both", "action": {"type": "drop_frame"}, "probability": -0.1}]}"#,
            expect!["rule 0: probability -0.1 is not within 0..=1"],
        );
        check_validate(
            r#"{"seed": 1, "rules": [{"direction": "both", "action": {"type": "delay", "min_ms": 5, "max_ms": 4}}]}"#,
            expect!["rule 0: delay min_ms 5 is above max_ms 4"],
        );
        check_validate(
            r#"{"seed": 1, "rules": [{"api_keys": [], "direction": "both", "action": {"type": "drop_frame"}}]}"#,
            expect![
                "rule 0: api_keys is empty, so the rule selects nothing (omit it to select all)"
            ],
        );
        check_validate(
            r#"{"seed": 1, "rules": [{"direction": "response", "action": {"type": "duplicate"}}]}"#,
            expect!["rule 0: duplicate applies to requests only, not to direction response"],
        );
        check_validate(
            r#"{"seed": 1, "rules": [{"direction": "sideways", "action": {"type": "drop_frame"}}]}"#,
            expect!["parse plan: unknown variant `sideways`, expected one of `request`, `response`, `both` at line 1 column 46"],
        );
        check_validate(
            r#"{"seed": 1, "rulez": []}"#,
            expect![
                "parse plan: unknown field `rulez`, expected `seed` or `rules` at line 1 column 19"
            ],
        );
    }

    #[test]
    fn profiles_round_trip_through_json() {
        for plan in [
            Plan::none(1),
            Plan::lost_acks(2, 0.5),
            Plan::lossy_network(3, 0.1),
            Plan::duplicating_network(4, 0.2),
            Plan::slow_network(5, 1, 10),
        ] {
            assert_eq!(Plan::from_json(&plan.to_json()).unwrap(), plan);
        }
    }

    #[test]
    fn plan_json_format() {
        expect![[r#"
            {
              "seed": 7,
              "rules": [
                {
                  "api_keys": [
                    0,
                    8,
                    28
                  ],
                  "direction": "response",
                  "action": {
                    "type": "drop_frame"
                  },
                  "probability": 0.5
                }
              ]
            }"#]]
        .assert_eq(&Plan::lost_acks(7, 0.5).to_json());
    }
}
