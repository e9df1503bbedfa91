//! PutBucketWebsite, GetBucketWebsite, DeleteBucketWebsite: the bucket's website configuration as XML.

use hyper::Response;

use super::ctx::{Ctx, ResBody};
use super::error::{S3Error, S3ErrorCode, err};

fn todo_501(what: &str) -> Result<Response<ResBody>, S3Error> {
    Err(err(
        S3ErrorCode::NotImplemented,
        format!("{what} is not implemented by Grenier yet."),
    ))
}

pub async fn get_bucket_website(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("GetBucketWebsite")
}
pub async fn put_bucket_website(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("PutBucketWebsite")
}
pub async fn delete_bucket_website(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    todo_501("DeleteBucketWebsite")
}
