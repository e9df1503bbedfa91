//! Who may do what: one decision for every request, from the principal (an access key, or anonymous),
//! the operation, the bucket and, for reads of an object, the object's canned ACL.
//!
//! - A **key** (a request with a valid SigV4 signature) may do what its permission on the bucket
//!   allows (read, write, owner; see [`Op::needs`]).
//! - **Anonymous** (a request with no signature at all) may only read: GET/HEAD of an object whose own
//!   ACL is `public-read` or whose bucket the admins opened (`public_read` switch), and
//!   ListObjects/ListObjectsV2 of a bucket whose ACL is `public-read`. Everything else is denied,
//!   and a GET of an absent key too unless the listing is public (as AWS: only who may list learns
//!   that a key does not exist). A request that carries a signature is never treated as anonymous,
//!   even when the signature is bad.
//!
//! A bucket-policy engine would slot in as one more input of [`decide`] (the bucket's policy, read
//! locally with the bucket), its explicit denies overriding the allows below.

use super::error::{S3Error, S3ErrorCode, err};
use super::router::{Access, Op};
use crate::model::bucket::Bucket;
use crate::model::key::Key;
use crate::model::object::CannedAcl;

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Principal {
    /// An access key whose signature was checked.
    Key(Key),
    /// No signature at all.
    Anonymous,
}

impl Principal {
    pub fn key(&self) -> Option<&Key> {
        match self {
            Principal::Key(k) => Some(k),
            Principal::Anonymous => None,
        }
    }
}

/// What is known about the object when deciding (its ACL is known only once its entry is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectAcl {
    /// Not read yet (or not an object operation).
    Unknown,
    /// The key has no current version: the same answer as a private object, so that an anonymous
    /// request learns nothing of what exists.
    Absent,
    Known(CannedAcl),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Allowed only if the object turns out to be readable: decide again with its ACL once its entry
    /// is read (so that an anonymous GET costs no extra read).
    DependsOnObject,
}

/// The one permission check. `bucket` is the resolved bucket (None for ListBuckets/CreateBucket of a
/// new bucket).
pub fn decide(who: &Principal, op: Op, bucket: Option<&Bucket>, object: ObjectAcl) -> Decision {
    let allowed_to_key = match (who, bucket) {
        (Principal::Anonymous, _) => false,
        (Principal::Key(_), None) => matches!(op.needs(), Access::None | Access::CreateBucket),
        (Principal::Key(key), Some(b)) => {
            let p = key.permissions(&b.id);
            match op.needs() {
                Access::Read => p.read,
                Access::Write => p.write,
                Access::Owner => p.owner,
                Access::None | Access::CreateBucket => true,
            }
        }
    };
    if allowed_to_key {
        return Decision::Allow;
    }
    // What is public is public to everyone (AWS's AllUsers includes signed requests).
    public(op, bucket, object)
}

/// What anyone, signed or not, may do.
fn public(op: Op, bucket: Option<&Bucket>, object: ObjectAcl) -> Decision {
    let allow = |yes: bool| if yes { Decision::Allow } else { Decision::Deny };
    let Some(params) = bucket.and_then(|b| b.params()) else {
        return Decision::Deny;
    };
    match op {
        Op::ListObjects | Op::ListObjectsV2 => allow(params.canned_acl() == CannedAcl::PublicRead),
        Op::GetObject | Op::HeadObject => match object {
            ObjectAcl::Unknown => Decision::DependsOnObject,
            // That a key is absent (NoSuchKey) is told only to whoever may list the bucket (as AWS).
            ObjectAcl::Absent => allow(params.canned_acl() == CannedAcl::PublicRead),
            ObjectAcl::Known(acl) => allow(params.objects_public() || acl == CannedAcl::PublicRead),
        },
        _ => Decision::Deny,
    }
}

pub fn access_denied() -> S3Error {
    err(S3ErrorCode::AccessDenied, "Access Denied")
}

/// The value of an `x-amz-acl` header: the canned ACLs Grenier honours (`bucket-owner-full-control`
/// and `bucket-owner-read` are `private` here: the bucket's keys are its owners), NotImplemented (501)
/// for the other canned ACLs of S3, InvalidArgument for anything else.
pub fn parse_canned_acl(v: &str) -> Result<CannedAcl, S3Error> {
    match v {
        "private" | "bucket-owner-full-control" | "bucket-owner-read" => Ok(CannedAcl::Private),
        "public-read" => Ok(CannedAcl::PublicRead),
        "public-read-write" | "authenticated-read" | "aws-exec-read" | "log-delivery-write" => {
            Err(err(
                S3ErrorCode::NotImplemented,
                format!(
                    "The canned ACL {v:?} is not supported by Grenier (only private and \
                     public-read); nothing was changed."
                ),
            ))
        }
        _ => Err(err(
            S3ErrorCode::InvalidArgument,
            format!("Invalid canned ACL {v:?}."),
        )
        .with("ArgumentName", "x-amz-acl")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bucket::BucketParams;
    use crate::model::key::Permissions;

    fn bucket(acl: CannedAcl, objects_public: bool) -> Bucket {
        let mut p = BucketParams::new(1, 0, "b".into(), acl);
        p.set_objects_public(1, objects_public);
        Bucket::new([7; 32], p)
    }

    #[test]
    fn anonymous_may_only_read_what_is_public() {
        let anon = Principal::Anonymous;
        let private = bucket(CannedAcl::Private, false);
        let listed = bucket(CannedAcl::PublicRead, false);
        let opened = bucket(CannedAcl::Private, true);
        let public = ObjectAcl::Known(CannedAcl::PublicRead);
        let private_obj = ObjectAcl::Known(CannedAcl::Private);
        use Decision::*;
        for (op, b, o, expected) in [
            (Op::GetObject, &private, ObjectAcl::Unknown, DependsOnObject),
            (Op::GetObject, &private, public, Allow),
            (Op::HeadObject, &private, public, Allow),
            (Op::GetObject, &private, private_obj, Deny),
            (Op::GetObject, &private, ObjectAcl::Absent, Deny),
            (Op::GetObject, &opened, ObjectAcl::Unknown, DependsOnObject),
            (Op::GetObject, &opened, private_obj, Allow),
            (Op::GetObject, &opened, ObjectAcl::Absent, Deny),
            (Op::GetObject, &listed, ObjectAcl::Absent, Allow),
            (Op::GetObject, &listed, private_obj, Deny),
            (Op::ListObjectsV2, &listed, ObjectAcl::Unknown, Allow),
            (Op::ListObjects, &listed, ObjectAcl::Unknown, Allow),
            (Op::ListObjects, &private, ObjectAcl::Unknown, Deny),
            (Op::ListObjects, &opened, ObjectAcl::Unknown, Deny),
            (Op::PutObject, &opened, ObjectAcl::Unknown, Deny),
            (Op::DeleteObject, &listed, public, Deny),
            (Op::GetObjectAcl, &opened, public, Deny),
            (Op::GetObjectTagging, &opened, public, Deny),
            (Op::PutObjectAcl, &opened, public, Deny),
        ] {
            assert_eq!(decide(&anon, op, Some(b), o), expected, "{op:?}");
        }
        assert_eq!(
            decide(&anon, Op::ListBuckets, None, ObjectAcl::Unknown),
            Deny
        );
    }

    #[test]
    fn keys_keep_their_bucket_permissions() {
        let b = bucket(CannedAcl::PublicRead, true);
        let mut k = Key::new(1, "GK1".into(), "secret".into(), "k".into());
        let reader = Permissions {
            read: true,
            ..Default::default()
        };
        k.state.get_mut().unwrap().buckets.update(b.id, reader);
        let who = Principal::Key(k);
        let at = |op| decide(&who, op, Some(&b), ObjectAcl::Unknown);
        assert_eq!(at(Op::GetObject), Decision::Allow);
        assert_eq!(at(Op::GetObjectAcl), Decision::Allow);
        assert_eq!(at(Op::PutObject), Decision::Deny);
        assert_eq!(at(Op::PutObjectAcl), Decision::Deny);
        assert_eq!(at(Op::PutBucketAcl), Decision::Deny);
        // A key without permission on the bucket may read what is public to everyone, no more.
        let stranger = Principal::Key(Key::new(1, "GK2".into(), "secret".into(), "s".into()));
        let private = bucket(CannedAcl::Private, false);
        let private_obj = || ObjectAcl::Known(CannedAcl::Private);
        let s = |op, b, o| decide(&stranger, op, Some(b), o);
        assert_eq!(s(Op::GetObject, &b, private_obj()), Decision::Allow);
        assert_eq!(
            s(Op::GetObject, &private, ObjectAcl::Unknown),
            Decision::DependsOnObject
        );
        assert_eq!(
            s(
                Op::GetObject,
                &private,
                ObjectAcl::Known(CannedAcl::Private)
            ),
            Decision::Deny
        );
        assert_eq!(s(Op::PutObject, &b, ObjectAcl::Unknown), Decision::Deny);
    }

    #[test]
    fn canned_acl_headers() {
        assert_eq!(parse_canned_acl("private").unwrap(), CannedAcl::Private);
        assert_eq!(
            parse_canned_acl("bucket-owner-full-control").unwrap(),
            CannedAcl::Private
        );
        assert_eq!(
            parse_canned_acl("public-read").unwrap(),
            CannedAcl::PublicRead
        );
        for v in [
            "public-read-write",
            "authenticated-read",
            "aws-exec-read",
            "log-delivery-write",
        ] {
            assert_eq!(
                parse_canned_acl(v).unwrap_err().code,
                S3ErrorCode::NotImplemented
            );
        }
        assert_eq!(
            parse_canned_acl("Public-Read").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
    }
}
