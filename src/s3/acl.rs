//! Canned ACLs: GetObjectAcl, PutObjectAcl, GetBucketAcl, PutBucketAcl. Grenier honours two canned
//! ACLs, `private` and `public-read` (see [`super::access`] for what they allow); `PUT ?acl` takes
//! either the `x-amz-acl` header or an `AccessControlPolicy` body exactly equivalent to one of them
//! (what boto3 and the SDKs send when a client edits the ACL it read), and never touches the
//! object's data. Any other grant (other users, e-mail grantees, WRITE/READ_ACP…, the
//! `x-amz-grant-*` headers) is NotImplemented.

use bytes::Bytes;
use hyper::{Response, StatusCode};

use super::access::parse_canned_acl;
use super::bucket::owner_of;
use super::ctx::{
    Ctx, ResBody, current_version, current_version_only, full, internal, no_such_key, respond,
    small_body, xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::{self, ALL_USERS, AccessControlPolicy, Grantee};
use crate::model::object::CannedAcl;

fn policy(ctx: &Ctx, acl: CannedAcl) -> Response<ResBody> {
    let doc = AccessControlPolicy {
        owner: owner_of(ctx),
        public_read: acl == CannedAcl::PublicRead,
    };
    xml_response(doc.to_xml())
}

pub async fn get_object_acl(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let v = current_version(ctx).await?;
    Ok(policy(ctx, v.canned_acl()))
}

pub async fn put_object_acl(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    current_version_only(ctx)?;
    let acl = requested_acl(ctx).await?;
    ctx.model()
        .set_object_acl(&ctx.bucket().id, ctx.object_key(), acl)
        .await
        .map_err(internal)?
        .ok_or_else(|| no_such_key(ctx))?;
    ok()
}

pub async fn get_bucket_acl(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let acl = ctx
        .bucket()
        .params()
        .map_or(CannedAcl::Private, |p| p.canned_acl());
    Ok(policy(ctx, acl))
}

pub async fn put_bucket_acl(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let acl = requested_acl(ctx).await?;
    ctx.model()
        .set_bucket_acl(&ctx.bucket().id, acl)
        .await
        .map_err(internal)?;
    ok()
}

fn ok() -> Result<Response<ResBody>, S3Error> {
    respond(
        Response::builder().status(StatusCode::OK),
        full(Bytes::new()),
    )
}

/// The canned ACL a `PUT ?acl` asks for: its `x-amz-acl` header, or its body.
async fn requested_acl(ctx: &mut Ctx) -> Result<CannedAcl, S3Error> {
    let body = small_body(ctx, ctx.state.xml_body_max).await?;
    super::ctx::check_small_body_digests(&ctx.headers, &body)?;
    let blank = body.iter().all(u8::is_ascii_whitespace);
    match ctx.header("x-amz-acl") {
        Some(v) if blank => parse_canned_acl(v),
        Some(_) => Err(err(
            S3ErrorCode::InvalidRequest,
            "Specify either the x-amz-acl header or an AccessControlPolicy body, not both.",
        )),
        None if blank => Err(err(
            S3ErrorCode::MissingSecurityHeader,
            "Your request was missing a required header: x-amz-acl (or an AccessControlPolicy body).",
        )
        .with("MissingHeaderName", "x-amz-acl")),
        None => {
            let owners: Vec<String> = ctx
                .model()
                .bucket_keys(&ctx.bucket().id)
                .map_err(internal)?
                .into_iter()
                .map(|(k, _)| k.id)
                .collect();
            canned_equivalent(&xml::parse_access_control_policy(&body)?, &owners)
        }
    }
}

/// The canned ACL a grant list is exactly equivalent to: FULL_CONTROL for keys of the bucket (`owners`,
/// at least one grant) and, for `public-read`, READ for AllUsers. Anything else is NotImplemented.
fn canned_equivalent(req: &xml::AclRequest, owners: &[String]) -> Result<CannedAcl, S3Error> {
    let unsupported = |what: String| {
        Err(err(
            S3ErrorCode::NotImplemented,
            format!(
                "Grenier supports only the canned ACLs private and public-read; {what} is not \
                 supported. Nothing was changed."
            ),
        ))
    };
    let (mut owner_granted, mut public) = (false, false);
    for g in &req.grants {
        match (&g.grantee, g.permission.as_str()) {
            (Grantee::CanonicalUser(id), "FULL_CONTROL") if owners.contains(id) => {
                owner_granted = true
            }
            (Grantee::Group(uri), "READ") if uri == ALL_USERS => public = true,
            (Grantee::CanonicalUser(id), p) => {
                return unsupported(format!("a {p} grant to the user {id:?}"));
            }
            (Grantee::Group(uri), p) => {
                return unsupported(format!("a {p} grant to the group {uri:?}"));
            }
            (Grantee::Email(_), _) => return unsupported("a grant by e-mail address".into()),
        }
    }
    if !owner_granted {
        return unsupported("an ACL without the owner's FULL_CONTROL".into());
    }
    Ok(if public {
        CannedAcl::PublicRead
    } else {
        CannedAcl::Private
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::xml::Owner;

    #[test]
    fn policies_we_write_read_back_as_their_canned_acl() {
        let owners = vec!["GK1".to_string()];
        for public_read in [false, true] {
            let doc = AccessControlPolicy {
                owner: Owner {
                    id: "GK1".into(),
                    display_name: "k".into(),
                },
                public_read,
            }
            .to_xml();
            let req = xml::parse_access_control_policy(doc.as_bytes()).unwrap();
            let expected = if public_read {
                CannedAcl::PublicRead
            } else {
                CannedAcl::Private
            };
            assert_eq!(canned_equivalent(&req, &owners).unwrap(), expected);
        }
    }

    #[test]
    fn other_grants_are_not_implemented() {
        let owners = vec!["GK1".to_string()];
        let grant = |grantee: &str, perm: &str| {
            format!(
                "<AccessControlPolicy><Owner><ID>GK1</ID></Owner><AccessControlList>\
                 <Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
                 xsi:type=\"CanonicalUser\"><ID>GK1</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant>\
                 <Grant><Grantee>{grantee}</Grantee><Permission>{perm}</Permission></Grant>\
                 </AccessControlList></AccessControlPolicy>"
            )
        };
        let code = |doc: String| {
            let req = xml::parse_access_control_policy(doc.as_bytes());
            req.and_then(|r| canned_equivalent(&r, &owners))
                .unwrap_err()
                .code
        };
        let all = format!("<URI>{ALL_USERS}</URI>");
        assert_eq!(code(grant(&all, "WRITE")), S3ErrorCode::NotImplemented);
        assert_eq!(
            code(grant(
                "<URI>http://acs.amazonaws.com/groups/global/AuthenticatedUsers</URI>",
                "READ"
            )),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(grant("<ID>someone</ID>", "READ")),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(grant("<EmailAddress>a@b.c</EmailAddress>", "READ")),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(grant("<ID>x</ID><URI>y</URI>", "READ")),
            S3ErrorCode::MalformedACLError
        );
        assert_eq!(
            code("<AccessControlPolicy><Owner><ID>GK1</ID></Owner></AccessControlPolicy>".into()),
            S3ErrorCode::MalformedACLError
        );
        // Without the owner's grant: not what `private` means.
        let none = "<AccessControlPolicy><AccessControlList/></AccessControlPolicy>";
        assert_eq!(code(none.into()), S3ErrorCode::NotImplemented);
    }
}
