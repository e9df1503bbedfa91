//! PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration, DeleteBucketLifecycle: the
//! bucket's lifecycle rules as XML (applied by `model`'s lifecycle worker).

use hyper::Response;

use super::ctx::{Ctx, ResBody};
use super::error::{S3Error, S3ErrorCode, err};

fn todo_501(what: &str) -> Result<Response<ResBody>, S3Error> {
    Err(err(
        S3ErrorCode::NotImplemented,
        format!("{what} is not implemented by Grenier yet."),
    ))
}

pub async fn get_bucket_lifecycle(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("GetBucketLifecycleConfiguration")
}
pub async fn put_bucket_lifecycle(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("PutBucketLifecycleConfiguration")
}
pub async fn delete_bucket_lifecycle(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("DeleteBucketLifecycle")
}
