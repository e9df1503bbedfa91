//! Object tagging: GetObjectTagging, PutObjectTagging, DeleteObjectTagging, and the `x-amz-tagging`
//! header of PutObject, CreateMultipartUpload and CopyObject (with `x-amz-tagging-directive:
//! REPLACE`). Tags are a register of the object's current version, changed without touching its data.
//!
//! S3's rules, checked on every way in (`InvalidTag`, 400): at most 10 tags, keys unique, a key 1 to
//! 128 characters and a value 0 to 256 (counted in UTF-16 code units, as AWS counts), no key starting
//! with the reserved `aws:` prefix.

use bytes::Bytes;
use hyper::{Response, StatusCode};

use super::access::parse_canned_acl;
use super::ctx::{
    Ctx, ResBody, check_small_body_digests, current_version, current_version_only, empty, full,
    internal, no_such_key, respond, small_body, xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml;
use crate::model::object::{CannedAcl, Tags, VersionAttrs};
use crate::util::url;

/// Most tags on an object (S3's limit).
pub const MAX_TAGS: usize = 10;
/// Longest tag key, in UTF-16 code units (S3's limit).
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value, in UTF-16 code units (S3's limit).
pub const MAX_TAG_VALUE: usize = 256;

fn invalid_tag(message: impl Into<String>) -> S3Error {
    err(S3ErrorCode::InvalidTag, message)
}

/// Check a tag set against S3's rules.
pub fn validate(tags: Tags) -> Result<Tags, S3Error> {
    if tags.len() > MAX_TAGS {
        return Err(invalid_tag("Object tags cannot be greater than 10"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        let klen = k.encode_utf16().count();
        if klen == 0 || klen > MAX_TAG_KEY {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if v.encode_utf16().count() > MAX_TAG_VALUE {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if k.starts_with("aws:") {
            return Err(invalid_tag(
                "Your TagKey cannot be prefixed with aws: (the prefix is reserved)",
            ));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(tags)
}

/// An `x-amz-tagging` header: URL query form (`k1=v1&k2=v2`, form-encoded), checked.
pub fn parse_tagging_header(v: &str) -> Result<Tags, S3Error> {
    let tags = url::decode_query(v)
        .collect::<Result<Tags, _>>()
        .map_err(|_| invalid_tag("The x-amz-tagging header is not a valid URL-encoded query"))?;
    validate(tags)
}

/// The tags and canned ACL a creating request asks for (`x-amz-tagging`, `x-amz-acl`), as the
/// attributes of the new version.
pub fn requested_attrs(ctx: &Ctx) -> Result<VersionAttrs, S3Error> {
    let tags = match ctx.headers.get("x-amz-tagging") {
        None => vec![],
        Some(v) => parse_tagging_header(
            v.to_str()
                .map_err(|_| invalid_tag("The x-amz-tagging header is not valid"))?,
        )?,
    };
    let acl = match ctx.header("x-amz-acl") {
        None => CannedAcl::Private,
        Some(v) => parse_canned_acl(v)?,
    };
    Ok(VersionAttrs::new(ctx.model().node, tags, acl))
}

pub async fn get_object_tagging(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let v = current_version(ctx).await?;
    Ok(xml_response(xml::tagging_xml(v.tag_set())))
}

pub async fn put_object_tagging(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    current_version_only(ctx)?;
    let body = small_body(ctx, ctx.state.xml_body_max).await?;
    check_small_body_digests(&ctx.headers, &body)?;
    let tags = validate(xml::parse_tagging(&body)?)?;
    set_tags(ctx, tags).await?;
    respond(
        Response::builder().status(StatusCode::OK),
        full(Bytes::new()),
    )
}

pub async fn delete_object_tagging(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    current_version_only(ctx)?;
    set_tags(ctx, vec![]).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn set_tags(ctx: &Ctx, tags: Tags) -> Result<(), S3Error> {
    ctx.model()
        .set_object_tags(&ctx.bucket().id, ctx.object_key(), tags)
        .await
        .map_err(internal)?
        .ok_or_else(|| no_such_key(ctx))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_rules() {
        assert!(validate(t(&[("a", ""), ("b", "c")])).is_ok());
        let ten: Tags = (0..10).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(validate(ten.clone()).is_ok());
        let mut eleven = ten;
        eleven.push(("k10".into(), "v".into()));
        let code = |r: Result<Tags, S3Error>| r.unwrap_err().code;
        assert_eq!(code(validate(eleven)), S3ErrorCode::InvalidTag);
        assert_eq!(code(validate(t(&[("", "v")]))), S3ErrorCode::InvalidTag);
        assert_eq!(
            code(validate(t(&[("a", "1"), ("a", "2")]))),
            S3ErrorCode::InvalidTag
        );
        assert_eq!(
            code(validate(t(&[("aws:x", "1")]))),
            S3ErrorCode::InvalidTag
        );
        let k128 = "é".repeat(128);
        assert!(validate(vec![(k128.clone(), "v".repeat(256))]).is_ok());
        assert_eq!(
            code(validate(vec![(format!("{k128}x"), "v".into())])),
            S3ErrorCode::InvalidTag
        );
        assert_eq!(
            code(validate(vec![("k".into(), "v".repeat(257))])),
            S3ErrorCode::InvalidTag
        );
        // A character outside the BMP counts twice, as in AWS's UTF-16 strings.
        assert_eq!(
            code(validate(vec![("😀".repeat(65), "v".into())])),
            S3ErrorCode::InvalidTag
        );
    }

    proptest::proptest! {
        /// Any tag set within the rules round-trips through GetObjectTagging's document and
        /// PutObjectTagging's parser, exactly (characters XML 1.0 allows).
        #[test]
        fn tag_documents_round_trip(
            tags in proptest::collection::btree_map(
                "[^\u{0}-\u{1F}\u{FFFE}\u{FFFF}]{1,20}", "[^\u{0}-\u{8}\u{B}\u{C}\u{E}-\u{1F}\u{FFFE}\u{FFFF}]{0,30}", 0..=10)
        ) {
            let tags: Tags = tags.into_iter().filter(|(k, _)| !k.starts_with("aws:")).collect();
            let doc = xml::tagging_xml(&tags);
            proptest::prop_assert_eq!(validate(xml::parse_tagging(doc.as_bytes()).unwrap()).unwrap(), tags);
        }
    }

    #[test]
    fn tagging_header() {
        assert_eq!(
            parse_tagging_header("a=1&b%20c=x+y&empty=&bare").unwrap(),
            t(&[("a", "1"), ("b c", "x y"), ("empty", ""), ("bare", "")])
        );
        assert!(parse_tagging_header("").unwrap().is_empty());
        for bad in ["a=%zz", "a=1&a=2", "aws:k=v"] {
            assert_eq!(
                parse_tagging_header(bad).unwrap_err().code,
                S3ErrorCode::InvalidTag,
                "{bad}"
            );
        }
    }
}
