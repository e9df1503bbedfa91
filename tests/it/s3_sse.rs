//! SSE-C (server-side encryption with customer-provided keys) through the AWS SDK, on a real 3-node
//! cluster: what is stored encrypted reads back only with its key, every AWS error case, multipart
//! uploads and copies between keys, and the bytes on disk never hold the plaintext.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use md5::Digest;

use crate::s3::S3Env;

/// Pseudo-random (incompressible) bytes: stored in clear, they would appear verbatim on disk.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// (base64 key, base64 MD5 of the key), as the SDK sends them.
fn key(seed: u8) -> (String, String) {
    let k = [seed; 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(k), b64.encode(md5::Md5::digest(k)))
}

/// `.sse_c(&key)` (and `.source_sse_c(&key)` on copies): the three SSE-C headers of a request.
trait SseC {
    fn sse_c(self, k: &(String, String)) -> Self;
}
trait SourceSseC {
    fn source_sse_c(self, k: &(String, String)) -> Self;
}

macro_rules! sse_c_builders {
    ($($module:ident :: $builder:ident),*) => {$(
        impl SseC for aws_sdk_s3::operation::$module::builders::$builder {
            fn sse_c(self, k: &(String, String)) -> Self {
                self.sse_customer_algorithm("AES256")
                    .sse_customer_key(&k.0)
                    .sse_customer_key_md5(&k.1)
            }
        }
    )*};
}
sse_c_builders!(
    put_object::PutObjectFluentBuilder,
    get_object::GetObjectFluentBuilder,
    head_object::HeadObjectFluentBuilder,
    create_multipart_upload::CreateMultipartUploadFluentBuilder,
    upload_part::UploadPartFluentBuilder,
    copy_object::CopyObjectFluentBuilder,
    upload_part_copy::UploadPartCopyFluentBuilder
);

macro_rules! source_sse_c_builders {
    ($($module:ident :: $builder:ident),*) => {$(
        impl SourceSseC for aws_sdk_s3::operation::$module::builders::$builder {
            fn source_sse_c(self, k: &(String, String)) -> Self {
                self.copy_source_sse_customer_algorithm("AES256")
                    .copy_source_sse_customer_key(&k.0)
                    .copy_source_sse_customer_key_md5(&k.1)
            }
        }
    )*};
}
source_sse_c_builders!(
    copy_object::CopyObjectFluentBuilder,
    upload_part_copy::UploadPartCopyFluentBuilder
);

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_string()
}

/// Whether any file under `dir` contains `needle`.
fn found_on_disk(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            found_on_disk(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

async fn get(
    c: &Client,
    b: &str,
    k: &str,
    key: Option<&(String, String)>,
) -> Result<Vec<u8>, String> {
    let mut r = c.get_object().bucket(b).key(k);
    if let Some(k) = key {
        r = r.sse_c(k);
    }
    match r.send().await {
        Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => Err(code(&e.into_service_error())),
    }
}

#[test]
fn sse_c_objects_read_back_only_with_their_key() {
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    let (k1, k2) = (key(1), key(2));
    let mib = 1024 * 1024;
    let small = noise(1000, 1);
    let big = noise(3 * mib + 123, 2);
    let plain = noise(3 * mib, 3);
    let tiny = noise(100, 6);
    env.block_on(async {
        a.create_bucket().bucket("enc").send().await.unwrap();
        for (name, body) in [("small", &small), ("big", &big)] {
            let put = a
                .put_object()
                .bucket("enc")
                .key(name)
                .body(ByteStream::from(body.clone()))
                .sse_c(&k1)
                .send()
                .await
                .unwrap();
            assert_eq!(put.sse_customer_algorithm(), Some("AES256"));
            assert_eq!(put.sse_customer_key_md5(), Some(k1.1.as_str()));
            let etag = put.e_tag().unwrap().trim_matches('"').to_string();
            assert_ne!(
                etag,
                hex::encode(md5::Md5::digest(body)),
                "the ETag of an encrypted object is not the MD5 of its plaintext"
            );
        }
        a.put_object()
            .bucket("enc")
            .key("plain")
            .body(ByteStream::from(plain.clone()))
            .send()
            .await
            .unwrap();

        // Reads: the right key from any node; no key, a wrong key, a key for a plain object: AWS's errors.
        assert_eq!(get(&b, "enc", "small", Some(&k1)).await.unwrap(), small);
        assert_eq!(get(&b, "enc", "big", Some(&k1)).await.unwrap(), big);
        assert_eq!(
            get(&a, "enc", "big", None).await.unwrap_err(),
            "InvalidRequest"
        );
        assert_eq!(
            get(&a, "enc", "big", Some(&k2)).await.unwrap_err(),
            "AccessDenied"
        );
        assert_eq!(
            get(&a, "enc", "small", Some(&k2)).await.unwrap_err(),
            "AccessDenied"
        );
        assert_eq!(
            get(&a, "enc", "plain", Some(&k1)).await.unwrap_err(),
            "InvalidRequest"
        );
        assert_eq!(get(&a, "enc", "plain", None).await.unwrap(), plain);
        let head = b
            .head_object()
            .bucket("enc")
            .key("big")
            .sse_c(&k1)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(big.len() as i64));
        assert_eq!(head.sse_customer_key_md5(), Some(k1.1.as_str()));
        let head = b.head_object().bucket("enc").key("big").send().await;
        assert_eq!(
            head.unwrap_err().raw_response().unwrap().status().as_u16(),
            400
        );

        // Ranges across block boundaries decrypt exactly the bytes asked for.
        for (lo, hi) in [
            (0usize, 0usize),
            (mib - 5, mib + 5),
            (2 * mib + 1, big.len() - 1),
        ] {
            let got = a
                .get_object()
                .bucket("enc")
                .key("big")
                .range(format!("bytes={lo}-{hi}"))
                .sse_c(&k1)
                .send()
                .await
                .unwrap();
            let got = got.body.collect().await.unwrap().into_bytes();
            assert_eq!(&got[..], &big[lo..=hi], "range {lo}-{hi}");
        }

        // Malformed key headers.
        let bad_md5 = a
            .put_object()
            .bucket("enc")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&k1.0)
            .sse_customer_key_md5(&k2.1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&bad_md5.into_service_error()), "InvalidArgument");
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let short_md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest([1u8; 16]));
        let bad_len = a
            .put_object()
            .bucket("enc")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(short)
            .sse_customer_key_md5(short_md5)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&bad_len.into_service_error()), "InvalidArgument");
        let bad_alg = a
            .put_object()
            .bucket("enc")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .sse_customer_algorithm("AES128")
            .sse_customer_key(&k1.0)
            .sse_customer_key_md5(&k1.1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code(&bad_alg.into_service_error()),
            "InvalidEncryptionAlgorithmError"
        );
        let managed = a
            .put_object()
            .bucket("enc")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&managed.into_service_error()), "NotImplemented");
        assert_eq!(
            get(&a, "enc", "x", None).await.unwrap_err(),
            "NoSuchKey",
            "nothing stored"
        );
    });

    // Multipart: every part carries the upload's key; a part with another key is refused.
    let parts = [noise(5 * mib, 4), noise(mib + 3, 5)];
    env.block_on(async {
        let id = a
            .create_multipart_upload()
            .bucket("enc")
            .key("mpu")
            .sse_c(&k1)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let wrong = b
            .upload_part()
            .bucket("enc")
            .key("mpu")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(parts[0].clone()))
            .sse_c(&k2)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&wrong.into_service_error()), "InvalidRequest");
        let none = b
            .upload_part()
            .bucket("enc")
            .key("mpu")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(parts[0].clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&none.into_service_error()), "InvalidRequest");
        let mut done = vec![];
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let r = b
                .upload_part()
                .bucket("enc")
                .key("mpu")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(p.clone()))
                .sse_c(&k1)
                .send()
                .await
                .unwrap();
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(r.e_tag().unwrap())
                    .build(),
            );
        }
        a.complete_multipart_upload()
            .bucket("enc")
            .key("mpu")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let whole = [parts[0].clone(), parts[1].clone()].concat();
        assert_eq!(get(&a, "enc", "mpu", Some(&k1)).await.unwrap(), whole);
        assert_eq!(
            get(&a, "enc", "mpu", None).await.unwrap_err(),
            "InvalidRequest"
        );

        // Copies: to another key (re-encrypted), to plain, from plain to a key, and a part copy.
        let copy = |src: &str, dst: &str| {
            a.copy_object()
                .bucket("enc")
                .key(dst)
                .copy_source(format!("enc/{src}"))
        };
        let denied = copy("big", "c0").send().await.unwrap_err();
        assert_eq!(
            code(&denied.into_service_error()),
            "InvalidRequest",
            "no source key"
        );
        copy("big", "c1")
            .source_sse_c(&k1)
            .sse_c(&k2)
            .send()
            .await
            .unwrap();
        assert_eq!(get(&b, "enc", "c1", Some(&k2)).await.unwrap(), big);
        assert_eq!(
            get(&b, "enc", "c1", Some(&k1)).await.unwrap_err(),
            "AccessDenied"
        );
        // (`small` itself stays encrypted only: the at-rest check below looks for its plaintext.)
        a.put_object()
            .bucket("enc")
            .key("tiny")
            .body(ByteStream::from(tiny.clone()))
            .sse_c(&k1)
            .send()
            .await
            .unwrap();
        copy("tiny", "c2").source_sse_c(&k1).send().await.unwrap();
        assert_eq!(get(&b, "enc", "c2", None).await.unwrap(), tiny);
        copy("mpu", "c3")
            .source_sse_c(&k1)
            .sse_c(&k1)
            .send()
            .await
            .unwrap();
        assert_eq!(
            get(&b, "enc", "c3", Some(&k1)).await.unwrap(),
            whole,
            "same key: shared"
        );
        copy("plain", "c4").sse_c(&k2).send().await.unwrap();
        assert_eq!(get(&b, "enc", "c4", Some(&k2)).await.unwrap(), plain);

        let id = a
            .create_multipart_upload()
            .bucket("enc")
            .key("pc")
            .sse_c(&k2)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let r = a
            .upload_part_copy()
            .bucket("enc")
            .key("pc")
            .upload_id(&id)
            .part_number(1)
            .copy_source("enc/big")
            .copy_source_range("bytes=10-2000009")
            .source_sse_c(&k1)
            .sse_c(&k2)
            .send()
            .await
            .unwrap();
        let etag = r.copy_part_result().unwrap().e_tag().unwrap().to_string();
        a.complete_multipart_upload()
            .bucket("enc")
            .key("pc")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            get(&b, "enc", "pc", Some(&k2)).await.unwrap(),
            big[10..2_000_010]
        );
    });

    // At rest: the plaintext of encrypted objects is nowhere on any node's disks; the plain object's is
    // (which shows the search would find it).
    let dirs: Vec<_> = env.procs.iter().map(|p| p.spec.dir.clone()).collect();
    let on_disk = |b: &[u8]| dirs.iter().any(|d| found_on_disk(d, b));
    assert!(
        on_disk(&plain[mib..mib + 64]),
        "the search finds stored plaintext"
    );
    for (what, body) in [("small", &small), ("big", &big), ("part", &parts[0])] {
        for at in [0, body.len() / 2] {
            assert!(
                !on_disk(&body[at..at + 64]),
                "plaintext of {what} at {at} found on disk"
            );
        }
    }
}
