//! Retried requests (a client that lost an answer sends the request again, maybe to another node) get
//! the answer of the first one, and DeleteBucket takes the multipart uploads under way with it; through
//! the AWS SDK on a 3-node cluster over 3 zones.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use serde_json::Value;

use crate::harness::*;
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

/// AbortMultipartUpload; the S3 error code and status of a refusal.
async fn abort(c: &Client, bucket: &str, key: &str, id: &str) -> Result<(), (String, u16)> {
    c.abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .send()
        .await
        .map(drop)
        .map_err(failure)
}

/// ListParts: (part number, ETag) of each part; the S3 error code and status of a refusal.
async fn list_parts(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<Vec<(i32, String)>, (String, u16)> {
    let listed = c
        .list_parts()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .send()
        .await
        .map_err(failure)?;
    Ok(listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.e_tag().unwrap().to_string()))
        .collect())
}

async fn complete(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
) -> Result<CompleteMultipartUploadOutput, (String, u16)> {
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
        .map_err(failure)
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
        assert_eq!(
            list_parts(&c[0], "retry", "big", &id).await,
            Ok(vec![(1, e1.clone()), (2, e2.clone())])
        );

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
        assert_eq!(
            complete(&c[2], "retry", "big", &id, &[(1, &e1)])
                .await
                .err(),
            Some(("InvalidPart".into(), 400))
        );
        assert_eq!(
            abort(&c[0], "retry", "big", &id).await,
            Err(("NoSuchUpload".into(), 404))
        );
        assert_eq!(
            list_parts(&c[1], "retry", "big", &id).await,
            Err(("NoSuchUpload".into(), 404))
        );
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
        assert_eq!(
            complete(&c[0], "retry", "big", &id, &parts).await.err(),
            Some(("NoSuchUpload".into(), 404))
        );
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
        assert_eq!(abort(&c[0], "retry", "dropped", &id).await, Ok(()));
        assert_eq!(
            complete(&c[1], "retry", "dropped", &id, &[(1, &e)])
                .await
                .err(),
            Some(("NoSuchUpload".into(), 404))
        );
        assert_eq!(
            abort(&c[2], "retry", "dropped", &id).await,
            Err(("NoSuchUpload".into(), 404))
        );
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

/// How many multipart uploads ListMultipartUploads shows; the S3 error code and status of a refusal.
async fn uploads(c: &Client, bucket: &str) -> Result<usize, (String, u16)> {
    let l = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .map_err(failure)?;
    Ok(l.uploads().len())
}

/// Every block any node holds.
fn blocks_held(procs: &[Proc]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for p in procs {
        let out = p.cli(&["debug", "block-local"]).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        for h in v["blocks"].as_array().unwrap() {
            all.insert(h.as_str().unwrap().to_string());
        }
    }
    all
}

/// DeleteBucket is refused while an object is left, not for multipart uploads under way: those are
/// aborted with the bucket, and their parts' blocks deleted from every node.
#[test]
fn delete_bucket_aborts_pending_uploads() {
    let env = S3Env::start("block_gc_delay_secs = 1");
    for p in &env.procs {
        p.cli(&["worker", "set", "resync-tranquility", "0"])
            .unwrap();
    }
    let c: Vec<Client> = (0..3).map(|i| env.client(i)).collect();
    let before = blocks_held(&env.procs);
    env.block_on(async {
        c[0].create_bucket().bucket("doomed").send().await.unwrap();
        for (i, key) in ["a", "b"].into_iter().enumerate() {
            let id = start_upload(&c[i], "doomed", key).await;
            put_part(&c[i], "doomed", key, &id, 1, &body(200_000, 10 + i as u8)).await;
        }
        // A bucket with an object and an upload: not empty, and its upload stays.
        c[1].create_bucket().bucket("kept").send().await.unwrap();
        c[1].put_object()
            .bucket("kept")
            .key("o")
            .body(ByteStream::from_static(b"object"))
            .send()
            .await
            .unwrap();
        let id = start_upload(&c[1], "kept", "u").await;
        put_part(&c[1], "kept", "u", &id, 1, &body(200_000, 20)).await;
        let e = c[2]
            .delete_bucket()
            .bucket("kept")
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("BucketNotEmpty".into(), 409));
        assert_eq!(
            uploads(&c[2], "kept").await,
            Ok(1),
            "the upload survives a refused delete"
        );
        assert_eq!(uploads(&c[2], "doomed").await, Ok(2));
    });
    let parts: BTreeSet<String> = blocks_held(&env.procs)
        .difference(&before)
        .cloned()
        .collect();
    assert!(parts.len() >= 3, "each part has its blocks: {parts:?}");
    env.block_on(async {
        c[1].delete_bucket().bucket("doomed").send().await.unwrap();
        assert_eq!(
            uploads(&c[1], "doomed").await,
            Err(("NoSuchBucket".into(), 404))
        );
        // With its object gone, the other bucket goes too, its upload with it.
        c[0].delete_object()
            .bucket("kept")
            .key("o")
            .send()
            .await
            .unwrap();
        c[0].delete_bucket().bucket("kept").send().await.unwrap();
        // Bucket names are read from each node's full copy: poll until node 2 has both deletions.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listed = c[2].list_buckets().send().await.unwrap();
            if listed.buckets().is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "buckets still listed: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    wait_for(
        "the aborted uploads' blocks deleted from every node",
        Duration::from_secs(90),
        || {
            let held = blocks_held(&env.procs);
            parts.iter().all(|h| !held.contains(h)).then_some(())
        },
    );
}
