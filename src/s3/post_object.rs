//! PostObject: a browser form upload (multipart/form-data) authorized by a signed POST policy.

use hyper::Response;

use super::ctx::{Ctx, ResBody};
use super::error::{S3Error, S3ErrorCode, err};

pub async fn post_object(_ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    Err(err(
        S3ErrorCode::NotImplemented,
        "PostObject is not implemented by Grenier yet.",
    ))
}
