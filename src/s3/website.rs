//! PutBucketWebsite, GetBucketWebsite, DeleteBucketWebsite: the bucket's website configuration
//! ([`WebsiteConfig`]) as S3's `WebsiteConfiguration` XML, validated as AWS does (MalformedXML for a
//! document that does not fit the schema, InvalidArgument for values AWS refuses). The website
//! endpoint that serves it is [`super::web`].

use std::fmt::Write as _;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::ctx::{
    Ctx, ResBody, check_small_body_digests, empty, full, internal, respond, small_body,
    xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::{S3_XMLNS, xml_escape};
use super::xml::{malformed, resolve_ref};
use crate::model::website::{Redirect, RedirectAll, RoutingCondition, RoutingRule, WebsiteConfig};

/// Most routing rules in one configuration (AWS's limit).
pub const MAX_ROUTING_RULES: usize = 50;
/// Longest key, key prefix or index suffix in a configuration (an object key's limit).
const MAX_KEY: usize = super::router::MAX_KEY_LEN;
/// Longest host name (DNS's limit).
const MAX_HOST: usize = 255;

pub async fn get_bucket_website(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let config = ctx.bucket().params().and_then(|p| p.website()).cloned();
    match config {
        Some(w) => Ok(xml_response(to_xml(&w))),
        None => Err(no_such_website(ctx.bucket_name())),
    }
}

pub async fn put_bucket_website(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let body = small_body(ctx, ctx.state.xml_body_max).await?;
    check_small_body_digests(&ctx.headers, &body)?;
    let config = parse(&body)?;
    ctx.model()
        .set_bucket_website(&ctx.bucket().id, Some(config))
        .await
        .map_err(internal)?;
    respond(
        Response::builder().status(StatusCode::OK),
        full(Bytes::new()),
    )
}

pub async fn delete_bucket_website(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    ctx.model()
        .set_bucket_website(&ctx.bucket().id, None)
        .await
        .map_err(internal)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// GetBucketWebsite of a bucket without a website configuration (AWS's 404).
pub fn no_such_website(bucket: &str) -> S3Error {
    err(
        S3ErrorCode::NoSuchWebsiteConfiguration,
        "The specified bucket does not have a website configuration",
    )
    .with("BucketName", bucket)
}

// ---------------------------------------------------------------------------------------------------
// Serializing
// ---------------------------------------------------------------------------------------------------

fn elem(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", xml_escape(value));
}

fn elem_opt(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        elem(out, name, v);
    }
}

/// The `WebsiteConfiguration` document of GetBucketWebsite.
pub fn to_xml(w: &WebsiteConfig) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<WebsiteConfiguration xmlns=\"{S3_XMLNS}\">"
    );
    if let Some(r) = &w.redirect_all {
        out.push_str("<RedirectAllRequestsTo>");
        elem(&mut out, "HostName", &r.host_name);
        elem_opt(&mut out, "Protocol", r.protocol.as_deref());
        out.push_str("</RedirectAllRequestsTo>");
    }
    if let Some(s) = &w.index_suffix {
        out.push_str("<IndexDocument>");
        elem(&mut out, "Suffix", s);
        out.push_str("</IndexDocument>");
    }
    if let Some(k) = &w.error_key {
        out.push_str("<ErrorDocument>");
        elem(&mut out, "Key", k);
        out.push_str("</ErrorDocument>");
    }
    if !w.routing_rules.is_empty() {
        out.push_str("<RoutingRules>");
        for rule in &w.routing_rules {
            out.push_str("<RoutingRule>");
            if let Some(c) = &rule.condition {
                out.push_str("<Condition>");
                if let Some(code) = c.http_error_code_returned_equals {
                    elem(&mut out, "HttpErrorCodeReturnedEquals", &code.to_string());
                }
                elem_opt(&mut out, "KeyPrefixEquals", c.key_prefix_equals.as_deref());
                out.push_str("</Condition>");
            }
            let r = &rule.redirect;
            out.push_str("<Redirect>");
            elem_opt(&mut out, "HostName", r.host_name.as_deref());
            if let Some(code) = r.http_redirect_code {
                elem(&mut out, "HttpRedirectCode", &code.to_string());
            }
            elem_opt(&mut out, "Protocol", r.protocol.as_deref());
            elem_opt(
                &mut out,
                "ReplaceKeyPrefixWith",
                r.replace_key_prefix_with.as_deref(),
            );
            elem_opt(&mut out, "ReplaceKeyWith", r.replace_key_with.as_deref());
            out.push_str("</Redirect></RoutingRule>");
        }
        out.push_str("</RoutingRules>");
    }
    out.push_str("</WebsiteConfiguration>");
    out
}

// ---------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------

fn invalid(message: impl Into<String>) -> S3Error {
    err(S3ErrorCode::InvalidArgument, message)
}

/// Deepest nesting of a `WebsiteConfiguration` (…/RoutingRules/RoutingRule/Condition/KeyPrefixEquals).
const MAX_DEPTH: usize = 5;
/// Most elements in one document: 50 rules of at most 10 elements, and a few more.
const MAX_ELEMENTS: usize = MAX_ROUTING_RULES * 10 + 20;
/// Most bytes of text in one element.
const MAX_TEXT: usize = 4096;

const NAMES: &[&str] = &[
    "WebsiteConfiguration",
    "IndexDocument",
    "Suffix",
    "ErrorDocument",
    "Key",
    "RedirectAllRequestsTo",
    "HostName",
    "Protocol",
    "RoutingRules",
    "RoutingRule",
    "Condition",
    "KeyPrefixEquals",
    "HttpErrorCodeReturnedEquals",
    "Redirect",
    "HttpRedirectCode",
    "ReplaceKeyPrefixWith",
    "ReplaceKeyWith",
];

#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn leaf(&self) -> Result<&str, S3Error> {
        if self.children.is_empty() {
            Ok(&self.text)
        } else {
            Err(malformed())
        }
    }
    fn container(&self) -> Result<&[Node], S3Error> {
        if self
            .text
            .chars()
            .all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            Ok(&self.children)
        } else {
            Err(malformed())
        }
    }
}

/// The document as a tree of known elements, every limit checked as it is read (DTDs refused).
fn parse_tree(body: &[u8]) -> Result<Node, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = vec![];
    let mut root = None;
    let mut count = 0;
    let start = |stack: &mut Vec<Node>,
                 root: &Option<Node>,
                 count: &mut usize,
                 e: &quick_xml::events::BytesStart|
     -> Result<(), S3Error> {
        let name = e.local_name();
        let name: &str = name.as_ref();
        *count += 1;
        let root_ok = !stack.is_empty() || name == "WebsiteConfiguration";
        if root.is_some()
            || stack.len() >= MAX_DEPTH
            || *count > MAX_ELEMENTS
            || !NAMES.contains(&name)
            || !root_ok
        {
            return Err(malformed());
        }
        for a in e.attributes() {
            a.map_err(|_| malformed())?;
        }
        stack.push(Node {
            name: name.to_string(),
            ..Default::default()
        });
        Ok(())
    };
    let end = |stack: &mut Vec<Node>, root: &mut Option<Node>| -> Result<(), S3Error> {
        let node = stack.pop().ok_or_else(malformed)?;
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
        Ok(())
    };
    let push = |stack: &mut Vec<Node>, s: &str| -> Result<(), S3Error> {
        match stack.last_mut() {
            Some(top) if top.text.len() + s.len() <= MAX_TEXT => {
                top.text.push_str(s);
                Ok(())
            }
            None if s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
            _ => Err(malformed()),
        }
    };
    loop {
        match reader.read_event().map_err(|_| malformed())? {
            Event::Start(e) => start(&mut stack, &root, &mut count, &e)?,
            Event::Empty(e) => {
                start(&mut stack, &root, &mut count, &e)?;
                end(&mut stack, &mut root)?;
            }
            Event::End(_) => end(&mut stack, &mut root)?,
            Event::Text(t) => push(&mut stack, &t)?,
            Event::CData(t) if !stack.is_empty() => push(&mut stack, &t)?,
            Event::GeneralRef(r) if !stack.is_empty() => {
                push(&mut stack, resolve_ref(&r)?.encode_utf8(&mut [0; 4]))?
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
            _ => return Err(malformed()),
        }
    }
    if !stack.is_empty() {
        return Err(malformed());
    }
    root.ok_or_else(malformed)
}

fn set_once(slot: &mut Option<String>, node: &Node) -> Result<(), S3Error> {
    if slot.is_some() {
        return Err(malformed());
    }
    *slot = Some(node.leaf()?.to_string());
    Ok(())
}

fn protocol(p: Option<String>) -> Result<Option<String>, S3Error> {
    match p.as_deref() {
        None | Some("http") | Some("https") => Ok(p),
        Some(other) => Err(invalid(format!(
            "Invalid protocol {other:?}: the Protocol must be http or https"
        ))),
    }
}

fn host(h: Option<String>) -> Result<Option<String>, S3Error> {
    match &h {
        Some(v)
            if v.is_empty()
                || v.len() > MAX_HOST
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)) =>
        {
            Err(invalid(format!("The HostName {v:?} is not valid")))
        }
        _ => Ok(h),
    }
}

fn key_like(what: &str, v: Option<String>) -> Result<Option<String>, S3Error> {
    match &v {
        Some(s) if s.len() > MAX_KEY => Err(invalid(format!("{what} is too long"))),
        _ => Ok(v),
    }
}

fn code(what: &str, v: Option<String>, ok: impl Fn(u16) -> bool) -> Result<Option<u16>, S3Error> {
    let Some(s) = v else { return Ok(None) };
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| ok(*c))
        .map(Some)
        .ok_or_else(|| invalid(format!("The provided {what} {s:?} is not valid")))
}

/// Parse and validate a PutBucketWebsite body.
pub fn parse(body: &[u8]) -> Result<WebsiteConfig, S3Error> {
    let root = parse_tree(body)?;
    let mut w = WebsiteConfig::default();
    let (mut seen_index, mut seen_error, mut seen_redirect, mut seen_rules) =
        (false, false, false, false);
    for child in root.container()? {
        let once = |seen: &mut bool| {
            if std::mem::replace(seen, true) {
                Err(malformed())
            } else {
                Ok(())
            }
        };
        match child.name.as_str() {
            "IndexDocument" => {
                once(&mut seen_index)?;
                let mut suffix = None;
                for f in child.container()? {
                    match f.name.as_str() {
                        "Suffix" => set_once(&mut suffix, f)?,
                        _ => return Err(malformed()),
                    }
                }
                let suffix = suffix.ok_or_else(malformed)?;
                if suffix.is_empty() || suffix.contains('/') || suffix.len() > MAX_KEY {
                    return Err(invalid(
                        "The IndexDocument Suffix is not well formed: it must be non-empty and \
                         must not contain a slash",
                    ));
                }
                w.index_suffix = Some(suffix);
            }
            "ErrorDocument" => {
                once(&mut seen_error)?;
                let mut key = None;
                for f in child.container()? {
                    match f.name.as_str() {
                        "Key" => set_once(&mut key, f)?,
                        _ => return Err(malformed()),
                    }
                }
                let key = key.ok_or_else(malformed)?;
                if key.is_empty() || key.len() > MAX_KEY {
                    return Err(invalid("The ErrorDocument Key is not valid"));
                }
                w.error_key = Some(key);
            }
            "RedirectAllRequestsTo" => {
                once(&mut seen_redirect)?;
                let (mut h, mut p) = (None, None);
                for f in child.container()? {
                    match f.name.as_str() {
                        "HostName" => set_once(&mut h, f)?,
                        "Protocol" => set_once(&mut p, f)?,
                        _ => return Err(malformed()),
                    }
                }
                let host_name = host(Some(h.ok_or_else(malformed)?))?.unwrap_or_default();
                w.redirect_all = Some(RedirectAll {
                    host_name,
                    protocol: protocol(p)?,
                });
            }
            "RoutingRules" => {
                once(&mut seen_rules)?;
                let rules = child.container()?;
                if rules.len() > MAX_ROUTING_RULES {
                    return Err(invalid(format!(
                        "A website configuration may hold at most {MAX_ROUTING_RULES} routing rules"
                    )));
                }
                for r in rules {
                    if r.name != "RoutingRule" {
                        return Err(malformed());
                    }
                    w.routing_rules.push(parse_rule(r)?);
                }
            }
            _ => return Err(malformed()),
        }
    }
    if w.redirect_all.is_some() {
        if w.index_suffix.is_some() || w.error_key.is_some() || seen_rules {
            return Err(invalid(
                "RedirectAllRequestsTo cannot be provided in conjunction with other Routing Rules.",
            ));
        }
    } else if w.index_suffix.is_none() {
        return Err(invalid(
            "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty",
        ));
    }
    Ok(w)
}

fn parse_rule(r: &Node) -> Result<RoutingRule, S3Error> {
    let (mut condition, mut redirect) = (None, None);
    for part in r.container()? {
        match part.name.as_str() {
            "Condition" if condition.is_none() => {
                let (mut prefix, mut code_s) = (None, None);
                for f in part.container()? {
                    match f.name.as_str() {
                        "KeyPrefixEquals" => set_once(&mut prefix, f)?,
                        "HttpErrorCodeReturnedEquals" => set_once(&mut code_s, f)?,
                        _ => return Err(malformed()),
                    }
                }
                if prefix.is_none() && code_s.is_none() {
                    return Err(invalid(
                        "Condition cannot be empty. To redirect all requests without a \
                         condition, the condition element shouldn't be present.",
                    ));
                }
                condition = Some(RoutingCondition {
                    key_prefix_equals: key_like("KeyPrefixEquals", prefix)?,
                    http_error_code_returned_equals: code(
                        "HttpErrorCodeReturnedEquals",
                        code_s,
                        |c| (400..600).contains(&c),
                    )?,
                });
            }
            "Redirect" if redirect.is_none() => {
                let (mut h, mut c, mut p, mut rp, mut rk) = (None, None, None, None, None);
                for f in part.container()? {
                    match f.name.as_str() {
                        "HostName" => set_once(&mut h, f)?,
                        "HttpRedirectCode" => set_once(&mut c, f)?,
                        "Protocol" => set_once(&mut p, f)?,
                        "ReplaceKeyPrefixWith" => set_once(&mut rp, f)?,
                        "ReplaceKeyWith" => set_once(&mut rk, f)?,
                        _ => return Err(malformed()),
                    }
                }
                if rp.is_some() && rk.is_some() {
                    return Err(invalid(
                        "You can only define ReplaceKeyPrefix or ReplaceKey but not both.",
                    ));
                }
                if [&h, &c, &p, &rp, &rk].iter().all(|v| v.is_none()) {
                    return Err(invalid("The Redirect of a RoutingRule cannot be empty"));
                }
                redirect = Some(Redirect {
                    host_name: host(h)?,
                    http_redirect_code: code("HttpRedirectCode", c, |c| {
                        matches!(c, 301 | 302 | 303 | 307 | 308)
                    })?,
                    protocol: protocol(p)?,
                    replace_key_prefix_with: key_like("ReplaceKeyPrefixWith", rp)?,
                    replace_key_with: key_like("ReplaceKeyWith", rk)?,
                });
            }
            _ => return Err(malformed()),
        }
    }
    Ok(RoutingRule {
        condition,
        redirect: redirect.ok_or_else(|| invalid("A RoutingRule must have a Redirect"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <IndexDocument><Suffix>index.html</Suffix></IndexDocument>
  <ErrorDocument><Key>errors/404.html</Key></ErrorDocument>
  <RoutingRules>
    <RoutingRule>
      <Condition><KeyPrefixEquals>docs/</KeyPrefixEquals></Condition>
      <Redirect><ReplaceKeyPrefixWith>documents/</ReplaceKeyPrefixWith></Redirect>
    </RoutingRule>
    <RoutingRule>
      <Condition><HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals></Condition>
      <Redirect><HostName>example.com</HostName><HttpRedirectCode>302</HttpRedirectCode>
        <Protocol>https</Protocol><ReplaceKeyWith>a&amp;b.html</ReplaceKeyWith></Redirect>
    </RoutingRule>
  </RoutingRules>
</WebsiteConfiguration>"#;

    #[test]
    fn full_document_parses_and_round_trips() {
        let w = parse(FULL.as_bytes()).unwrap();
        assert_eq!(w.index_suffix.as_deref(), Some("index.html"));
        assert_eq!(w.error_key.as_deref(), Some("errors/404.html"));
        assert_eq!(w.routing_rules.len(), 2);
        let c = w.routing_rules[0].condition.as_ref().unwrap();
        assert_eq!(c.key_prefix_equals.as_deref(), Some("docs/"));
        let r = &w.routing_rules[1].redirect;
        assert_eq!(
            (r.http_redirect_code, r.replace_key_with.as_deref()),
            (Some(302), Some("a&b.html"))
        );
        let again = parse(to_xml(&w).as_bytes()).unwrap();
        assert_eq!(again, w);
        assert!(to_xml(&w).contains("<ReplaceKeyWith>a&amp;b.html</ReplaceKeyWith>"));
    }

    #[test]
    fn redirect_all_round_trips() {
        let doc = "<WebsiteConfiguration><RedirectAllRequestsTo><HostName>example.org</HostName>\
                   <Protocol>https</Protocol></RedirectAllRequestsTo></WebsiteConfiguration>";
        let w = parse(doc.as_bytes()).unwrap();
        assert_eq!(
            w.redirect_all,
            Some(RedirectAll {
                host_name: "example.org".into(),
                protocol: Some("https".into())
            })
        );
        assert_eq!(parse(to_xml(&w).as_bytes()).unwrap(), w);
    }

    #[test]
    fn bad_documents() {
        let code = |doc: &str| parse(doc.as_bytes()).unwrap_err().code;
        use S3ErrorCode::*;
        for (doc, expected) in [
            ("", MalformedXML),
            ("<WebsiteConfiguration>", MalformedXML),
            ("<Other/>", MalformedXML),
            (
                "<WebsiteConfiguration><Foo/></WebsiteConfiguration>",
                MalformedXML,
            ),
            ("<WebsiteConfiguration/>", InvalidArgument),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>a/b</Suffix></IndexDocument></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix></Suffix></IndexDocument></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><IndexDocument/></WebsiteConfiguration>",
                MalformedXML,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument>\
                 <IndexDocument><Suffix>i</Suffix></IndexDocument></WebsiteConfiguration>",
                MalformedXML,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument>\
                 <RedirectAllRequestsTo><HostName>h</HostName></RedirectAllRequestsTo></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><RedirectAllRequestsTo><HostName>h</HostName><Protocol>ftp</Protocol>\
                 </RedirectAllRequestsTo></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument><RoutingRules>\
                 <RoutingRule><Redirect><ReplaceKeyWith>a</ReplaceKeyWith><ReplaceKeyPrefixWith>b\
                 </ReplaceKeyPrefixWith></Redirect></RoutingRule></RoutingRules></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument><RoutingRules>\
                 <RoutingRule><Redirect><HttpRedirectCode>200</HttpRedirectCode></Redirect></RoutingRule>\
                 </RoutingRules></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument><RoutingRules>\
                 <RoutingRule><Condition/><Redirect><HostName>h</HostName></Redirect></RoutingRule>\
                 </RoutingRules></WebsiteConfiguration>",
                InvalidArgument,
            ),
            (
                "<!DOCTYPE x [<!ENTITY a \"b\">]><WebsiteConfiguration/>",
                MalformedXML,
            ),
        ] {
            assert_eq!(code(doc), expected, "{doc}");
        }
        // Too many rules, too deep, too many elements: refused without building a large tree.
        let rule = "<RoutingRule><Redirect><HostName>h</HostName></Redirect></RoutingRule>";
        let many = format!(
            "<WebsiteConfiguration><IndexDocument><Suffix>i</Suffix></IndexDocument>\
             <RoutingRules>{}</RoutingRules></WebsiteConfiguration>",
            rule.repeat(51)
        );
        assert_eq!(code(&many), InvalidArgument);
        let huge = format!(
            "<WebsiteConfiguration><RoutingRules>{}</RoutingRules></WebsiteConfiguration>",
            rule.repeat(10_000)
        );
        assert_eq!(code(&huge), MalformedXML);
        let deep = "<WebsiteConfiguration><RoutingRules><RoutingRule><Condition><KeyPrefixEquals>\
                    <Key/></KeyPrefixEquals></Condition></RoutingRule></RoutingRules></WebsiteConfiguration>";
        assert_eq!(code(deep), MalformedXML);
    }

    proptest::proptest! {
        /// Any body: never a panic.
        #[test]
        fn any_body_is_safe(s in "\\PC{0,200}") {
            let _ = parse(s.as_bytes());
        }
    }
}
