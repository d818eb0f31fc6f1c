//! Matching responses to the requests the proxy forwarded, so a response's API key is known and
//! the broker's answer to a duplicated request can be swallowed.
//!
//! A Kafka broker answers the requests of one connection in order, but not every request gets an
//! answer: a produce request with `acks=0` has none. So a response is matched by correlation id,
//! searching from the oldest request; requests older than the match were never answered and are
//! forgotten.
//!
//! A duplicated request is sent twice with the same correlation id and the broker answers twice.
//! The client asked once and waits for one answer; a second answer would carry a correlation id
//! the client has already consumed, which librdkafka treats as a protocol error. So the first
//! answer goes to the client (faults on responses still apply to it) and the second is swallowed.

use std::collections::VecDeque;

/// The default limit on requests remembered per connection. Reaching it means the broker is not
/// answering (or the client sends only `acks=0` produce requests); the oldest are forgotten.
pub const IN_FLIGHT_REQUESTS_MAX_DEFAULT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    correlation_id: i32,
    api_key: i16,
    /// Answers still expected from the broker: 1, or 2 for a duplicated request.
    responses_left: u8,
    /// Whether the client's own answer has already been seen.
    answered: bool,
}

/// What to do with a response, given the requests sent on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// The client's answer to a request with this API key.
    Client { api_key: i16 },
    /// The broker's answer to the second copy of a duplicated request: the client must not see it.
    Swallow { api_key: i16 },
    /// No request with this correlation id is in flight; forward it as it is.
    Unknown,
}

/// The requests forwarded to the broker on one connection and not yet fully answered.
#[derive(Debug)]
pub struct InFlight {
    entries: VecDeque<Entry>,
    entries_max: usize,
}

impl InFlight {
    pub fn new(entries_max: usize) -> InFlight {
        assert!(entries_max > 0, "at least one request must be trackable");
        InFlight {
            entries: VecDeque::new(),
            entries_max,
        }
    }

    /// Records a request sent to the broker `copies` times (1, or 2 when duplicated). Returns
    /// true if the oldest request had to be forgotten to stay within the limit.
    pub fn sent(&mut self, correlation_id: i32, api_key: i16, copies: u8) -> bool {
        assert!(copies == 1 || copies == 2, "copies {copies}");
        let evicted = self.entries.len() == self.entries_max;
        if evicted {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            correlation_id,
            api_key,
            responses_left: copies,
            answered: false,
        });
        evicted
    }

    /// Matches a response with `correlation_id` to the oldest request that carries it.
    pub fn received(&mut self, correlation_id: i32) -> ResponseMatch {
        let Some(position) = self
            .entries
            .iter()
            .position(|e| e.correlation_id == correlation_id)
        else {
            return ResponseMatch::Unknown;
        };
        // Requests before the match were never answered (acks=0 produce, or a broker that
        // skipped them); no answer can come for them now that a later one has.
        self.entries.drain(..position);
        let entry = self.entries.front_mut().expect("the match is at the front");
        let api_key = entry.api_key;
        let outcome = if entry.answered {
            ResponseMatch::Swallow { api_key }
        } else {
            entry.answered = true;
            ResponseMatch::Client { api_key }
        };
        entry.responses_left -= 1;
        if entry.responses_left == 0 {
            self.entries.pop_front();
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Runs a script of `s<corr>k<key>` (sent once), `d<corr>k<key>` (sent twice) and `r<corr>`
    /// (response) steps and prints each response's match and the requests left in flight.
    fn check(entries_max: usize, script: &str, expect: Expect) {
        let mut in_flight = InFlight::new(entries_max);
        let mut out = Vec::new();
        for step in script.split_whitespace() {
            let (kind, rest) = step.split_at(1);
            match kind {
                "s" | "d" => {
                    let (corr, key) = rest.split_once('k').unwrap();
                    let copies = if kind == "d" { 2 } else { 1 };
                    if in_flight.sent(corr.parse().unwrap(), key.parse().unwrap(), copies) {
                        out.push("evicted".to_string());
                    }
                }
                "r" => out.push(format!("{:?}", in_flight.received(rest.parse().unwrap()))),
                _ => panic!("bad step {step}"),
            }
        }
        out.push(format!("left {}", in_flight.len()));
        expect.assert_eq(&out.join("\n"));
    }

    #[test]
    fn matching_as_data() {
        check(
            8,
            "s1k0 s2k3 r1 r2",
            expect![[r#"
            Client { api_key: 0 }
            Client { api_key: 3 }
            left 0"#]],
        );
        check(
            8,
            "d1k0 s2k3 r1 r1 r2",
            expect![[r#"
            Client { api_key: 0 }
            Swallow { api_key: 0 }
            Client { api_key: 3 }
            left 0"#]],
        );
        // acks=0 produce: request 1 gets no answer and is forgotten when 2's answer arrives.
        check(
            8,
            "s1k0 s2k1 r2",
            expect![[r#"
            Client { api_key: 1 }
            left 0"#]],
        );
        // A duplicated acks=0 produce: neither copy is answered.
        check(
            8,
            "d1k0 s2k1 r2",
            expect![[r#"
            Client { api_key: 1 }
            left 0"#]],
        );
        check(
            8,
            "s1k0 r9",
            expect![[r#"
            Unknown
            left 1"#]],
        );
        check(
            2,
            "s1k0 s2k1 s3k2 r1 r2 r3",
            expect![[r#"
            evicted
            Unknown
            Client { api_key: 1 }
            Client { api_key: 2 }
            left 0"#]],
        );
    }

    proptest::proptest! {
        /// Whatever mix of duplicated and unanswered (acks=0) requests, as long as the broker
        /// answers in order, the client gets exactly one answer per answered request, in order,
        /// and every second answer to a duplicate is swallowed.
        #[test]
        fn one_answer_per_answered_request(
            requests in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY), 0..64)
        ) {
            let mut in_flight = InFlight::new(IN_FLIGHT_REQUESTS_MAX_DEFAULT);
            let mut answers = Vec::new();
            for (i, &(duplicated, answered)) in requests.iter().enumerate() {
                let copies = if duplicated { 2 } else { 1 };
                in_flight.sent(i as i32, i as i16, copies);
                if answered {
                    answers.extend(std::iter::repeat_n(i as i32, usize::from(copies)));
                }
            }
            let mut client = Vec::new();
            let mut swallowed = 0;
            for correlation_id in answers {
                match in_flight.received(correlation_id) {
                    ResponseMatch::Client { api_key } => client.push(api_key),
                    ResponseMatch::Swallow { .. } => swallowed += 1,
                    ResponseMatch::Unknown => proptest::prop_assert!(false, "lost track of {correlation_id}"),
                }
            }
            let expected: Vec<i16> = (0..requests.len())
                .filter(|&i| requests[i].1)
                .map(|i| i as i16)
                .collect();
            proptest::prop_assert_eq!(client, expected);
            proptest::prop_assert_eq!(swallowed, requests.iter().filter(|r| r.0 && r.1).count());
        }
    }
}
