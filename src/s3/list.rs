//! ListObjects (v1) and ListObjectsV2: prefix, delimiter and common prefixes, markers, continuation
//! tokens, start-after, max-keys, encoding-type=url, fetch-owner.
//!
//! The object table is read in key order from the first possible key, in pages; keys sharing a
//! common prefix are folded into it, and the read skips past them. Every listed key or common prefix
//! counts toward max-keys. A continuation token names the last item returned (a key, or a common
//! prefix, whose keys are then all skipped).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::Response;

use super::bucket::owner_of;
use super::ctx::{Ctx, ResBody, internal, xml_response};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::Op;
use super::xml::{ListBucketResultV1, ListBucketResultV2, ObjectSummary};
use crate::model::ops::meta_of;

/// Most keys per listing (as AWS).
pub const MAX_KEYS: usize = 1000;
/// Objects read from the table per round.
const PAGE: usize = 1000;

/// Where a listing resumes: after a key, or after every key under a common prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
enum After {
    Key(String),
    Prefix(String),
}

/// One item of a listing.
enum Item {
    Object(ObjectSummary),
    Prefix(String),
}

/// Result of a listing pass.
struct Listed {
    items: Vec<Item>,
    truncated: bool,
    last: Option<After>,
}

fn encode_token(a: &After) -> String {
    let s = match a {
        After::Key(k) => format!("k{k}"),
        After::Prefix(p) => format!("p{p}"),
    };
    URL_SAFE_NO_PAD.encode(s)
}

/// AWS's answer to a continuation token it did not issue.
fn bad_token() -> S3Error {
    err(
        S3ErrorCode::InvalidArgument,
        "The continuation token provided is incorrect",
    )
    .with("ArgumentName", "continuation-token")
}

fn decode_token(t: &str) -> Result<After, S3Error> {
    let raw = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad_token())?;
    let s = String::from_utf8(raw).map_err(|_| bad_token())?;
    match s.split_at_checked(1) {
        Some(("k", k)) => Ok(After::Key(k.into())),
        Some(("p", p)) => Ok(After::Prefix(p.into())),
        _ => Err(bad_token()),
    }
}

/// `encoding-type`: absent, or `url` (keys and prefixes percent-encoded in the answer); anything
/// else is `InvalidArgument`, as on AWS. Shared by every listing that takes it.
pub fn url_encoding(q: &std::collections::BTreeMap<String, String>) -> Result<bool, S3Error> {
    match q.get("encoding-type").map(String::as_str) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(err(
            S3ErrorCode::InvalidArgument,
            "Invalid Encoding Method specified in Request",
        )
        .with("ArgumentName", "encoding-type")),
    }
}

pub async fn list_objects(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let q = &ctx.route.query;
    let v2 = ctx.route.op == Op::ListObjectsV2;
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
    let max_keys = match q.get("max-keys") {
        Some(m) => m.parse::<usize>().map_err(|_| {
            err(
                S3ErrorCode::InvalidArgument,
                "Provided max-keys not an integer or within integer range",
            )
            .with("ArgumentName", "max-keys")
        })?,
        None => MAX_KEYS,
    }
    .min(MAX_KEYS);
    let url = url_encoding(q)?;
    let token = if v2 {
        q.get("continuation-token")
            .map(|t| decode_token(t))
            .transpose()?
    } else {
        None
    };
    let marker = if v2 {
        q.get("start-after").cloned()
    } else {
        q.get("marker").cloned()
    };
    let after = token
        .clone()
        .or(marker.clone().filter(|m| !m.is_empty()).map(After::Key));
    let with_owner = !v2 || q.get("fetch-owner").map(String::as_str) == Some("true");
    let listed = list(
        ctx,
        &prefix,
        delimiter.as_deref(),
        max_keys,
        after,
        with_owner,
    )
    .await?;
    let (mut contents, mut common_prefixes) = (vec![], vec![]);
    for i in listed.items {
        match i {
            Item::Object(o) => contents.push(o),
            Item::Prefix(p) => common_prefixes.push(p),
        }
    }
    let name = ctx.bucket_name().to_string();
    let xml = if v2 {
        ListBucketResultV2 {
            name,
            prefix,
            start_after: q.get("start-after").cloned(),
            continuation_token: q.get("continuation-token").cloned(),
            next_continuation_token: listed
                .truncated
                .then(|| listed.last.as_ref().map(encode_token))
                .flatten(),
            max_keys: max_keys as u32,
            delimiter,
            url_encoding: url,
            is_truncated: listed.truncated,
            contents,
            common_prefixes,
        }
        .to_xml()
    } else {
        let next_marker = (listed.truncated && delimiter.is_some())
            .then(|| match &listed.last {
                Some(After::Key(k) | After::Prefix(k)) => Some(k.clone()),
                None => None,
            })
            .flatten();
        ListBucketResultV1 {
            name,
            prefix,
            marker: marker.unwrap_or_default(),
            next_marker,
            max_keys: max_keys as u32,
            delimiter,
            url_encoding: url,
            is_truncated: listed.truncated,
            contents,
            common_prefixes,
        }
        .to_xml()
    };
    Ok(xml_response(xml))
}

/// Walk the bucket's objects in key order and fold them into at most `max` items.
async fn list(
    ctx: &Ctx,
    prefix: &str,
    delimiter: Option<&str>,
    max: usize,
    after: Option<After>,
    with_owner: bool,
) -> Result<Listed, S3Error> {
    let model = ctx.model();
    let bucket = ctx.bucket().id;
    let owner = with_owner.then(|| owner_of(ctx));
    let mut out = Listed {
        items: vec![],
        truncated: false,
        last: None,
    };
    // First key to read, and what to skip at the start.
    let mut cursor = match &after {
        Some(After::Key(k)) => format!("{k}\u{0}"),
        Some(After::Prefix(p)) => format!("{p}\u{10FFFF}"),
        None => String::new(),
    };
    if cursor.as_str() < prefix {
        cursor = prefix.to_string();
    }
    let mut last_prefix: Option<String> = match &after {
        Some(After::Prefix(p)) => Some(p.clone()),
        _ => None,
    };
    if max == 0 {
        return Ok(out);
    }
    loop {
        let page = model
            .list_objects(&bucket, Some(&cursor), PAGE)
            .await
            .map_err(internal)?;
        let full_page = page.len() >= PAGE;
        let mut next_cursor = None;
        for o in page {
            if !o.key.starts_with(prefix) {
                if o.key.as_str() > prefix {
                    return Ok(out);
                }
                continue;
            }
            let rest = &o.key[prefix.len()..];
            let common = delimiter.and_then(|d| {
                rest.find(d)
                    .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            if let Some(cp) = common {
                if last_prefix.as_deref() == Some(&cp) {
                    next_cursor = Some(format!("{cp}\u{10FFFF}"));
                    continue;
                }
                if out.items.len() >= max {
                    out.truncated = true;
                    return Ok(out);
                }
                last_prefix = Some(cp.clone());
                out.last = Some(After::Prefix(cp.clone()));
                out.items.push(Item::Prefix(cp.clone()));
                // The next page skips the rest of this common prefix.
                next_cursor = Some(format!("{cp}\u{10FFFF}"));
                continue;
            }
            if out.items.len() >= max {
                out.truncated = true;
                return Ok(out);
            }
            next_cursor = Some(format!("{}\u{0}", o.key));
            let Some(v) = o.current() else { continue };
            let Some(meta) = meta_of(v) else { continue };
            out.last = Some(After::Key(o.key.clone()));
            out.items.push(Item::Object(ObjectSummary {
                key: o.key.clone(),
                last_modified_msec: v.timestamp.msec,
                etag: meta.etag.clone(),
                size: meta.size,
                owner: owner.clone(),
                checksum_algorithm: meta.checksum.as_ref().map(|c| c.0.clone()),
                checksum_type: meta.checksum.as_ref().map(|_| "FULL_OBJECT".to_string()),
            }));
        }
        match next_cursor {
            Some(c) if full_page => cursor = c,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for a in [After::Key("a/b c%é".into()), After::Prefix("dir/".into())] {
            assert_eq!(decode_token(&encode_token(&a)).unwrap(), a);
        }
        assert!(decode_token("!!").is_err());
    }
}
