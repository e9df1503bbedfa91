//! The static website endpoint (`[s3_web]`): anonymous GET and HEAD of a bucket's objects as web
//! pages, as AWS's `s3-website` endpoints serve them.
//!
//! - The bucket comes from the `Host` header: `<bucket><root_domain>`, else a global bucket name equal
//!   to the whole host (port removed), looked up in the node's own copy of the bucket table (an
//!   unsigned request costs no RPC to find it). It must have a website configuration
//!   (PutBucketWebsite, `grenier bucket website`), else 404 `NoSuchWebsiteConfiguration`.
//! - Only what an anonymous S3 GET may read is served ([`super::access::decide`] with
//!   `Principal::Anonymous`: objects whose ACL is `public-read`, or every object of a bucket the
//!   admins opened with `grenier bucket public`); anything else is 403 `AccessDenied`. A missing key
//!   is 404 where that tells nothing more than the 200s do (every object public, or a public
//!   listing), 403 otherwise (as AWS without `s3:ListBucket`).
//! - Keys ending in `/` (and the root) get the index suffix; `dir` absent while `dir/<index>` is
//!   readable is a 302 to `/dir/`. Routing rules (key prefix and/or returned error code) and
//!   `RedirectAllRequestsTo` answer redirects; the error document is served with the error's status.
//! - Objects are read by [`super::object::get_object`] itself (Range, `If-*`, HEAD, SSE-C errors
//!   behave as on the S3 endpoint); its S3 errors become HTML error pages. Other methods are 405;
//!   `OPTIONS` is the bucket's CORS preflight. Request bodies are never read, nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use super::access::{Decision, ObjectAcl, Principal, decide};
use super::ctx::{Ctx, ResBody, S3State, full, internal, no_such_bucket};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::{MAX_KEY_LEN, Op, Route};
use super::sigv4::ContentSha256;
use super::xml::xml_escape;
use crate::model::bucket::Bucket;
use crate::model::object::CannedAcl;
use crate::model::website::{Redirect, RoutingRule, WebsiteConfig};
use crate::util::http::{HttpLimits, RequestBody};
use crate::util::url::{self, Encode, Plus};

/// What the website endpoint needs: the S3 state (model, limits) and `[s3_web] root_domain`.
pub struct WebState {
    pub s3: Arc<S3State>,
    /// Normalized, starting with `.` (e.g. `.web.example.org`).
    pub root_domain: Option<String>,
}

/// Serve the website endpoint on `addr` until the returned task is aborted or `drain` starts.
pub async fn serve(
    addr: std::net::SocketAddr,
    limits: HttpLimits,
    state: Arc<WebState>,
    drain: crate::util::http::Drain,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(crate::util::http::serve_http1(
        listener,
        limits,
        super::server::MAX_HEADER_BYTES.max(8192),
        state,
        handle,
        drain,
    ))
}

async fn handle(state: Arc<WebState>, req: Request<RequestBody>) -> Response<ResBody> {
    let request_id = hex::encode(crate::model::random_bytes::<8>()).to_uppercase();
    // The body is never read: dropping it lets the connection layer discard or close.
    let (parts, _body) = req.into_parts();
    let head = parts.method == Method::HEAD;
    let bucket = find_bucket(&state, &parts.headers);
    let mut resp = match &bucket {
        Err(e) => error_page(e, &request_id, head),
        Ok(b) => serve_bucket(&state, b, &parts, &request_id).await,
    };
    if let Ok(b) = &bucket
        && parts.method != Method::OPTIONS
    {
        super::cors::add_headers(Some(b), &parts.method, &parts.headers, &mut resp);
    }
    let h = resp.headers_mut();
    if let Ok(v) = request_id.parse() {
        h.insert("x-amz-request-id", v);
    }
    h.insert("server", HeaderValue::from_static("Grenier"));
    resp
}

/// The request's host, lowercased, without its port.
fn host_name(headers: &HeaderMap) -> Option<String> {
    let h = headers.get("host")?.to_str().ok()?.trim();
    let name = match h.rsplit_once(':') {
        // Not the colons of a bracketed IPv6 literal.
        Some((n, port)) if !port.contains(']') => n,
        _ => h,
    };
    Some(name.to_ascii_lowercase())
}

/// The bucket a request is for: `<bucket><root_domain>`, else a global name equal to the host.
fn find_bucket(state: &WebState, headers: &HeaderMap) -> Result<Bucket, S3Error> {
    let host = host_name(headers).unwrap_or_default();
    let by_domain = state
        .root_domain
        .as_deref()
        .and_then(|d| host.strip_suffix(d))
        .filter(|b| !b.is_empty());
    let model = &state.s3.model;
    if let Some(name) = by_domain
        && let Some(b) = model.bucket_by_name_local(name).map_err(internal)?
    {
        return Ok(b);
    }
    if !host.is_empty()
        && let Some(b) = model.bucket_by_name_local(&host).map_err(internal)?
    {
        return Ok(b);
    }
    Err(no_such_bucket(by_domain.unwrap_or(&host)))
}

/// Where a routing rule sends a request: `None` when it does not apply to `key` and `error`
/// (`None`: before the object was read, when only rules without an error condition apply).
pub fn rule_applies(rule: &RoutingRule, key: &str, error: Option<u16>) -> bool {
    let Some(c) = &rule.condition else {
        return error.is_none();
    };
    let prefix_ok = c
        .key_prefix_equals
        .as_deref()
        .is_none_or(|p| key.starts_with(p));
    prefix_ok && c.http_error_code_returned_equals == error
}

/// The `Location` of a redirect rule for `key` (`host`: the request's Host header, `proto`: the
/// request's scheme), and its status (301 unless the rule says otherwise).
pub fn redirect_target(
    rule: &RoutingRule,
    key: &str,
    host: &str,
    proto: &str,
) -> (StatusCode, String) {
    let r: &Redirect = &rule.redirect;
    let new_key = match (&r.replace_key_with, &r.replace_key_prefix_with) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => {
            let matched = rule
                .condition
                .as_ref()
                .and_then(|c| c.key_prefix_equals.as_deref())
                .unwrap_or("");
            format!("{p}{}", key.strip_prefix(matched).unwrap_or(key))
        }
        (None, None) => key.to_string(),
    };
    let host = r.host_name.as_deref().unwrap_or(host);
    let proto = r.protocol.as_deref().unwrap_or(proto);
    let status = r
        .http_redirect_code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let location = format!("{proto}://{host}/{}", url::encode(&new_key, Encode::Path));
    (status, location)
}

/// The key a path asks for, with the index suffix when it names a "directory" (or the root).
pub fn index_key(key: &str, website: &WebsiteConfig) -> String {
    match &website.index_suffix {
        Some(s) if key.is_empty() || key.ends_with('/') => format!("{key}{s}"),
        _ => key.to_string(),
    }
}

fn redirect(status: StatusCode, location: &str) -> Response<ResBody> {
    let mut r = Response::builder()
        .status(status)
        .header("content-length", "0")
        .body(full(Bytes::new()))
        .expect("valid static parts");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert("location", v);
    }
    r
}

async fn serve_bucket(
    state: &WebState,
    bucket: &Bucket,
    parts: &Parts,
    request_id: &str,
) -> Response<ResBody> {
    let head = parts.method == Method::HEAD;
    let page = |e: &S3Error| error_page(e, request_id, head);
    let name = bucket
        .params()
        .map(|p| p.name.get().clone())
        .unwrap_or_default();
    let Some(website) = bucket.params().and_then(|p| p.website()).cloned() else {
        return page(&super::website::no_such_website(&name));
    };
    match parts.method {
        Method::GET | Method::HEAD => (),
        Method::OPTIONS => {
            return super::cors::preflight(Some(bucket), &parts.headers)
                .unwrap_or_else(|e| page(&e));
        }
        ref m => {
            return page(&err(
                S3ErrorCode::MethodNotAllowed,
                format!("The specified method ({m}) is not allowed against this resource."),
            ));
        }
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let proto = match parts.headers.get("x-forwarded-proto") {
        Some(p) if p.as_bytes().eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    };
    if let Some(all) = &website.redirect_all {
        let proto = all.protocol.as_deref().unwrap_or(proto);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return redirect(
            StatusCode::MOVED_PERMANENTLY,
            &format!("{proto}://{}{path}", all.host_name),
        );
    }
    let raw = parts.uri.path();
    let key = match url::decode(raw.strip_prefix('/').unwrap_or(raw), Plus::Literal) {
        Ok(k) if k.len() <= MAX_KEY_LEN => k,
        Ok(_) => {
            return page(&err(
                S3ErrorCode::KeyTooLongError,
                "Your key is too long (the limit is 1024 bytes).",
            ));
        }
        Err(e) => return page(&e.into()),
    };
    if let Some(rule) = website
        .routing_rules
        .iter()
        .find(|r| rule_applies(r, &key, None))
    {
        let (status, location) = redirect_target(rule, &key, &host, proto);
        return redirect(status, &location);
    }
    let target = index_key(&key, &website);
    let e = match read(state, bucket, &name, &target, &parts.method, &parts.headers).await {
        Ok(r) => return r,
        Err(e) => e,
    };
    let (status, e) = match e.code {
        S3ErrorCode::NotModified => return not_modified(&e),
        S3ErrorCode::NoSuchKey | S3ErrorCode::AccessDenied => {
            match missing(state, bucket, &key, &target, &website, e).await {
                Ok(Missing::Redirect(location)) => {
                    return redirect(StatusCode::FOUND, &location);
                }
                Ok(Missing::Error(e)) => (e.status(), e),
                Err(e) => return page(&e),
            }
        }
        _ => return page(&e),
    };
    if let Some(rule) = website
        .routing_rules
        .iter()
        .find(|r| rule_applies(r, &key, Some(status.as_u16())))
    {
        let (status, location) = redirect_target(rule, &key, &host, proto);
        return redirect(status, &location);
    }
    if let Some(doc) = &website.error_key {
        let method = if head { Method::HEAD } else { Method::GET };
        if let Ok(mut r) = read(state, bucket, &name, doc, &method, &HeaderMap::new()).await
            && r.status() == StatusCode::OK
        {
            *r.status_mut() = status;
            return r;
        }
    }
    page(&e)
}

enum Missing {
    /// `dir` is absent but `dir/<index>` is there: redirect to `/dir/`.
    Redirect(String),
    /// The error to answer (404 NoSuchKey or 403 AccessDenied).
    Error(S3Error),
}

/// After a 404/403 reading `target` (for the request's `key`): a redirect to the directory, or the
/// error to answer. Costs a read only when the answer was AccessDenied or a directory redirect may
/// apply (never on a successful GET).
async fn missing(
    state: &WebState,
    bucket: &Bucket,
    key: &str,
    target: &str,
    website: &WebsiteConfig,
    e: S3Error,
) -> Result<Missing, S3Error> {
    let model = &state.s3.model;
    let all_public = bucket.params().is_some_and(|p| p.objects_public());
    let absent = match e.code {
        S3ErrorCode::NoSuchKey => true,
        // Every object that exists is readable here: denied means absent.
        _ if all_public => true,
        _ => model
            .get_object(&bucket.id, target)
            .await
            .map_err(internal)?
            .and_then(|o| o.current().cloned())
            .is_none(),
    };
    if !absent {
        return Ok(Missing::Error(e));
    }
    if let Some(suffix) = &website.index_suffix
        && !key.is_empty()
        && !key.ends_with('/')
        && key.len() + 1 + suffix.len() <= MAX_KEY_LEN
    {
        let index = format!("{key}/{suffix}");
        let current = model
            .get_object(&bucket.id, &index)
            .await
            .map_err(internal)?
            .and_then(|o| o.current().cloned());
        if let Some(v) = current {
            let acl = ObjectAcl::Known(v.canned_acl());
            if decide(&Principal::Anonymous, Op::GetObject, Some(bucket), acl) == Decision::Allow {
                return Ok(Missing::Redirect(format!(
                    "/{}/",
                    url::encode(key, Encode::Path)
                )));
            }
        }
    }
    // That a key is absent tells nothing more than the 200s do when every object is readable or the
    // listing is public: 404. Otherwise absent and private look the same (403), as on AWS.
    let tells_nothing = bucket
        .params()
        .is_some_and(|p| p.objects_public() || p.canned_acl() == CannedAcl::PublicRead);
    Ok(Missing::Error(if tells_nothing {
        err(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with("Key", target)
    } else {
        super::access::access_denied()
    }))
}

/// Read `key` as an anonymous S3 GET (or HEAD) with the request's headers (Range, `If-*`).
async fn read(
    state: &WebState,
    bucket: &Bucket,
    name: &str,
    key: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<ResBody>, S3Error> {
    if key.is_empty() {
        return Err(err(
            S3ErrorCode::NoSuchKey,
            "The specified key does not exist.",
        ));
    }
    let op = if *method == Method::HEAD {
        Op::HeadObject
    } else {
        Op::GetObject
    };
    let mut ctx = Ctx {
        state: state.s3.clone(),
        route: Route {
            op,
            bucket: Some(name.to_string()),
            key: Some(key.to_string()),
            query: BTreeMap::new(),
        },
        method: method.clone(),
        headers: headers.clone(),
        principal: Principal::Anonymous,
        object_check: true,
        bucket: Some(bucket.clone()),
        content_sha256: ContentSha256::UnsignedPayload,
        body: std::sync::Mutex::new(None),
        trailers: None,
    };
    super::object::get_object(&mut ctx).await
}

fn not_modified(e: &S3Error) -> Response<ResBody> {
    let mut r = Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .body(full(Bytes::new()))
        .expect("valid static parts");
    if let Some((_, etag)) = e.extra.iter().find(|(n, _)| *n == "ETag")
        && let Ok(v) = HeaderValue::from_str(etag)
    {
        r.headers_mut().insert("etag", v);
    }
    r
}

/// An error as AWS's website endpoint shows it: a small HTML page (no body for HEAD).
pub fn error_page(e: &S3Error, request_id: &str, head: bool) -> Response<ResBody> {
    if let Some(detail) = &e.detail {
        tracing::warn!(request_id, code = e.code.as_str(), "{detail}");
    }
    let status = e.status();
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut items = format!(
        "<li>Code: {}</li>\n<li>Message: {}</li>\n",
        e.code.as_str(),
        xml_escape(&e.message)
    );
    for (name, value) in &e.extra {
        if matches!(*name, "Key" | "BucketName") {
            items.push_str(&format!("<li>{name}: {}</li>\n", xml_escape(value)));
        }
    }
    let body = format!(
        "<html>\n<head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n{items}\
         <li>RequestId: {request_id}</li>\n</ul>\n<hr/>\n</body>\n</html>\n"
    );
    let len = body.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-length", len.to_string())
        .body(full(body))
        .expect("valid static parts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::website::RoutingCondition;

    fn rule(prefix: Option<&str>, code: Option<u16>, redirect: Redirect) -> RoutingRule {
        RoutingRule {
            condition: (prefix.is_some() || code.is_some()).then(|| RoutingCondition {
                key_prefix_equals: prefix.map(String::from),
                http_error_code_returned_equals: code,
            }),
            redirect,
        }
    }

    #[test]
    fn rules_match_on_prefix_and_error() {
        let r = rule(Some("docs/"), None, Redirect::default());
        assert!(rule_applies(&r, "docs/a", None));
        assert!(!rule_applies(&r, "doc", None));
        assert!(!rule_applies(&r, "docs/a", Some(404)));
        let r = rule(None, Some(404), Redirect::default());
        assert!(!rule_applies(&r, "x", None));
        assert!(rule_applies(&r, "x", Some(404)));
        assert!(!rule_applies(&r, "x", Some(403)));
        let r = rule(Some("a/"), Some(404), Redirect::default());
        assert!(rule_applies(&r, "a/b", Some(404)));
        assert!(!rule_applies(&r, "b", Some(404)));
        let r = rule(None, None, Redirect::default());
        assert!(rule_applies(&r, "anything", None));
        assert!(!rule_applies(&r, "anything", Some(404)));
    }

    #[test]
    fn redirect_targets() {
        let r = rule(
            Some("docs/"),
            None,
            Redirect {
                replace_key_prefix_with: Some("documents/".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            redirect_target(&r, "docs/a b.html", "site.web.localhost:3902", "http"),
            (
                StatusCode::MOVED_PERMANENTLY,
                "http://site.web.localhost:3902/documents/a%20b.html".to_string()
            )
        );
        let r = rule(
            None,
            Some(404),
            Redirect {
                host_name: Some("example.com".into()),
                protocol: Some("https".into()),
                http_redirect_code: Some(302),
                replace_key_with: Some("404.html".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            redirect_target(&r, "missing", "h", "http"),
            (
                StatusCode::FOUND,
                "https://example.com/404.html".to_string()
            )
        );
        let r = rule(
            None,
            None,
            Redirect {
                host_name: Some("other.org".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            redirect_target(&r, "k/", "h", "https").1,
            "https://other.org/k/"
        );
    }

    #[test]
    fn index_documents() {
        let w = WebsiteConfig {
            index_suffix: Some("index.html".into()),
            ..Default::default()
        };
        assert_eq!(index_key("", &w), "index.html");
        assert_eq!(index_key("dir/", &w), "dir/index.html");
        assert_eq!(index_key("dir", &w), "dir");
        assert_eq!(index_key("a.css", &w), "a.css");
    }

    #[test]
    fn hosts() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("host", v.parse().unwrap());
            host_name(&m)
        };
        assert_eq!(
            h("Site.Web.localhost:3902").as_deref(),
            Some("site.web.localhost")
        );
        assert_eq!(h("example.org").as_deref(), Some("example.org"));
        assert_eq!(h("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(h("[::1]:80").as_deref(), Some("[::1]"));
    }

    #[test]
    fn error_pages_are_escaped_html() {
        let e = err(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
            .with("Key", "<script>");
        let r = error_page(&e, "RID", false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    }
}
