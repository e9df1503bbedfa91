//! Checksums of multipart uploads and GetObjectAttributes through the AWS SDK on a real 3-node
//! cluster: the algorithm declared at CreateMultipartUpload, part checksums in ListParts, the
//! composite (`-N`) and full-object values at Complete, HEAD/GET with checksum mode, and
//! GetObjectAttributes with its part listing.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes,
};
use base64::Engine;
use md5::Digest;

use crate::s3::S3Env;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn crc32(data: &[u8]) -> Vec<u8> {
    (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32)
        .to_be_bytes()
        .to_vec()
}

fn crc64nvme(data: &[u8]) -> Vec<u8> {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data)
        .to_be_bytes()
        .to_vec()
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_string()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Uploads `parts` with the SDK computing `alg` checksums; returns the completed-part list (with
/// each part's checksum when `with_checksums`).
async fn upload_parts(
    c: &Client,
    key: &str,
    id: &str,
    alg: ChecksumAlgorithm,
    parts: &[&Vec<u8>],
    with_checksums: bool,
) -> Vec<CompletedPart> {
    let mut done = vec![];
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = c
            .upload_part()
            .bucket("cks")
            .key(key)
            .upload_id(id)
            .part_number(n)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from((*p).clone()))
            .send()
            .await
            .unwrap();
        let mut part = CompletedPart::builder()
            .part_number(n)
            .e_tag(r.e_tag().unwrap());
        if with_checksums {
            part = part
                .set_checksum_crc32(r.checksum_crc32().map(str::to_string))
                .set_checksum_crc64_nvme(r.checksum_crc64_nvme().map(str::to_string));
        }
        done.push(part.build());
    }
    done
}

/// GetObject with `x-amz-checksum-mode: ENABLED` (the SDK then checks a full-object value).
async fn get_with_checksum(c: &Client, key: &str) -> GetObjectOutput {
    c.get_object()
        .bucket("cks")
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap()
}

fn parts_of(parts: Vec<CompletedPart>) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build()
}

async fn create(c: &Client, key: &str, alg: ChecksumAlgorithm) -> String {
    c.create_multipart_upload()
        .bucket("cks")
        .key(key)
        .checksum_algorithm(alg)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string()
}

#[test]
fn multipart_checksums_and_object_attributes() {
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    let p1 = data(5 << 20, 1);
    let p2 = data(1000, 2);
    let whole: Vec<u8> = [p1.clone(), p2.clone()].concat();
    env.block_on(async {
        a.create_bucket().bucket("cks").send().await.unwrap();

        // COMPOSITE CRC32 (the default type for CRC32).
        let r = a
            .create_multipart_upload()
            .bucket("cks")
            .key("composite")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .unwrap();
        assert_eq!(r.checksum_algorithm(), Some(&ChecksumAlgorithm::Crc32));
        assert_eq!(r.checksum_type(), Some(&ChecksumType::Composite));
        let id = r.upload_id().unwrap().to_string();
        // A part with another algorithm is refused.
        let e = a
            .upload_part()
            .bucket("cks")
            .key("composite")
            .upload_id(&id)
            .part_number(1)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(p2.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidRequest");
        // A wrong part checksum is BadDigest.
        let e = a
            .upload_part()
            .bucket("cks")
            .key("composite")
            .upload_id(&id)
            .part_number(1)
            .checksum_crc32(b64(&crc32(b"something else")))
            .body(ByteStream::from(p2.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "BadDigest");
        let parts = upload_parts(
            &a,
            "composite",
            &id,
            ChecksumAlgorithm::Crc32,
            &[&p1, &p2],
            true,
        )
        .await;
        assert_eq!(parts[1].checksum_crc32(), Some(b64(&crc32(&p2)).as_str()));
        // ListParts (on another node) shows the algorithm, the type and each part's checksum.
        let l = b
            .list_parts()
            .bucket("cks")
            .key("composite")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(l.checksum_algorithm(), Some(&ChecksumAlgorithm::Crc32));
        assert_eq!(l.checksum_type(), Some(&ChecksumType::Composite));
        let listed: Vec<Option<&str>> = l.parts().iter().map(|p| p.checksum_crc32()).collect();
        assert_eq!(
            listed,
            vec![
                Some(b64(&crc32(&p1)).as_str()),
                Some(b64(&crc32(&p2)).as_str())
            ]
        );
        // COMPOSITE needs every part's checksum in the Complete request.
        let bare: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.part_number().unwrap())
                    .e_tag(p.e_tag().unwrap())
                    .build()
            })
            .collect();
        let e = a
            .complete_multipart_upload()
            .bucket("cks")
            .key("composite")
            .upload_id(&id)
            .multipart_upload(parts_of(bare))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidRequest");
        let done = a
            .complete_multipart_upload()
            .bucket("cks")
            .key("composite")
            .upload_id(&id)
            .multipart_upload(parts_of(parts))
            .send()
            .await
            .unwrap();
        let composite = format!("{}-2", b64(&crc32(&[crc32(&p1), crc32(&p2)].concat())));
        assert_eq!(done.checksum_crc32(), Some(composite.as_str()));
        assert_eq!(done.checksum_type(), Some(&ChecksumType::Composite));
        let h = b
            .head_object()
            .bucket("cks")
            .key("composite")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(h.checksum_crc32(), Some(composite.as_str()));
        assert_eq!(h.checksum_type(), Some(&ChecksumType::Composite));
        let g = get_with_checksum(&b, "composite").await;
        assert_eq!(g.checksum_crc32(), Some(composite.as_str()));
        assert_eq!(
            g.body.collect().await.unwrap().into_bytes().len(),
            whole.len()
        );

        // GetObjectAttributes, with the part listing paged by x-amz-max-parts.
        let attrs = b
            .get_object_attributes()
            .bucket("cks")
            .key("composite")
            .object_attributes(ObjectAttributes::Etag)
            .object_attributes(ObjectAttributes::Checksum)
            .object_attributes(ObjectAttributes::ObjectParts)
            .object_attributes(ObjectAttributes::StorageClass)
            .object_attributes(ObjectAttributes::ObjectSize)
            .max_parts(1)
            .send()
            .await
            .unwrap();
        assert_eq!(attrs.e_tag(), Some(done.e_tag().unwrap().trim_matches('"')));
        assert_eq!(attrs.object_size(), Some(whole.len() as i64));
        assert_eq!(attrs.storage_class().map(|s| s.as_str()), Some("STANDARD"));
        let ck = attrs.checksum().unwrap();
        assert_eq!(ck.checksum_crc32(), Some(composite.as_str()));
        assert_eq!(ck.checksum_type(), Some(&ChecksumType::Composite));
        let op = attrs.object_parts().unwrap();
        assert_eq!(op.total_parts_count(), Some(2));
        assert_eq!(op.is_truncated(), Some(true));
        assert_eq!(op.next_part_number_marker(), Some("1"));
        let sizes: Vec<_> = op
            .parts()
            .iter()
            .map(|p| (p.part_number(), p.size()))
            .collect();
        assert_eq!(sizes, vec![(Some(1), Some(p1.len() as i64))]);
        let attrs = a
            .get_object_attributes()
            .bucket("cks")
            .key("composite")
            .object_attributes(ObjectAttributes::ObjectParts)
            .part_number_marker("1")
            .send()
            .await
            .unwrap();
        assert!(attrs.e_tag().is_none() && attrs.checksum().is_none());
        let op = attrs.object_parts().unwrap();
        let sizes: Vec<_> = op
            .parts()
            .iter()
            .map(|p| (p.part_number(), p.size()))
            .collect();
        assert_eq!(sizes, vec![(Some(2), Some(p2.len() as i64))]);
        assert_eq!(op.is_truncated(), Some(false));
        let e = a
            .get_object_attributes()
            .bucket("cks")
            .key("composite")
            .version_id("v1")
            .object_attributes(ObjectAttributes::Etag)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "NotImplemented");
        // An SSE-C object's attributes need its key, as HEAD does.
        let k = [7u8; 32];
        let (key_b64, md5_b64) = (b64(&k), b64(&md5::Md5::digest(k)));
        a.put_object()
            .bucket("cks")
            .key("secret")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key_b64)
            .sse_customer_key_md5(&md5_b64)
            .body(ByteStream::from(p2.clone()))
            .send()
            .await
            .unwrap();
        let e = b
            .get_object_attributes()
            .bucket("cks")
            .key("secret")
            .object_attributes(ObjectAttributes::ObjectSize)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidRequest");
        let attrs = b
            .get_object_attributes()
            .bucket("cks")
            .key("secret")
            .object_attributes(ObjectAttributes::ObjectSize)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key_b64)
            .sse_customer_key_md5(&md5_b64)
            .send()
            .await
            .unwrap();
        assert_eq!(attrs.object_size(), Some(p2.len() as i64));
        let e = a
            .get_object_attributes()
            .bucket("cks")
            .key("missing")
            .object_attributes(ObjectAttributes::Etag)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "NoSuchKey");

        // FULL_OBJECT CRC64NVME (its only type): the CRC of the whole object, checked by the SDK
        // on GET.
        let id = create(&a, "full", ChecksumAlgorithm::Crc64Nvme).await;
        let parts = upload_parts(
            &a,
            "full",
            &id,
            ChecksumAlgorithm::Crc64Nvme,
            &[&p1, &p2],
            false,
        )
        .await;
        let expected = b64(&crc64nvme(&whole));
        let done = a
            .complete_multipart_upload()
            .bucket("cks")
            .key("full")
            .upload_id(&id)
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(&expected)
            .multipart_upload(parts_of(parts))
            .send()
            .await
            .unwrap();
        assert_eq!(done.checksum_crc64_nvme(), Some(expected.as_str()));
        assert_eq!(done.checksum_type(), Some(&ChecksumType::FullObject));
        let g = get_with_checksum(&b, "full").await;
        assert_eq!(g.checksum_crc64_nvme(), Some(expected.as_str()));
        assert_eq!(g.checksum_type(), Some(&ChecksumType::FullObject));
        assert_eq!(g.body.collect().await.unwrap().into_bytes().to_vec(), whole);

        // A whole-object checksum that does not match is BadDigest; the upload stays.
        let id = create(&a, "wrong", ChecksumAlgorithm::Crc64Nvme).await;
        let parts = upload_parts(
            &a,
            "wrong",
            &id,
            ChecksumAlgorithm::Crc64Nvme,
            &[&p2],
            false,
        )
        .await;
        let e = a
            .complete_multipart_upload()
            .bucket("cks")
            .key("wrong")
            .upload_id(&id)
            .checksum_crc64_nvme(b64(&crc64nvme(b"not the object")))
            .multipart_upload(parts_of(parts))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "BadDigest");
        a.abort_multipart_upload()
            .bucket("cks")
            .key("wrong")
            .upload_id(&id)
            .send()
            .await
            .unwrap();

        // CRC64NVME has no COMPOSITE type.
        let e = a
            .create_multipart_upload()
            .bucket("cks")
            .key("bad")
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::Composite)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidRequest");
    });
}
