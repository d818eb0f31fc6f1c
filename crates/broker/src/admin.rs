//! Metadata changes without file I/O under the broker lock. CreateTopics, DeleteTopics,
//! CreatePartitions, AlterConfigs, IncrementalAlterConfigs, a Metadata request that auto-creates,
//! CreateAcls, DeleteAcls and AlterUserScramCredentials are handled under the lock as any
//! request, except that their changes are staged (`topics::Staged`, `Acls::create`,
//! `Users::stage`): the partition directories, `meta.json`, `acls.json` and `users.json` with
//! their fsyncs, and the removals are an [`AdminJob`] that the server runs outside the lock ([`Broker::take_admin_job`],
//! [`AdminJob::run`]) and reports with [`Broker::admin_done`], which installs the changes and
//! routes the request's answer. One job is in flight at a time: a request that changes topics
//! while one is arrives is held, in order, and handled when it is done, so every `meta.json`
//! written is the registry's state after every change before it (Kafka's controller serialises
//! topic changes the same way). A Metadata request that would auto-create a topic meanwhile is
//! answered LEADER_NOT_AVAILABLE for it, as Kafka answers while a topic is being created.

use std::collections::VecDeque;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use wire::Request;

use crate::durable::FileWrite;
use crate::topics::{TopicsDone, TopicsJob};
use crate::users::UserMap;
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

/// A request's metadata changes' file work, and the answer that waits for it.
pub struct AdminJob {
    token: u64,
    response: ResponseKind,
    topics: Option<TopicsJob>,
    /// The ACLs as changed, and the write of `acls.json`.
    acls: Option<(acl::Authorizer, FileWrite)>,
    /// The credential store as changed, and the write of `users.json`.
    users: Option<(UserMap, FileWrite)>,
}

/// A run [`AdminJob`], to report with [`Broker::admin_done`].
pub struct AdminDone {
    token: u64,
    response: ResponseKind,
    topics: Option<TopicsDone>,
    /// The ACLs and the credential store to put in force, or the write's error.
    files: Result<(Option<acl::Authorizer>, Option<UserMap>), BrokerError>,
}

impl AdminJob {
    /// Does the file work (partition logs created, `meta.json`, `acls.json` or `users.json`
    /// written and fsynced, deleted topics' directories removed); call without the broker lock.
    pub fn run(self) -> AdminDone {
        let AdminJob {
            token,
            response,
            topics,
            acls,
            users,
        } = self;
        let files = (|| {
            if let Some((_, write)) = &acls {
                write.run()?;
            }
            if let Some((_, write)) = &users {
                write.run()?;
            }
            Ok((acls.map(|(acls, _)| acls), users.map(|(users, _)| users)))
        })();
        AdminDone {
            token,
            response,
            topics: topics.map(TopicsJob::run),
            files,
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

/// Whether a request may change metadata (and so waits for a job in flight).
fn changes_metadata(request: &Request) -> bool {
    matches!(
        request.body,
        RequestKind::CreateTopics(_)
            | RequestKind::DeleteTopics(_)
            | RequestKind::CreatePartitions(_)
            | RequestKind::AlterConfigs(_)
            | RequestKind::IncrementalAlterConfigs(_)
            | RequestKind::CreateAcls(_)
            | RequestKind::DeleteAcls(_)
            | RequestKind::AlterUserScramCredentials(_)
    )
}

impl Broker {
    /// Holds a request that changes metadata while a job is in flight (it is handled after the
    /// jobs before it, its answer routed); any other request is given back to be handled now.
    pub(crate) fn hold_while_busy(
        &mut self,
        token: u64,
        client: &ClientInfo,
        request: Prepared,
    ) -> Option<Prepared> {
        if !(self.admin.in_flight && changes_metadata(&request.request)) {
            return Some(request);
        }
        self.admin.held.push_back(Held {
            token,
            client: client.clone(),
            request: request.request,
        });
        None
    }

    /// Whether a job is in flight (a Metadata request does not auto-create meanwhile).
    pub(crate) fn admin_busy(&self) -> bool {
        self.admin.in_flight
    }

    /// The job of what the request of `token` staged, its answer `outcome` kept for when the
    /// job is done; the outcome as it is if it staged nothing.
    pub(crate) fn job_for(&mut self, now: Now, token: u64, outcome: Outcome) -> Outcome {
        let topics = self.topics.take_job(now.wall_ms());
        let acls = self.acls.take_staged();
        let users = self.users.take_staged();
        if topics.is_none() && acls.is_none() && users.is_none() {
            return outcome;
        }
        let Outcome::Respond(response) = outcome else {
            panic!("a request that staged metadata changes answered {outcome:?}");
        };
        assert!(!self.admin.in_flight, "one admin job at a time");
        self.admin.in_flight = true;
        self.admin.ready = Some(AdminJob {
            token,
            response,
            topics,
            acls,
            users,
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
            topics,
            files,
        } = done;
        if let Some(topics) = topics {
            self.topics.install(topics)?;
        }
        let (acls, users) = files?;
        if let Some(acls) = acls {
            self.acls.install(acls);
        }
        if let Some(users) = users {
            self.users.install(users);
        }
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
                other => panic!("a request that changes metadata answered {other:?}"),
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
