//! A bucket's CORS configuration (PutBucketCors), stored in its `BucketParams`, and the matching of a
//! browser's request against its rules (used by the S3 and website endpoints).
//!
//! Matching follows AWS: a rule applies to a request when one of its `AllowedOrigin`s matches the
//! request's `Origin` (exactly, or with its one `*` standing for any run of characters), one of its
//! `AllowedMethod`s is the request's method (for a preflight: its `Access-Control-Request-Method`),
//! and, for a preflight, every header named in `Access-Control-Request-Headers` matches one of its
//! `AllowedHeader`s (case-insensitively, `*` wildcards allowed). The first rule that applies wins.

use serde::{Deserialize, Serialize};

use super::{Model, ModelError};
use crate::table::schema::EmptyKey;
use crate::util::hash::Hash;

/// Most rules in one configuration (AWS's limit).
pub const MAX_RULES: usize = 100;

/// The methods a rule may allow (AWS refuses any other).
pub const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CorsConfig {
    pub rules: Vec<CorsRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    /// Origins, each possibly with one `*` wildcard.
    pub allowed_origins: Vec<String>,
    /// GET, PUT, POST, DELETE, HEAD.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for, each possibly with one `*` wildcard.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age_seconds: Option<u32>,
}

impl CorsConfig {
    /// The first rule that lets `origin` use `method` with every header of `request_headers`
    /// (lowercase names, as [`request_headers`] gives them; empty for an actual request).
    pub fn matching_rule(
        &self,
        origin: &str,
        method: &str,
        request_headers: &[String],
    ) -> Option<&CorsRule> {
        self.rules
            .iter()
            .find(|r| r.matches(origin, method, request_headers))
    }
}

impl CorsRule {
    pub fn matches(&self, origin: &str, method: &str, request_headers: &[String]) -> bool {
        self.allows_origin(origin)
            && self.allows_method(method)
            && request_headers.iter().all(|h| self.allows_header(h))
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|p| wildcard_match(p.as_bytes(), origin.as_bytes()))
    }

    /// Methods are compared exactly (HTTP methods are case-sensitive; the rules hold upper case).
    pub fn allows_method(&self, method: &str) -> bool {
        self.allowed_methods.iter().any(|m| m == method)
    }

    /// Header names are case-insensitive (lower case, as [`request_headers`] gives them, costs no
    /// copy).
    pub fn allows_header(&self, header: &str) -> bool {
        if header.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.allows_header(&header.to_ascii_lowercase());
        }
        self.allowed_headers.iter().any(|p| {
            if p.bytes().any(|b| b.is_ascii_uppercase()) {
                wildcard_match(p.to_ascii_lowercase().as_bytes(), header.as_bytes())
            } else {
                wildcard_match(p.as_bytes(), header.as_bytes())
            }
        })
    }

    /// The `Access-Control-Allow-Origin` this rule grants `origin`: `*` when the origin is allowed
    /// only by an `AllowedOrigin` of exactly `*` (anyone, so no credentials), else the origin itself.
    pub fn allow_origin<'a>(&self, origin: &'a str) -> &'a str {
        let specific = self
            .allowed_origins
            .iter()
            .any(|p| p != "*" && wildcard_match(p.as_bytes(), origin.as_bytes()));
        if specific { origin } else { "*" }
    }
}

/// Whether `value` matches `pattern`, where each `*` of the pattern stands for any run of bytes
/// (configurations hold at most one, but stored data is matched whatever it holds). With at most
/// one `*` the cost is the pattern's length (a prefix and a suffix compared), whatever the value's
/// (an `Origin` header may be long); with more, at worst `pattern.len() * value.len()` steps, never
/// recursive.
pub fn wildcard_match(pattern: &[u8], value: &[u8]) -> bool {
    match pattern.iter().position(|&c| c == b'*') {
        None => pattern == value,
        Some(i) if !pattern[i + 1..].contains(&b'*') => {
            let (prefix, suffix) = (&pattern[..i], &pattern[i + 1..]);
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
        Some(_) => glob(pattern, value),
    }
}

/// The general case of [`wildcard_match`]: backtrack to the last `*` only.
fn glob(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    // The position after the last `*` seen in the pattern, and where in the value it resumed.
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p + 1, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            // Let the last `*` swallow one more byte and retry from there.
            p = sp;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// How many `*` a pattern holds (AWS allows at most one per origin and per header).
pub fn wildcards(pattern: &str) -> usize {
    pattern.bytes().filter(|&b| b == b'*').count()
}

/// Most distinct header names a preflight may ask for (browsers ask for a handful): each is matched
/// against every rule, so a request may not make a preflight cost more than this many passes.
pub const MAX_REQUEST_HEADERS: usize = 64;

/// The header names of `Access-Control-Request-Headers` values (comma-separated, possibly given
/// several times): trimmed, lower-cased, empty items and repeats dropped, in order. `None` past
/// [`MAX_REQUEST_HEADERS`] names.
pub fn request_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for h in values.into_iter().flat_map(|v| v.split(',')) {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || out.contains(&h) {
            continue;
        }
        if out.len() == MAX_REQUEST_HEADERS {
            return None;
        }
        out.push(h);
    }
    Some(out)
}

impl Model {
    /// Set (PutBucketCors) or remove (DeleteBucketCors, `None`) a bucket's CORS rules: a quorum
    /// read of the bucket, then a quorum write of its entry.
    pub async fn set_bucket_cors(
        &self,
        bucket: &Hash,
        cors: Option<CorsConfig>,
    ) -> Result<(), ModelError> {
        let no_bucket = || ModelError::NoSuchBucket(hex::encode(bucket));
        let mut b = self
            .buckets
            .get(bucket, &EmptyKey)
            .await?
            .filter(|b| !b.state.is_deleted())
            .ok_or_else(no_bucket)?;
        b.state
            .get_mut()
            .ok_or_else(no_bucket)?
            .set_cors(self.node, cors);
        self.buckets.insert(&b).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        CorsRule {
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
            ..Default::default()
        }
    }

    #[test]
    fn wildcards_match_any_run_of_characters() {
        let m = |p: &str, v: &str| wildcard_match(p.as_bytes(), v.as_bytes());
        assert!(m("*", ""));
        assert!(m("*", "http://anything"));
        assert!(m("http://a.org", "http://a.org"));
        assert!(!m("http://a.org", "http://a.org.evil"));
        assert!(!m("http://a.org", "http://a.or"));
        assert!(m("http://*.example.org", "http://www.example.org"));
        assert!(m("http://*.example.org", "http://a.b.example.org"));
        assert!(!m("http://*.example.org", "http://example.org"));
        assert!(!m("http://*.example.org", "https://www.example.org"));
        assert!(!m(
            "http://*.example.org",
            "http://www.example.org.evil.com"
        ));
        assert!(m("http://localhost:*", "http://localhost:8080"));
        assert!(m("*.example.org", "https://x.example.org"));
        assert!(m("x-amz-*", "x-amz-date"));
        assert!(!m("x-amz-*", "x-am"));
        // Several stars (not accepted by PutBucketCors, still matched sanely).
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("**", "x"));
        assert!(!m("", "x"));
        assert!(m("", ""));
        // A long value against a pattern that keeps backtracking stays cheap.
        let long = "a".repeat(10_000);
        assert!(!m("*a*a*a*b", &long));
    }

    #[test]
    fn first_matching_rule_wins() {
        let config = CorsConfig {
            rules: vec![
                rule(&["http://a.org"], &["GET"], &[]),
                rule(
                    &["http://*.b.org"],
                    &["PUT", "GET"],
                    &["content-type", "x-amz-*"],
                ),
                rule(&["*"], &["GET"], &["*"]),
            ],
        };
        let hs = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let which = |o: &str, m: &str, h: &[&str]| {
            config
                .matching_rule(o, m, &hs(h))
                .map(|r| config.rules.iter().position(|x| x == r).unwrap())
        };
        assert_eq!(which("http://a.org", "GET", &[]), Some(0));
        // The first rule does not allow the header: the catch-all does.
        assert_eq!(which("http://a.org", "GET", &["x-custom"]), Some(2));
        assert_eq!(which("http://a.org", "PUT", &[]), None);
        assert_eq!(which("http://www.b.org", "PUT", &["content-type"]), Some(1));
        assert_eq!(
            which("http://www.b.org", "PUT", &["content-type", "x-amz-date"]),
            Some(1)
        );
        assert_eq!(which("http://www.b.org", "PUT", &["authorization"]), None);
        assert_eq!(which("http://www.b.org", "DELETE", &[]), None);
        assert_eq!(which("http://other.org", "GET", &["anything"]), Some(2));
        // Methods are case-sensitive, as HTTP's.
        assert_eq!(which("http://other.org", "get", &[]), None);
    }

    #[test]
    fn headers_match_case_insensitively() {
        let r = rule(&["*"], &["GET"], &["Content-Type", "X-Amz-Meta-*"]);
        assert!(r.allows_header("content-type"));
        assert!(r.allows_header("CONTENT-TYPE"));
        assert!(r.allows_header("x-amz-meta-foo"));
        assert!(!r.allows_header("x-amz-date"));
        // No AllowedHeader: only preflights asking for no header match.
        let bare = rule(&["*"], &["GET"], &[]);
        assert!(bare.matches("http://a", "GET", &[]));
        assert!(!bare.matches("http://a", "GET", &["content-type".into()]));
    }

    #[test]
    fn allow_origin_is_star_only_for_a_star_rule() {
        let star = rule(&["*"], &["GET"], &[]);
        assert_eq!(star.allow_origin("http://a.org"), "*");
        let specific = rule(&["http://*.a.org"], &["GET"], &[]);
        assert_eq!(specific.allow_origin("http://x.a.org"), "http://x.a.org");
        let both = rule(&["http://x.a.org", "*"], &["GET"], &[]);
        assert_eq!(both.allow_origin("http://x.a.org"), "http://x.a.org");
        assert_eq!(both.allow_origin("http://other"), "*");
    }

    #[test]
    fn request_headers_are_split_trimmed_and_lowercased() {
        assert_eq!(
            request_headers(["Content-Type, X-Amz-Date", " ,x-amz-meta-a ,content-type"]).unwrap(),
            vec!["content-type", "x-amz-date", "x-amz-meta-a"]
        );
        assert!(request_headers(["", " , "]).unwrap().is_empty());
        let many: Vec<String> = (0..MAX_REQUEST_HEADERS).map(|i| format!("h{i}")).collect();
        let joined = many.join(",");
        assert_eq!(
            request_headers([joined.as_str()]).unwrap().len(),
            MAX_REQUEST_HEADERS
        );
        // Repeats do not count; one more name does.
        assert!(request_headers([joined.as_str(), "h0,H1"]).is_some());
        assert!(request_headers([joined.as_str(), "x"]).is_none());
        assert_eq!(wildcards("http://*.a.*"), 2);
        assert_eq!(wildcards("*"), 1);
    }
}
