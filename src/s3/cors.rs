//! CORS: PutBucketCors, GetBucketCors, DeleteBucketCors, the preflight `OPTIONS`, and the response
//! headers added to the answers of the S3 and website endpoints.

use hyper::{HeaderMap, Method, Response};

use super::ctx::{Ctx, ResBody};
use super::error::{S3Error, S3ErrorCode, err};
use crate::model::bucket::Bucket;

fn todo_501(what: &str) -> Result<Response<ResBody>, S3Error> {
    Err(err(
        S3ErrorCode::NotImplemented,
        format!("{what} is not implemented by Grenier yet."),
    ))
}

pub async fn get_bucket_cors(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("GetBucketCors")
}
pub async fn put_bucket_cors(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("PutBucketCors")
}
pub async fn delete_bucket_cors(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("DeleteBucketCors")
}

/// Answer a preflight `OPTIONS` request for `bucket` (None: no such bucket).
pub fn preflight(
    _bucket: Option<&Bucket>,
    _headers: &HeaderMap,
) -> Result<Response<ResBody>, S3Error> {
    todo_501("OPTIONS")
}

/// Add the CORS response headers (`Access-Control-Allow-Origin`, `Vary: Origin`, exposed headers…)
/// that `bucket`'s rules grant to the request (`method`, `headers`), to a response or an error.
pub fn add_headers(
    _bucket: Option<&Bucket>,
    _method: &Method,
    _headers: &HeaderMap,
    _resp: &mut Response<ResBody>,
) {
}
