//! Topic changes without file I/O under the broker lock. CreateTopics, DeleteTopics,
//! CreatePartitions, AlterConfigs, IncrementalAlterConfigs and a Metadata request that
//! auto-creates are handled under the lock as any request, except that their changes are staged
//! (`topics::Staged`): the partition directories, `meta.json` with its fsyncs and the removals are
//! an [`AdminJob`] that the server runs outside the lock ([`Broker::take_admin_job`],
//! [`AdminJob::run`]) and reports with [`Broker::admin_done`], which installs the changes and
//! routes the request's answer. One job is in flight at a time: a request that changes topics
//! while one is arrives is held, in order, and handled when it is done, so every `meta.json`
//! written is the registry's state after every change before it (Kafka's controller serialises
//! topic changes the same way). A Metadata request that would auto-create a topic meanwhile is
//! answered LEADER_NOT_AVAILABLE for it, as Kafka answers while a topic is being created.

use std::collections::VecDeque;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use wire::Request;

use crate::topics::{TopicsDone, TopicsJob};
use crate::{Broker, BrokerError, ClientInfo, Now, Outcome, Prepared};

/// The admin requests in flight and held.
#[derive(Default)]
pub(crate) struct Admin {
    /// A job was made and is not done yet (taken by the server or still in `ready`).
    in_flight: bool,
    ready: Option<AdminJob>,
    /// Requests that change topics, held while a job is in flight, in arrival order.
    held: VecDeque<Held>,
}

struct Held {
    token: u64,
    client: ClientInfo,
    request: Request,
}

/// A request's topic changes' file work, and the answer that waits for it.
pub struct AdminJob {
    token: u64,
    response: ResponseKind,
    job: TopicsJob,
}

/// A run [`AdminJob`], to report with [`Broker::admin_done`].
pub struct AdminDone {
    token: u64,
    response: ResponseKind,
    done: TopicsDone,
}

impl AdminJob {
    /// Does the file work (partition logs created, `meta.json` written and fsynced, deleted
    /// topics' directories removed); call without the broker lock.
    pub fn run(self) -> AdminDone {
        AdminDone {
            token: self.token,
            response: self.response,
            done: self.job.run(),
        }
    }
}

impl std::fmt::Debug for AdminJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminJob")
            .field("token", &self.token)
            .finish()
    }
}

/// Whether a request may change topics (and so waits for a job in flight).
fn changes_topics(request: &Request) -> bool {
    matches!(
        request.body,
        RequestKind::CreateTopics(_)
            | RequestKind::DeleteTopics(_)
            | RequestKind::CreatePartitions(_)
            | RequestKind::AlterConfigs(_)
            | RequestKind::IncrementalAlterConfigs(_)
    )
}

impl Broker {
    /// Handles a request unless it changes topics while a job is in flight: then it is held
    /// and answered later, after the jobs before it.
    pub(crate) fn handle_in_turn(
        &mut self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        request: Prepared,
    ) -> Result<Outcome, BrokerError> {
        if self.admin.in_flight && changes_topics(&request.request) {
            self.admin.held.push_back(Held {
                token,
                client: client.clone(),
                request: request.request,
            });
            return Ok(Outcome::Later);
        }
        let outcome = self.dispatch(now, token, client, request)?;
        Ok(self.job_for(now, token, outcome))
    }

    /// Whether a job is in flight (a Metadata request does not auto-create meanwhile).
    pub(crate) fn admin_busy(&self) -> bool {
        self.admin.in_flight
    }

    /// The job of what the request of `token` staged, its answer `outcome` kept for when the
    /// job is done; the outcome as it is if it staged nothing.
    fn job_for(&mut self, now: Now, token: u64, outcome: Outcome) -> Outcome {
        let Some(job) = self.topics.take_job(now.wall_ms()) else {
            return outcome;
        };
        let Outcome::Respond(response) = outcome else {
            panic!("a request that staged topic changes answered {outcome:?}");
        };
        assert!(!self.admin.in_flight, "one topics job at a time");
        self.admin.in_flight = true;
        self.admin.ready = Some(AdminJob {
            token,
            response,
            job,
        });
        Outcome::Later
    }

    /// The job to run outside the lock, if one is ready; the server takes it after every call.
    pub fn take_admin_job(&mut self) -> Option<AdminJob> {
        self.admin.ready.take()
    }

    /// Installs a done job's changes and routes its answer ([`Broker::take_routed`]), then
    /// handles the requests held meanwhile, in order, until one makes the next job.
    pub fn admin_done(&mut self, now: Now, done: AdminDone) -> Result<(), BrokerError> {
        self.advance(now);
        assert!(self.admin.in_flight, "a job done that was not in flight");
        let AdminDone {
            token,
            response,
            done,
        } = done;
        self.topics.install(done)?;
        self.route(None, vec![(token, response)]);
        self.admin.in_flight = false;
        while !self.admin.in_flight {
            let Some(held) = self.admin.held.pop_front() else {
                break;
            };
            let outcome = self.dispatch(now, held.token, &held.client, held.request.into())?;
            match self.job_for(now, held.token, outcome) {
                Outcome::Later => {}
                Outcome::Respond(response) => self.route(None, vec![(held.token, response)]),
                other => panic!("a request that changes topics answered {other:?}"),
            }
        }
        Ok(())
    }

    /// Runs every ready job at once, under the caller's hands: for tests and tools that own
    /// the broker.
    pub fn run_admin_jobs(&mut self, now: Now) -> Result<(), BrokerError> {
        while let Some(job) = self.take_admin_job() {
            let done = job.run();
            self.admin_done(now, done)?;
        }
        Ok(())
    }
}
