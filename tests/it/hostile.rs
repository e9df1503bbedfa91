//! The S3 port faces the internet: requests an attacker can craft, sent as raw HTTP to real nodes.
//! Unsigned `x-amz-*` headers added to presigned URLs and signed requests, a table of malformed and
//! absurd requests (each a 4xx S3 XML error, never a panic), made-up access key ids while most of the
//! cluster is unreachable (answered locally, fast), and error messages that leak nothing internal.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use grenier::s3::sigv4::{self, Credentials};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};

use crate::harness::*;
use crate::s3::S3Env;

/// One raw HTTP/1.1 exchange: `head` is the request line and headers (without the blank line).
/// Returns the status (0 when the server closed the connection without answering) and the response.
pub(crate) fn raw(addr: &str, head: &[u8], body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body);
    // The server may answer (and close) before the whole body is sent: that is fine.
    let _ = s.write_all(&req);
    let mut resp = vec![];
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// The request head of `headers`, with `Content-Length` of `body`.
pub(crate) fn head_of(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body_len: usize,
) -> Vec<u8> {
    let mut h =
        format!("{method} {path_and_query} HTTP/1.1\r\nContent-Length: {body_len}").into_bytes();
    for (k, v) in headers {
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(k.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v.as_bytes());
    }
    h
}

/// A hostile request: method, path and query, extra signed headers, body, expected status.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

pub(crate) struct Signer<'a> {
    pub(crate) env: &'a S3Env,
    pub(crate) node: usize,
}

impl Signer<'_> {
    pub(crate) fn addr(&self) -> String {
        format!("{}:3900", self.env.procs[self.node].spec.ip)
    }

    pub(crate) fn creds(&self) -> Credentials<'_> {
        Credentials {
            access_key: &self.env.key_id,
            secret_key: &self.env.secret,
            region: "garage",
        }
    }

    /// Headers of a header-signed request (payload hash literal), `extra` signed too.
    pub(crate) fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> HeaderMap {
        let extra: Vec<(&str, &[u8])> = extra.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.sign_bytes(method, path_and_query, body, &extra)
    }

    /// [`Signer::sign`] with header values of any bytes (not only text).
    pub(crate) fn sign_bytes(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        extra: &[(&str, &[u8])],
    ) -> HeaderMap {
        let uri: Uri = format!("http://{}{path_and_query}", self.addr())
            .parse()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", self.addr().parse().unwrap());
        let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(body).into();
        h.insert("x-amz-content-sha256", hex::encode(sha).parse().unwrap());
        for (k, v) in extra {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let m: Method = method.parse().unwrap();
        sigv4::sign(&m, &uri, &mut h, &self.creds(), SystemTime::now());
        h
    }

    /// Send a header-signed request.
    pub(crate) fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let h = self.sign(method, path_and_query, body, extra);
        raw(
            &self.addr(),
            &head_of(method, path_and_query, &h, body.len()),
            body,
        )
    }

    /// A presigned URL's path and query (signs `host` only, as browsers' uploads use them).
    fn presign(&self, method: &str, path: &str) -> String {
        let uri: Uri = format!("http://{}{path}", self.addr()).parse().unwrap();
        let m: Method = method.parse().unwrap();
        let q = sigv4::presign(
            &m,
            &uri,
            &HeaderMap::new(),
            &self.creds(),
            SystemTime::now(),
            600,
        );
        format!("{path}?{q}")
    }
}

/// A 3-node cluster with bucket `dev` holding one object.
fn env_with_object(key: &str, body: &'static [u8]) -> S3Env {
    let env = S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        c.create_bucket().bucket("dev").send().await.unwrap();
        c.put_object()
            .bucket("dev")
            .key(key)
            .body(ByteStream::from_static(body))
            .send()
            .await
            .unwrap();
    });
    env
}

fn assert_no_panic(env: &S3Env) {
    for p in &env.procs {
        let log = p.log_text();
        assert!(
            !log.contains("panicked"),
            "a request panicked a task on {}:\n{log}",
            p.spec.ip
        );
    }
}

/// Issue 9, finding 1: a presigned PUT URL must not become a copy of any object the signer can read,
/// and no unsigned `x-amz-*` header may change what a presigned or header-signed request does.
#[test]
fn unsigned_amz_headers_are_refused() {
    let env = env_with_object("private/secret.txt", b"top secret");
    let c = env.client(0);
    let s = Signer { env: &env, node: 0 };
    let host = format!("Host: {}", s.addr());
    let presigned_put = |extra: &str| {
        let url = s.presign("PUT", "/dev/uploads/user1.jpg");
        let mut head = format!("PUT {url} HTTP/1.1\r\n{host}\r\nContent-Length: 5");
        if !extra.is_empty() {
            head.push_str("\r\n");
            head.push_str(extra);
        }
        raw(&s.addr(), head.as_bytes(), b"photo")
    };
    for extra in [
        "x-amz-copy-source: dev/private/secret.txt",
        "x-amz-copy-source: /dev/private/secret.txt\r\nx-amz-copy-source-range: bytes=0-3",
        "x-amz-copy-source: dev/private/secret.txt\r\nx-amz-metadata-directive: REPLACE",
        "x-amz-meta-owner: mallory",
        "x-amz-acl: public-read",
        "x-amz-checksum-crc32: AAAAAA==",
    ] {
        let (status, text) = presigned_put(extra);
        assert_eq!(status, 403, "{extra}: {text}");
        assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
        assert!(text.contains("HeadersNotSigned"), "{text}");
    }
    let found = |key: &str| {
        env.block_on(async {
            c.get_object()
                .bucket("dev")
                .key(key)
                .send()
                .await
                .ok()
                .map(|o| o.e_tag().unwrap_or_default().to_string())
        })
    };
    assert_eq!(found("uploads/user1.jpg"), None, "nothing was written");

    // Header-signed requests: a header added after signing is refused the same way.
    let signed = s.sign("PUT", "/dev/uploads/user2.jpg", b"photo", &[]);
    for extra in [
        "x-amz-copy-source: dev/private/secret.txt",
        "x-amz-meta-owner: mallory",
        "x-amz-tagging: a=b",
    ] {
        let mut head = head_of("PUT", "/dev/uploads/user2.jpg", &signed, 5);
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(extra.as_bytes());
        let (status, text) = raw(&s.addr(), &head, b"photo");
        assert_eq!(status, 403, "{extra}: {text}");
        assert!(text.contains("HeadersNotSigned"), "{text}");
    }
    assert_eq!(found("uploads/user2.jpg"), None, "nothing was written");

    // The same URL and the same signed request, untouched, work: the refusals above are not
    // refusals of everything.
    let (status, text) = presigned_put("");
    assert_eq!(status, 200, "{text}");
    let head = head_of("PUT", "/dev/uploads/user2.jpg", &signed, 5);
    let (status, text) = raw(&s.addr(), &head, b"photo");
    assert_eq!(status, 200, "{text}");
    let md5 = format!(
        "\"{}\"",
        hex::encode(<md5::Md5 as md5::Digest>::digest(b"photo"))
    );
    assert_eq!(found("uploads/user1.jpg").as_deref(), Some(md5.as_str()));
    assert_eq!(found("uploads/user2.jpg").as_deref(), Some(md5.as_str()));
    assert_no_panic(&env);
}

/// Hostile requests, each signed with a valid key so that they reach the handlers: every one gets a
/// 4xx S3 XML error (or, where S3 ignores the oddity, a normal answer), none panics a task, and the
/// node goes on serving.
#[test]
fn hostile_requests_get_4xx_and_never_a_panic() {
    let env = env_with_object("obj", b"0123456789");
    let c = env.client(0);
    let s = Signer { env: &env, node: 0 };
    let deep = format!("<Delete>{}", "<Object>".repeat(200_000));
    let wide = format!("<Delete>{}</Delete>", "<Object/>".repeat(900_000));
    let many = format!(
        "<Delete>{}</Delete>",
        "<Object><Key>k</Key></Object>".repeat(1001)
    );
    let huge = format!("<Delete>{}</Delete>", " ".repeat(9 << 20));
    let table: Vec<Case> = vec![
        // response-* values decoded from the query, with control characters.
        ("GET", "/dev/obj?response-content-type=a%0d%0aSet-Cookie:%20x".into(), vec![], vec![], 400),
        ("GET", "/dev/obj?response-content-disposition=%00".into(), vec![], vec![], 400),
        ("GET", "/dev/obj?response-expires=%7f%0a".into(), vec![], vec![], 400),
        ("GET", "/dev/obj?response-cache-control=%0b".into(), vec![], vec![], 400),
        // Bad percent-encoding and invalid UTF-8 in the query and the path.
        ("GET", "/dev?prefix=%zz".into(), vec![], vec![], 400),
        ("GET", "/dev?prefix=%ff%fe".into(), vec![], vec![], 400),
        ("GET", "/dev/%ff%fe%fd".into(), vec![], vec![], 400),
        ("GET", "/dev?list-type=2&continuation-token=%00%01notbase64".into(), vec![], vec![], 400),
        ("GET", "/dev?max-keys=99999999999999999999999".into(), vec![], vec![], 400),
        // Absurd part numbers and ranges.
        ("GET", "/dev/obj?partNumber=0".into(), vec![], vec![], 400),
        ("GET", "/dev/obj?partNumber=99999999999999999999".into(), vec![], vec![], 400),
        ("GET", "/dev/obj?partNumber=-1".into(), vec![], vec![], 400),
        ("GET", "/dev/obj".into(), vec![("range", "bytes=99999999999999999999-")], vec![], 416),
        ("GET", "/dev/obj".into(), vec![("range", "bytes=18446744073709551615-")], vec![], 416),
        // A PUT announcing more than the largest object: refused before any body is read.
        ("PUT", "/dev/big".into(), vec![("x-amz-decoded-content-length", "1000000000000000")], vec![], 400),
        ("PUT", "/dev/m?partNumber=1&uploadId=%00".into(), vec![], b"x".to_vec(), 404),
        ("PUT", "/dev/m?partNumber=70000&uploadId=abc".into(), vec![], b"x".to_vec(), 400),
        // Copy sources that make no sense.
        ("PUT", "/dev/copy".into(), vec![("x-amz-copy-source", "%ff")], vec![], 400),
        ("PUT", "/dev/copy".into(), vec![("x-amz-copy-source", "dev")], vec![], 400),
        ("PUT", "/dev/copy".into(), vec![("x-amz-copy-source", "dev/obj"), ("x-amz-metadata-directive", "EVIL")], vec![], 400),
        // Bad digests and checksums.
        ("PUT", "/dev/d".into(), vec![("content-md5", "not base64!")], b"x".to_vec(), 400),
        ("PUT", "/dev/d".into(), vec![("x-amz-checksum-crc32", "%%%")], b"x".to_vec(), 400),
        ("PUT", "/dev/d".into(), vec![("x-amz-checksum-sha256", "AAAA")], b"x".to_vec(), 400),
        // Headers the store cannot honour are refused, not ignored.
        ("PUT", "/dev/enc".into(), vec![("x-amz-server-side-encryption", "AES256")], b"x".to_vec(), 501),
        ("PUT", "/dev/lock".into(), vec![("x-amz-object-lock-mode", "COMPLIANCE")], b"x".to_vec(), 501),
        ("PUT", "/dev/acl".into(), vec![("x-amz-acl", "public-read-write")], b"x".to_vec(), 501),
        ("PUT", "/dev/acl".into(), vec![("x-amz-acl", "evil")], b"x".to_vec(), 400),
        ("PUT", "/dev/acl".into(), vec![("x-amz-grant-read", "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")], b"x".to_vec(), 501),
        ("PUT", "/dev/obj?acl".into(), vec![], b"<AccessControlPolicy><AccessControlList><Grant><Grantee><EmailAddress>a@b</EmailAddress></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>".to_vec(), 501),
        ("PUT", "/dev/obj?acl".into(), vec![], b"<AccessControlPolicy><Evil/></AccessControlPolicy>".to_vec(), 400),
        // Tags: S3's rules and the URL form of the header.
        ("PUT", "/dev/tag".into(), vec![("x-amz-tagging", "aws:k=v")], b"x".to_vec(), 400),
        ("PUT", "/dev/tag".into(), vec![("x-amz-tagging", "a=%zz")], b"x".to_vec(), 400),
        ("PUT", "/dev/obj?tagging".into(), vec![], format!("<Tagging><TagSet>{}</TagSet></Tagging>", "<Tag><Key>k</Key><Value>v</Value></Tag>".repeat(11)).into_bytes(), 400),
        ("PUT", "/dev/obj?tagging".into(), vec![], format!("<Tagging><TagSet>{}</TagSet></Tagging>", "<Tag><Key>k</Key><Value>v</Value></Tag>".repeat(100_000)).into_bytes(), 400),
        ("PUT", "/dev/cond".into(), vec![("if-none-match", "*")], b"x".to_vec(), 501),
        // XML: deep, wide, too many keys, too big.
        ("POST", "/dev?delete".into(), vec![], deep.into_bytes(), 400),
        ("POST", "/dev?delete".into(), vec![], wide.into_bytes(), 400),
        ("POST", "/dev?delete".into(), vec![], many.into_bytes(), 400),
        ("POST", "/dev?delete".into(), vec![], huge.into_bytes(), 400),
        ("POST", "/dev/m?uploadId=abc".into(), vec![], b"<CompleteMultipartUpload><Part><PartNumber>99999999999999999999</PartNumber></Part></CompleteMultipartUpload>".to_vec(), 400),
        // Unknown methods and sub-resources.
        ("PATCH", "/dev/obj".into(), vec![], vec![], 405),
        ("PUT", "/dev/obj?retention".into(), vec![], vec![], 501),
    ];
    let mut failures = vec![];
    for (method, path, extra, body, want) in &table {
        let (status, text) = s.send(method, path, body, extra);
        let xml = text.contains("<Error>") && text.contains("<RequestId>");
        if status != *want || !xml {
            failures.push(format!(
                "{method} {path} {extra:?}: want {want}, got {status}\n{}",
                text.chars().take(600).collect::<String>()
            ));
        }
    }
    // Raw oddities that never get as far as a signature check: malformed authorizations, dates,
    // payload hashes, presigned parameters.
    let addr = s.addr();
    let host = format!("Host: {addr}");
    let raw_table: Vec<(String, u16)> = vec![
        (
            format!(
                "GET /dev/obj HTTP/1.1\r\n{host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=%%%"
            ),
            400,
        ),
        (
            format!(
                "GET /dev/obj HTTP/1.1\r\n{host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00\r\nx-amz-date: garbage\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD"
            ),
            400,
        ),
        (
            format!(
                "GET /dev/obj HTTP/1.1\r\n{host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={}/20260101/garage/s3/aws4_request, SignedHeaders=host, Signature=00\r\nx-amz-date: 20260101T000000Z\r\nx-amz-content-sha256: zzzz",
                env.key_id
            ),
            400,
        ),
        (
            format!(
                "GET /dev/obj?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F20260101%2Fgarage%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=99999999999999999999&X-Amz-SignedHeaders=host&X-Amz-Signature=00 HTTP/1.1\r\n{host}",
                env.key_id
            ),
            400,
        ),
        (
            format!(
                "GET /dev/obj?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%ff HTTP/1.1\r\n{host}"
            ),
            400,
        ),
    ];
    for (head, want) in &raw_table {
        let (status, text) = raw(&addr, head.as_bytes(), b"");
        if status != *want || !text.contains("<Error>") {
            failures.push(format!(
                "{head:?}: want {want}, got {status}\n{}",
                text.chars().take(600).collect::<String>()
            ));
        }
    }
    // Bytes hyper refuses before routing (control characters in a header, an absurd
    // Content-Length): a 4xx, and the connection task survives.
    for head in [
        format!("GET /dev/obj HTTP/1.1\r\n{host}\r\nx-amz-meta-a: a\x01b"),
        format!("PUT /dev/obj HTTP/1.1\r\n{host}\r\nContent-Length: 99999999999999999999999"),
    ] {
        // `raw` adds its own Content-Length: send these by hand.
        let mut st = std::net::TcpStream::connect(&addr).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        st.write_all(format!("{head}\r\n\r\n").as_bytes()).unwrap();
        let mut resp = vec![];
        let _ = st.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        if !(400..500).contains(&status) {
            failures.push(format!("{head:?}: want a 4xx, got {status}: {text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Still serving, and the object untouched.
    env.block_on(async {
        let o = c
            .get_object()
            .bucket("dev")
            .key("obj")
            .send()
            .await
            .unwrap();
        let body = o.body.collect().await.unwrap().into_bytes();
        assert_eq!(&body[..], b"0123456789");
        let l = c.list_objects_v2().bucket("dev").send().await.unwrap();
        assert_eq!(l.key_count(), Some(1), "nothing half-written is visible");
    });
    assert_no_panic(&env);
}

/// Issue 9, findings 4 and 9: made-up access key ids are answered from the node's own copy of the key
/// table, fast, even when a majority of nodes is unreachable (they never fan out into waiting
/// cluster RPCs); and a request that fails inside the cluster gets a generic message with its
/// request id, while the detail goes to the server's log under the same id.
#[test]
fn unknown_keys_answer_locally_and_errors_leak_nothing() {
    let env = env_with_object("obj", b"data");
    env.procs[1].signal(libc::SIGSTOP);
    env.procs[2].signal(libc::SIGSTOP);
    let s = Signer { env: &env, node: 0 };
    let started = Instant::now();
    for i in 0..20 {
        let id = format!("GK{i:024}");
        let head = format!(
            "GET /dev/obj HTTP/1.1\r\nHost: {}\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential={id}/20260101/garage/s3/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature={}\r\nx-amz-date: {}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD",
            s.addr(),
            "0".repeat(64),
            grenier::util::timefmt::format_amz_date(SystemTime::now()),
        );
        let (status, text) = raw(&s.addr(), head.as_bytes(), b"");
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("InvalidAccessKeyId"), "{text}");
    }
    // At most one refresh of the key table may wait (1 s); the rest is local. Before: 20 × 10 s.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "20 unknown keys took {took:?}"
    );

    // A valid request that needs the unreachable majority: 503 with a generic message.
    let (status, text) = s.send("GET", "/dev/obj", b"", &[]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("<Code>ServiceUnavailable</Code>"), "{text}");
    let request_id = text
        .split("<RequestId>")
        .nth(1)
        .and_then(|r| r.split("</RequestId>").next())
        .unwrap()
        .to_string();
    let message = text
        .split("<Message>")
        .nth(1)
        .and_then(|r| r.split("</Message>").next())
        .unwrap();
    for leak in ["127.", "/", "quorum", "Quorum", "timeout", "rpc", "RPC"] {
        assert!(!message.contains(leak), "message leaks {leak:?}: {message}");
    }
    wait_for(
        "the detail logged with the request id",
        Duration::from_secs(10),
        || {
            env.procs[0]
                .log_text()
                .lines()
                .any(|l| l.contains(&request_id) && l.contains("ServiceUnavailable"))
                .then_some(())
        },
    );
    env.procs[1].signal(libc::SIGCONT);
    env.procs[2].signal(libc::SIGCONT);
    assert_no_panic(&env);
}
