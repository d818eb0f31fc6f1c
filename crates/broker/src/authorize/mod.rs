//! The question every API asks before it acts when `authorizer.enabled` is on: may this client
//! do this operation on this resource ([`Broker::allows`]). Handlers the broker owns ask it per
//! topic or resource, next to their other per-item checks; the coordinators' requests are
//! checked before the `group` and `txn` crates see them (`authorize/groups.rs`,
//! `authorize/txn.rs`), which know nothing of ACLs. With the authorizer off every answer is
//! yes after one branch, and nothing else runs.

mod groups;
mod txn;

pub(crate) use groups::GroupCheck;
pub(crate) use txn::TxnCheck;

use acl::{Operation, Resource, ResourceType};
use kafka_protocol::error::ResponseError;

use crate::{Broker, ClientInfo};

/// DescribeConfigs' and AlterConfigs' resource types (Kafka's `ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;

impl Broker {
    /// Whether `client` may do `operation` on `resource` (always, with the authorizer off).
    pub fn allows(
        &self,
        client: &ClientInfo,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool {
        let Some(authorizer) = self.acls.authorizer() else {
            return true;
        };
        let allowed = authorizer.authorize(&client.principal, &client.host, operation, resource);
        if !allowed {
            tracing::debug!(
                principal = %client.principal,
                host = %client.host,
                %operation,
                resource = %format_args!("{}:{}", resource.kind, resource.name),
                "denied"
            );
        }
        allowed
    }

    /// TOPIC_AUTHORIZATION_FAILED if `client` may not do `operation` on topic `name`.
    pub(crate) fn topic_denied(
        &self,
        client: &ClientInfo,
        operation: Operation,
        name: &str,
    ) -> Option<ResponseError> {
        let allowed = self.allows(client, operation, Resource::topic(name));
        (!allowed).then_some(ResponseError::TopicAuthorizationFailed)
    }

    /// For each of `names`, whether `client` may not do `operation` on that topic; empty (no
    /// allocation) with the authorizer off.
    pub(crate) fn denied_topics<'a>(
        &self,
        client: &ClientInfo,
        operation: Operation,
        names: impl Iterator<Item = &'a str>,
    ) -> Vec<bool> {
        if !self.authorizing() {
            return Vec::new();
        }
        names
            .map(|name| !self.allows(client, operation, Resource::topic(name)))
            .collect()
    }

    /// The error for a config resource `client` may not do `operation` (DESCRIBE_CONFIGS or
    /// ALTER_CONFIGS) on: a topic's own, the broker's on the cluster.
    pub(crate) fn config_denied(
        &self,
        client: &ClientInfo,
        operation: Operation,
        resource_type: i8,
        name: &str,
    ) -> Option<ResponseError> {
        match resource_type {
            CONFIG_TOPIC => self.topic_denied(client, operation, name),
            CONFIG_BROKER | CONFIG_BROKER_LOGGER => {
                let allowed = self.allows(client, operation, Resource::CLUSTER);
                (!allowed).then_some(ResponseError::ClusterAuthorizationFailed)
            }
            _ => None,
        }
    }

    /// Whether `client` may create topic `name`: CREATE on the cluster or on the topic.
    pub(crate) fn allows_create_topic(&self, client: &ClientInfo, name: &str) -> bool {
        self.allows(client, Operation::Create, Resource::CLUSTER)
            || self.allows(client, Operation::Create, Resource::topic(name))
    }

    /// Whether `client` may do `operation` on some resource of type `kind` (KIP-679).
    pub(crate) fn allows_any(
        &self,
        client: &ClientInfo,
        operation: Operation,
        kind: ResourceType,
    ) -> bool {
        self.acls.authorizer().is_none_or(|authorizer| {
            authorizer.authorize_any(&client.principal, &client.host, operation, kind)
        })
    }

    /// KIP-430's bit field of what `client` may do on `resource`: every operation of its type
    /// with the authorizer off, as Kafka reports without an authorizer.
    pub(crate) fn authorized_operations(&self, client: &ClientInfo, resource: Resource<'_>) -> i32 {
        match self.acls.authorizer() {
            None => acl::bit_field(resource.kind.operations().iter().copied()),
            Some(authorizer) => acl::bit_field(authorizer.authorized_operations(
                &client.principal,
                &client.host,
                resource,
            )),
        }
    }

    /// Whether the authorizer is on: the checks that cost more than a branch (filtering a
    /// response) run only then.
    pub(crate) fn authorizing(&self) -> bool {
        self.acls.authorizer().is_some()
    }
}
