//! PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration, DeleteBucketLifecycle: the
//! bucket's lifecycle rules as XML (applied by `model`'s lifecycle worker).
//!
//! Grenier honours `Expiration` (`Days` or `Date`) and `AbortIncompleteMultipartUpload`, with
//! filters on prefix, tags and object size (`Filter` with one condition or `And`, or the legacy
//! top-level `Prefix`). What it cannot honour — transitions to other storage classes, actions on
//! noncurrent versions and `ExpiredObjectDeleteMarker` (Grenier has no versioning) — is refused
//! with 501 NotImplemented rather than stored and ignored. The rules are checked as AWS checks them
//! (at most 1000, unique IDs of at most 255 characters, positive days, dates at midnight UTC, an
//! action per rule).

use bytes::Bytes;
use hyper::{Response, StatusCode};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::ctx::{
    Ctx, ResBody, check_small_body_digests, full, internal, respond, small_body, xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::xml_escape;
use super::xml::{malformed, resolve_ref};
use crate::model::lifecycle::{
    DAY_MS, Expiration, LifecycleConfig, LifecycleFilter, LifecycleRule,
};

/// Most rules in a configuration (AWS's limit).
pub const MAX_RULES: usize = 1000;
/// Longest rule ID (AWS's limit).
pub const MAX_ID: usize = 255;
/// Largest PutBucketLifecycleConfiguration body (below `xml_body_max` if that is lower): the rules
/// live in the bucket entry, which every node keeps and reads, so they stay small. 1000 ordinary
/// rules take a few hundred KiB.
pub const MAX_BODY: usize = 1 << 20;
/// Deepest element nesting in a request (LifecycleConfiguration/Rule/Filter/And/Tag/Key).
const MAX_DEPTH: usize = 6;
/// Most elements in a request document: every rule fully spelled out fits.
const MAX_ELEMENTS: usize = MAX_RULES * 40;
/// Most child elements of one element (the root aside): a rule's And has at most 10 tags.
const MAX_CHILDREN: usize = 32;
/// Most bytes of text in one element (a prefix is at most a 1024-byte key).
const MAX_TEXT: usize = 4096;

pub async fn get_bucket_lifecycle(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    match ctx.bucket().params().and_then(|p| p.lifecycle()) {
        Some(c) => Ok(xml_response(to_xml(c))),
        None => Err(err(
            S3ErrorCode::NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist",
        )
        .with("BucketName", ctx.bucket_name())),
    }
}

pub async fn put_bucket_lifecycle(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let max = ctx.state.xml_body_max.min(MAX_BODY);
    let body = small_body(ctx, max).await?;
    check_small_body_digests(&ctx.headers, &body)?;
    let config = parse(&body)?;
    ctx.model()
        .set_bucket_lifecycle(&ctx.bucket().id, Some(config))
        .await
        .map_err(internal)?;
    respond(
        Response::builder().status(StatusCode::OK),
        full(Bytes::new()),
    )
}

pub async fn delete_bucket_lifecycle(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    ctx.model()
        .set_bucket_lifecycle(&ctx.bucket().id, None)
        .await
        .map_err(internal)?;
    respond(
        Response::builder().status(StatusCode::NO_CONTENT),
        full(Bytes::new()),
    )
}

// ---- XML out ------------------------------------------------------------------------------------

fn elem(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&xml_escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn filter_conditions(out: &mut String, f: &LifecycleFilter) {
    if let Some(p) = &f.prefix {
        elem(out, "Prefix", p);
    }
    for (k, v) in &f.tags {
        out.push_str("<Tag>");
        elem(out, "Key", k);
        elem(out, "Value", v);
        out.push_str("</Tag>");
    }
    if let Some(g) = f.size_greater_than {
        elem(out, "ObjectSizeGreaterThan", &g.to_string());
    }
    if let Some(l) = f.size_less_than {
        elem(out, "ObjectSizeLessThan", &l.to_string());
    }
}

/// A configuration as GetBucketLifecycleConfiguration answers it.
pub fn to_xml(c: &LifecycleConfig) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    for r in &c.rules {
        out.push_str("<Rule>");
        if let Some(id) = &r.id {
            elem(&mut out, "ID", id);
        }
        let f = &r.filter;
        if r.legacy_prefix {
            elem(&mut out, "Prefix", f.prefix.as_deref().unwrap_or(""));
        } else {
            let n = f.prefix.is_some() as usize
                + f.tags.len()
                + f.size_greater_than.is_some() as usize
                + f.size_less_than.is_some() as usize;
            out.push_str("<Filter>");
            if n > 1 {
                out.push_str("<And>");
                filter_conditions(&mut out, f);
                out.push_str("</And>");
            } else {
                filter_conditions(&mut out, f);
            }
            out.push_str("</Filter>");
        }
        elem(
            &mut out,
            "Status",
            if r.enabled { "Enabled" } else { "Disabled" },
        );
        match &r.expiration {
            Some(Expiration::Days(d)) => {
                out.push_str("<Expiration>");
                elem(&mut out, "Days", &d.to_string());
                out.push_str("</Expiration>");
            }
            Some(Expiration::Date(ms)) => {
                out.push_str("<Expiration>");
                elem(&mut out, "Date", &crate::util::timefmt::iso8601(*ms));
                out.push_str("</Expiration>");
            }
            None => {}
        }
        if let Some(d) = r.abort_incomplete_mpu_days {
            out.push_str("<AbortIncompleteMultipartUpload>");
            elem(&mut out, "DaysAfterInitiation", &d.to_string());
            out.push_str("</AbortIncompleteMultipartUpload>");
        }
        out.push_str("</Rule>");
    }
    out.push_str("</LifecycleConfiguration>");
    out
}

// ---- XML in -------------------------------------------------------------------------------------

fn invalid(message: impl Into<String>) -> S3Error {
    err(S3ErrorCode::InvalidArgument, message)
}

fn not_implemented(what: &str) -> S3Error {
    err(
        S3ErrorCode::NotImplemented,
        format!(
            "Grenier does not support {what} in lifecycle rules (it has one storage class and no \
             versioning); nothing was changed."
        ),
    )
}

#[derive(Debug, Default)]
struct El {
    name: String,
    text: String,
    children: Vec<El>,
}

impl El {
    fn leaf(&self) -> Result<&str, S3Error> {
        if self.children.is_empty() {
            Ok(&self.text)
        } else {
            Err(malformed())
        }
    }
    fn container(&self) -> Result<&[El], S3Error> {
        if self.text.trim().is_empty() {
            Ok(&self.children)
        } else {
            Err(malformed())
        }
    }
}

/// The document's root element, every limit checked while reading (depth, elements, children, text).
fn parse_tree(body: &[u8]) -> Result<El, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<El> = vec![];
    let mut root: Option<El> = None;
    let mut elements = 0usize;
    let push_text = |stack: &mut Vec<El>, s: &str| -> Result<(), S3Error> {
        match stack.last_mut() {
            Some(top) if top.text.len() + s.len() <= MAX_TEXT => {
                top.text.push_str(s);
                Ok(())
            }
            // Indentation between elements of a container may be dropped.
            Some(top) if s.trim().is_empty() && top.text.trim().is_empty() => Ok(()),
            Some(_) => Err(malformed()),
            None if s.trim().is_empty() => Ok(()),
            None => Err(malformed()),
        }
    };
    loop {
        let ev = reader.read_event().map_err(|_| malformed())?;
        let (start, end) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                push_text(&mut stack, t)?;
                (None, false)
            }
            Event::CData(t) => {
                push_text(&mut stack, t)?;
                (None, false)
            }
            Event::GeneralRef(r) => {
                let c = resolve_ref(r)?;
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]))?;
                (None, false)
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => (None, false),
            Event::DocType(_) => return Err(malformed()),
            Event::Eof => break,
        };
        if let Some(e) = start {
            elements += 1;
            let room = match stack.len() {
                0 => root.is_none(),
                1 => stack[0].children.len() < MAX_RULES + 1,
                d => d < MAX_DEPTH && stack[d - 1].children.len() < MAX_CHILDREN,
            };
            if !room || elements > MAX_ELEMENTS || e.attributes().count() > 16 {
                return Err(malformed());
            }
            for a in e.attributes() {
                a.map_err(|_| malformed())?;
            }
            let local = e.local_name();
            let name: &str = local.as_ref();
            let name = name.to_string();
            stack.push(El {
                name,
                ..El::default()
            });
        }
        if end {
            let el = stack.pop().ok_or_else(malformed)?;
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None => root = Some(el),
            }
        }
    }
    if !stack.is_empty() {
        return Err(malformed());
    }
    root.ok_or_else(malformed)
}

fn set_once<'a>(slot: &mut Option<&'a El>, el: &'a El) -> Result<(), S3Error> {
    if slot.replace(el).is_some() {
        return Err(malformed());
    }
    Ok(())
}

fn positive_days(el: &El, what: &str) -> Result<u32, S3Error> {
    let t = el.leaf()?.trim();
    match t.parse::<i64>() {
        Ok(d) if d > 0 => {
            u32::try_from(d).map_err(|_| invalid(format!("'{what}' must be a positive integer")))
        }
        Ok(_) => Err(invalid(format!("'{what}' must be a positive integer"))),
        Err(_) => Err(malformed()),
    }
}

fn size(el: &El) -> Result<u64, S3Error> {
    el.leaf()?.trim().parse().map_err(|_| malformed())
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An ISO 8601 `Date` (`2027-01-01`, `2027-01-01T00:00:00Z`, with `.000` or `+00:00`), which must
/// be at midnight UTC; milliseconds since the epoch.
pub fn parse_date(s: &str) -> Result<u64, S3Error> {
    let s = s.trim();
    let bad = || invalid("The 'Date' is not a valid ISO 8601 date");
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut parts = date.splitn(3, '-');
    let mut num = |len: usize| -> Result<u32, S3Error> {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != len || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    let dim = [
        31,
        28 + (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) as u32,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > dim[m as usize - 1] || y < 1970 {
        return Err(bad());
    }
    if !time.is_empty() {
        let t = time
            .strip_suffix('Z')
            .or_else(|| time.strip_suffix("+00:00"))
            .ok_or_else(bad)?;
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        if !frac.bytes().all(|c| c.is_ascii_digit())
            || hms.len() != 8
            || !hms.bytes().enumerate().all(|(i, c)| {
                if i == 2 || i == 5 {
                    c == b':'
                } else {
                    c.is_ascii_digit()
                }
            })
        {
            return Err(bad());
        }
        if hms != "00:00:00" || frac.bytes().any(|c| c != b'0') {
            return Err(invalid("'Date' must be at midnight GMT"));
        }
    }
    Ok(days_from_civil(y as i64, m, d) as u64 * DAY_MS)
}

fn parse_tag(el: &El) -> Result<(String, String), S3Error> {
    let (mut k, mut v) = (None, None);
    for c in el.container()? {
        match c.name.as_str() {
            "Key" => set_once(&mut k, c)?,
            "Value" => set_once(&mut v, c)?,
            _ => return Err(malformed()),
        }
    }
    Ok((
        k.ok_or_else(malformed)?.leaf()?.to_string(),
        v.ok_or_else(malformed)?.leaf()?.to_string(),
    ))
}

/// The conditions of a `Filter` (exactly one, or none) or of an `And` (several).
fn parse_conditions(el: &El, and: bool) -> Result<LifecycleFilter, S3Error> {
    let mut f = LifecycleFilter::default();
    let children = el.container()?;
    if !and && children.len() > 1 {
        return Err(malformed());
    }
    for c in children {
        match c.name.as_str() {
            "Prefix" if f.prefix.is_none() => f.prefix = Some(c.leaf()?.to_string()),
            "Tag" => f.tags.push(parse_tag(c)?),
            "ObjectSizeGreaterThan" if f.size_greater_than.is_none() => {
                f.size_greater_than = Some(size(c)?)
            }
            "ObjectSizeLessThan" if f.size_less_than.is_none() => f.size_less_than = Some(size(c)?),
            "And" if !and => return parse_conditions(c, true),
            _ => return Err(malformed()),
        }
    }
    if !f.tags.is_empty() {
        f.tags = super::tagging::validate(std::mem::take(&mut f.tags))?;
    }
    if let (Some(g), Some(l)) = (f.size_greater_than, f.size_less_than)
        && g >= l
    {
        return Err(invalid(
            "The maximum object size must be larger than the minimum object size",
        ));
    }
    Ok(f)
}

fn parse_expiration(el: &El) -> Result<Option<Expiration>, S3Error> {
    let (mut days, mut date, mut marker) = (None, None, None);
    for c in el.container()? {
        match c.name.as_str() {
            "Days" => set_once(&mut days, c)?,
            "Date" => set_once(&mut date, c)?,
            "ExpiredObjectDeleteMarker" => set_once(&mut marker, c)?,
            _ => return Err(malformed()),
        }
    }
    if let Some(m) = marker {
        match m.leaf()?.trim() {
            "true" => return Err(not_implemented("ExpiredObjectDeleteMarker")),
            "false" if days.is_none() && date.is_none() => return Ok(None),
            _ => return Err(malformed()),
        }
    }
    match (days, date) {
        (Some(d), None) => Ok(Some(Expiration::Days(positive_days(
            d,
            "Days' for Expiration action",
        )?))),
        (None, Some(d)) => Ok(Some(Expiration::Date(parse_date(d.leaf()?)?))),
        _ => Err(malformed()),
    }
}

fn parse_rule(el: &El) -> Result<LifecycleRule, S3Error> {
    let mut r = LifecycleRule::default();
    let (mut id, mut status, mut prefix, mut filter, mut exp, mut abort) =
        (None, None, None, None, None, None);
    for c in el.container()? {
        match c.name.as_str() {
            "ID" => set_once(&mut id, c)?,
            "Status" => set_once(&mut status, c)?,
            "Prefix" => set_once(&mut prefix, c)?,
            "Filter" => set_once(&mut filter, c)?,
            "Expiration" => set_once(&mut exp, c)?,
            "AbortIncompleteMultipartUpload" => set_once(&mut abort, c)?,
            "Transition" | "Transitions" => return Err(not_implemented("Transition")),
            "NoncurrentVersionTransition" | "NoncurrentVersionTransitions" => {
                return Err(not_implemented("NoncurrentVersionTransition"));
            }
            "NoncurrentVersionExpiration" => {
                return Err(not_implemented("NoncurrentVersionExpiration"));
            }
            _ => return Err(malformed()),
        }
    }
    if let Some(id) = id {
        let id = id.leaf()?;
        if id.chars().count() > MAX_ID {
            return Err(invalid("ID length should not exceed allowed limit of 255"));
        }
        if !id.is_empty() {
            r.id = Some(id.to_string());
        }
    }
    r.enabled = match status.ok_or_else(malformed)?.leaf()?.trim() {
        "Enabled" => true,
        "Disabled" => false,
        _ => return Err(malformed()),
    };
    match (prefix, filter) {
        (Some(_), Some(_)) => return Err(malformed()),
        (Some(p), None) => {
            r.legacy_prefix = true;
            r.filter.prefix = Some(p.leaf()?.to_string());
        }
        (None, Some(f)) => r.filter = parse_conditions(f, false)?,
        (None, None) => {}
    }
    if let Some(e) = exp {
        r.expiration = parse_expiration(e)?;
    }
    if let Some(a) = abort {
        let mut days = None;
        for c in a.container()? {
            match c.name.as_str() {
                "DaysAfterInitiation" => set_once(&mut days, c)?,
                _ => return Err(malformed()),
            }
        }
        r.abort_incomplete_mpu_days = Some(positive_days(
            days.ok_or_else(malformed)?,
            "DaysAfterInitiation' for AbortIncompleteMultipartUpload action",
        )?);
        if !r.filter.tags.is_empty() {
            return Err(err(
                S3ErrorCode::InvalidRequest,
                "Tag-based filter cannot be used with AbortIncompleteMultipartUpload action",
            ));
        }
    }
    if r.expiration.is_none() && r.abort_incomplete_mpu_days.is_none() {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            "At least one action needs to be specified in a rule",
        ));
    }
    Ok(r)
}

/// Parses and checks a PutBucketLifecycleConfiguration body. Rules without an ID get a random one,
/// as in AWS.
pub fn parse(body: &[u8]) -> Result<LifecycleConfig, S3Error> {
    let root = parse_tree(body)?;
    if root.name != "LifecycleConfiguration" {
        return Err(malformed());
    }
    let children = root.container()?;
    if children.is_empty() {
        return Err(malformed());
    }
    if children.len() > MAX_RULES {
        return Err(invalid(
            "The number of lifecycle rules should not exceed allowed limit of 1000 rules",
        ));
    }
    let mut rules: Vec<LifecycleRule> = vec![];
    for c in children {
        if c.name != "Rule" {
            return Err(malformed());
        }
        rules.push(parse_rule(c)?);
    }
    let mut ids: Vec<&str> = rules.iter().filter_map(|r| r.id.as_deref()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid(
            "Rule ID must be unique. Found same ID for more than one rule",
        ));
    }
    for r in &mut rules {
        if r.id.is_none() {
            r.id = Some(hex::encode(crate::model::random_bytes::<16>()));
        }
    }
    Ok(LifecycleConfig { rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> S3ErrorCode {
        parse(body.as_bytes()).unwrap_err().code
    }

    fn doc(rules: &str) -> String {
        format!(
            "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{rules}</LifecycleConfiguration>"
        )
    }

    #[test]
    fn every_filter_form_round_trips() {
        let body = doc(
            "<Rule><ID>a</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>\
             <Expiration><Days>3</Days></Expiration></Rule>\
             <Rule><ID>b</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>t</Key><Value>1 &amp; 2</Value></Tag>\
             <ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>\
             <Status>Disabled</Status><Expiration><Date>2027-01-01T00:00:00.000Z</Date></Expiration></Rule>\
             <Rule><ID>c</ID><Prefix>old/</Prefix><Status>Enabled</Status>\
             <AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
             <Rule><ID>d</ID><Filter></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>\
             <Rule><ID>e</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>",
        );
        let c = parse(body.as_bytes()).unwrap();
        assert_eq!(c.rules.len(), 5);
        assert_eq!(c.rules[0].filter.prefix.as_deref(), Some("logs/"));
        assert_eq!(c.rules[0].expiration, Some(Expiration::Days(3)));
        let b = &c.rules[1];
        assert!(!b.enabled);
        assert_eq!(b.filter.tags, vec![("t".to_string(), "1 & 2".to_string())]);
        assert_eq!(
            (b.filter.size_greater_than, b.filter.size_less_than),
            (Some(10), Some(100))
        );
        assert_eq!(b.expiration, Some(Expiration::Date(1_798_761_600_000)));
        assert!(c.rules[2].legacy_prefix);
        assert_eq!(c.rules[2].abort_incomplete_mpu_days, Some(7));
        assert_eq!(c.rules[3].filter, LifecycleFilter::default());
        let xml = to_xml(&c);
        assert!(xml.contains("<Rule><ID>c</ID><Prefix>old/</Prefix><Status>Enabled</Status>"));
        assert!(xml.contains(
            "<Filter><And><Prefix>x/</Prefix><Tag><Key>t</Key><Value>1 &amp; 2</Value></Tag>"
        ));
        assert!(xml.contains("<Date>2027-01-01T00:00:00.000Z</Date>"));
        assert!(xml.contains("<ID>d</ID><Filter></Filter>"));
        assert_eq!(
            parse(xml.as_bytes()).unwrap(),
            c,
            "what GET answers PUTs back the same"
        );
    }

    #[test]
    fn rules_are_checked_as_aws_checks_them() {
        let rule = |id: &str, body: &str| {
            format!("<Rule><ID>{id}</ID><Filter/><Status>Enabled</Status>{body}</Rule>")
        };
        let exp = "<Expiration><Days>1</Days></Expiration>";
        assert_eq!(code(&doc(&rule("a", ""))), S3ErrorCode::InvalidRequest);
        assert_eq!(
            code(&doc(&(rule("a", exp) + &rule("a", exp)))),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(&doc(&rule(&"i".repeat(256), exp))),
            S3ErrorCode::InvalidArgument
        );
        assert!(parse(doc(&rule(&"i".repeat(255), exp)).as_bytes()).is_ok());
        let days = |d: &str| {
            code(&doc(&rule(
                "a",
                &format!("<Expiration><Days>{d}</Days></Expiration>"),
            )))
        };
        assert_eq!(days("0"), S3ErrorCode::InvalidArgument);
        assert_eq!(days("-1"), S3ErrorCode::InvalidArgument);
        assert_eq!(days("x"), S3ErrorCode::MalformedXML);
        let date = |d: &str| {
            code(&doc(&rule(
                "a",
                &format!("<Expiration><Date>{d}</Date></Expiration>"),
            )))
        };
        assert_eq!(date("2027-01-01T10:00:00Z"), S3ErrorCode::InvalidArgument);
        assert_eq!(date("2027-02-30T00:00:00Z"), S3ErrorCode::InvalidArgument);
        assert_eq!(date("soon"), S3ErrorCode::InvalidArgument);
        assert_eq!(
            code(&doc(&rule(
                "a",
                "<Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"
            ))),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(&doc(&rule(
                "a",
                "<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays></NoncurrentVersionExpiration>"
            ))),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(&doc(&rule(
                "a",
                "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
            ))),
            S3ErrorCode::NotImplemented
        );
        assert_eq!(
            code(&doc(
                "<Rule><Prefix/><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
            )),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(&doc(&rule("a", exp).replace("Enabled", "On"))),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(&doc(
                "<Rule><Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
            )),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(&doc(
                "<Rule><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
            )),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(code(&doc("")), S3ErrorCode::MalformedXML);
        assert_eq!(code("<Other/>"), S3ErrorCode::MalformedXML);
        let many: String = (0..1001).map(|i| rule(&i.to_string(), exp)).collect();
        assert_eq!(code(&doc(&many)), S3ErrorCode::InvalidArgument);
        let max: String = (0..1000).map(|i| rule(&i.to_string(), exp)).collect();
        assert_eq!(parse(doc(&max).as_bytes()).unwrap().rules.len(), 1000);
        // Without an ID, one is made up.
        let c = parse(
            doc("<Rule><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>")
                .as_bytes(),
        )
        .unwrap();
        assert!(c.rules[0].id.as_ref().is_some_and(|id| !id.is_empty()));
    }

    #[test]
    fn hostile_documents_are_refused_cheaply() {
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert_eq!(code(&deep), S3ErrorCode::MalformedXML);
        let wide = doc(&format!(
            "<Rule>{}</Rule>",
            "<ID>x</ID>".repeat(MAX_CHILDREN + 1)
        ));
        assert_eq!(code(&wide), S3ErrorCode::MalformedXML);
        assert_eq!(
            code("<!DOCTYPE x [<!ENTITY a \"b\">]><LifecycleConfiguration/>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(&doc(&"x".repeat(MAX_TEXT + 1))),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(code("\u{0}\u{1}"), S3ErrorCode::MalformedXML);
    }

    #[test]
    fn dates_parse_at_midnight_only() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert_eq!(
            parse_date("2024-02-29T00:00:00+00:00").unwrap(),
            1_709_164_800_000
        );
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("2024-01-01T00:00:01Z").is_err());
        assert!(parse_date("2024-01-01T00:00:00.001Z").is_err());
        assert!(parse_date("2024-1-01").is_err());
    }
}
