//! The ACL APIs' v0 (Kafka 1.x clients, before KIP-290's pattern types): v1 without the
//! pattern type, which v0 means LITERAL. Requests are read into v1 with LITERAL; DescribeAcls
//! and DeleteAcls answers are written without it (a v0 filter, being LITERAL, only ever matches
//! LITERAL ACLs). CreateAcls v0's answer is v1's bytes.

use kafka_protocol::messages::{
    create_acls_request, delete_acls_request, CreateAclsRequest, DeleteAclsRequest,
    DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};

use super::codec::{ReadResult, Reader, Writer};

/// What v0 means by every ACL and filter: LITERAL.
const PATTERN_LITERAL: i8 = 3;

/// DescribeAcls v0: `resource_type name principal host operation permission`, names nullable.
pub(super) fn describe_request(r: &mut Reader<'_>) -> ReadResult<DescribeAclsRequest> {
    Ok(DescribeAclsRequest::default()
        .with_resource_type_filter(r.i8("resource_type_filter")?)
        .with_resource_name_filter(r.nullable_string("resource_name_filter")?)
        .with_pattern_type_filter(PATTERN_LITERAL)
        .with_principal_filter(r.nullable_string("principal_filter")?)
        .with_host_filter(r.nullable_string("host_filter")?)
        .with_operation(r.i8("operation")?)
        .with_permission_type(r.i8("permission_type")?))
}

/// CreateAcls v0: `[resource_type name principal host operation permission]`.
pub(super) fn create_request(r: &mut Reader<'_>) -> ReadResult<CreateAclsRequest> {
    let creations = r.array("creations", |r| {
        Ok(create_acls_request::AclCreation::default()
            .with_resource_type(r.i8("resource_type")?)
            .with_resource_name(r.string("resource_name")?)
            .with_resource_pattern_type(PATTERN_LITERAL)
            .with_principal(r.string("principal")?)
            .with_host(r.string("host")?)
            .with_operation(r.i8("operation")?)
            .with_permission_type(r.i8("permission_type")?))
    })?;
    Ok(CreateAclsRequest::default().with_creations(creations))
}

/// DeleteAcls v0: `[resource_type name principal host operation permission]`, names nullable.
pub(super) fn delete_request(r: &mut Reader<'_>) -> ReadResult<DeleteAclsRequest> {
    let filters = r.array("filters", |r| {
        Ok(delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(r.i8("resource_type_filter")?)
            .with_resource_name_filter(r.nullable_string("resource_name_filter")?)
            .with_pattern_type_filter(PATTERN_LITERAL)
            .with_principal_filter(r.nullable_string("principal_filter")?)
            .with_host_filter(r.nullable_string("host_filter")?)
            .with_operation(r.i8("operation")?)
            .with_permission_type(r.i8("permission_type")?))
    })?;
    Ok(DeleteAclsRequest::default().with_filters(filters))
}

pub(super) fn describe_response(w: &mut Writer<'_>, response: &DescribeAclsResponse) {
    w.i32(response.throttle_time_ms);
    w.i16(response.error_code);
    w.nullable_string(response.error_message.as_deref());
    w.array(&response.resources, |w, resource| {
        w.i8(resource.resource_type);
        w.string(&resource.resource_name);
        w.array(&resource.acls, |w, acl| {
            w.string(&acl.principal);
            w.string(&acl.host);
            w.i8(acl.operation);
            w.i8(acl.permission_type);
        });
    });
}

pub(super) fn delete_response(w: &mut Writer<'_>, response: &DeleteAclsResponse) {
    w.i32(response.throttle_time_ms);
    w.array(&response.filter_results, |w, result| {
        w.i16(result.error_code);
        w.nullable_string(result.error_message.as_deref());
        w.array(&result.matching_acls, |w, acl| {
            w.i16(acl.error_code);
            w.nullable_string(acl.error_message.as_deref());
            w.i8(acl.resource_type);
            w.string(&acl.resource_name);
            w.string(&acl.principal);
            w.string(&acl.host);
            w.i8(acl.operation);
            w.i8(acl.permission_type);
        });
    });
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::delete_acls_response::{
        DeleteAclsFilterResult, DeleteAclsMatchingAcl,
    };
    use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use super::super::{decode_request, encode_response};
    use super::*;

    fn text(s: &'static str) -> StrBytes {
        StrBytes::from_static_str(s)
    }

    /// v0 requests, written field by field as Kafka 1.x clients send them, read as v1 with
    /// LITERAL patterns.
    #[test]
    fn v0_requests_read_as_literal_v1() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        w.i8(2);
        w.nullable_string(Some("orders"));
        w.nullable_string(None);
        w.nullable_string(Some("*"));
        w.i8(1);
        w.i8(3);
        let mut body = out.freeze();
        let expect = DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(text("orders")))
            .with_pattern_type_filter(PATTERN_LITERAL)
            .with_principal_filter(None)
            .with_host_filter(Some(text("*")))
            .with_operation(1)
            .with_permission_type(3);
        let read = decode_request(ApiKey::DescribeAcls, 0, &mut body).unwrap();
        assert_eq!(read, RequestKind::DescribeAcls(expect));

        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        w.array(&[()], |w, _| {
            w.i8(2);
            w.string("orders");
            w.string("User:alice");
            w.string("*");
            w.i8(3);
            w.i8(3);
        });
        let mut body = out.freeze();
        let RequestKind::CreateAcls(read) =
            decode_request(ApiKey::CreateAcls, 0, &mut body).unwrap()
        else {
            panic!("not CreateAcls");
        };
        let creation = &read.creations[0];
        assert_eq!(creation.resource_pattern_type, PATTERN_LITERAL);
        assert_eq!(
            (&*creation.principal, creation.operation),
            ("User:alice", 3)
        );

        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        w.array(&[()], |w, _| {
            w.i8(1);
            w.nullable_string(None);
            w.nullable_string(Some("User:alice"));
            w.nullable_string(None);
            w.i8(1);
            w.i8(1);
        });
        let mut body = out.freeze();
        let RequestKind::DeleteAcls(read) =
            decode_request(ApiKey::DeleteAcls, 0, &mut body).unwrap()
        else {
            panic!("not DeleteAcls");
        };
        assert_eq!(read.filters[0].pattern_type_filter, PATTERN_LITERAL);
        assert_eq!(
            read.filters[0].principal_filter.as_deref(),
            Some("User:alice")
        );
    }

    /// v0 answers are v1's without the pattern type; CreateAcls' is v1's bytes.
    #[test]
    fn v0_responses_leave_out_the_pattern_type() {
        let acl = AclDescription::default()
            .with_principal(text("User:alice"))
            .with_host(text("*"))
            .with_operation(3)
            .with_permission_type(3);
        let described = DescribeAclsResponse::default()
            .with_error_message(None)
            .with_resources(vec![DescribeAclsResource::default()
                .with_resource_type(2)
                .with_resource_name(text("orders"))
                .with_pattern_type(PATTERN_LITERAL)
                .with_acls(vec![acl])]);
        let mut expect = BytesMut::new();
        let mut w = Writer::new(&mut expect);
        w.i32(0);
        w.i16(0);
        w.nullable_string(None);
        w.array(&[()], |w, _| {
            w.i8(2);
            w.string("orders");
            w.array(&[()], |w, _| {
                w.string("User:alice");
                w.string("*");
                w.i8(3);
                w.i8(3);
            });
        });
        let mut got = BytesMut::new();
        let response = ResponseKind::DescribeAcls(described);
        encode_response(ApiKey::DescribeAcls, 0, &response, &mut got).unwrap();
        assert_eq!(got, expect);

        let deleted = DeleteAclsResponse::default().with_filter_results(vec![
            DeleteAclsFilterResult::default()
                .with_error_message(None)
                .with_matching_acls(vec![DeleteAclsMatchingAcl::default()
                    .with_error_message(None)
                    .with_resource_type(2)
                    .with_resource_name(text("orders"))
                    .with_principal(text("User:alice"))
                    .with_host(text("*"))
                    .with_operation(3)
                    .with_permission_type(3)]),
        ]);
        let mut expect = BytesMut::new();
        let mut w = Writer::new(&mut expect);
        w.i32(0);
        w.array(&[()], |w, _| {
            w.i16(0);
            w.nullable_string(None);
            w.array(&[()], |w, _| {
                w.i16(0);
                w.nullable_string(None);
                w.i8(2);
                w.string("orders");
                w.string("User:alice");
                w.string("*");
                w.i8(3);
                w.i8(3);
            });
        });
        let mut got = BytesMut::new();
        let response = ResponseKind::DeleteAcls(deleted);
        encode_response(ApiKey::DeleteAcls, 0, &response, &mut got).unwrap();
        assert_eq!(got, expect);

        let created = CreateAclsResponse::default().with_results(vec![Default::default()]);
        let mut got = BytesMut::new();
        let response = ResponseKind::CreateAcls(created.clone());
        encode_response(ApiKey::CreateAcls, 0, &response, &mut got).unwrap();
        let mut v1 = BytesMut::new();
        kafka_protocol::protocol::Encodable::encode(&created, &mut v1, 1).unwrap();
        assert_eq!(got, v1);
    }
}
