//! Which S3 operation a request is: from the host (virtual-hosted-style when `root_domain` is set), the
//! path (path-style), the method, the query parameters and a few headers. The path and query are
//! decoded strictly by `util::url` (a bad `%` escape or non-UTF-8 result is `InvalidArgument`).

use std::collections::BTreeMap;

use hyper::{HeaderMap, Method};

use super::error::{S3Error, S3ErrorCode, err};
use crate::util::url::{self, Plus};

/// Longest object key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListMultipartUploads,
    DeleteObjects,
    HeadObject,
    GetObject,
    PutObject,
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    GetObjectAttributes,
    GetBucketWebsite,
    PutBucketWebsite,
    DeleteBucketWebsite,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketLifecycleConfiguration,
    PutBucketLifecycleConfiguration,
    DeleteBucketLifecycle,
    PostObject,
    Options,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::HeadBucket => "HeadBucket",
            Op::DeleteBucket => "DeleteBucket",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::ListObjects => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteObjects => "DeleteObjects",
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::DeleteObject => "DeleteObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
            Op::GetBucketAcl => "GetBucketAcl",
            Op::PutBucketAcl => "PutBucketAcl",
            Op::GetObjectAcl => "GetObjectAcl",
            Op::PutObjectAcl => "PutObjectAcl",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::DeleteObjectTagging => "DeleteObjectTagging",
            Op::GetObjectAttributes => "GetObjectAttributes",
            Op::GetBucketWebsite => "GetBucketWebsite",
            Op::PutBucketWebsite => "PutBucketWebsite",
            Op::DeleteBucketWebsite => "DeleteBucketWebsite",
            Op::GetBucketCors => "GetBucketCors",
            Op::PutBucketCors => "PutBucketCors",
            Op::DeleteBucketCors => "DeleteBucketCors",
            Op::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            Op::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            Op::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            Op::PostObject => "PostObject",
            Op::Options => "Options",
        }
    }

    /// The permission a key needs on the bucket.
    pub fn needs(self) -> Access {
        use Op::*;
        match self {
            // A CORS preflight carries no credentials; PostObject's are in its form.
            ListBuckets | Options | PostObject => Access::None,
            CreateBucket => Access::CreateBucket,
            // Making a bucket listable by anyone is the owner's decision.
            DeleteBucket
            | PutBucketAcl
            | PutBucketWebsite
            | DeleteBucketWebsite
            | PutBucketCors
            | DeleteBucketCors
            | PutBucketLifecycleConfiguration
            | DeleteBucketLifecycle => Access::Owner,
            GetBucketWebsite | GetBucketCors | GetBucketLifecycleConfiguration => Access::Read,
            HeadBucket | GetBucketLocation | GetBucketVersioning | ListObjects | ListObjectsV2
            | ListMultipartUploads | HeadObject | GetObject | ListParts | GetBucketAcl
            | GetObjectAcl | GetObjectTagging | GetObjectAttributes => Access::Read,
            PutObjectAcl | PutObjectTagging | DeleteObjectTagging => Access::Write,
            DeleteObjects
            | PutObject
            | CopyObject
            | DeleteObject
            | CreateMultipartUpload
            | UploadPart
            | UploadPartCopy
            | CompleteMultipartUpload
            | AbortMultipartUpload => Access::Write,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    None,
    CreateBucket,
    Read,
    Write,
    Owner,
}

/// A routed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub op: Op,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query parameters (a parameter given twice keeps the last value).
    pub query: BTreeMap<String, String>,
}

/// Route a request. `root_domain` is the normalized `[s3_api] root_domain` (starting with `.`).
pub fn route(
    method: &Method,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    root_domain: Option<&str>,
) -> Result<Route, S3Error> {
    let query = url::parse_query(query.unwrap_or(""))?;
    let path = url::decode(path.strip_prefix('/').unwrap_or(path), Plus::Literal)?;
    let vhost_bucket = host
        .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
        .zip(root_domain)
        .and_then(|(h, d)| h.to_ascii_lowercase().strip_suffix(d).map(str::to_string))
        .filter(|b| !b.is_empty());
    let (bucket, key) = match vhost_bucket {
        Some(b) => (Some(b), Some(path).filter(|k| !k.is_empty())),
        None => match path.split_once('/') {
            None if path.is_empty() => (None, None),
            None => (Some(path), None),
            Some((b, k)) => (
                Some(b.to_string()),
                Some(k.to_string()).filter(|k| !k.is_empty()),
            ),
        },
    };
    if let Some(k) = &key
        && k.len() > MAX_KEY_LEN
    {
        return Err(err(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long (the limit is 1024 bytes).",
        ));
    }
    let op = match (&bucket, &key) {
        (None, _) => match *method {
            Method::GET => Op::ListBuckets,
            _ => return Err(not_allowed(method)),
        },
        (Some(_), None) => bucket_op(method, &query)?,
        (Some(_), Some(_)) => object_op(method, &query, headers)?,
    };
    Ok(Route {
        op,
        bucket,
        key,
        query,
    })
}

fn bucket_op(method: &Method, q: &BTreeMap<String, String>) -> Result<Op, S3Error> {
    let has = |k: &str| q.contains_key(k);
    Ok(match *method {
        Method::GET if has("location") => Op::GetBucketLocation,
        Method::GET if has("versioning") => Op::GetBucketVersioning,
        Method::GET if has("uploads") => Op::ListMultipartUploads,
        Method::GET if has("acl") => Op::GetBucketAcl,
        Method::GET if has("website") => Op::GetBucketWebsite,
        Method::GET if has("cors") => Op::GetBucketCors,
        Method::GET if has("lifecycle") => Op::GetBucketLifecycleConfiguration,
        Method::GET if q.get("list-type").map(String::as_str) == Some("2") => Op::ListObjectsV2,
        Method::GET => {
            for sub in [
                "policy",
                "tagging",
                "encryption",
                "replication",
                "notification",
                "logging",
                "object-lock",
                "versions",
                "ownershipControls",
                "publicAccessBlock",
                "requestPayment",
                "accelerate",
                "analytics",
                "inventory",
                "metrics",
                "intelligent-tiering",
            ] {
                if has(sub) {
                    return Err(not_implemented(&format!("GET ?{sub}")));
                }
            }
            Op::ListObjects
        }
        Method::HEAD => Op::HeadBucket,
        Method::PUT if q.is_empty() => Op::CreateBucket,
        Method::PUT if has("acl") => Op::PutBucketAcl,
        Method::PUT if has("website") => Op::PutBucketWebsite,
        Method::PUT if has("cors") => Op::PutBucketCors,
        Method::PUT if has("lifecycle") => Op::PutBucketLifecycleConfiguration,
        Method::PUT => {
            let sub = q.keys().next().cloned().unwrap_or_default();
            return Err(not_implemented(&format!("PUT ?{sub}")));
        }
        Method::DELETE if q.is_empty() => Op::DeleteBucket,
        Method::DELETE if has("website") => Op::DeleteBucketWebsite,
        Method::DELETE if has("cors") => Op::DeleteBucketCors,
        Method::DELETE if has("lifecycle") => Op::DeleteBucketLifecycle,
        Method::DELETE => {
            let sub = q.keys().next().cloned().unwrap_or_default();
            return Err(not_implemented(&format!("DELETE ?{sub}")));
        }
        Method::POST if has("delete") => Op::DeleteObjects,
        // A browser form upload (multipart/form-data; the server checks the content type).
        Method::POST if q.is_empty() => Op::PostObject,
        Method::POST => return Err(not_implemented("POST on a bucket")),
        Method::OPTIONS => Op::Options,
        _ => return Err(not_allowed(method)),
    })
}

fn object_op(
    method: &Method,
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Op, S3Error> {
    let has = |k: &str| q.contains_key(k);
    let copy = headers.contains_key("x-amz-copy-source");
    Ok(match *method {
        Method::GET if has("uploadId") => Op::ListParts,
        Method::GET if has("acl") => Op::GetObjectAcl,
        Method::GET if has("tagging") => Op::GetObjectTagging,
        Method::GET if has("attributes") => Op::GetObjectAttributes,
        Method::GET if has("retention") || has("legal-hold") => {
            return Err(not_implemented("object sub-resources"));
        }
        Method::GET => Op::GetObject,
        Method::HEAD => Op::HeadObject,
        Method::PUT if has("partNumber") && has("uploadId") && copy => Op::UploadPartCopy,
        Method::PUT if has("partNumber") && has("uploadId") => Op::UploadPart,
        Method::PUT if has("acl") => Op::PutObjectAcl,
        Method::PUT if has("tagging") => Op::PutObjectTagging,
        Method::PUT if has("retention") || has("legal-hold") => {
            return Err(not_implemented("object sub-resources"));
        }
        Method::PUT if copy => Op::CopyObject,
        Method::PUT => Op::PutObject,
        Method::DELETE if has("uploadId") => Op::AbortMultipartUpload,
        Method::DELETE if has("tagging") => Op::DeleteObjectTagging,
        Method::DELETE => Op::DeleteObject,
        Method::POST if has("uploads") => Op::CreateMultipartUpload,
        Method::POST if has("uploadId") => Op::CompleteMultipartUpload,
        Method::POST => return Err(not_implemented("POST on an object")),
        Method::OPTIONS => Op::Options,
        _ => return Err(not_allowed(method)),
    })
}

fn not_implemented(what: &str) -> S3Error {
    err(
        S3ErrorCode::NotImplemented,
        format!("{what} is not implemented by Grenier."),
    )
}

fn not_allowed(method: &Method) -> S3Error {
    err(
        S3ErrorCode::MethodNotAllowed,
        format!("The specified method ({method}) is not allowed against this resource."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, host: &str, pq: &str) -> Result<Route, S3Error> {
        let (p, q) = pq.split_once('?').map_or((pq, None), |(p, q)| (p, Some(q)));
        route(
            &method,
            Some(host),
            p,
            q,
            &HeaderMap::new(),
            Some(".s3.example.org"),
        )
    }

    #[test]
    fn path_and_virtual_host_styles() {
        let a = r(
            Method::GET,
            "localhost:3900",
            "/bucket/a%20b/c%25?x-id=GetObject",
        )
        .unwrap();
        assert_eq!(
            (a.op, a.bucket.as_deref(), a.key.as_deref()),
            (Op::GetObject, Some("bucket"), Some("a b/c%"))
        );
        let b = r(Method::GET, "bucket.s3.example.org", "/dir/k").unwrap();
        assert_eq!(
            (b.op, b.bucket.as_deref(), b.key.as_deref()),
            (Op::GetObject, Some("bucket"), Some("dir/k"))
        );
        let c = r(
            Method::GET,
            "Bucket.S3.example.org:3900",
            "/?list-type=2&prefix=a",
        )
        .unwrap();
        assert_eq!(
            (c.op, c.bucket.as_deref()),
            (Op::ListObjectsV2, Some("bucket"))
        );
        assert_eq!(c.query["prefix"], "a");
        assert_eq!(
            r(Method::GET, "s3.example.org", "/").unwrap().op,
            Op::ListBuckets
        );
    }

    #[test]
    fn operations() {
        let cases = [
            (Method::PUT, "/b", Op::CreateBucket),
            (Method::HEAD, "/b", Op::HeadBucket),
            (Method::DELETE, "/b", Op::DeleteBucket),
            (Method::GET, "/b?location", Op::GetBucketLocation),
            (Method::GET, "/b?versioning", Op::GetBucketVersioning),
            (Method::GET, "/b?uploads", Op::ListMultipartUploads),
            (Method::GET, "/b", Op::ListObjects),
            (Method::POST, "/b?delete", Op::DeleteObjects),
            (Method::PUT, "/b/k", Op::PutObject),
            (Method::POST, "/b/k?uploads", Op::CreateMultipartUpload),
            (Method::PUT, "/b/k?partNumber=1&uploadId=x", Op::UploadPart),
            (Method::POST, "/b/k?uploadId=x", Op::CompleteMultipartUpload),
            (Method::DELETE, "/b/k?uploadId=x", Op::AbortMultipartUpload),
            (Method::GET, "/b/k?uploadId=x", Op::ListParts),
            (Method::DELETE, "/b/k", Op::DeleteObject),
            (Method::HEAD, "/b/k", Op::HeadObject),
            (Method::GET, "/b?acl", Op::GetBucketAcl),
            (Method::PUT, "/b?acl", Op::PutBucketAcl),
            (Method::GET, "/b/k?acl", Op::GetObjectAcl),
            (Method::PUT, "/b/k?acl", Op::PutObjectAcl),
            (Method::GET, "/b/k?tagging", Op::GetObjectTagging),
            (Method::PUT, "/b/k?tagging", Op::PutObjectTagging),
            (Method::DELETE, "/b/k?tagging", Op::DeleteObjectTagging),
        ];
        for (m, p, op) in cases {
            assert_eq!(r(m.clone(), "localhost", p).unwrap().op, op, "{m} {p}");
        }
        let e = r(Method::GET, "localhost", "/b?policy").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::NotImplemented);
        let long = format!("/b/{}", "k".repeat(1025));
        assert_eq!(
            r(Method::GET, "localhost", &long).unwrap_err().code,
            S3ErrorCode::KeyTooLongError
        );
        assert_eq!(
            r(Method::GET, "localhost", "/b/%zz").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
    }
}
