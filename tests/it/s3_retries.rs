//! Retried requests (a client that lost an answer sends the request again, maybe to another node) get
//! the answer of the first one; through the AWS SDK on a 3-node cluster over 3 zones.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::{
    CompleteMultipartUploadError, CompleteMultipartUploadOutput,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::s3::S3Env;

/// The S3 error code and HTTP status of a failed request.
fn failure<E: ProvideErrorMetadata>(e: SdkError<E>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default()
        .to_string();
    (code, status)
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2246822519).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn start_upload(c: &Client, bucket: &str, key: &str) -> String {
    c.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string()
}

/// Upload part `n`; its ETag.
async fn put_part(c: &Client, bucket: &str, key: &str, id: &str, n: i32, b: &[u8]) -> String {
    c.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(b.to_vec()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string()
}

async fn complete(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
) -> Result<CompleteMultipartUploadOutput, SdkError<CompleteMultipartUploadError>> {
    let list = parts
        .iter()
        .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
        .collect();
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(list))
                .build(),
        )
        .send()
        .await
}

async fn content(c: &Client, bucket: &str, key: &str) -> (String, Vec<u8>) {
    let got = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    let etag = got.e_tag().unwrap().to_string();
    (
        etag,
        got.body.collect().await.unwrap().into_bytes().to_vec(),
    )
}

async fn keys(c: &Client, bucket: &str) -> Vec<String> {
    c.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect()
}

/// A retried UploadPart, CompleteMultipartUpload (also racing with the first one) and DeleteObject
/// succeed with the first answer, each retry sent to another node than the first attempt; what AWS
/// refuses after a completion or an abort is refused.
#[test]
fn retried_requests_get_the_first_answer() {
    let env = S3Env::start("");
    let c: Vec<Client> = (0..3).map(|i| env.client(i)).collect();
    let mib = 1024 * 1024;
    let (p1, p2) = (body(5 * mib, 1), body(3000, 2));
    env.block_on(async {
        c[0].create_bucket().bucket("retry").send().await.unwrap();

        // UploadPart retried through another node: same ETag, one part listed.
        let id = start_upload(&c[0], "retry", "big").await;
        let e1 = put_part(&c[0], "retry", "big", &id, 1, &p1).await;
        let e2 = put_part(&c[1], "retry", "big", &id, 2, &p2).await;
        let again = put_part(&c[2], "retry", "big", &id, 2, &p2).await;
        assert_eq!(again, e2, "a retried part has the same ETag");
        let listed = c[0]
            .list_parts()
            .bucket("retry")
            .key("big")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let got: Vec<(i32, String)> = listed
            .parts()
            .iter()
            .map(|p| (p.part_number().unwrap(), p.e_tag().unwrap().to_string()))
            .collect();
        assert_eq!(got, vec![(1, e1.clone()), (2, e2.clone())]);

        // CompleteMultipartUpload retried through another node: the same answer, one object.
        let parts = [(1, e1.as_str()), (2, e2.as_str())];
        let first = complete(&c[0], "retry", "big", &id, &parts).await.unwrap();
        let retry = complete(&c[1], "retry", "big", &id, &parts).await.unwrap();
        assert!(first.e_tag().unwrap().ends_with("-2\""), "{first:?}");
        assert_eq!(retry.e_tag(), first.e_tag());
        assert_eq!(retry.location(), first.location());
        assert_eq!(retry.bucket(), Some("retry"));
        assert_eq!(retry.key(), Some("big"));
        let (etag, bytes) = content(&c[2], "retry", "big").await;
        assert_eq!(Some(etag.as_str()), first.e_tag());
        assert!(bytes == [&p1[..], &p2[..]].concat(), "completed content");
        assert_eq!(keys(&c[2], "retry").await, vec!["big"]);

        // A retry with another list of parts, and what needs the upload under way: refused.
        let e = complete(&c[2], "retry", "big", &id, &[(1, &e1)])
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("InvalidPart".into(), 400));
        let e = c[0]
            .abort_multipart_upload()
            .bucket("retry")
            .key("big")
            .upload_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NoSuchUpload".into(), 404));
        let e = c[1]
            .list_parts()
            .bucket("retry")
            .key("big")
            .upload_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NoSuchUpload".into(), 404));
        let e = c[2]
            .upload_part()
            .bucket("retry")
            .key("big")
            .upload_id(&id)
            .part_number(3)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NoSuchUpload".into(), 404));
        // Still the same answer after all that.
        let again = complete(&c[2], "retry", "big", &id, &parts).await.unwrap();
        assert_eq!(again.e_tag(), first.e_tag());

        // Once the object is overwritten, the upload is gone.
        c[1].put_object()
            .bucket("retry")
            .key("big")
            .body(ByteStream::from_static(b"newer"))
            .send()
            .await
            .unwrap();
        let e = complete(&c[0], "retry", "big", &id, &parts)
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NoSuchUpload".into(), 404));
        assert_eq!(content(&c[0], "retry", "big").await.1, b"newer");

        // Two Completes at once through two nodes: both succeed with the same answer, one object.
        let id = start_upload(&c[1], "retry", "race").await;
        let r1 = body(5 * mib, 3);
        let (ea, eb) = (
            put_part(&c[0], "retry", "race", &id, 1, &r1).await,
            put_part(&c[1], "retry", "race", &id, 2, &p2).await,
        );
        let parts = [(1, ea.as_str()), (2, eb.as_str())];
        let (x, y) = tokio::join!(
            complete(&c[0], "retry", "race", &id, &parts),
            complete(&c[2], "retry", "race", &id, &parts)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.e_tag(), y.e_tag());
        let (etag, bytes) = content(&c[1], "retry", "race").await;
        assert_eq!(Some(etag.as_str()), x.e_tag());
        assert!(bytes == [&r1[..], &p2[..]].concat(), "raced content");
        assert_eq!(keys(&c[1], "retry").await, vec!["big", "race"]);

        // Complete after Abort: the upload is gone, and so is the key.
        let id = start_upload(&c[2], "retry", "dropped").await;
        let e = put_part(&c[2], "retry", "dropped", &id, 1, &p2).await;
        c[0].abort_multipart_upload()
            .bucket("retry")
            .key("dropped")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let err = complete(&c[1], "retry", "dropped", &id, &[(1, &e)])
            .await
            .unwrap_err();
        assert_eq!(failure(err), ("NoSuchUpload".into(), 404));
        let err = c[2]
            .abort_multipart_upload()
            .bucket("retry")
            .key("dropped")
            .upload_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(err), ("NoSuchUpload".into(), 404));
        assert_eq!(keys(&c[0], "retry").await, vec!["big", "race"]);

        // DeleteObject retried, of a key that exists and of one that never did: success each time.
        for key in ["race", "never-there"] {
            for client in &c {
                client
                    .delete_object()
                    .bucket("retry")
                    .key(key)
                    .send()
                    .await
                    .unwrap();
            }
        }
        let e = c[0]
            .get_object()
            .bucket("retry")
            .key("race")
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NoSuchKey".into(), 404));
        assert_eq!(keys(&c[2], "retry").await, vec!["big"]);
    });
}
