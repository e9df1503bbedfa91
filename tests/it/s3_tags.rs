//! Object tagging through the AWS SDK: Get/Put/DeleteObjectTagging, `x-amz-tagging` on PutObject and
//! CreateMultipartUpload, the tagging directive of CopyObject, `x-amz-tagging-count`, S3's limits.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, Tag, Tagging, TaggingDirective,
};

use crate::s3::{S3Env, code, data};

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    let mut t = Tagging::builder();
    for (k, v) in pairs {
        t = t.tag_set(Tag::builder().key(*k).value(*v).build().unwrap());
    }
    t.build().unwrap()
}

async fn tags_of(c: &aws_sdk_s3::Client, key: &str) -> Vec<(String, String)> {
    let out = c
        .get_object_tagging()
        .bucket("tags")
        .key(key)
        .send()
        .await
        .unwrap();
    out.tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn object_tags_are_set_read_copied_and_checked() {
    let env = S3Env::start("");
    let (a, b, c) = (env.client(0), env.client(1), env.client(2));
    env.block_on(async {
        a.create_bucket().bucket("tags").send().await.unwrap();
        // x-amz-tagging on PutObject (URL-encoded query form), read back through other nodes.
        a.put_object()
            .bucket("tags")
            .key("photo")
            .tagging("project=grenier&kind=test%20one")
            .body(ByteStream::from_static(b"pixels"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags_of(&b, "photo").await,
            pairs(&[("project", "grenier"), ("kind", "test one")])
        );
        let head = c
            .head_object()
            .bucket("tags")
            .key("photo")
            .send()
            .await
            .unwrap();
        assert_eq!(head.tag_count(), Some(2));
        let etag = head.e_tag().unwrap().to_string();

        // PutObjectTagging replaces the set without touching the data.
        b.put_object_tagging()
            .bucket("tags")
            .key("photo")
            .tagging(tagging(&[("state", "published")]))
            .send()
            .await
            .unwrap();
        assert_eq!(tags_of(&c, "photo").await, pairs(&[("state", "published")]));
        let got = a
            .get_object()
            .bucket("tags")
            .key("photo")
            .send()
            .await
            .unwrap();
        assert_eq!(got.tag_count(), Some(1));
        assert_eq!(got.e_tag(), Some(etag.as_str()));
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"pixels"
        );

        // Tags and ACL changed at the same time through different nodes: both stay.
        let (t, acl) = tokio::join!(
            b.put_object_tagging()
                .bucket("tags")
                .key("photo")
                .tagging(tagging(&[("state", "archived")]))
                .send(),
            c.put_object_acl()
                .bucket("tags")
                .key("photo")
                .acl(ObjectCannedAcl::PublicRead)
                .send()
        );
        t.unwrap();
        acl.unwrap();
        assert_eq!(tags_of(&a, "photo").await, pairs(&[("state", "archived")]));
        let grants = a
            .get_object_acl()
            .bucket("tags")
            .key("photo")
            .send()
            .await
            .unwrap();
        assert_eq!(grants.grants().len(), 2, "owner and AllUsers: {grants:?}");

        // DeleteObjectTagging: no tags, no count.
        a.delete_object_tagging()
            .bucket("tags")
            .key("photo")
            .send()
            .await
            .unwrap();
        assert!(tags_of(&b, "photo").await.is_empty());
        let head = c
            .head_object()
            .bucket("tags")
            .key("photo")
            .send()
            .await
            .unwrap();
        assert_eq!(head.tag_count(), None);

        // S3's rules: InvalidTag, and nothing changed or stored.
        let eleven: Vec<(String, String)> =
            (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        let eleven: Vec<(&str, &str)> = eleven
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let long_key = "k".repeat(129);
        let long_value = "v".repeat(257);
        for bad in [
            eleven,
            vec![("a", "1"), ("a", "2")],
            vec![("aws:reserved", "1")],
            vec![(long_key.as_str(), "v")],
            vec![("k", long_value.as_str())],
        ] {
            let e = a
                .put_object_tagging()
                .bucket("tags")
                .key("photo")
                .tagging(tagging(&bad))
                .send()
                .await
                .unwrap_err();
            assert_eq!(code(&e), "InvalidTag", "{bad:?}");
        }
        assert!(tags_of(&b, "photo").await.is_empty());
        let e = a
            .put_object()
            .bucket("tags")
            .key("refused")
            .tagging("aws:x=1")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidTag");
        let e = a
            .head_object()
            .bucket("tags")
            .key("refused")
            .send()
            .await
            .unwrap_err();
        assert!(e.into_service_error().is_not_found());
        // No such key; a version other than the current one (versioning is not supported).
        for (key, version, expected) in [
            ("absent", None, "NoSuchKey"),
            ("photo", Some("3HL4kqtJlcpXroDTDmJ"), "InvalidArgument"),
        ] {
            let e = a
                .get_object_tagging()
                .bucket("tags")
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .unwrap_err();
            assert_eq!(code(&e), expected, "{key}");
        }

        // CopyObject: the source's tags by default (COPY), the request's with REPLACE.
        a.put_object()
            .bucket("tags")
            .key("src")
            .tagging("a=1")
            .body(ByteStream::from_static(b"source"))
            .send()
            .await
            .unwrap();
        for (dst, directive, header, expected) in [
            ("copied", None, None, pairs(&[("a", "1")])),
            (
                "replaced",
                Some(TaggingDirective::Replace),
                Some("b=2"),
                pairs(&[("b", "2")]),
            ),
            ("untagged", Some(TaggingDirective::Replace), None, vec![]),
        ] {
            b.copy_object()
                .bucket("tags")
                .key(dst)
                .copy_source("tags/src")
                .set_tagging_directive(directive)
                .set_tagging(header.map(str::to_string))
                .send()
                .await
                .unwrap();
            assert_eq!(tags_of(&c, dst).await, expected, "{dst}");
        }

        // CreateMultipartUpload: the tags carry into the completed object.
        let up = a
            .create_multipart_upload()
            .bucket("tags")
            .key("mpu")
            .tagging("kind=video")
            .send()
            .await
            .unwrap();
        let id = up.upload_id().unwrap();
        let part = b
            .upload_part()
            .bucket("tags")
            .key("mpu")
            .upload_id(id)
            .part_number(1)
            .body(ByteStream::from(data(1000, 3)))
            .send()
            .await
            .unwrap();
        c.complete_multipart_upload()
            .bucket("tags")
            .key("mpu")
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(part.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(tags_of(&a, "mpu").await, pairs(&[("kind", "video")]));
    });
}
