//! The retry policy of a consumer handler, as pure logic: how many attempts, how long to wait
//! before each (exponential backoff with jitter), and which failures are worth another attempt.
//! Randomness and time are passed in, so a table of cases needs neither sleeping nor luck.

use std::time::Duration;

use rand::Rng;

/// The most attempts a policy may allow: every attempt beyond the first may name a retry topic
/// of its own (non-blocking mode), so this also bounds the topics one source topic fans out to.
pub const ATTEMPTS_MAX_LIMIT: u32 = 16;

/// Why a handler failed, as the handler classifies it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// May succeed if tried again later: a timeout, an unavailable dependency.
    #[error("transient: {0}")]
    Transient(String),
    /// Will fail however often it is tried: a record that does not parse, a rule it breaks.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure::Transient(reason.into())
    }

    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure::Permanent(reason.into())
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }

    /// The text carried in the `ferry.error` header.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// What to do after an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try once more, as attempt `attempt` (counted from 1), after `after`.
    Retry { attempt: u32, after: Duration },
    /// No more attempts: the record goes to the dead-letter topic.
    DeadLetter,
}

/// Attempts, backoff and jitter. Attempt 1 is the first delivery; attempt `n + 1` waits
/// `min(backoff_base * 2^(n-1), backoff_max)`, less up to `jitter` of it at random (so retries
/// of many records spread out rather than arrive together).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    attempts_max: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    /// The fraction of each backoff that may be taken off at random, 0 to 1.
    jitter: f64,
}

impl Default for RetryPolicy {
    /// Three attempts, 1 s then 2 s, up to 20% jitter.
    fn default() -> RetryPolicy {
        RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(30)).jitter(0.2)
    }
}

impl RetryPolicy {
    /// `attempts_max` attempts in all (1 means no retry), backoff from `backoff_base` doubling up
    /// to `backoff_max`, no jitter.
    pub fn new(attempts_max: u32, backoff_base: Duration, backoff_max: Duration) -> RetryPolicy {
        assert!(attempts_max >= 1, "a policy allows at least one attempt");
        assert!(
            attempts_max <= ATTEMPTS_MAX_LIMIT,
            "at most {ATTEMPTS_MAX_LIMIT} attempts"
        );
        assert!(backoff_base <= backoff_max, "backoff_base <= backoff_max");
        RetryPolicy {
            attempts_max,
            backoff_base,
            backoff_max,
            jitter: 0.0,
        }
    }

    /// Takes up to `fraction` (0 to 1) of each backoff off at random.
    pub fn jitter(self, fraction: f64) -> RetryPolicy {
        assert!((0.0..=1.0).contains(&fraction), "jitter is a fraction");
        RetryPolicy {
            jitter: fraction,
            ..self
        }
    }

    pub fn attempts_max(&self) -> u32 {
        self.attempts_max
    }

    /// The backoff before attempt `attempt + 1` without jitter: the delay a retry topic is named
    /// after.
    pub fn nominal_backoff(&self, attempt: u32) -> Duration {
        assert!(attempt >= 1, "attempts count from 1");
        let doublings = (attempt - 1).min(31);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }

    /// The backoff before attempt `attempt + 1`, with jitter drawn from `rng`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let nominal = self.nominal_backoff(attempt);
        if self.jitter == 0.0 {
            return nominal;
        }
        let off = rng.gen_range(0.0..=self.jitter);
        nominal.mul_f64(1.0 - off)
    }

    /// What follows attempt `attempt` failing with `failure`.
    pub fn decide(&self, attempt: u32, failure: &Failure, rng: &mut impl Rng) -> Decision {
        if !failure.is_retriable() || attempt >= self.attempts_max {
            return Decision::DeadLetter;
        }
        Decision::Retry {
            attempt: attempt + 1,
            after: self.backoff(attempt, rng),
        }
    }

    /// The distinct nominal delays of the retries this policy can make, in order: the retry
    /// topics of non-blocking mode.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.attempts_max)
            .map(|attempt| self.nominal_backoff(attempt))
            .collect();
        delays.dedup();
        delays
    }
}

/// Waits, for blocking retries. Tests pass one that only records what it was asked.
pub trait Sleeper {
    fn sleep(&mut self, duration: Duration);
}

/// Sleeps the calling thread.
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// How a record ended under blocking retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// The handler succeeded at attempt `attempts`.
    Succeeded { attempts: u32 },
    /// The last attempt, number `attempts`, failed with `failure`: dead-letter it.
    Failed { attempts: u32, failure: Failure },
}

/// Blocking mode: calls `handler` with the attempt number until it succeeds, fails permanently
/// or runs out of attempts, sleeping each backoff in between. The partition waits meanwhile, so
/// order is kept.
pub fn retry_in_place(
    policy: &RetryPolicy,
    rng: &mut impl Rng,
    sleeper: &mut (impl Sleeper + ?Sized),
    mut handler: impl FnMut(u32) -> Result<(), Failure>,
) -> InPlace {
    let mut attempt = 1;
    loop {
        let failure = match handler(attempt) {
            Ok(()) => return InPlace::Succeeded { attempts: attempt },
            Err(failure) => failure,
        };
        match policy.decide(attempt, &failure, rng) {
            Decision::DeadLetter => {
                return InPlace::Failed {
                    attempts: attempt,
                    failure,
                }
            }
            Decision::Retry {
                attempt: next,
                after,
            } => {
                sleeper.sleep(after);
                attempt = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use rand::SeedableRng;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(17)
    }

    /// (attempts, base ms, max ms) and an attempt: the nominal backoff in ms.
    fn check_backoff(attempts: u32, base_ms: u64, max_ms: u64, attempt: u32, expect_ms: u64) {
        let policy = RetryPolicy::new(attempts, ms(base_ms), ms(max_ms));
        assert_eq!(
            policy.nominal_backoff(attempt),
            ms(expect_ms),
            "{attempts} attempts, {base_ms}..{max_ms} ms, after attempt {attempt}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        check_backoff(5, 100, 10_000, 1, 100);
        check_backoff(5, 100, 10_000, 2, 200);
        check_backoff(5, 100, 10_000, 4, 800);
        check_backoff(9, 100, 1_000, 5, 1_000);
        check_backoff(9, 100, 1_000, 8, 1_000);
        check_backoff(16, 1_000, 1_000, 15, 1_000);
        // Doubling far past the max saturates instead of overflowing.
        check_backoff(16, u64::MAX / 2, u64::MAX / 2, 15, u64::MAX / 2);
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let policy = RetryPolicy::new(4, ms(1_000), ms(60_000)).jitter(0.5);
        let mut rng = rng();
        for attempt in 1..4 {
            let nominal = policy.nominal_backoff(attempt);
            let drawn: Vec<Duration> = (0..200)
                .map(|_| policy.backoff(attempt, &mut rng))
                .collect();
            assert!(drawn.iter().all(|d| *d <= nominal && *d >= nominal / 2));
            // Control: the draws differ, so jitter is applied at all.
            assert!(drawn.iter().any(|d| *d != drawn[0]));
        }
        // The same seed draws the same backoffs.
        let a: Vec<_> = (0..5)
            .map(|_| policy.backoff(1, &mut rng.clone()))
            .collect();
        let b: Vec<_> = (0..5)
            .map(|_| policy.backoff(1, &mut rng.clone()))
            .collect();
        assert_eq!(a, b);
    }

    /// Runs `retry_in_place` with a handler whose attempts go as `script` (`ok`, `t` transient,
    /// `p` permanent; past its end every attempt fails transiently) under a jitter-free policy of
    /// `attempts` attempts from 100 ms. Prints the outcome and the sleeps asked for.
    fn check_in_place(attempts: u32, script: &[&str], expect: Expect) {
        struct Recorder(Vec<Duration>);
        impl Sleeper for Recorder {
            fn sleep(&mut self, duration: Duration) {
                self.0.push(duration);
            }
        }
        let policy = RetryPolicy::new(attempts, ms(100), ms(350));
        let mut sleeper = Recorder(Vec::new());
        let mut seen = Vec::new();
        let outcome = retry_in_place(&policy, &mut rng(), &mut sleeper, |attempt| {
            seen.push(attempt);
            match script.get(attempt as usize - 1).copied().unwrap_or("t") {
                "ok" => Ok(()),
                "p" => Err(Failure::permanent("bad record")),
                _ => Err(Failure::transient("timeout")),
            }
        });
        let sleeps: Vec<u128> = sleeper.0.iter().map(Duration::as_millis).collect();
        expect.assert_eq(&format!("{outcome:?} attempts {seen:?} sleeps {sleeps:?}"));
    }

    #[test]
    fn retry_in_place_as_data() {
        check_in_place(
            3,
            &["ok"],
            expect![[r#"Succeeded { attempts: 1 } attempts [1] sleeps []"#]],
        );
        check_in_place(
            3,
            &["t", "t", "ok"],
            expect![[r#"Succeeded { attempts: 3 } attempts [1, 2, 3] sleeps [100, 200]"#]],
        );
        check_in_place(
            3,
            &["t", "t", "t", "ok"],
            expect![[
                r#"Failed { attempts: 3, failure: Transient("timeout") } attempts [1, 2, 3] sleeps [100, 200]"#
            ]],
        );
        // A permanent failure is not retried.
        check_in_place(
            5,
            &["p"],
            expect![[
                r#"Failed { attempts: 1, failure: Permanent("bad record") } attempts [1] sleeps []"#
            ]],
        );
        check_in_place(
            5,
            &["t", "p"],
            expect![[
                r#"Failed { attempts: 2, failure: Permanent("bad record") } attempts [1, 2] sleeps [100]"#
            ]],
        );
        // Capped at 350 ms.
        check_in_place(
            5,
            &["t", "t", "t", "t", "ok"],
            expect![[
                r#"Succeeded { attempts: 5 } attempts [1, 2, 3, 4, 5] sleeps [100, 200, 350, 350]"#
            ]],
        );
        // One attempt: no retry at all.
        check_in_place(
            1,
            &["t", "ok"],
            expect![[
                r#"Failed { attempts: 1, failure: Transient("timeout") } attempts [1] sleeps []"#
            ]],
        );
    }

    #[test]
    fn delays_name_each_distinct_backoff() {
        let delays = |attempts, base, max| RetryPolicy::new(attempts, ms(base), ms(max)).delays();
        assert_eq!(delays(1, 100, 1000), Vec::<Duration>::new());
        assert_eq!(delays(3, 1000, 30_000), vec![ms(1000), ms(2000)]);
        assert_eq!(delays(6, 1000, 4000), vec![ms(1000), ms(2000), ms(4000)]);
    }
}
