//! The group's timeouts — Kafka's heartbeat and rebalance purgatories as plain deadlines: member
//! sessions, pending (MEMBER_ID_REQUIRED) members, the join barrier and the sync barrier.

use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::{Env, Group, GroupState};

/// At most this many timeouts fire per group per tick. A timeout only ever removes something or
/// moves a deadline forward, so the bound is never reached in practice; it guards the driver
/// against a spin should a zero timeout keep rescheduling itself at `now`.
const GROUP_TIMEOUTS_PER_TICK_MAX: usize = 10_000;

/// The join barrier's deadline (Kafka's `DelayedJoin` / `InitialDelayedJoin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinTimer {
    /// Completes as soon as every member has rejoined, or at the rebalance timeout with whoever
    /// did.
    Regular { deadline_ms: u64 },
    /// The first rebalance of an empty group: never completes early; extended by another delay
    /// while new members keep joining, until the rebalance timeout is used up.
    Initial {
        deadline_ms: u64,
        delay_ms: i32,
        remaining_ms: i32,
    },
}

impl JoinTimer {
    fn deadline_ms(self) -> u64 {
        match self {
            JoinTimer::Regular { deadline_ms } | JoinTimer::Initial { deadline_ms, .. } => {
                deadline_ms
            }
        }
    }
}

/// The sync barrier's deadline (Kafka's `DelayedSync`): members of a new generation that have not
/// sent SyncGroup by then are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyncTimer {
    pub(crate) deadline_ms: u64,
    pub(crate) generation_id: i32,
}

enum Due {
    Session(StrBytes),
    Pending(StrBytes),
    Join(JoinTimer),
    Sync(SyncTimer),
}

impl Group {
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter_map(|m| m.heartbeat_deadline_ms);
        let pending = self.pending_members.values().copied();
        let join = self.join_timer.map(JoinTimer::deadline_ms);
        let sync = self.sync_timer.map(|t| t.deadline_ms);
        sessions.chain(pending).chain(join).chain(sync).min()
    }

    /// Fires every timeout due at `env.now_ms`, earliest first.
    pub(crate) fn expire(&mut self, env: &mut Env) {
        for _ in 0..GROUP_TIMEOUTS_PER_TICK_MAX {
            let Some(due) = self.earliest_due(env.now_ms) else {
                return;
            };
            match due {
                Due::Session(member_id) => self.expire_session(env, &member_id),
                Due::Pending(member_id) => {
                    info!(group = %self.id, member = %member_id, "pending member expired");
                    self.pending_members.shift_remove(member_id.as_bytes());
                    if self.state == GroupState::PreparingRebalance {
                        self.maybe_complete_join(env);
                    }
                }
                Due::Join(timer) => self.expire_join(env, timer),
                Due::Sync(timer) => self.expire_sync(env, timer),
            }
        }
    }

    fn earliest_due(&self, now_ms: u64) -> Option<Due> {
        let mut best: Option<(u64, Due)> = None;
        let mut consider = |deadline_ms: u64, due: &dyn Fn() -> Due| {
            if deadline_ms <= now_ms && best.as_ref().is_none_or(|(d, _)| deadline_ms < *d) {
                best = Some((deadline_ms, due()));
            }
        };
        for m in self.members.values() {
            if let Some(deadline_ms) = m.heartbeat_deadline_ms {
                consider(deadline_ms, &|| Due::Session(m.id.clone()));
            }
        }
        for (id, deadline_ms) in &self.pending_members {
            consider(*deadline_ms, &|| Due::Pending(id.clone()));
        }
        if let Some(timer) = self.join_timer {
            consider(timer.deadline_ms(), &|| Due::Join(timer));
        }
        if let Some(timer) = self.sync_timer {
            consider(timer.deadline_ms, &|| Due::Sync(timer));
        }
        best.map(|(_, due)| due)
    }

    /// Kafka's `onExpireHeartbeat` with `hasSatisfiedHeartbeat`: a parked member cannot
    /// heartbeat, so its session is suspended, except a new member's join timeout.
    fn expire_session(&mut self, env: &mut Env, member_id: &str) {
        let member = self
            .members
            .get_mut(member_id.as_bytes())
            .expect("due member exists");
        let parked = member.awaiting_join.is_some() || member.awaiting_sync.is_some();
        if parked && !member.is_new {
            member.heartbeat_deadline_ms = None;
            return;
        }
        info!(group = %self.id, member = member_id, "member session expired");
        self.remove_member_and_update_group(env, member_id);
    }

    /// Kafka's `InitialDelayedJoin.onComplete` and `DelayedJoin.onExpiration`.
    fn expire_join(&mut self, env: &mut Env, timer: JoinTimer) {
        match timer {
            JoinTimer::Initial {
                delay_ms,
                remaining_ms,
                ..
            } if self.new_member_added && remaining_ms != 0 => {
                self.new_member_added = false;
                let next_delay_ms = env
                    .config
                    .group_initial_rebalance_delay_ms
                    .min(remaining_ms);
                self.join_timer = Some(JoinTimer::Initial {
                    deadline_ms: env.deadline(i64::from(next_delay_ms)),
                    delay_ms: next_delay_ms,
                    remaining_ms: remaining_ms.saturating_sub(delay_ms).max(0),
                });
            }
            _ => self.complete_join(env),
        }
    }

    /// Kafka's `onExpirePendingSync`.
    fn expire_sync(&mut self, env: &mut Env, timer: SyncTimer) {
        self.sync_timer = None;
        let current = timer.generation_id == self.generation_id;
        let syncing = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        if !current || !syncing || self.pending_sync.is_empty() {
            return;
        }
        let late: Vec<StrBytes> = self.pending_sync.iter().cloned().collect();
        for member_id in &late {
            info!(group = %self.id, member = %member_id, "member did not sync in time");
            self.remove_member(env, member_id);
        }
        self.prepare_rebalance(env);
    }
}
