//! CORS: PutBucketCors, GetBucketCors, DeleteBucketCors, the preflight `OPTIONS`, and the response
//! headers added to the answers of the S3 and website endpoints.
//!
//! A preflight needs no signature (browsers send none): it is answered from the bucket's rules in
//! the node's own copy of the bucket tables, by the bucket's global name, before any authentication.
//! Every other answer of the S3 endpoint to a request carrying `Origin` (errors, anonymous and
//! presigned requests included) gets the headers of the first rule matching its origin and method
//! ([`add_headers`]), so that a browser may read it.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::ctx::{
    Ctx, ResBody, S3State, check_small_body_digests, empty, full, internal, respond, small_body,
    xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::{Op, route};
use super::xml::{S3_XMLNS, xml_escape};
use super::xml::{malformed, resolve_ref};
use crate::model::bucket::Bucket;
use crate::model::cors::{CorsConfig, CorsRule, MAX_RULES, METHODS, request_headers, wildcards};

/// Largest PutBucketCors body read (AWS's limit on a CORS configuration), whatever `xml_body_max`.
pub const MAX_CORS_BODY: usize = 64 << 10;

/// Longest rule `ID` (AWS: 255 characters).
pub const MAX_ID_CHARS: usize = 255;

pub async fn get_bucket_cors(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let config = ctx
        .bucket()
        .params()
        .and_then(|p| p.cors())
        .ok_or_else(|| {
            err(
                S3ErrorCode::NoSuchCORSConfiguration,
                "The CORS configuration does not exist",
            )
            .with("BucketName", ctx.bucket_name())
        })?;
    Ok(xml_response(cors_configuration_xml(config)))
}

pub async fn put_bucket_cors(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let body = small_body(ctx, ctx.state.xml_body_max.min(MAX_CORS_BODY)).await?;
    check_small_body_digests(&ctx.headers, &body)?;
    let config = parse_cors_configuration(&body)?;
    ctx.model()
        .set_bucket_cors(&ctx.bucket().id, Some(config))
        .await
        .map_err(internal)?;
    respond(
        Response::builder().status(StatusCode::OK),
        full(Bytes::new()),
    )
}

pub async fn delete_bucket_cors(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    // Idempotent, as AWS: deleting an absent configuration is a success too.
    if ctx.bucket().params().and_then(|p| p.cors()).is_some() {
        ctx.model()
            .set_bucket_cors(&ctx.bucket().id, None)
            .await
            .map_err(internal)?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Answer a preflight `OPTIONS` request for `bucket` (None: no such bucket).
///
/// 400 BadRequest without `Origin` or with an `Access-Control-Request-Method` that is not one of
/// the five S3 methods; 403 AccessForbidden when no rule allows the origin, method and every
/// requested header (the same answer whether the bucket exists, has no rules or none matches, so
/// that nothing is learnt of what exists); 200 with the rule's grant otherwise.
pub fn preflight(
    bucket: Option<&Bucket>,
    headers: &HeaderMap,
) -> Result<Response<ResBody>, S3Error> {
    let origin = header(headers, "origin").ok_or_else(|| {
        err(
            S3ErrorCode::BadRequest,
            "Insufficient information. Origin request header needed.",
        )
    })?;
    let method = header(headers, "access-control-request-method");
    let method = match method {
        Some(m) if METHODS.contains(&m) => m,
        other => {
            return Err(err(
                S3ErrorCode::BadRequest,
                format!(
                    "Invalid Access-Control-Request-Method: {}",
                    other.unwrap_or("null")
                ),
            ));
        }
    };
    // More requested headers than a browser ever asks for: not allowed (each costs a pass).
    let asked = request_headers(
        headers
            .get_all("access-control-request-headers")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let rule = asked
        .as_ref()
        .and_then(|asked| config_of(bucket)?.matching_rule(origin, method, asked))
        .ok_or_else(|| {
            err(
                S3ErrorCode::AccessForbidden,
                "CORSResponse: This CORS request is not allowed. This is usually because the \
                 evalution of Origin, request method / Access-Control-Request-Method or \
                 Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            )
            .with("Method", method)
        })?;
    let mut resp = empty(StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(hyper::header::VARY, HeaderValue::from_static(VARY));
    grant(h, rule, origin);
    if let Some(asked) = asked.filter(|a| !a.is_empty()) {
        set(h, "access-control-allow-headers", &asked.join(", "));
    }
    Ok(resp)
}

/// Add the CORS response headers (`Access-Control-Allow-Origin`, `Vary: Origin`, exposed headers…)
/// that `bucket`'s rules grant to the request (`method`, `headers`), to a response or an error.
///
/// Nothing without an `Origin` header or without rules. With rules, `Vary` always names `Origin`
/// (the answer depends on it, and a cache must not serve one origin's answer to another); the grant
/// comes from the first rule matching the origin and the request's method.
pub fn add_headers(
    bucket: Option<&Bucket>,
    method: &Method,
    headers: &HeaderMap,
    resp: &mut Response<ResBody>,
) {
    let (Some(origin), Some(config)) = (header(headers, "origin"), config_of(bucket)) else {
        return;
    };
    let h = resp.headers_mut();
    h.append(hyper::header::VARY, HeaderValue::from_static(VARY));
    if let Some(rule) = config.matching_rule(origin, method.as_str(), &[]) {
        grant(h, rule, origin);
    }
}

/// What [`add_headers`] needs of a request to the S3 endpoint, taken before the request is handled
/// (its answer may be an error that knows nothing of the bucket): `None` when the request carries
/// no `Origin`, is a preflight (answered by [`preflight`]) or names no bucket with CORS rules.
pub struct CorsRequest {
    bucket: Bucket,
    method: Method,
    headers: HeaderMap,
}

impl CorsRequest {
    /// The bucket is looked up by its global name in the node's own copy of the bucket tables: no
    /// RPC, whatever the request (a made-up name costs a local read).
    pub fn of<B>(state: &S3State, req: &Request<B>) -> Option<CorsRequest> {
        let origin = req.headers().get("origin")?;
        if req.method() == Method::OPTIONS {
            return None;
        }
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .or(req.uri().host());
        let r = route(
            req.method(),
            host,
            req.uri().path(),
            req.uri().query(),
            req.headers(),
            state.root_domain.as_deref(),
        )
        .ok()?;
        if r.op == Op::Options {
            return None;
        }
        let bucket = state
            .model
            .bucket_by_name_local(r.bucket.as_deref()?)
            .ok()??;
        config_of(Some(&bucket))?;
        let mut headers = HeaderMap::new();
        headers.insert("origin", origin.clone());
        Some(CorsRequest {
            bucket,
            method: req.method().clone(),
            headers,
        })
    }

    pub fn add_headers(&self, resp: &mut Response<ResBody>) {
        add_headers(Some(&self.bucket), &self.method, &self.headers, resp);
    }
}

fn config_of(bucket: Option<&Bucket>) -> Option<&CorsConfig> {
    bucket.and_then(|b| b.params()).and_then(|p| p.cors())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Set a header whose value comes from a stored rule or the request; a value HTTP cannot carry is
/// left out (never a panic).
fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// The headers a matching rule grants, on a preflight and on an actual request alike (as AWS).
fn grant(h: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let allow_origin = rule.allow_origin(origin);
    set(h, "access-control-allow-origin", allow_origin);
    if allow_origin != "*" {
        set(h, "access-control-allow-credentials", "true");
    }
    set(
        h,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(h, "access-control-max-age", &age.to_string());
    }
}

/// The request headers a CORS answer depends on (AWS names the same three).
const VARY: &str = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

// ---------------------------------------------------------------------------------------------------
// XML
// ---------------------------------------------------------------------------------------------------

/// GetBucketCors' answer: `<CORSConfiguration>` with one `<CORSRule>` per rule, in order.
pub fn cors_configuration_xml(config: &CorsConfig) -> String {
    fn leaf(out: &mut String, name: &str, value: &str) {
        out.push_str(&format!("<{name}>{}</{name}>", xml_escape(value)));
    }
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CORSConfiguration xmlns=\"{S3_XMLNS}\">"
    );
    for r in &config.rules {
        out.push_str("<CORSRule>");
        if let Some(id) = &r.id {
            leaf(&mut out, "ID", id);
        }
        for v in &r.allowed_headers {
            leaf(&mut out, "AllowedHeader", v);
        }
        for v in &r.allowed_methods {
            leaf(&mut out, "AllowedMethod", v);
        }
        for v in &r.allowed_origins {
            leaf(&mut out, "AllowedOrigin", v);
        }
        for v in &r.expose_headers {
            leaf(&mut out, "ExposeHeader", v);
        }
        if let Some(age) = r.max_age_seconds {
            leaf(&mut out, "MaxAgeSeconds", &age.to_string());
        }
        out.push_str("</CORSRule>");
    }
    out.push_str("</CORSConfiguration>");
    out
}

fn invalid(message: String) -> S3Error {
    err(S3ErrorCode::InvalidRequest, message)
}

/// The elements of a `<CORSRule>`, all leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    AllowedOrigin,
    AllowedMethod,
    AllowedHeader,
    ExposeHeader,
    MaxAgeSeconds,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "ID" => Field::Id,
            "AllowedOrigin" => Field::AllowedOrigin,
            "AllowedMethod" => Field::AllowedMethod,
            "AllowedHeader" => Field::AllowedHeader,
            "ExposeHeader" => Field::ExposeHeader,
            "MaxAgeSeconds" => Field::MaxAgeSeconds,
            _ => return None,
        })
    }
}

/// Where the parser is: the document is exactly `CORSConfiguration > CORSRule* > leaf*`.
struct CorsParser {
    /// Elements open: 0 (outside the root), 1 (in the root), 2 (in a rule), 3 (in a leaf).
    depth: usize,
    root_seen: bool,
    rules: Vec<CorsRule>,
    field: Option<(Field, String)>,
}

impl CorsParser {
    fn start(&mut self, name: &str) -> Result<(), S3Error> {
        match self.depth {
            0 if !self.root_seen && name == "CORSConfiguration" => self.root_seen = true,
            1 if name == "CORSRule" => {
                // AWS answers MalformedXML past 100 rules.
                if self.rules.len() >= MAX_RULES {
                    return Err(malformed());
                }
                self.rules.push(CorsRule::default());
            }
            2 => self.field = Some((Field::of(name).ok_or_else(malformed)?, String::new())),
            _ => return Err(malformed()),
        }
        self.depth += 1;
        Ok(())
    }

    fn end(&mut self) -> Result<(), S3Error> {
        match self.depth {
            3 => {
                let (field, text) = self.field.take().ok_or_else(malformed)?;
                let rule = self.rules.last_mut().ok_or_else(malformed)?;
                store(rule, field, text)?;
            }
            2 => {
                let rule = self.rules.last().ok_or_else(malformed)?;
                if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
                    return Err(malformed());
                }
            }
            1 => {}
            _ => return Err(malformed()),
        }
        self.depth -= 1;
        Ok(())
    }

    /// Character data: kept inside a leaf, only whitespace elsewhere.
    fn text(&mut self, s: &str) -> Result<(), S3Error> {
        match &mut self.field {
            Some((_, text)) => text.push_str(s),
            None if s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => {}
            None => return Err(malformed()),
        }
        Ok(())
    }
}

/// Check a leaf's value as AWS does and add it to its rule.
fn store(rule: &mut CorsRule, field: Field, text: String) -> Result<(), S3Error> {
    match field {
        Field::Id => {
            if rule.id.is_some() {
                return Err(malformed());
            }
            if text.chars().count() > MAX_ID_CHARS {
                return Err(err(
                    S3ErrorCode::InvalidArgument,
                    format!("The ID of a CORS rule must be at most {MAX_ID_CHARS} characters."),
                )
                .with("ArgumentName", "ID"));
            }
            rule.id = Some(text);
        }
        Field::AllowedOrigin => {
            if wildcards(&text) > 1 {
                return Err(invalid(format!(
                    "AllowedOrigin \"{text}\" can not have more than one wildcard."
                )));
            }
            rule.allowed_origins.push(text);
        }
        Field::AllowedMethod => {
            if !METHODS.contains(&text.as_str()) {
                return Err(invalid(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {text}"
                )));
            }
            rule.allowed_methods.push(text);
        }
        Field::AllowedHeader => {
            if wildcards(&text) > 1 {
                return Err(invalid(format!(
                    "AllowedHeader \"{text}\" can not have more than one wildcard."
                )));
            }
            rule.allowed_headers.push(text);
        }
        Field::ExposeHeader => {
            if text.contains('*') {
                return Err(invalid(format!(
                    "ExposeHeader \"{text}\" contains wildcard. We currently do not support \
                     wildcard for ExposeHeader."
                )));
            }
            rule.expose_headers.push(text);
        }
        Field::MaxAgeSeconds => {
            if rule.max_age_seconds.is_some() {
                return Err(malformed());
            }
            let age = text.trim().parse::<u32>().map_err(|_| malformed())?;
            rule.max_age_seconds = Some(age);
        }
    }
    Ok(())
}

/// Parse a PutBucketCors body (already capped at [`MAX_CORS_BODY`]): the rules in order, each
/// checked as AWS checks them (MalformedXML for the document's shape, an empty configuration, more
/// than [`MAX_RULES`] rules or a rule without origin or method; InvalidRequest for a method other
/// than GET/PUT/POST/DELETE/HEAD, two `*` in an origin or header, a `*` in an exposed header).
/// Streamed: nothing is kept but the rules themselves.
pub fn parse_cors_configuration(body: &[u8]) -> Result<CorsConfig, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut p = CorsParser {
        depth: 0,
        root_seen: false,
        rules: Vec::new(),
        field: None,
    };
    loop {
        match reader.read_event().map_err(|_| malformed())? {
            Event::Start(e) => p.start(e.local_name().as_ref())?,
            Event::Empty(e) => {
                p.start(e.local_name().as_ref())?;
                p.end()?;
            }
            Event::End(_) => p.end()?,
            Event::Text(t) => p.text(&t)?,
            Event::CData(t) if p.field.is_some() => p.text(&t)?,
            Event::GeneralRef(r) if p.field.is_some() => {
                p.text(resolve_ref(&r)?.encode_utf8(&mut [0; 4]))?
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::CData(_) | Event::GeneralRef(_) | Event::DocType(_) => return Err(malformed()),
            Event::Eof => break,
        }
    }
    if p.depth != 0 || !p.root_seen || p.rules.is_empty() {
        return Err(malformed());
    }
    Ok(CorsConfig { rules: p.rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bucket::BucketParams;
    use crate::model::object::CannedAcl;

    const M: &str = "<AllowedMethod>GET</AllowedMethod>";
    const O: &str = "<AllowedOrigin>*</AllowedOrigin>";

    fn doc(rules: &str) -> String {
        format!("<CORSConfiguration xmlns=\"{S3_XMLNS}\">{rules}</CORSConfiguration>")
    }

    fn code(body: &str) -> S3ErrorCode {
        parse_cors_configuration(body.as_bytes()).unwrap_err().code
    }

    #[test]
    fn configurations_round_trip_through_xml() {
        let body = doc(
            "<CORSRule><ID>a &amp; b</ID><AllowedOrigin>http://*.example.org</AllowedOrigin>\
             <AllowedOrigin>https://x.org</AllowedOrigin>\n  <AllowedMethod>PUT</AllowedMethod>\
             <AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader>\
             <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule>\
             <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>",
        );
        let c = parse_cors_configuration(body.as_bytes()).unwrap();
        assert_eq!(c.rules.len(), 2);
        let r = &c.rules[0];
        assert_eq!(r.id.as_deref(), Some("a & b"));
        assert_eq!(r.allowed_origins, ["http://*.example.org", "https://x.org"]);
        assert_eq!(r.allowed_methods, ["PUT", "GET"]);
        assert_eq!(r.allowed_headers, ["x-amz-*"]);
        assert_eq!(r.expose_headers, ["ETag"]);
        assert_eq!(r.max_age_seconds, Some(3000));
        assert_eq!(c.rules[1].id, None);
        assert_eq!(c.rules[1].max_age_seconds, None);
        let xml = cors_configuration_xml(&c);
        assert!(xml.starts_with("<?xml"));
        assert!(xml.contains("<ID>a &amp; b</ID>"));
        assert_eq!(parse_cors_configuration(xml.as_bytes()).unwrap(), c);
    }

    #[test]
    fn invalid_configurations_are_refused_as_aws() {
        use S3ErrorCode::*;
        assert_eq!(code(&doc("")), MalformedXML);
        assert_eq!(code(""), MalformedXML);
        assert_eq!(code("<CORSConfiguration/>"), MalformedXML);
        assert_eq!(
            code(&doc(&format!("<CORSRule>{M}</CORSRule>"))),
            MalformedXML
        );
        assert_eq!(
            code(&doc(&format!("<CORSRule>{O}</CORSRule>"))),
            MalformedXML
        );
        assert_eq!(
            code(&doc(&format!("<CORSRule>{O}{M}<Bogus/></CORSRule>"))),
            MalformedXML
        );
        assert_eq!(code(&format!("<Other>{O}</Other>")), MalformedXML);
        assert_eq!(code(&format!("{}{}", doc(""), doc(""))), MalformedXML);
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}{M}<MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule>"
            ))),
            MalformedXML
        );
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}{M}<ID>a</ID><ID>b</ID></CORSRule>"
            ))),
            MalformedXML
        );
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}<AllowedMethod><x/></AllowedMethod></CORSRule>"
            ))),
            MalformedXML
        );
        assert_eq!(
            code(&doc(&format!("text<CORSRule>{O}{M}</CORSRule>"))),
            MalformedXML
        );
        assert_eq!(code("<!DOCTYPE x><CORSConfiguration/>"), MalformedXML);
        assert_eq!(
            code(&doc(&format!("<CORSRule>{O}{M}</CORSRule"))),
            MalformedXML
        );
        let rule = format!("<CORSRule>{O}{M}</CORSRule>");
        assert!(parse_cors_configuration(doc(&rule.repeat(MAX_RULES)).as_bytes()).is_ok());
        assert_eq!(code(&doc(&rule.repeat(MAX_RULES + 1))), MalformedXML);

        let e = parse_cors_configuration(
            doc(&format!(
                "<CORSRule>{O}<AllowedMethod>PATCH</AllowedMethod></CORSRule>"
            ))
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.code, InvalidRequest);
        assert_eq!(
            e.message,
            "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"
        );
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}<AllowedMethod>get</AllowedMethod></CORSRule>"
            ))),
            InvalidRequest
        );
        let e = parse_cors_configuration(
            doc(&format!(
                "<CORSRule><AllowedOrigin>http://*.*.org</AllowedOrigin>{M}</CORSRule>"
            ))
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.code, InvalidRequest);
        assert_eq!(
            e.message,
            "AllowedOrigin \"http://*.*.org\" can not have more than one wildcard."
        );
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}{M}<AllowedHeader>**</AllowedHeader></CORSRule>"
            ))),
            InvalidRequest
        );
        assert_eq!(
            code(&doc(&format!(
                "<CORSRule>{O}{M}<ExposeHeader>x-*</ExposeHeader></CORSRule>"
            ))),
            InvalidRequest
        );
        let long = "i".repeat(MAX_ID_CHARS + 1);
        assert_eq!(
            code(&doc(&format!("<CORSRule><ID>{long}</ID>{O}{M}</CORSRule>"))),
            InvalidArgument
        );
    }

    fn bucket_with(rules: &str) -> Bucket {
        let mut p = BucketParams::new(1, 0, "b".into(), CannedAcl::Private);
        if !rules.is_empty() {
            p.set_cors(
                1,
                Some(parse_cors_configuration(doc(rules).as_bytes()).unwrap()),
            );
        }
        Bucket::new(crate::util::hash::Hash::default(), p)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn get<'a>(r: &'a Response<ResBody>, name: &str) -> Option<&'a str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn preflights_answer_from_the_first_matching_rule() {
        let b = bucket_with(
            "<CORSRule><AllowedOrigin>http://*.example.org</AllowedOrigin>\
             <AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod>\
             <AllowedHeader>Content-Type</AllowedHeader><AllowedHeader>x-amz-*</AllowedHeader>\
             <ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-request-id</ExposeHeader>\
             <MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>\
             <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>",
        );
        let ok = preflight(
            Some(&b),
            &headers(&[
                ("origin", "http://www.example.org"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type,X-Amz-Date"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            get(&ok, "access-control-allow-origin"),
            Some("http://www.example.org")
        );
        assert_eq!(get(&ok, "access-control-allow-methods"), Some("PUT, GET"));
        assert_eq!(
            get(&ok, "access-control-allow-headers"),
            Some("content-type, x-amz-date")
        );
        assert_eq!(
            get(&ok, "access-control-expose-headers"),
            Some("ETag, x-amz-request-id")
        );
        assert_eq!(get(&ok, "access-control-max-age"), Some("600"));
        assert_eq!(get(&ok, "access-control-allow-credentials"), Some("true"));
        assert!(get(&ok, "vary").unwrap().starts_with("Origin"));

        // Another origin: the catch-all rule, which answers `*`.
        let star = preflight(
            Some(&b),
            &headers(&[
                ("origin", "http://x"),
                ("access-control-request-method", "GET"),
            ]),
        )
        .unwrap();
        assert_eq!(get(&star, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&star, "access-control-allow-credentials"), None);
        assert_eq!(get(&star, "access-control-max-age"), None);

        let code = |b: Option<&Bucket>, h: &[(&'static str, &str)]| {
            let e = preflight(b, &headers(h)).unwrap_err();
            (e.status().as_u16(), e.code)
        };
        use S3ErrorCode::*;
        let put = [
            ("origin", "http://x"),
            ("access-control-request-method", "PUT"),
        ];
        assert_eq!(code(Some(&b), &put), (403, AccessForbidden));
        // No rules and no bucket answer the same.
        assert_eq!(code(Some(&bucket_with("")), &put), (403, AccessForbidden));
        assert_eq!(code(None, &put), (403, AccessForbidden));
        assert_eq!(
            code(Some(&b), &[("access-control-request-method", "GET")]),
            (400, BadRequest)
        );
        assert_eq!(code(Some(&b), &[("origin", "http://x")]), (400, BadRequest));
        assert_eq!(
            code(
                Some(&b),
                &[
                    ("origin", "http://x"),
                    ("access-control-request-method", "PATCH")
                ]
            ),
            (400, BadRequest)
        );
        // More requested headers than any browser asks for: refused before any matching.
        let many: Vec<String> = (0..=crate::model::cors::MAX_REQUEST_HEADERS)
            .map(|i| format!("x-amz-h{i}"))
            .collect();
        assert_eq!(
            code(
                Some(&b),
                &[
                    ("origin", "http://www.example.org"),
                    ("access-control-request-method", "PUT"),
                    ("access-control-request-headers", &many.join(",")),
                ]
            ),
            (403, AccessForbidden)
        );
        // A header no rule allows.
        assert_eq!(
            code(
                Some(&b),
                &[
                    ("origin", "http://www.example.org"),
                    ("access-control-request-method", "PUT"),
                    ("access-control-request-headers", "authorization"),
                ]
            ),
            (403, AccessForbidden)
        );
    }

    #[test]
    fn actual_requests_get_the_grant_of_their_method() {
        let b = bucket_with(
            "<CORSRule><AllowedOrigin>http://a.org</AllowedOrigin><AllowedMethod>GET</AllowedMethod>\
             <ExposeHeader>ETag</ExposeHeader></CORSRule>",
        );
        let answer = |bucket: Option<&Bucket>, method: Method, h: &[(&'static str, &str)]| {
            let mut r = empty(StatusCode::NOT_FOUND);
            add_headers(bucket, &method, &headers(h), &mut r);
            r
        };
        let r = answer(Some(&b), Method::GET, &[("origin", "http://a.org")]);
        assert_eq!(get(&r, "access-control-allow-origin"), Some("http://a.org"));
        assert_eq!(get(&r, "access-control-expose-headers"), Some("ETag"));
        assert_eq!(get(&r, "access-control-allow-methods"), Some("GET"));
        assert_eq!(r.headers().get_all("vary").iter().count(), 1);
        // Another method or origin: no grant, but the answer still varies with the origin.
        for (m, o) in [(Method::PUT, "http://a.org"), (Method::GET, "http://b.org")] {
            let r = answer(Some(&b), m, &[("origin", o)]);
            assert_eq!(get(&r, "access-control-allow-origin"), None);
            assert!(get(&r, "vary").unwrap().starts_with("Origin"));
        }
        // No Origin, no rules, no bucket: nothing at all.
        for r in [
            answer(Some(&b), Method::GET, &[]),
            answer(
                Some(&bucket_with("")),
                Method::GET,
                &[("origin", "http://a.org")],
            ),
            answer(None, Method::GET, &[("origin", "http://a.org")]),
        ] {
            assert!(r.headers().is_empty(), "{:?}", r.headers());
        }
    }
}
