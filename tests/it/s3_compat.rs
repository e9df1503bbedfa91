//! The smaller differences from AWS (issue 11, point 7, and wrong digests from point 6), each as a
//! client sees it through aws-sdk-s3, or as raw HTTP signed with the project's own signer where the
//! SDK cannot produce the request: ListBuckets pagination, `encoding-type=url` listings of keys with
//! control characters, non-ASCII user metadata, presigned URL lifetimes, and BadDigest.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use grenier::s3::sigv4;
use grenier::util::rfc2047;
use grenier::util::url::{self, Plus};
use hyper::header::HeaderMap;
use hyper::{Method, Uri};

use crate::hostile::{Signer, head_of, raw};
use crate::s3::S3Env;

/// Status, code and message of a failed SDK call.
fn failure<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (u16, String, String) {
    (
        e.raw_response().map_or(0, |r| r.status().as_u16()),
        e.code().unwrap_or("").to_string(),
        e.message().unwrap_or("").to_string(),
    )
}

/// The error code of a failed SDK call.
fn code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> String {
    failure(e).1
}

/// The keys of a listing, percent-decoded (`encoding-type=url`).
fn decoded<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    keys.into_iter()
        .map(|k| url::decode(k, Plus::Literal).unwrap())
        .collect()
}

#[test]
fn list_buckets_pages_and_url_encoded_listings() {
    use aws_sdk_s3::operation::list_buckets::ListBucketsOutput;
    let env = S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        for b in ["pg-c", "pg-a", "other", "pg-b"] {
            c.create_bucket().bucket(b).send().await.unwrap();
        }
        let names = |o: &ListBucketsOutput| -> Vec<String> {
            o.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string))
                .collect()
        };
        // No parameters: every bucket, one page, as before.
        let all = c.list_buckets().send().await.unwrap();
        assert_eq!(names(&all), ["other", "pg-a", "pg-b", "pg-c"]);
        assert_eq!(all.continuation_token(), None);
        assert_eq!(all.prefix(), None);
        assert_eq!(all.buckets()[0].bucket_region(), Some("garage"));
        // Pages of two: a token while more remain, none on the last page.
        let p1 = c.list_buckets().max_buckets(2).send().await.unwrap();
        assert_eq!(names(&p1), ["other", "pg-a"]);
        let token = p1.continuation_token().expect("a next page");
        let p2 = c
            .list_buckets()
            .max_buckets(2)
            .continuation_token(token)
            .send()
            .await
            .unwrap();
        assert_eq!(names(&p2), ["pg-b", "pg-c"]);
        assert_eq!(p2.continuation_token(), None);
        // A prefix filters, and is echoed.
        let pre = c
            .list_buckets()
            .prefix("pg-")
            .max_buckets(2)
            .send()
            .await
            .unwrap();
        assert_eq!(names(&pre), ["pg-a", "pg-b"]);
        assert_eq!(pre.prefix(), Some("pg-"));
        assert!(pre.continuation_token().is_some());
        // The SDK's paginator walks every page.
        let paged: Vec<String> = c
            .list_buckets()
            .max_buckets(1)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .unwrap()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect();
        assert_eq!(paged, names(&all));
        // Every bucket is in the cluster's one region.
        let here = c.list_buckets().bucket_region("garage").send().await;
        assert_eq!(names(&here.unwrap()), names(&all));
        let elsewhere = c.list_buckets().bucket_region("us-east-1").send().await;
        assert!(names(&elsewhere.unwrap()).is_empty());
        for bad in [0, 10001, -1] {
            let e = c.list_buckets().max_buckets(bad).send().await.unwrap_err();
            assert_eq!(code(&e), "InvalidArgument");
        }
        let e = c
            .list_buckets()
            .continuation_token("!!")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument");

        // Keys with control characters, listed with encoding-type=url, come back exactly.
        let keys = [
            "a b/+%",
            "ctl\u{1}one",
            "line\nbreak",
            "tab\tand\u{7f}",
            "é\u{1f}",
        ];
        for k in keys {
            c.put_object()
                .bucket("pg-a")
                .key(k)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap();
        }
        let v2 = c
            .list_objects_v2()
            .bucket("pg-a")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            decoded(v2.contents().iter().filter_map(|o| o.key())),
            keys.to_vec()
        );
        assert_eq!(v2.contents()[1].key(), Some("ctl%01one"));
        // StartAfter is encoded too.
        let v2 = c
            .list_objects_v2()
            .bucket("pg-a")
            .encoding_type(EncodingType::Url)
            .start_after("line\nbreak")
            .send()
            .await
            .unwrap();
        assert_eq!(v2.start_after(), Some("line%0Abreak"));
        assert_eq!(
            decoded(v2.contents().iter().filter_map(|o| o.key())),
            ["tab\tand\u{7f}", "é\u{1f}"]
        );
        // ListObjects (v1): Marker, Delimiter, CommonPrefixes and NextMarker are encoded.
        let v1 = c
            .list_objects()
            .bucket("pg-a")
            .encoding_type(EncodingType::Url)
            .marker("ctl\u{1}one")
            .delimiter("\n")
            .max_keys(1)
            .send()
            .await
            .unwrap();
        assert_eq!(v1.marker(), Some("ctl%01one"));
        assert_eq!(v1.delimiter(), Some("%0A"));
        let prefixes: Vec<&str> = v1
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        assert_eq!(prefixes, ["line%0A"]);
        assert_eq!(v1.next_marker(), Some("line%0A"));
        // Without encoding-type: what XML 1.0 can carry comes back exactly (line breaks and tabs as
        // character references); C0 controls it cannot carry become U+FFFD.
        let plain = c.list_objects_v2().bucket("pg-a").send().await.unwrap();
        let plain: Vec<&str> = plain.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(
            plain,
            [
                "a b/+%",
                "ctl\u{FFFD}one",
                "line\nbreak",
                "tab\tand\u{7f}",
                "é\u{FFFD}"
            ]
        );
        // ListMultipartUploads encodes its keys as well; an unknown encoding-type is refused.
        let up = c
            .create_multipart_upload()
            .bucket("pg-a")
            .key("up\u{2}load")
            .send()
            .await
            .unwrap();
        let l = c
            .list_multipart_uploads()
            .bucket("pg-a")
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .unwrap();
        let uploads: Vec<&str> = l.uploads().iter().filter_map(|u| u.key()).collect();
        assert_eq!(uploads, ["up%02load"]);
        let base64 = || EncodingType::from("base64");
        let e = c
            .list_multipart_uploads()
            .bucket("pg-a")
            .encoding_type(base64())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument");
        let e = c
            .list_objects_v2()
            .bucket("pg-a")
            .encoding_type(base64())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument");
        c.abort_multipart_upload()
            .bucket("pg-a")
            .key("up\u{2}load")
            .upload_id(up.upload_id().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// A header-signed request whose extra headers may hold any bytes: status and whole response.
fn send_bytes(
    s: &Signer,
    method: &str,
    path: &str,
    body: &[u8],
    extra: &[(&str, &[u8])],
) -> (u16, String) {
    let h = s.sign_bytes(method, path, body, extra);
    raw(&s.addr(), &head_of(method, path, &h, body.len()), body)
}

/// AWS stores `x-amz-meta-*` values decoded from RFC 2047 and returns those that are not plain
/// ASCII as `=?UTF-8?B?…?=`: what was sent encoded comes back byte for byte, what was sent as raw
/// UTF-8 (the Rust SDK does) or ISO-8859-1 (Python's http.client does) comes back encoded, and
/// decodes to the value sent. Nothing is dropped, nothing breaks the response.
#[test]
fn non_ascii_user_metadata_round_trips_as_on_aws() {
    let env = S3Env::start("");
    let c = env.client(1);
    let s = Signer { env: &env, node: 0 };
    let word = |v: &str| format!("=?UTF-8?B?{}?=", BASE64.encode(v));
    env.block_on(async {
        c.create_bucket().bucket("meta").send().await.unwrap();
        c.put_object()
            .bucket("meta")
            .key("k")
            .metadata("plain", "ascii only")
            .metadata("utf8", "été 日本")
            .metadata("encoded", word("ça va"))
            .metadata("crlf", word("a\r\nInjected: yes"))
            .content_disposition("attachment; filename=\"résumé.pdf\"")
            .body(ByteStream::from_static(b"data"))
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket("meta")
            .key("k")
            .send()
            .await
            .unwrap();
        let get = c.get_object().bucket("meta").key("k").send().await.unwrap();
        for (meta, disposition) in [
            (head.metadata().unwrap(), head.content_disposition()),
            (get.metadata().unwrap(), get.content_disposition()),
        ] {
            assert_eq!(meta["plain"], "ascii only");
            assert_eq!(meta["utf8"], word("été 日本"));
            assert_eq!(rfc2047::decode(meta["utf8"].as_bytes()), "été 日本");
            assert_eq!(meta["encoded"], word("ça va"));
            assert_eq!(meta["crlf"], word("a\r\nInjected: yes"));
            assert_eq!(disposition, Some("attachment; filename=\"résumé.pdf\""));
        }
    });
    // The decoded line break never reaches the response as one.
    let (status, text) = send_bytes(&s, "GET", "/meta/k", b"", &[]);
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("\r\ninjected"),
        "{text}"
    );
    // ISO-8859-1 bytes (not UTF-8), as Python's http.client sends "café".
    let (status, text) = send_bytes(
        &s,
        "PUT",
        "/meta/latin1",
        b"x",
        &[("x-amz-meta-l1", b"caf\xe9")],
    );
    assert_eq!(status, 200, "{text}");
    env.block_on(async {
        let head = c
            .head_object()
            .bucket("meta")
            .key("latin1")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap()["l1"], word("café"));
    });
    // The 2 KB limit counts the decoded value.
    let big = word(&"é".repeat(1100));
    let (status, text) = send_bytes(
        &s,
        "PUT",
        "/meta/big",
        b"x",
        &[("x-amz-meta-big", big.as_bytes())],
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>MetadataTooLarge</Code>"), "{text}");
}

/// Presigned URL lifetimes and wrong digests answer with AWS's codes, statuses and messages; and so
/// does an UploadPartCopy range past the end of its source (AWS: InvalidArgument, where some other
/// S3 servers answer InvalidRange).
#[test]
fn expired_presigned_urls_bad_digests_and_copy_ranges_answer_as_aws() {
    use aws_sdk_s3::presigning::PresigningConfig;
    let env = S3Env::start("");
    let c = env.client(0);
    let s = Signer { env: &env, node: 0 };
    env.block_on(async {
        c.create_bucket().bucket("digests").send().await.unwrap();
        c.put_object()
            .bucket("digests")
            .key("ten")
            .body(ByteStream::from_static(b"0123456789"))
            .send()
            .await
            .unwrap();
    });
    let get = |path_and_query: &str| {
        let head = format!("GET {path_and_query} HTTP/1.1\r\nHost: {}", s.addr());
        raw(&s.addr(), head.as_bytes(), b"")
    };
    let presigned = |expires: u64, at: SystemTime| {
        let path = "/digests/ten";
        let uri: Uri = format!("http://{}{path}", s.addr()).parse().unwrap();
        let q = sigv4::presign(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            &s.creds(),
            at,
            expires,
        );
        get(&format!("{path}?{q}"))
    };
    let now = SystemTime::now();
    let (status, text) = presigned(60, now);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
    let expired = |(status, text): (u16, String)| {
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
        assert!(
            text.contains("<Message>Request has expired</Message>"),
            "{text}"
        );
    };
    expired(presigned(0, now));
    expired(presigned(60, now - Duration::from_secs(3600)));
    let (status, text) = presigned(604_801, now);
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("<Code>AuthorizationQueryParametersError</Code>"),
        "{text}"
    );
    assert!(
        text.contains("X-Amz-Expires must be less than a week (in seconds) that is 604800"),
        "{text}"
    );
    // The SDK's presigning API, started an hour ago for one minute.
    let url = env.block_on(async {
        let conf = PresigningConfig::builder()
            .start_time(now - Duration::from_secs(3600))
            .expires_in(Duration::from_secs(60))
            .build()
            .unwrap();
        let req = c
            .get_object()
            .bucket("digests")
            .key("ten")
            .presigned(conf)
            .await
            .unwrap();
        req.uri().to_string()
    });
    let path = url.split_once(&s.addr()).unwrap().1.to_string();
    expired(get(&path));

    env.block_on(async {
        // Content-MD5 of other bytes: BadDigest, nothing stored.
        let other_md5 = BASE64.encode(<md5::Md5 as md5::Digest>::digest(b"other"));
        let e = c
            .put_object()
            .bucket("digests")
            .key("k")
            .content_md5(&other_md5)
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap_err();
        let md5_mismatch = (
            400,
            "BadDigest".to_string(),
            "The Content-MD5 you specified did not match what we received.".to_string(),
        );
        assert_eq!(failure(&e), md5_mismatch);
        // x-amz-checksum-* of other bytes: BadDigest naming the algorithm.
        let e = c
            .put_object()
            .bucket("digests")
            .key("k")
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap_err();
        let mismatch = |alg: &str| {
            (
                400,
                "BadDigest".to_string(),
                format!("The {alg} you specified did not match the calculated checksum."),
            )
        };
        assert_eq!(failure(&e), mismatch("CRC32"));
        let e = c
            .put_object()
            .bucket("digests")
            .key("k")
            .checksum_sha256(BASE64.encode([0u8; 32]))
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(&e), mismatch("SHA256"));
        // A value that is not base64 of the algorithm's length: InvalidRequest.
        let e = c
            .put_object()
            .bucket("digests")
            .key("k")
            .checksum_crc32("nope")
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            failure(&e),
            (
                400,
                "InvalidRequest".to_string(),
                "Value for x-amz-checksum-crc32 header is invalid.".to_string()
            )
        );
        let e = c
            .head_object()
            .bucket("digests")
            .key("k")
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(&e).0, 404, "no failed PUT stored anything");

        // UploadPart: the same checks. UploadPartCopy: a range past the source's end is
        // InvalidArgument, a range inside copies those bytes.
        let id = c
            .create_multipart_upload()
            .bucket("digests")
            .key("mp")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let e = c
            .upload_part()
            .bucket("digests")
            .key("mp")
            .upload_id(&id)
            .part_number(1)
            .content_md5(&other_md5)
            .body(ByteStream::from_static(b"payload"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(&e), md5_mismatch);
        let copy = |range: &'static str| {
            c.upload_part_copy()
                .bucket("digests")
                .key("mp")
                .upload_id(&id)
                .part_number(1)
                .copy_source("digests/ten")
                .copy_source_range(range)
                .send()
        };
        for range in ["bytes=5-10", "bytes=10-12", "bytes=4-3"] {
            let e = copy(range).await.unwrap_err();
            let (status, code, message) = failure(&e);
            assert_eq!((status, code.as_str()), (400, "InvalidArgument"), "{range}");
            assert_eq!(
                message, "Range specified is not valid for source object of size: 10",
                "{range}"
            );
        }
        let r = copy("bytes=2-5").await.unwrap();
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(b"2345"));
        assert_eq!(
            r.copy_part_result().unwrap().e_tag(),
            Some(format!("\"{md5}\"").as_str())
        );
        c.abort_multipart_upload()
            .bucket("digests")
            .key("mp")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
    });

    // DeleteObjects with a Content-MD5 of other bytes (the SDK always sends the right one).
    let body = b"<Delete><Object><Key>ten</Key></Object></Delete>";
    let other_md5 = BASE64.encode(<md5::Md5 as md5::Digest>::digest(b"other"));
    let (status, text) = s.send(
        "POST",
        "/digests?delete",
        body,
        &[("content-md5", &other_md5)],
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>BadDigest</Code>"), "{text}");
    let (status, text) = presigned(60, SystemTime::now());
    assert_eq!(status, 200, "the object is still there: {text}");
}
