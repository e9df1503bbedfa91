//! The S3 API through the official AWS SDK for Rust, against a real 3-node cluster over 3 zones.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use crate::harness::*;

/// A cluster with a key allowed to create buckets, and an SDK client for each node.
pub struct S3Env {
    pub procs: Vec<Proc>,
    pub key_id: String,
    pub secret: String,
    pub rt: tokio::runtime::Runtime,
}

impl S3Env {
    pub fn start(extra: &str) -> S3Env {
        let procs = three_zone_cluster_with(extra);
        let out = procs[0]
            .cli(&["key", "create", "tester", "--json"])
            .unwrap();
        let k: Value = serde_json::from_str(&out).unwrap();
        procs[0]
            .cli(&["key", "allow", "tester", "--create-bucket"])
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let env = S3Env {
            key_id: k["id"].as_str().unwrap().to_string(),
            secret: k["secret"].as_str().unwrap().to_string(),
            procs,
            rt,
        };
        // The key reaches every node's full copy of the key table.
        for i in 0..3 {
            wait_for("key known everywhere", Duration::from_secs(30), || {
                env.procs[i]
                    .cli(&["key", "info", "tester"])
                    .ok()
                    .map(|_| ())
            });
        }
        env
    }

    pub fn client(&self, node: usize) -> Client {
        self.client_with(node, &self.key_id, &self.secret)
    }

    pub fn client_with(&self, node: usize, id: &str, secret: &str) -> Client {
        let addr = format!("{}:3900", self.procs[node].spec.ip);
        crate::harness::sdk_client(&addr, "garage", id, secret)
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

pub(crate) fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_string()
}

pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

#[test]
fn buckets_objects_and_listings_through_the_sdk() {
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    env.block_on(async {
        a.create_bucket().bucket("photos").send().await.unwrap();
        let e = a.create_bucket().bucket("photos").send().await.unwrap_err();
        assert_eq!(
            code(e.as_service_error().unwrap()),
            "BucketAlreadyOwnedByYou"
        );
        let e = a
            .create_bucket()
            .bucket("Bad_Name")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidBucketName");
        a.head_bucket().bucket("photos").send().await.unwrap();
        let names: Vec<String> = b
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect();
        assert_eq!(names, vec!["photos"]);
        let loc = a
            .get_bucket_location()
            .bucket("photos")
            .send()
            .await
            .unwrap();
        assert_eq!(
            loc.location_constraint().map(|c| c.as_str()),
            Some("garage")
        );

        // Small (inline), zero-byte, and multi-block objects; written through one node, read through another.
        let keys_and_sizes = [
            ("small.txt", 1000usize),
            ("empty", 0),
            ("dir/big.bin", 5 * 1024 * 1024 + 123),
            ("unicode é ü/日本 %20 +plus", 10),
        ];
        for (i, (k, n)) in keys_and_sizes.iter().enumerate() {
            let body = data(*n, i as u8);
            let put = a
                .put_object()
                .bucket("photos")
                .key(*k)
                .content_type("application/x-test")
                .metadata("colour", "blue")
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
            let etag = put.e_tag().unwrap().to_string();
            let md5: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&body).into();
            assert_eq!(etag, format!("\"{}\"", hex::encode(md5)));
            let got = b
                .get_object()
                .bucket("photos")
                .key(*k)
                .send()
                .await
                .unwrap();
            assert_eq!(got.e_tag(), Some(etag.as_str()));
            assert_eq!(got.content_type(), Some("application/x-test"));
            assert_eq!(got.metadata().unwrap()["colour"], "blue");
            assert_eq!(got.content_length(), Some(*n as i64));
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert_eq!(bytes.len(), *n);
            assert!(bytes[..] == body[..], "content of {k}");
        }

        // Ranges: first, middle, suffix, unsatisfiable.
        let big = data(5 * 1024 * 1024 + 123, 2);
        for (range, lo, hi) in [
            ("bytes=0-0", 0, 1),
            ("bytes=1048570-2097160", 1048570, 2097161),
            ("bytes=-100", big.len() - 100, big.len()),
        ] {
            let r = b
                .get_object()
                .bucket("photos")
                .key("dir/big.bin")
                .range(range)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.content_range(),
                Some(format!("bytes {lo}-{}/{}", hi - 1, big.len()).as_str())
            );
            let bytes = r.body.collect().await.unwrap().into_bytes();
            assert!(bytes[..] == big[lo..hi], "range {range}");
        }
        let e = b
            .get_object()
            .bucket("photos")
            .key("small.txt")
            .range("bytes=5000-")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidRange");

        // Conditional GET and HEAD.
        let etag = a
            .head_object()
            .bucket("photos")
            .key("small.txt")
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .to_string();
        let e = a
            .get_object()
            .bucket("photos")
            .key("small.txt")
            .if_none_match(&etag)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().unwrap().status().as_u16(), 304);
        let e = a
            .head_object()
            .bucket("photos")
            .key("small.txt")
            .if_match("\"0000\"")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().unwrap().status().as_u16(), 412);
        a.get_object()
            .bucket("photos")
            .key("small.txt")
            .if_match(&etag)
            .send()
            .await
            .unwrap();

        // Missing key and bucket.
        let e = a
            .get_object()
            .bucket("photos")
            .key("nope")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchKey");
        let e = a
            .get_object()
            .bucket("nobucket")
            .key("x")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchBucket");

        // Listing with a delimiter.
        let l = a
            .list_objects_v2()
            .bucket("photos")
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let keys: Vec<&str> = l.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, vec!["empty", "small.txt"]);
        let prefixes: Vec<&str> = l
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        assert_eq!(prefixes, vec!["dir/", "unicode é ü/"]);

        // Delete, then the bucket is not empty until every object is gone.
        b.delete_object()
            .bucket("photos")
            .key("small.txt")
            .send()
            .await
            .unwrap();
        let e = a
            .get_object()
            .bucket("photos")
            .key("small.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchKey");
        let e = a.delete_bucket().bucket("photos").send().await.unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "BucketNotEmpty");
        for (k, _) in &keys_and_sizes[1..] {
            a.delete_object()
                .bucket("photos")
                .key(*k)
                .send()
                .await
                .unwrap();
        }
        a.delete_bucket().bucket("photos").send().await.unwrap();
    });
}

#[test]
fn listing_pagination_across_2500_keys() {
    let env = S3Env::start("");
    let c = env.client(2);
    env.block_on(async {
        c.create_bucket().bucket("many").send().await.unwrap();
        let keys: Vec<String> = (0..2500)
            .map(|i| format!("k/{:05}", i * 7 % 2500))
            .collect();
        futures::future::join_all(keys.chunks(100).map(|chunk| {
            let c = c.clone();
            async move {
                for k in chunk {
                    c.put_object()
                        .bucket("many")
                        .key(k)
                        .body(ByteStream::from_static(b"x"))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }))
        .await;
        // v2 with continuation tokens, 1000 per page.
        let mut seen = vec![];
        let mut token = None;
        loop {
            let r = c
                .list_objects_v2()
                .bucket("many")
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            seen.extend(r.contents().iter().map(|o| o.key().unwrap().to_string()));
            token = r.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(seen, expected);
        // v1 with markers and small pages, start-after for v2.
        let r = c
            .list_objects()
            .bucket("many")
            .marker("k/02490")
            .max_keys(5)
            .send()
            .await
            .unwrap();
        let got: Vec<&str> = r.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(
            got,
            vec!["k/02491", "k/02492", "k/02493", "k/02494", "k/02495"]
        );
        assert_eq!(r.is_truncated(), Some(true));
        let r = c
            .list_objects_v2()
            .bucket("many")
            .start_after("k/02497")
            .send()
            .await
            .unwrap();
        let got: Vec<&str> = r.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(got, vec!["k/02498", "k/02499"]);
        // DeleteObjects: 1000 at once.
        let ids: Vec<_> = expected[..1000]
            .iter()
            .map(|k| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .unwrap()
            })
            .collect();
        let d = c
            .delete_objects()
            .bucket("many")
            .delete(
                aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(d.deleted().len(), 1000);
        let r = c.list_objects_v2().bucket("many").send().await.unwrap();
        assert_eq!(r.key_count(), Some(1000));
        assert_eq!(r.contents()[0].key(), Some("k/01000"));
    });
}

#[test]
fn permissions_and_signatures() {
    let env = S3Env::start("");
    let owner = env.client(0);
    let out = env.procs[0]
        .cli(&["key", "create", "nobody", "--json"])
        .unwrap();
    let k: Value = serde_json::from_str(&out).unwrap();
    let (id, secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    wait_for("key on node 1", Duration::from_secs(30), || {
        env.procs[1].cli(&["key", "info", id]).ok().map(|_| ())
    });
    let nobody = env.client_with(1, id, secret);
    let forged = env.client_with(
        1,
        &env.key_id,
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    let unknown = env.client_with(1, "GK000000000000000000000000", "whatever-secret");
    env.block_on(async {
        owner
            .create_bucket()
            .bucket("private")
            .send()
            .await
            .unwrap();
        owner
            .put_object()
            .bucket("private")
            .key("secret.txt")
            .body(ByteStream::from_static(b"top secret"))
            .send()
            .await
            .unwrap();
        let e = nobody
            .get_object()
            .bucket("private")
            .key("secret.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "AccessDenied");
        let e = nobody
            .put_object()
            .bucket("private")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "AccessDenied");
        let e = nobody
            .create_bucket()
            .bucket("mine")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "AccessDenied");
        assert!(
            nobody
                .list_buckets()
                .send()
                .await
                .unwrap()
                .buckets()
                .is_empty()
        );
        let e = forged
            .get_object()
            .bucket("private")
            .key("secret.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "SignatureDoesNotMatch");
        let e = unknown.list_buckets().send().await.unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidAccessKeyId");
    });
    // Read-only access granted through the CLI.
    env.procs[0]
        .cli(&["bucket", "allow", "private", "--key", "nobody", "--read"])
        .unwrap();
    wait_for("permission on node 1", Duration::from_secs(30), || {
        let out = env.procs[1]
            .cli(&["key", "info", "nobody", "--json"])
            .ok()?;
        out.contains("private").then_some(())
    });
    env.block_on(async {
        let got = nobody
            .get_object()
            .bucket("private")
            .key("secret.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"top secret"
        );
        let e = nobody
            .delete_object()
            .bucket("private")
            .key("secret.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "AccessDenied");
    });
    // A name only the "nobody" key sees.
    env.procs[0]
        .cli(&["bucket", "alias", "private", "my-view", "--local", "nobody"])
        .unwrap();
    env.block_on(async {
        let got = nobody
            .get_object()
            .bucket("my-view")
            .key("secret.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"top secret"
        );
        let names: Vec<String> = nobody
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect();
        assert_eq!(names, vec!["my-view", "private"]);
        let e = owner
            .get_object()
            .bucket("my-view")
            .key("secret.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchBucket");
    });
    let info = env.procs[2].cli_json(&["bucket", "info", "private"]);
    assert_eq!(info["objects"], 1);
    assert_eq!(info["bytes"], 10);
    assert_eq!(info["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn multipart_uploads_through_the_sdk() {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    let mib = 1024 * 1024;
    let parts = [data(5 * mib, 1), data(5 * mib + 7, 2), data(1234, 3)];
    let retried = data(5 * mib + 11, 4);
    env.block_on(async {
        a.create_bucket().bucket("mpu").send().await.unwrap();
        let id = a
            .create_multipart_upload()
            .bucket("mpu")
            .key("big")
            .content_type("video/mp4")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let up = |n: i32, body: Vec<u8>, c: Client| {
            let id = id.clone();
            async move {
                c.upload_part()
                    .bucket("mpu")
                    .key("big")
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .unwrap()
                    .e_tag()
                    .unwrap()
                    .to_string()
            }
        };
        // Out of order, through two nodes, part 2 sent twice (the second one counts).
        let e3 = up(3, parts[2].clone(), b.clone()).await;
        let e1 = up(1, parts[0].clone(), a.clone()).await;
        let _first_2 = up(2, parts[1].clone(), a.clone()).await;
        let e2 = up(2, retried.clone(), b.clone()).await;
        let listed = a
            .list_parts()
            .bucket("mpu")
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
        assert_eq!(got, vec![(1, e1.clone()), (2, e2.clone()), (3, e3.clone())]);
        let uploads = b
            .list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap();
        assert_eq!(uploads.uploads().len(), 1);
        assert_eq!(uploads.uploads()[0].upload_id(), Some(id.as_str()));

        let part = |n: i32, e: &str| CompletedPart::builder().part_number(n).e_tag(e).build();
        let complete = |list: Vec<CompletedPart>| {
            a.complete_multipart_upload()
                .bucket("mpu")
                .key("big")
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(list))
                        .build(),
                )
                .send()
        };
        let e = complete(vec![part(1, &e1), part(2, "\"00\""), part(3, &e3)])
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidPart");
        let e = complete(vec![part(2, &e2), part(1, &e1)])
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidPartOrder");
        let e = complete(vec![part(3, &e3), part(4, &e3)])
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidPart");
        let r = complete(vec![part(1, &e1), part(2, &e2), part(3, &e3)])
            .await
            .unwrap();
        assert!(r.e_tag().unwrap().ends_with("-3\""), "{:?}", r.e_tag());

        let expected: Vec<u8> = [&parts[0][..], &retried[..], &parts[2][..]].concat();
        let got = b
            .get_object()
            .bucket("mpu")
            .key("big")
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some("video/mp4"));
        assert_eq!(got.e_tag(), r.e_tag());
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(bytes[..] == expected[..], "completed object content");
        let p2 = b
            .get_object()
            .bucket("mpu")
            .key("big")
            .part_number(2)
            .send()
            .await
            .unwrap();
        assert_eq!(p2.parts_count(), Some(3));
        assert!(p2.body.collect().await.unwrap().into_bytes()[..] == retried[..]);
        assert!(
            b.list_multipart_uploads()
                .bucket("mpu")
                .send()
                .await
                .unwrap()
                .uploads()
                .is_empty()
        );

        // A part smaller than 5 MiB that is not the last; then abort.
        let id2 = a
            .create_multipart_upload()
            .bucket("mpu")
            .key("small-parts")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let mut etags = vec![];
        for n in 1..=2 {
            etags.push(
                a.upload_part()
                    .bucket("mpu")
                    .key("small-parts")
                    .upload_id(&id2)
                    .part_number(n)
                    .body(ByteStream::from(data(1000, n as u8)))
                    .send()
                    .await
                    .unwrap()
                    .e_tag()
                    .unwrap()
                    .to_string(),
            );
        }
        let e = a
            .complete_multipart_upload()
            .bucket("mpu")
            .key("small-parts")
            .upload_id(&id2)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(vec![part(1, &etags[0]), part(2, &etags[1])]))
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "EntityTooSmall");
        a.abort_multipart_upload()
            .bucket("mpu")
            .key("small-parts")
            .upload_id(&id2)
            .send()
            .await
            .unwrap();
        let e = a
            .upload_part()
            .bucket("mpu")
            .key("small-parts")
            .upload_id(&id2)
            .part_number(3)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchUpload");
        let e = a
            .get_object()
            .bucket("mpu")
            .key("small-parts")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchKey");
    });
}

/// Node 2 (zone c) is SIGKILLed: uploads, downloads, listings and deletes through the other zones all
/// succeed; once it is back, it converges to hold every object's metadata and blocks.
#[test]
fn one_zone_down_then_back() {
    let mut env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    env.block_on(async {
        a.create_bucket().bucket("outage").send().await.unwrap();
    });
    env.procs[2].kill();
    let big = data(3 * 1024 * 1024 + 5, 9);
    env.block_on(async {
        for i in 0..20 {
            let body = if i % 5 == 0 {
                big.clone()
            } else {
                data(100 + i, i as u8)
            };
            a.put_object()
                .bucket("outage")
                .key(format!("obj{i:02}"))
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put with a zone down: {e:?}"));
        }
        let got = b
            .get_object()
            .bucket("outage")
            .key("obj05")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == big[..]);
        let l = b.list_objects_v2().bucket("outage").send().await.unwrap();
        assert_eq!(l.key_count(), Some(20));
        b.delete_object()
            .bucket("outage")
            .key("obj01")
            .send()
            .await
            .unwrap();
        let l = a.list_objects_v2().bucket("outage").send().await.unwrap();
        assert_eq!(l.key_count(), Some(19));
        a.create_bucket()
            .bucket("during-outage")
            .send()
            .await
            .unwrap();
    });
    env.procs[2].restart();
    env.procs[2]
        .cli(&["worker", "set", "resync-tranquility", "0"])
        .unwrap();
    let entries = |p: &Proc, table: &str| -> Option<u64> {
        let v: Value = serde_json::from_str(&p.cli(&["stats", "--json"]).ok()?).ok()?;
        v["tables"]
            .as_array()?
            .iter()
            .find(|t| t["table"] == table)?["entries"]
            .as_u64()
    };
    let blocks = |p: &Proc| -> Option<Vec<String>> {
        let v: Value = serde_json::from_str(&p.cli(&["debug", "block-local"]).ok()?).ok()?;
        Some(
            v["blocks"]
                .as_array()?
                .iter()
                .map(|b| b.as_str().unwrap().to_string())
                .collect(),
        )
    };
    wait_for(
        "node 2 to converge (objects, versions, blocks)",
        Duration::from_secs(120),
        || {
            let (p0, p2) = (&env.procs[0], &env.procs[2]);
            let same = ["object", "version", "bucket"]
                .iter()
                .all(|t| entries(p0, t).is_some() && entries(p0, t) == entries(p2, t));
            let b0 = blocks(p0)?;
            (same && !b0.is_empty() && blocks(p2)? == b0).then_some(())
        },
    );
    // Node 2 serves everything from its own copies now.
    let c = env.client(2);
    env.block_on(async {
        let got = c
            .get_object()
            .bucket("outage")
            .key("obj10")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == big[..]);
        c.head_bucket()
            .bucket("during-outage")
            .send()
            .await
            .unwrap();
    });
    let _ = &mut env;
}

#[test]
fn copies_and_presigned_urls() {
    use aws_sdk_s3::presigning::PresigningConfig;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    let big = data(7 * 1024 * 1024 + 3, 5);
    env.block_on(async {
        a.create_bucket().bucket("src").send().await.unwrap();
        a.create_bucket().bucket("dst").send().await.unwrap();
        a.put_object()
            .bucket("src")
            .key("big")
            .content_type("text/plain")
            .metadata("m", "1")
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
        a.put_object()
            .bucket("src")
            .key("small")
            .body(ByteStream::from_static(b"tiny"))
            .send()
            .await
            .unwrap();
        // Across buckets, metadata copied; within a bucket, metadata replaced.
        let c = b
            .copy_object()
            .bucket("dst")
            .key("big copy")
            .copy_source("src/big")
            .send()
            .await
            .unwrap();
        let src_etag = a
            .head_object()
            .bucket("src")
            .key("big")
            .send()
            .await
            .unwrap();
        assert_eq!(c.copy_object_result().unwrap().e_tag(), src_etag.e_tag());
        let got = a
            .get_object()
            .bucket("dst")
            .key("big copy")
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some("text/plain"));
        assert_eq!(got.metadata().unwrap()["m"], "1");
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == big[..]);
        b.copy_object()
            .bucket("src")
            .key("small2")
            .copy_source("src/small")
            .metadata_directive(MetadataDirective::Replace)
            .content_type("application/json")
            .metadata("n", "2")
            .send()
            .await
            .unwrap();
        let h = a
            .head_object()
            .bucket("src")
            .key("small2")
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some("application/json"));
        assert_eq!(
            h.metadata().unwrap().get("n").map(String::as_str),
            Some("2")
        );
        let e = b
            .copy_object()
            .bucket("src")
            .key("small")
            .copy_source("src/small")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidRequest");
        let e = b
            .copy_object()
            .bucket("dst")
            .key("x")
            .copy_source("src/small")
            .copy_source_if_match("\"nope\"")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().unwrap().status().as_u16(), 412);

        // UploadPartCopy: a 5 MiB range of the big object, then (last part, so it may be small) a range
        // of the small one.
        let id = a
            .create_multipart_upload()
            .bucket("dst")
            .key("assembled")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let mut parts = vec![];
        for (n, src, range) in [
            (1, "src/big", Some("bytes=1048576-6291455")),
            (2, "src/small", Some("bytes=1-2")),
        ] {
            let r = a
                .upload_part_copy()
                .bucket("dst")
                .key("assembled")
                .upload_id(&id)
                .part_number(n)
                .copy_source(src)
                .set_copy_source_range(range.map(str::to_string))
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(r.copy_part_result().unwrap().e_tag().unwrap())
                    .build(),
            );
        }
        a.complete_multipart_upload()
            .bucket("dst")
            .key("assembled")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let expected = [&big[1048576..6291456], b"in"].concat();
        let got = b
            .get_object()
            .bucket("dst")
            .key("assembled")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == expected[..]);

        // Presigned GET and PUT, used with a plain HTTP client.
        let conf = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
        let get = a
            .get_object()
            .bucket("src")
            .key("small")
            .presigned(conf.clone())
            .await
            .unwrap();
        let put = a
            .put_object()
            .bucket("src")
            .key("presigned put")
            .presigned(conf)
            .await
            .unwrap();
        let (get_url, put_url) = (get.uri().to_string(), put.uri().to_string());
        let fetched = tokio::task::spawn_blocking(move || http("GET", &get_url, b""))
            .await
            .unwrap();
        assert_eq!(fetched, (200, b"tiny".to_vec()));
        let (status, _) = tokio::task::spawn_blocking(move || http("PUT", &put_url, b"via url"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let got = b
            .get_object()
            .bucket("src")
            .key("presigned put")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"via url"
        );
    });
}

/// A minimal HTTP/1.1 client for presigned URLs (what a browser or curl would do).
pub(crate) fn http(method: &str, url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = vec![];
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text[9..12].parse().unwrap();
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = text[..head_end].to_ascii_lowercase();
    let mut payload = resp[head_end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = vec![];
        let mut rest = &payload[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 4 + n..];
        }
        payload = out;
    }
    (status, payload)
}

/// Send a request with the given headers and body over plain HTTP/1.1; returns (status, body).
pub(crate) fn http_with(
    method: &str,
    url: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = vec![];
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    (text[9..12].parse().unwrap(), text)
}

/// aws-chunked uploads in the three streaming modes, signed by hand (the SDK picks one mode by
/// itself): every chunk signature is checked, a wrong one is refused, trailers carry checksums.
#[test]
fn streaming_signed_uploads() {
    use grenier::s3::sigv4::{self, Credentials};
    use grenier::s3::streaming::{StreamingMode, encode};
    use hyper::{HeaderMap, Method};
    let env = S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        c.create_bucket().bucket("stream").send().await.unwrap();
    });
    let ip = env.procs[0].spec.ip.clone();
    let creds = Credentials {
        access_key: &env.key_id,
        secret_key: &env.secret,
        region: "garage",
    };
    let payload = data(200_000, 7);
    let crc =
        grenier::s3::checksum::compute(grenier::s3::checksum::ChecksumAlgorithm::Crc32c, &payload);
    let put = |key: &str, sha: &str, tamper: bool| -> (u16, String) {
        let url = format!("http://{ip}:3900/stream/{key}");
        let uri: hyper::Uri = url.parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", format!("{ip}:3900").parse().unwrap());
        h.insert("x-amz-content-sha256", sha.parse().unwrap());
        h.insert("content-encoding", "aws-chunked".parse().unwrap());
        h.insert(
            "x-amz-decoded-content-length",
            payload.len().to_string().parse().unwrap(),
        );
        let trailer = sha.contains("TRAILER");
        if trailer {
            h.insert("x-amz-trailer", "x-amz-checksum-crc32c".parse().unwrap());
        }
        let signed = sigv4::sign(
            &Method::PUT,
            &uri,
            &mut h,
            &creds,
            std::time::SystemTime::now(),
        );
        let mode = match sha {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => StreamingMode::Signed(signed.context),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
                StreamingMode::SignedTrailer(signed.context)
            }
            _ => StreamingMode::UnsignedTrailer,
        };
        let trailers = if trailer {
            vec![("x-amz-checksum-crc32c".to_string(), crc.to_base64())]
        } else {
            vec![]
        };
        let mut body = encode(&mode, &payload, 65536, &trailers);
        if tamper {
            // Change one payload byte in the second chunk: its signature no longer matches.
            let i = body.len() / 2;
            body[i] ^= 1;
        }
        http_with("PUT", &url, &h, &body)
    };
    for (i, sha) in [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("k{i}");
        let (status, text) = put(&key, sha, false);
        assert_eq!(status, 200, "{sha}: {text}");
        let got = env.block_on(async {
            c.get_object()
                .bucket("stream")
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
        });
        assert!(got[..] == payload[..], "{sha}: content");
    }
    for sha in [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ] {
        let (status, text) = put("bad", sha, true);
        assert_eq!(status, 403, "{sha}: {text}");
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    }
    // An unsigned-trailer body with a corrupted byte fails its CRC32C.
    let (status, text) = put("bad", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", true);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    env.block_on(async {
        let e = c
            .get_object()
            .bucket("stream")
            .key("bad")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchKey");
    });
}

/// Bad input gets a clear 4xx, and nothing half-written becomes visible.
#[test]
fn limits_and_bad_input() {
    use grenier::s3::sigv4::{self, Credentials};
    use hyper::{HeaderMap, Method};
    let env = S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        c.create_bucket().bucket("limits").send().await.unwrap();
        let long = "k".repeat(1025);
        let e = c
            .put_object()
            .bucket("limits")
            .key(&long)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "KeyTooLongError");
        let ok = "k".repeat(1024);
        c.put_object()
            .bucket("limits")
            .key(&ok)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
        let ids: Vec<_> = (0..1001)
            .map(|i| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(format!("k{i}"))
                    .build()
                    .unwrap()
            })
            .collect();
        let e = c
            .delete_objects()
            .bucket("limits")
            .delete(
                aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "MalformedXML");
        let id = c
            .create_multipart_upload()
            .bucket("limits")
            .key("m")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        for n in [0, 10001] {
            let e = c
                .upload_part()
                .bucket("limits")
                .key("m")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(
                code(e.as_service_error().unwrap()),
                "InvalidArgument",
                "part {n}"
            );
        }
    });
    let ip = env.procs[0].spec.ip.clone();
    let creds = Credentials {
        access_key: &env.key_id,
        secret_key: &env.secret,
        region: "garage",
    };
    let signed = |method: Method, path: &str, body: &[u8], extra: &[(&str, String)]| {
        let url = format!("http://{ip}:3900{path}");
        let uri: hyper::Uri = url.parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", format!("{ip}:3900").parse().unwrap());
        let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(body).into();
        h.insert("x-amz-content-sha256", hex::encode(sha).parse().unwrap());
        for (k, v) in extra {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        sigv4::sign(&method, &uri, &mut h, &creds, std::time::SystemTime::now());
        (url, h)
    };
    // Malformed XML.
    let (url, h) = signed(
        Method::POST,
        &format!("/limits/m?uploadId={id}", id = "0".repeat(64)),
        b"<Complete",
        &[],
    );
    let (status, text) = http_with("POST", &url, &h, b"<Complete");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("MalformedXML"), "{text}");
    let (url, h) = signed(Method::POST, "/limits?delete", b"<Delete><Object>", &[]);
    let (status, text) = http_with("POST", &url, &h, b"<Delete><Object>");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("MalformedXML"), "{text}");
    // A body that does not match its signed hash.
    let (url, h) = signed(Method::PUT, "/limits/tampered", b"good", &[]);
    let (status, text) = http_with("PUT", &url, &h, b"evil");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("XAmzContentSHA256Mismatch"), "{text}");
    // Huge headers.
    let big = "v".repeat(64 << 10);
    let (url, h) = signed(Method::GET, "/limits/x", b"", &[("x-amz-meta-big", big)]);
    let (status, _) = http_with("GET", &url, &h, b"");
    assert!((400..500).contains(&status), "huge headers: {status}");
    // A truncated body (the client announces 5 MiB, sends 1 MiB and closes).
    {
        use std::io::Write;
        let body = data(5 << 20, 1);
        let (url, h) = signed(Method::PUT, "/limits/truncated", &body, &[]);
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let mut req = format!("PUT {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in &h {
            req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(&body[..1 << 20]).unwrap();
        drop(s);
    }
    // Nothing of those is visible; the node is still serving.
    env.block_on(async {
        for k in ["tampered", "truncated"] {
            let e = c
                .head_object()
                .bucket("limits")
                .key(k)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.raw_response().unwrap().status().as_u16(), 404, "{k}");
        }
        let l = c.list_objects_v2().bucket("limits").send().await.unwrap();
        assert_eq!(l.key_count(), Some(1));
    });
}

/// A node whose clock is 30 s behind writes a key right after another node did: its write still wins
/// (a replica reports the newer version it had, and the write lands above it), for PUT and DELETE.
#[test]
fn a_node_with_a_late_clock_does_not_lose_writes() {
    let mut env = S3Env::start("");
    env.procs[1].kill();
    env.procs[1].spec.env = vec![(
        grenier::util::time::CLOCK_OFFSET_ENV.to_string(),
        "-30000".to_string(),
    )];
    env.procs[1].restart();
    wait_for("node 1 back in the mesh", Duration::from_secs(30), || {
        env.procs[0]
            .status()
            .is_some_and(|s| up_ids(&s).len() == 3)
            .then_some(())
    });
    let (a, late, c) = (env.client(0), env.client(1), env.client(2));
    env.block_on(async {
        a.create_bucket().bucket("clock").send().await.unwrap();
        for (i, size) in [10usize, 2 * 1024 * 1024].into_iter().enumerate() {
            let key = format!("k{i}");
            a.put_object()
                .bucket("clock")
                .key(&key)
                .body(ByteStream::from(data(size, 1)))
                .send()
                .await
                .unwrap();
            late.put_object()
                .bucket("clock")
                .key(&key)
                .body(ByteStream::from(data(size, 2)))
                .send()
                .await
                .unwrap();
            let got = c
                .get_object()
                .bucket("clock")
                .key(&key)
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert!(
                bytes[..] == data(size, 2)[..],
                "{key}: the later write must win"
            );
        }
        a.put_object()
            .bucket("clock")
            .key("gone")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
        late.delete_object()
            .bucket("clock")
            .key("gone")
            .send()
            .await
            .unwrap();
        let e = c
            .get_object()
            .bucket("clock")
            .key("gone")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "NoSuchKey");
    });
}

/// Smaller corners of the API: versioning status, url-encoded listings, fetch-owner, response-*
/// overrides, GET by part number of a simple object.
#[test]
fn listing_encoding_owner_and_response_overrides() {
    use aws_sdk_s3::types::EncodingType;
    let env = S3Env::start("");
    let c = env.client(1);
    env.block_on(async {
        c.create_bucket().bucket("corners").send().await.unwrap();
        let v = c
            .get_bucket_versioning()
            .bucket("corners")
            .send()
            .await
            .unwrap();
        assert!(v.status().is_none(), "versioning never enabled");
        for k in ["a b/one", "a b/two", "plus+and%percent", "é"] {
            c.put_object()
                .bucket("corners")
                .key(k)
                .content_type("text/plain")
                .body(ByteStream::from_static(b"data"))
                .send()
                .await
                .unwrap();
        }
        // With encoding-type=url, keys and prefixes come percent-encoded (the Rust SDK leaves them so;
        // boto3 decodes them, see script/smoke_boto3.py).
        let l = c
            .list_objects()
            .bucket("corners")
            .encoding_type(EncodingType::Url)
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let keys: Vec<&str> = l.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, vec!["plus%2Band%25percent", "%C3%A9"]);
        let prefixes: Vec<&str> = l
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        assert_eq!(prefixes, vec!["a%20b/"]);
        assert!(l.contents()[0].owner().is_some(), "v1 always lists owners");
        let v2 = c.list_objects_v2().bucket("corners").send().await.unwrap();
        assert!(v2.contents()[0].owner().is_none());
        let v2 = c
            .list_objects_v2()
            .bucket("corners")
            .fetch_owner(true)
            .send()
            .await
            .unwrap();
        assert_eq!(
            v2.contents()[0].owner().unwrap().id(),
            Some(env.key_id.as_str())
        );
        let got = c
            .get_object()
            .bucket("corners")
            .key("é")
            .response_content_type("image/png")
            .response_content_disposition("attachment; filename=\"x.png\"")
            .response_cache_control("no-cache")
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some("image/png"));
        assert_eq!(
            got.content_disposition(),
            Some("attachment; filename=\"x.png\"")
        );
        assert_eq!(got.cache_control(), Some("no-cache"));
        let p1 = c
            .get_object()
            .bucket("corners")
            .key("é")
            .part_number(1)
            .send()
            .await
            .unwrap();
        assert_eq!(&p1.body.collect().await.unwrap().into_bytes()[..], b"data");
        let e = c
            .get_object()
            .bucket("corners")
            .key("é")
            .part_number(2)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidPart");
    });
}
