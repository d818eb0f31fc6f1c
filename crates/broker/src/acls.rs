//! The cluster's ACLs, kept in `acls.json` in the data directory (format in `docs/acls.md`), and
//! the authorizer that judges requests by them when `authorizer.enabled` is on.
//!
//! The file is replaced atomically and durably (`durable.rs`) on every change, before the
//! CreateAcls or DeleteAcls that made it is answered, so an acknowledged ACL survives a crash.
//! At open it is read and every ACL checked as CreateAcls checks a new one: a damaged file
//! refuses the start, naming the file, rather than start with fewer ACLs than were granted or
//! denied. With the authorizer off the file is neither read nor written.
//!
//! Also here: the wire's ACL fields (codes and strings) to the `acl` crate's types and back,
//! for the handlers and for clients (tools, tests) that speak the ACL APIs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use acl::{any_or, AclBinding, AclBindingFilter, AclError, Authorizer, PatternFilter};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::DeleteAclsMatchingAcl;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::DescribeAclsRequest;
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};
use storage::Disk;

use crate::durable::FileWrite;
use crate::BrokerError;

const ACLS_FILE: &str = "acls.json";
const ACLS_VERSION: u32 = 1;

/// The most ACLs the broker keeps: every change rewrites the whole file under the broker lock,
/// and a check visits every ACL that applies to its resource. Creating more is refused with
/// POLICY_VIOLATION.
pub const ACLS_MAX: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct AclsFile {
    version: u32,
    acls: Vec<AclBinding>,
}

/// The ACLs and, when the authorizer is on, what judges requests by them.
pub struct Acls {
    disk: Arc<dyn Disk>,
    data_dir: PathBuf,
    /// None: the authorizer is off.
    authorizer: Option<Authorizer>,
    /// The ACLs as the request at hand changed them, until its admin job has written them
    /// (`take_staged`, then `install`).
    staged: Option<Authorizer>,
}

/// Why ACLs were not created.
#[derive(Debug)]
pub enum CreateRefused {
    Invalid(AclError),
    /// More than [`ACLS_MAX`].
    TooMany,
}

impl Acls {
    /// Opens the ACLs of `data_dir`: with the authorizer on, reads and checks `acls.json` (none
    /// is no ACL); off, touches nothing.
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        enabled: bool,
        config: &acl::AuthorizerConfig,
    ) -> Result<Acls, BrokerError> {
        let mut acls = Acls {
            disk,
            data_dir: data_dir.to_path_buf(),
            authorizer: None,
            staged: None,
        };
        if enabled {
            acls.authorizer = Some(acls.load(config)?);
        }
        Ok(acls)
    }

    fn load(&self, config: &acl::AuthorizerConfig) -> Result<Authorizer, BrokerError> {
        let path = self.data_dir.join(ACLS_FILE);
        let mut authorizer = Authorizer::new(config.clone());
        let bytes = crate::durable::read_file(&*self.disk, &path)
            .map_err(|source| BrokerError::io("read ACL file", &path, source))?;
        let Some(bytes) = bytes else {
            return Ok(authorizer);
        };
        let damaged = |reason: String| BrokerError::AclFile {
            path: path.clone(),
            reason,
        };
        let file: AclsFile =
            serde_json::from_slice(&bytes).map_err(|error| damaged(error.to_string()))?;
        if file.version != ACLS_VERSION {
            return Err(damaged(format!(
                "version {}, this ferry reads {ACLS_VERSION}",
                file.version
            )));
        }
        for (at, binding) in file.acls.into_iter().enumerate() {
            let shown = binding.to_string();
            match authorizer.add(binding) {
                Ok(true) => {}
                Ok(false) => return Err(damaged(format!("ACL {at} ({shown}) appears twice"))),
                Err(error) => return Err(damaged(format!("ACL {at} ({shown}): {error}"))),
            }
        }
        tracing::info!(acls = authorizer.len(), "loaded ACLs");
        Ok(authorizer)
    }

    /// The authorizer; None when it is off.
    pub fn authorizer(&self) -> Option<&Authorizer> {
        self.authorizer.as_ref()
    }

    /// Adds `bindings` (each already checked); answers per binding in order. An ACL already
    /// there counts as created, as in Kafka. The change is staged: it applies once the
    /// request's admin job has written `acls.json` durably.
    pub fn create(
        &mut self,
        bindings: Vec<Result<AclBinding, AclError>>,
    ) -> Vec<Result<(), CreateRefused>> {
        let mut authorizer = self.changing();
        let mut changed = false;
        let answers = bindings
            .into_iter()
            .map(|binding| {
                let binding = binding.map_err(CreateRefused::Invalid)?;
                if authorizer.len() >= ACLS_MAX {
                    return Err(CreateRefused::TooMany);
                }
                let shown = binding.to_string();
                let added = authorizer.add(binding).map_err(CreateRefused::Invalid)?;
                if added {
                    tracing::info!(acl = %shown, "ACL created");
                }
                changed |= added;
                Ok(())
            })
            .collect();
        if changed {
            self.staged = Some(authorizer);
        }
        answers
    }

    /// Removes what each filter matches; returns, per filter, the ACLs it removed (an ACL two
    /// filters match is reported by the first). Staged as `create`'s changes are.
    pub fn delete(&mut self, filters: &[AclBindingFilter]) -> Vec<Vec<AclBinding>> {
        let mut authorizer = self.changing();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|filter| authorizer.remove_matching(filter))
            .collect();
        for acl in removed.iter().flatten() {
            tracing::info!(acl = %acl, "ACL deleted");
        }
        if removed.iter().any(|r| !r.is_empty()) {
            self.staged = Some(authorizer);
        }
        removed
    }

    /// A copy of the ACLs to change (one request changes them at a time, `admin.rs`).
    fn changing(&self) -> Authorizer {
        assert!(self.staged.is_none(), "one ACL change at a time");
        self.authorizer.clone().expect("the authorizer is on")
    }

    /// The request at hand's changed ACLs and the write of `acls.json` that makes them durable.
    pub(crate) fn take_staged(&mut self) -> Option<(Authorizer, FileWrite)> {
        let authorizer = self.staged.take()?;
        let file = AclsFile {
            version: ACLS_VERSION,
            acls: authorizer
                .matching(&AclBindingFilter::ANY)
                .into_iter()
                .cloned()
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("ACLs serialize");
        let write = FileWrite::new(self.disk.clone(), &self.data_dir, ACLS_FILE, bytes);
        Some((authorizer, write))
    }

    /// Puts ACLs written durably in force.
    pub(crate) fn install(&mut self, authorizer: Authorizer) {
        assert!(self.authorizer.is_some(), "the authorizer is on");
        self.authorizer = Some(authorizer);
    }
}

/// An ACL from a CreateAcls creation: every code defined (no ANY, MATCH or UNKNOWN), the
/// principal `type:name`, then [`AclBinding::validate`]'s checks.
pub fn binding(creation: &AclCreation) -> Result<AclBinding, AclError> {
    let binding = AclBinding {
        resource_type: code(
            creation.resource_type,
            "resource type",
            acl::ResourceType::from_code,
        )?,
        name: creation.resource_name.to_string(),
        pattern: code(
            creation.resource_pattern_type,
            "pattern type",
            acl::PatternType::from_code,
        )?,
        principal: acl::parse_principal(&creation.principal)?,
        host: creation.host.to_string(),
        operation: code(creation.operation, "operation", acl::Operation::from_code)?,
        permission: code(
            creation.permission_type,
            "permission type",
            acl::Permission::from_code,
        )?,
    };
    binding.validate()?;
    Ok(binding)
}

/// A binding's field from its code: ANY, MATCH, UNKNOWN and undefined codes are errors.
fn code<T>(code: i8, field: &'static str, from_code: fn(i8) -> Option<T>) -> Result<T, AclError> {
    from_code(code).ok_or(AclError::UnknownCode { field, code })
}

/// The fields DescribeAcls and DeleteAcls filters share, as the wire carries them.
pub struct WireFilter<'a> {
    pub resource_type: i8,
    pub name: Option<&'a StrBytes>,
    pub pattern_type: i8,
    pub principal: Option<&'a StrBytes>,
    pub host: Option<&'a StrBytes>,
    pub operation: i8,
    pub permission: i8,
}

impl<'a> From<&'a DescribeAclsRequest> for WireFilter<'a> {
    fn from(r: &'a DescribeAclsRequest) -> WireFilter<'a> {
        WireFilter {
            resource_type: r.resource_type_filter,
            name: r.resource_name_filter.as_ref(),
            pattern_type: r.pattern_type_filter,
            principal: r.principal_filter.as_ref(),
            host: r.host_filter.as_ref(),
            operation: r.operation,
            permission: r.permission_type,
        }
    }
}

impl<'a> From<&'a DeleteAclsFilter> for WireFilter<'a> {
    fn from(f: &'a DeleteAclsFilter) -> WireFilter<'a> {
        WireFilter {
            resource_type: f.resource_type_filter,
            name: f.resource_name_filter.as_ref(),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref(),
            host: f.host_filter.as_ref(),
            operation: f.operation,
            permission: f.permission_type,
        }
    }
}

/// A filter from the wire; an UNKNOWN or undefined code is an error (INVALID_REQUEST).
pub fn filter(wire: WireFilter<'_>) -> Result<AclBindingFilter, AclError> {
    let text = |s: Option<&StrBytes>| s.map(|s| s.to_string());
    Ok(AclBindingFilter {
        resource_type: any_or(
            wire.resource_type,
            "resource type",
            acl::ResourceType::from_code,
        )?,
        name: text(wire.name),
        pattern: PatternFilter::from_code(wire.pattern_type)?,
        principal: text(wire.principal),
        host: text(wire.host),
        operation: any_or(wire.operation, "operation", acl::Operation::from_code)?,
        permission: any_or(
            wire.permission,
            "permission type",
            acl::Permission::from_code,
        )?,
    })
}

/// DescribeAcls' answer: the ACLs grouped by resource pattern, in the authorizer's order.
pub fn describe_resources(bindings: &[&AclBinding]) -> Vec<DescribeAclsResource> {
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for binding in bindings {
        let description = AclDescription::default()
            .with_principal(StrBytes::from_string(binding.principal.to_string()))
            .with_host(StrBytes::from_string(binding.host.clone()))
            .with_operation(binding.operation.code())
            .with_permission_type(binding.permission.code());
        let same = resources.last_mut().filter(|r| {
            r.resource_type == binding.resource_type.code()
                && r.pattern_type == binding.pattern.code()
                && *r.resource_name == *binding.name
        });
        match same {
            Some(resource) => resource.acls.push(description),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(binding.resource_type.code())
                    .with_resource_name(StrBytes::from_string(binding.name.clone()))
                    .with_pattern_type(binding.pattern.code())
                    .with_acls(vec![description]),
            ),
        }
    }
    resources
}

/// The CreateAcls creation of `binding` (what a client sends).
pub fn creation(binding: &AclBinding) -> AclCreation {
    AclCreation::default()
        .with_resource_type(binding.resource_type.code())
        .with_resource_name(StrBytes::from_string(binding.name.clone()))
        .with_resource_pattern_type(binding.pattern.code())
        .with_principal(StrBytes::from_string(binding.principal.to_string()))
        .with_host(StrBytes::from_string(binding.host.clone()))
        .with_operation(binding.operation.code())
        .with_permission_type(binding.permission.code())
}

/// The ACLs of a DescribeAcls answer (what a client reads); an entry with a code or principal
/// that is no ACL's is an error.
pub fn described(resources: &[DescribeAclsResource]) -> Result<Vec<AclBinding>, AclError> {
    let mut bindings = Vec::new();
    for resource in resources {
        for acl in &resource.acls {
            bindings.push(AclBinding {
                resource_type: code(
                    resource.resource_type,
                    "resource type",
                    acl::ResourceType::from_code,
                )?,
                name: resource.resource_name.to_string(),
                pattern: code(
                    resource.pattern_type,
                    "pattern type",
                    acl::PatternType::from_code,
                )?,
                principal: acl::parse_principal(&acl.principal)?,
                host: acl.host.to_string(),
                operation: code(acl.operation, "operation", acl::Operation::from_code)?,
                permission: code(
                    acl.permission_type,
                    "permission type",
                    acl::Permission::from_code,
                )?,
            });
        }
    }
    Ok(bindings)
}

/// One ACL a DeleteAcls filter removed, as its answer lists it.
pub fn deleted(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_error_message(None)
        .with_resource_type(binding.resource_type.code())
        .with_resource_name(StrBytes::from_string(binding.name.clone()))
        .with_pattern_type(binding.pattern.code())
        .with_principal(StrBytes::from_string(binding.principal.to_string()))
        .with_host(StrBytes::from_string(binding.host.clone()))
        .with_operation(binding.operation.code())
        .with_permission_type(binding.permission.code())
}
