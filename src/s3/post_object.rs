//! PostObject: a browser form upload (`multipart/form-data`, `POST /bucket` or `POST /` on a
//! virtual host) authorized by a signed POST policy, as AWS's "browser-based uploads using POST".
//!
//! The request itself is unsigned: its credentials are form fields (`policy`, `x-amz-algorithm`,
//! `x-amz-credential`, `x-amz-date`, `x-amz-signature` = HMAC-SHA256 of the base64 policy with the
//! SigV4 signing key). The fields before `file` are read (bounded, `s3::form`), the signature and the
//! policy checked (expiration; every condition; every field covered by a condition), the key's Write
//! permission on the bucket checked, and only then is the file streamed into the object write path,
//! with the policy's `content-length-range` enforced while it streams: an upload outside the range is
//! refused and leaves no object.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::access::{Decision, ObjectAcl, Principal, decide, parse_canned_acl};
use super::body::Wanted;
use super::checksum::request_checksum;
use super::ctx::{Ctx, ResBody, full, internal, no_such_bucket, respond};
use super::error::{S3Error, S3ErrorCode, err};
use super::form;
use super::object::{MAX_PUT_SIZE, etag_of, headers_to_store, store_stream};
use super::router::{MAX_KEY_LEN, Op};
use super::sigv4;
use super::sse::{self, KeyFor};
use super::xml::xml_escape;
use crate::model::bucket::Bucket;
use crate::model::key::Key;
use crate::model::object::{CannedAcl, ObjectMeta, VersionAttrs};
use crate::model::sse::CustomerKey;
use crate::util::url;

/// Form fields stored as the object's headers (as PutObject's request headers).
const STORED_FIELDS: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// One condition of a POST policy. Field names are lowercase, without the `$`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Eq(String, String),
    StartsWith(String, String),
    LengthRange(u64, u64),
}

impl Condition {
    /// As AWS shows it in "Policy Condition failed: …".
    fn describe(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        match self {
            Condition::Eq(f, v) => format!("[\"eq\", {}, {}]", q(&format!("${f}")), q(v)),
            Condition::StartsWith(f, v) => {
                format!("[\"starts-with\", {}, {}]", q(&format!("${f}")), q(v))
            }
            Condition::LengthRange(a, b) => format!("[\"content-length-range\", {a}, {b}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Seconds since the epoch.
    pub expiration: u64,
    pub conditions: Vec<Condition>,
}

fn invalid_policy(detail: &str) -> S3Error {
    err(
        S3ErrorCode::InvalidPolicyDocument,
        format!("Invalid Policy: {detail}"),
    )
}

fn policy_denied(detail: &str) -> S3Error {
    err(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {detail}"),
    )
}

/// ISO 8601 in UTC as policies write it: `2007-12-01T12:00:00.000Z` (fraction optional).
fn parse_iso8601(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let frac_ok = frac.is_empty()
        || (frac.len() >= 2
            && frac.starts_with('.')
            && frac[1..].bytes().all(|c| c.is_ascii_digit()));
    if !frac_ok {
        return None;
    }
    let compact = format!(
        "{}{}{}T{}{}{}Z",
        &s[0..4],
        &s[5..7],
        &s[8..10],
        &s[11..13],
        &s[14..16],
        &s[17..19]
    );
    let t = crate::util::timefmt::parse_amz_date(&compact)?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// A number of a `content-length-range`: a JSON integer, or a string of digits.
fn length(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Decode and parse a policy (the base64 `policy` field).
pub fn parse_policy(b64: &str) -> Result<Policy, S3Error> {
    use serde_json::Value;
    let raw = base64::engine::general_purpose::STANDARD
        // Some encoders wrap base64 in lines: the signature covers them, the decoding skips them.
        .decode(
            b64.bytes()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<Vec<u8>>(),
        )
        .map_err(|_| invalid_policy("Policy is not valid base64."))?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|_| invalid_policy("Invalid JSON."))?;
    let doc = doc
        .as_object()
        .ok_or_else(|| invalid_policy("Invalid JSON."))?;
    let expiration = match doc.get("expiration") {
        None => return Err(invalid_policy("Policy missing expiration.")),
        Some(v) => v
            .as_str()
            .and_then(parse_iso8601)
            .ok_or_else(|| invalid_policy(&format!("Invalid 'expiration' value: {v}")))?,
    };
    let list = doc
        .get("conditions")
        .ok_or_else(|| invalid_policy("Policy missing conditions."))?
        .as_array()
        .ok_or_else(|| invalid_policy("Policy conditions must be a list."))?;
    let mut conditions = vec![];
    for c in list {
        let bad = || invalid_policy(&format!("Invalid Policy condition: {c}"));
        match c {
            Value::Object(m) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(bad)?;
                    let k = k.strip_prefix('$').unwrap_or(k);
                    conditions.push(Condition::Eq(k.to_ascii_lowercase(), v.to_string()));
                }
            }
            Value::Array(a) => {
                let op = a.first().and_then(Value::as_str).ok_or_else(bad)?;
                if op.eq_ignore_ascii_case("content-length-range") {
                    let [_, min, max] = a.as_slice() else {
                        return Err(bad());
                    };
                    let (min, max) = (length(min).ok_or_else(bad)?, length(max).ok_or_else(bad)?);
                    conditions.push(Condition::LengthRange(min, max));
                    continue;
                }
                let [_, field, value] = a.as_slice() else {
                    return Err(bad());
                };
                let field = field
                    .as_str()
                    .and_then(|f| f.strip_prefix('$'))
                    .ok_or_else(bad)?
                    .to_ascii_lowercase();
                let value = value.as_str().ok_or_else(bad)?.to_string();
                if op.eq_ignore_ascii_case("eq") {
                    conditions.push(Condition::Eq(field, value));
                } else if op.eq_ignore_ascii_case("starts-with") {
                    conditions.push(Condition::StartsWith(field, value));
                } else {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(Policy {
        expiration,
        conditions,
    })
}

/// Fields that need no condition (AWS's list), besides `x-ignore-*`.
fn exempt(field: &str) -> bool {
    matches!(field, "x-amz-signature" | "file" | "policy") || field.starts_with("x-ignore-")
}

/// Check a request's fields (lowercase names; `key` already with `${filename}` replaced) against a
/// policy at `now`: not expired, every condition holds (a condition on `bucket` is on the bucket
/// the request writes to), every field is covered by a condition. Returns the allowed length range
/// of the file (inclusive).
pub fn check_policy(
    policy: &Policy,
    fields: &BTreeMap<String, String>,
    bucket: &str,
    now: SystemTime,
) -> Result<(u64, u64), S3Error> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if now >= policy.expiration {
        return Err(policy_denied("Policy expired."));
    }
    let value = |f: &str| -> &str {
        if f == "bucket" {
            bucket
        } else {
            fields.get(f).map_or("", String::as_str)
        }
    };
    let mut range = (0, MAX_PUT_SIZE);
    for c in &policy.conditions {
        let ok = match c {
            Condition::Eq(f, v) => value(f) == v,
            // Content-Type may list several types: each must match.
            Condition::StartsWith(f, p) if f == "content-type" => value(f)
                .split(',')
                .all(|t| t.trim().starts_with(p.as_str())),
            Condition::StartsWith(f, p) => value(f).starts_with(p.as_str()),
            Condition::LengthRange(min, max) => {
                range = (range.0.max(*min), range.1.min(*max));
                true
            }
        };
        if !ok {
            return Err(policy_denied(&format!(
                "Policy Condition failed: {}",
                c.describe()
            )));
        }
    }
    let covered = |f: &str| {
        policy.conditions.iter().any(|c| match c {
            Condition::Eq(n, _) | Condition::StartsWith(n, _) => n == f,
            Condition::LengthRange(..) => false,
        })
    };
    let extra: Vec<&str> = fields
        .keys()
        .map(String::as_str)
        .filter(|f| !exempt(f) && !covered(f))
        .collect();
    if !extra.is_empty() {
        return Err(policy_denied(&format!(
            "Extra input fields: {}",
            extra.join(", ")
        )));
    }
    Ok(range)
}

fn missing_field(name: &str) -> S3Error {
    err(
        S3ErrorCode::InvalidArgument,
        format!(
            "Bucket POST must contain a field named '{name}'.  If it is specified, please check \
             the order of the fields."
        ),
    )
    .with("ArgumentName", name)
    .with("ArgumentValue", "")
}

/// `AK/yyyymmdd/region/service/aws4_request` → (access key, date, region, service).
fn parse_credential(c: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = c.rsplitn(5, '/');
    let (term, service, region, date, ak) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    (term == "aws4_request" && date_ok && !ak.is_empty()).then_some((ak, date, region, service))
}

/// Check the form's signature; returns the key that signed and the policy.
async fn authenticate(
    ctx: &Ctx,
    fields: &BTreeMap<String, String>,
) -> Result<(Key, Policy), S3Error> {
    let get = |n: &str| fields.get(n).map(String::as_str);
    if get("awsaccesskeyid").is_some() || get("signature").is_some() {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            "The authorization mechanism you have provided is not supported. Please use \
             AWS4-HMAC-SHA256.",
        ));
    }
    let auth_fields = [
        "policy",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-signature",
    ];
    if auth_fields.iter().all(|f| get(f).is_none()) {
        // Grenier has no publicly writable buckets.
        return Err(err(
            S3ErrorCode::AccessDenied,
            "Anonymous access is not allowed.",
        ));
    }
    for f in auth_fields {
        if get(f).is_none() {
            return Err(missing_field(f));
        }
    }
    let field = |n: &str| get(n).unwrap_or("");
    if field("x-amz-algorithm") != "AWS4-HMAC-SHA256" {
        return Err(err(
            S3ErrorCode::InvalidArgument,
            "Only the AWS4-HMAC-SHA256 algorithm is supported for POST requests.",
        )
        .with("ArgumentName", "x-amz-algorithm")
        .with("ArgumentValue", field("x-amz-algorithm")));
    }
    let bad_credential = || {
        err(
            S3ErrorCode::InvalidArgument,
            "Invalid argument: the x-amz-credential is mal-formed; expecting \
             \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
        .with("ArgumentName", "x-amz-credential")
        .with("ArgumentValue", field("x-amz-credential"))
    };
    let (access_key, date, region, service) =
        parse_credential(field("x-amz-credential")).ok_or_else(bad_credential)?;
    if service != "s3" {
        return Err(bad_credential());
    }
    if region != ctx.state.region {
        return Err(err(
            S3ErrorCode::AuthorizationHeaderMalformed,
            format!(
                "Error parsing the X-Amz-Credential parameter; the region '{region}' is wrong; \
                 expecting '{}'",
                ctx.state.region
            ),
        )
        .with("Region", ctx.state.region.clone()));
    }
    let amz_date = field("x-amz-date");
    if crate::util::timefmt::parse_amz_date(amz_date).is_none() || !amz_date.starts_with(date) {
        return Err(err(
            S3ErrorCode::InvalidArgument,
            "Invalid x-amz-date: it must be yyyymmddThhmmssZ, the day of the x-amz-credential.",
        )
        .with("ArgumentName", "x-amz-date")
        .with("ArgumentValue", amz_date));
    }
    let key = ctx
        .model()
        .key_for_request(access_key)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            err(
                S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        })?;
    let secret = key
        .params()
        .map(|p| p.secret.clone())
        .ok_or_else(|| err(S3ErrorCode::InvalidAccessKeyId, "The key was deleted."))?;
    let signing = sigv4::signing_key(&secret, date, region, service);
    let expected = hex::encode(sigv4::hmac_sha256(&signing, field("policy").as_bytes()));
    let given = field("x-amz-signature").to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(err(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        ));
    }
    let policy = parse_policy(field("policy"))?;
    Ok((key, policy))
}

/// The bucket, and the key's Write permission on it; this node's copy of the key may be a moment
/// behind a grant made through another node: a majority is asked before saying no.
async fn writable_bucket(ctx: &Ctx, key: Key, name: &str) -> Result<(Key, Bucket), S3Error> {
    let model = ctx.model();
    let try_key = async |k: &Key| -> Result<Result<Bucket, S3Error>, S3Error> {
        let Some(b) = model.bucket_for_key(k, name).await.map_err(internal)? else {
            return Ok(Err(no_such_bucket(name)));
        };
        let who = Principal::Key(k.clone());
        Ok(
            match decide(&who, Op::PutObject, Some(&b), ObjectAcl::Unknown) {
                Decision::Allow => Ok(b),
                _ => Err(super::access::access_denied()),
            },
        )
    };
    match try_key(&key).await? {
        Ok(b) => Ok((key, b)),
        Err(first) => match model.key_by_id_fresh(&key.id).await.map_err(internal)? {
            Some(fresh) => {
                let b = try_key(&fresh).await??;
                Ok((fresh, b))
            }
            None => Err(first),
        },
    }
}

/// The fields that become the object's headers, as a request's headers (so that PutObject's code
/// reads them), refusing what Grenier cannot honour as PutObject does.
fn form_headers(fields: &BTreeMap<String, String>) -> Result<HeaderMap, S3Error> {
    let refuse = |what: &str| {
        Err(err(
            S3ErrorCode::NotImplemented,
            format!("{what} is not supported by Grenier; nothing was changed."),
        ))
    };
    let mut h = HeaderMap::new();
    for (n, v) in fields {
        let sse = n.strip_prefix("x-amz-server-side-encryption");
        if sse.is_some_and(|rest| !rest.starts_with("-customer-")) {
            return refuse(&format!("Server-side encryption with managed keys ({n})"));
        }
        if n.starts_with("x-amz-object-lock-") {
            return refuse(&format!("Object lock ({n})"));
        }
        if n.starts_with("x-amz-grant-") {
            return refuse(&format!(
                "Access grants ({n}; only the canned ACLs private and public-read)"
            ));
        }
        if n == "x-amz-website-redirect-location" {
            return refuse(n);
        }
        let pass = STORED_FIELDS.contains(&n.as_str())
            || n.starts_with("x-amz-meta-")
            || n.starts_with("x-amz-checksum-")
            || sse.is_some();
        if !pass {
            continue;
        }
        let name = hyper::header::HeaderName::from_bytes(n.as_bytes());
        let value = HeaderValue::from_bytes(v.as_bytes());
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(err(
                S3ErrorCode::InvalidArgument,
                format!("The form field {n} is not valid."),
            )
            .with("ArgumentName", n.clone()));
        };
        h.insert(name, value);
    }
    Ok(h)
}

/// `<PostResponse>`, the body of a `success_action_status` 201.
fn post_response_xml(location: &str, bucket: &str, key: &str, etag: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location>\
         <Bucket>{}</Bucket><Key>{}</Key><ETag>\"{}\"</ETag></PostResponse>",
        xml_escape(location),
        xml_escape(bucket),
        xml_escape(key),
        xml_escape(etag)
    )
}

/// Where the new object is: the URL of the request's host, path or virtual-host style.
fn object_location(ctx: &Ctx, bucket: &str, key: &str) -> String {
    let host = ctx.header("host").unwrap_or("");
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let vhost = ctx
        .state
        .root_domain
        .as_deref()
        .is_some_and(|d| bare.to_ascii_lowercase().ends_with(d));
    let scheme = match ctx.header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let key = url::uri_encode(key, false);
    if vhost {
        format!("{scheme}://{host}/{key}")
    } else {
        format!("{scheme}://{host}/{}/{key}", url::uri_encode(bucket, true))
    }
}

pub async fn post_object(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let boundary = form::boundary(ctx.header("content-type").unwrap_or(""))?;
    let bucket_name = ctx.bucket_name().to_string();
    let (form, file) = form::read(ctx.take_body(), &boundary).await?;
    let mut fields = BTreeMap::new();
    for (n, v) in form.fields {
        if fields.contains_key(&n) {
            return Err(err(
                S3ErrorCode::InvalidArgument,
                format!("The form field {n} is given more than once."),
            )
            .with("ArgumentName", n));
        }
        fields.insert(n, v);
    }
    let (key, policy) = authenticate(ctx, &fields).await?;
    let Some(file) = file else {
        return Err(err(
            S3ErrorCode::InvalidArgument,
            "POST requires exactly one file upload per request.",
        )
        .with("ArgumentName", "file")
        .with("ArgumentValue", "0"));
    };
    let template = fields.get("key").ok_or_else(|| missing_field("key"))?;
    let object_key = template.replace("${filename}", form.filename.as_deref().unwrap_or(""));
    if object_key.is_empty() {
        return Err(missing_field("key"));
    }
    if object_key.len() > MAX_KEY_LEN {
        return Err(err(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long (the limit is 1024 bytes).",
        ));
    }
    fields.insert("key".into(), object_key.clone());
    let (min, max) = check_policy(&policy, &fields, &bucket_name, SystemTime::now())?;
    let (key, bucket) = writable_bucket(ctx, key, &bucket_name).await?;

    let location = object_location(ctx, &bucket_name, &object_key);
    // What to store, read from the form as PutObject reads it from headers.
    ctx.headers = form_headers(&fields)?;
    ctx.route.key = Some(object_key.clone());
    ctx.principal = Principal::Key(key);
    ctx.bucket = Some(bucket);
    let acl = match fields.get("acl") {
        Some(v) => parse_canned_acl(v)?,
        None => CannedAcl::Private,
    };
    let tags = match fields.get("tagging") {
        Some(x) => super::tagging::validate(super::xml::parse_tagging(x.as_bytes())?)?,
        None => vec![],
    };
    let attrs = VersionAttrs::new(ctx.model().node, tags, acl);
    let headers = headers_to_store(ctx)?;
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    let checksum = request_checksum(&ctx.headers)?;
    let model = ctx.model().clone();
    let upload = model
        .start_put(ctx.bucket().id, object_key.clone(), headers.clone())
        .encrypted(sse_key.clone());
    let wanted = Wanted {
        sha256: false,
        checksum: checksum.as_ref().map(|c| c.algorithm),
    };
    let too_large = |e: S3Error| {
        if e.code == S3ErrorCode::EntityTooLarge {
            err(
                S3ErrorCode::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with("MaxSizeAllowed", max.to_string())
        } else {
            e
        }
    };
    let (stored, d) = store_stream(&upload, file, wanted, max)
        .await
        .map_err(too_large)?;
    let verdict = if d.len < min {
        Err(err(
            S3ErrorCode::EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed size",
        )
        .with("ProposedSize", d.len.to_string())
        .with("MinSizeAllowed", min.to_string()))
    } else {
        match (
            checksum.as_ref().and_then(|c| c.expected.as_ref()),
            &d.checksum,
        ) {
            (Some(expected), Some(got)) => got.check(expected),
            _ => Ok(()),
        }
    };
    if let Err(e) = verdict {
        let _ = upload.abort(Some(&stored)).await;
        return Err(e);
    }
    let etag = etag_of(d.md5, sse_key.as_ref());
    let encryption = sse_key.as_ref().map(CustomerKey::encryption);
    let meta = ObjectMeta {
        size: d.len,
        etag: etag.clone(),
        headers,
        checksum: d
            .checksum
            .as_ref()
            .map(|c| (c.algorithm.as_str().to_string(), c.to_base64())),
        parts: None,
        encryption: encryption.clone(),
    };
    upload.commit(stored, meta, attrs).await.map_err(internal)?;

    let redirect = fields
        .get("success_action_redirect")
        .or(fields.get("redirect"))
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| {
            let enc = |s: &str| url::uri_encode(s, true);
            let sep = if u.contains('?') { '&' } else { '?' };
            format!(
                "{u}{sep}bucket={}&key={}&etag={}",
                enc(&bucket_name),
                enc(&object_key),
                enc(&format!("\"{etag}\""))
            )
        })
        .and_then(|u| HeaderValue::from_str(&u).ok());
    let mut r = Response::builder().header("etag", format!("\"{etag}\""));
    r = sse::response_headers(r, encryption.as_ref());
    if let Some(c) = &d.checksum {
        r = r.header(c.algorithm.header_name(), c.to_base64());
    }
    if let Some(to) = redirect {
        return respond(
            r.status(StatusCode::SEE_OTHER).header("location", to),
            full(Bytes::new()),
        );
    }
    let r = r.header("location", &location);
    match fields.get("success_action_status").map(String::as_str) {
        Some("200") => respond(r.status(StatusCode::OK), full(Bytes::new())),
        Some("201") => respond(
            r.status(StatusCode::CREATED)
                .header("content-type", "application/xml"),
            full(post_response_xml(
                &location,
                &bucket_name,
                &object_key,
                &etag,
            )),
        ),
        _ => respond(r.status(StatusCode::NO_CONTENT), full(Bytes::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: u64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_every_condition_form() {
        let p = parse_policy(&b64(
            r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [
                {"bucket": "photos"}, {"$Acl": "public-read"},
                ["eq", "$Content-Type", "image/png"],
                ["starts-with", "$key", "user/"],
                ["content-length-range", 1, "1048576"]]}"#,
        ))
        .unwrap();
        assert_eq!(p.expiration, NOW);
        assert_eq!(
            p.conditions,
            vec![
                Condition::Eq("bucket".into(), "photos".into()),
                Condition::Eq("acl".into(), "public-read".into()),
                Condition::Eq("content-type".into(), "image/png".into()),
                Condition::StartsWith("key".into(), "user/".into()),
                Condition::LengthRange(1, 1_048_576),
            ]
        );
        assert_eq!(parse_iso8601("2027-01-15T08:00:00Z"), Some(p.expiration));
    }

    #[test]
    fn a_policy_wrapped_in_lines_decodes() {
        let b = b64(r#"{"expiration": "2027-01-15T08:00:00Z", "conditions": [{"key": "k"}]}"#);
        let wrapped = format!("{}\r\n{}\n", &b[..20], &b[20..]);
        assert_eq!(parse_policy(&wrapped), parse_policy(&b));
        assert!(parse_policy(&b).is_ok());
    }

    #[test]
    fn malformed_policies_are_invalid_policy_documents() {
        for bad in [
            "not base64!".to_string(),
            b64("not json"),
            b64("[]"),
            b64(r#"{"conditions": []}"#),
            b64(r#"{"expiration": "tomorrow", "conditions": []}"#),
            b64(r#"{"expiration": "2027-01-15T08:00:00.000Z"}"#),
            b64(
                r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [["eq", "key", "x"]]}"#,
            ),
            b64(
                r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [["like", "$key", "x"]]}"#,
            ),
            b64(
                r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [["content-length-range", -1, 5]]}"#,
            ),
            b64(r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [["eq", "$key"]]}"#),
            b64(r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": [{"key": 5}]}"#),
            b64(r#"{"expiration": "2027-01-15T08:00:00.000Z", "conditions": ["key"]}"#),
        ] {
            let e = parse_policy(&bad).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidPolicyDocument, "{bad}");
        }
    }

    fn policy(conditions: Vec<Condition>) -> Policy {
        Policy {
            expiration: NOW + 60,
            conditions,
        }
    }

    fn base() -> Vec<Condition> {
        ["x-amz-algorithm", "x-amz-credential", "x-amz-date"]
            .iter()
            .map(|f| Condition::StartsWith(f.to_string(), String::new()))
            .collect()
    }

    fn form(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut f = fields(&[
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "AK/20270115/garage/s3/aws4_request"),
            ("x-amz-date", "20270115T000000Z"),
            ("x-amz-signature", "00"),
            ("policy", "e30="),
            ("x-ignore-me", "whatever"),
        ]);
        f.extend(fields(extra));
        f
    }

    fn failed(r: Result<(u64, u64), S3Error>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
        e.message
    }

    #[test]
    fn conditions_hold_or_fail() {
        let mut c = base();
        c.extend([
            Condition::Eq("bucket".into(), "photos".into()),
            Condition::StartsWith("key".into(), "user/".into()),
            Condition::Eq("acl".into(), "public-read".into()),
            Condition::StartsWith("content-type".into(), "image/".into()),
            Condition::StartsWith("x-amz-meta-tag".into(), String::new()),
            Condition::LengthRange(10, 1000),
            Condition::LengthRange(0, 500),
        ]);
        let p = policy(c);
        let ok = form(&[
            ("key", "user/eric/a.png"),
            ("acl", "public-read"),
            ("content-type", "image/png, image/jpeg"),
            ("x-amz-meta-tag", "anything"),
        ]);
        assert_eq!(check_policy(&p, &ok, "photos", at(NOW)), Ok((10, 500)));
        // The bucket condition is on the bucket written to.
        let m = failed(check_policy(&p, &ok, "other", at(NOW)));
        assert_eq!(
            m,
            r#"Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "photos"]"#
        );
        for (field, value) in [
            ("key", "admin/x"),
            ("acl", "private"),
            ("content-type", "image/png, text/html"),
        ] {
            let mut f = ok.clone();
            f.insert(field.into(), value.into());
            let m = failed(check_policy(&p, &f, "photos", at(NOW)));
            assert!(m.contains("Policy Condition failed"), "{field}: {m}");
            assert!(m.contains(&format!("${field}")), "{field}: {m}");
        }
        // A condition on an absent field fails unless it accepts the empty value.
        let mut f = ok.clone();
        f.remove("acl");
        failed(check_policy(&p, &f, "photos", at(NOW)));
        let mut f = ok.clone();
        f.remove("x-amz-meta-tag");
        assert!(check_policy(&p, &f, "photos", at(NOW)).is_ok());
    }

    #[test]
    fn expiry() {
        let p = policy(base());
        let f = form(&[]);
        assert!(check_policy(&p, &f, "b", at(NOW + 59)).is_ok());
        let m = failed(check_policy(&p, &f, "b", at(NOW + 60)));
        assert_eq!(m, "Invalid according to Policy: Policy expired.");
    }

    #[test]
    fn every_field_must_be_covered() {
        let p = policy(base());
        assert!(check_policy(&p, &form(&[]), "b", at(NOW)).is_ok());
        let m = failed(check_policy(
            &p,
            &form(&[
                ("x-amz-meta-a", "1"),
                ("Content-Type".to_lowercase().as_str(), "t"),
            ]),
            "b",
            at(NOW),
        ));
        assert_eq!(
            m,
            "Invalid according to Policy: Extra input fields: content-type, x-amz-meta-a"
        );
        // The auth fields themselves must be covered, except the signature and the policy.
        let p = policy(vec![]);
        let m = failed(check_policy(&p, &form(&[]), "b", at(NOW)));
        assert!(
            m.ends_with("x-amz-algorithm, x-amz-credential, x-amz-date"),
            "{m}"
        );
    }

    #[test]
    fn form_fields_become_headers_and_unhonoured_ones_are_refused() {
        let h = form_headers(&fields(&[
            ("content-type", "image/png"),
            ("x-amz-meta-who", "me"),
            ("key", "k"),
            ("x-amz-date", "d"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ]))
        .unwrap();
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "content-type",
                "x-amz-meta-who",
                "x-amz-server-side-encryption-customer-algorithm"
            ]
        );
        for f in [
            "x-amz-server-side-encryption",
            "x-amz-object-lock-mode",
            "x-amz-grant-read",
            "x-amz-website-redirect-location",
        ] {
            let e = form_headers(&fields(&[(f, "v")])).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::NotImplemented, "{f}");
        }
        let e = form_headers(&fields(&[("x-amz-meta-a", "bad\nvalue")])).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn credentials_and_xml() {
        assert_eq!(
            parse_credential("AK/20270115/garage/s3/aws4_request"),
            Some(("AK", "20270115", "garage", "s3"))
        );
        assert_eq!(parse_credential("AK/2027/garage/s3/aws4_request"), None);
        assert_eq!(parse_credential("/20270115/garage/s3/aws4_request"), None);
        assert_eq!(parse_credential("garbage"), None);
        let x = post_response_xml("http://h/b/a%26b", "b", "a&b", "e");
        assert!(x.contains("<Key>a&amp;b</Key><ETag>\"e\"</ETag>"), "{x}");
    }
}
