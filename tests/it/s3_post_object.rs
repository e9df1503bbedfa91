//! PostObject: browser form uploads with a signed POST policy, as a web page's `<form>` sends them
//! (raw multipart/form-data over HTTP, no SDK): the default 204, the 201 PostResponse document, the
//! 303 redirect, the stored object's content type, metadata and ACL, `${filename}` in the key, the
//! policy's content-length-range (and no object when violated), expiry, a bad signature, a field the
//! policy does not cover, and the virtual-host style. One node, `root_domain` set.

use std::io::{Read, Write};
use std::time::SystemTime;

use aws_sdk_s3::Client;
use base64::Engine;
use serde_json::{Value, json};

use crate::harness::*;

const REGION: &str = "garage";

struct Env {
    proc: Proc,
    key_id: String,
    secret: String,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn start() -> Env {
        let mut plan = plan(1, 1, SECRET);
        let mut spec = plan.specs.remove(0);
        spec.s3_api_extra = "root_domain = \".s3.test\"\n".to_string();
        let mut procs = vec![Proc::start(spec)];
        procs[0].keep_dir(&std::sync::Arc::new(plan.root));
        assign_and_apply(&procs, &[(0, "a")]);
        let proc = procs.into_iter().next().unwrap();
        let out = proc.cli(&["key", "create", "web", "--json"]).unwrap();
        let k: Value = serde_json::from_str(&out).unwrap();
        proc.cli(&["key", "allow", "web", "--create-bucket"])
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Env {
            proc,
            key_id: k["id"].as_str().unwrap().to_string(),
            secret: k["secret"].as_str().unwrap().to_string(),
            rt,
        }
    }

    fn addr(&self) -> String {
        format!("{}:3900", self.proc.spec.ip)
    }

    fn client(&self) -> Client {
        crate::harness::sdk_client(&self.addr(), REGION, &self.key_id, &self.secret)
    }

    /// The signed fields of a policy expiring in `expires_in` seconds (negative: already expired)
    /// with `conditions` (the auth fields' own conditions are added).
    fn signed(&self, expires_in: i64, conditions: Vec<Value>) -> Vec<(String, String)> {
        self.signed_as(&self.key_id, &self.secret, expires_in, conditions)
    }

    fn signed_as(
        &self,
        key_id: &str,
        secret: &str,
        expires_in: i64,
        conditions: Vec<Value>,
    ) -> Vec<(String, String)> {
        let now = SystemTime::now();
        let amz_date = grenier::util::timefmt::format_amz_date(now);
        let date = &amz_date[..8];
        let credential = format!("{key_id}/{date}/{REGION}/s3/aws4_request");
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let expiration =
            grenier::util::timefmt::iso8601((now_ms + expires_in * 1000).max(0) as u64);
        let mut conditions = conditions;
        conditions.push(json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}));
        conditions.push(json!({"x-amz-credential": credential}));
        conditions.push(json!({"x-amz-date": amz_date}));
        let policy = json!({"expiration": expiration, "conditions": conditions}).to_string();
        let policy = base64::engine::general_purpose::STANDARD.encode(policy);
        let key = grenier::s3::sigv4::signing_key(secret, date, REGION, "s3");
        let signature = hex::encode(grenier::s3::sigv4::hmac_sha256(&key, policy.as_bytes()));
        vec![
            ("policy".into(), policy),
            ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("x-amz-credential".into(), credential),
            ("x-amz-date".into(), amz_date),
            ("x-amz-signature".into(), signature),
        ]
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

/// A form as a browser encodes it: the fields, then the file.
fn form(fields: &[(String, String)], filename: &str, content: &[u8]) -> Vec<u8> {
    let mut b = vec![];
    for (n, v) in fields {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(content);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// POST `body` to `path` with `host`, as multipart/form-data unless `content_type` says otherwise.
fn post(env: &Env, host: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
    let mut s = std::net::TcpStream::connect(env.addr()).unwrap();
    let ct = content_type
        .map(str::to_string)
        .unwrap_or(format!("multipart/form-data; boundary={BOUNDARY}"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer (an error) before reading the whole body.
    let _ = s.write_all(body);
    let mut resp = vec![];
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let head_end = text.find("\r\n\r\n").expect("a response head") + 4;
    Answer {
        status: text[9..12].parse().unwrap(),
        head: text[..head_end].to_string(),
        body: text[head_end..].to_string(),
    }
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn browser_form_uploads_with_a_signed_policy() {
    let env = Env::start();
    let c = env.client();
    let host = env.addr();
    env.rt.block_on(async {
        c.create_bucket().bucket("forms").send().await.unwrap();
    });

    // 204 by default; ${filename}, starts-with, content type, metadata and the ACL honoured.
    let mut f = env.signed(
        300,
        vec![
            json!({"bucket": "forms"}),
            json!(["starts-with", "$key", "photos/"]),
            json!({"acl": "public-read"}),
            json!(["starts-with", "$Content-Type", "image/"]),
            json!(["eq", "$x-amz-meta-camera", "fuji"]),
            json!(["content-length-range", 1, 1_000_000]),
        ],
    );
    f.extend(fields(&[
        ("key", "photos/${filename}"),
        ("acl", "public-read"),
        ("Content-Type", "image/png"),
        ("x-amz-meta-camera", "fuji"),
        ("x-ignore-tracking", "anything"),
    ]));
    let a = post(
        &env,
        &host,
        "/forms",
        None,
        &form(&f, "cat.png", b"PNG bytes"),
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let etag = a.header("etag").unwrap();
    assert_eq!(etag, format!("\"{}\"", md5_of(b"PNG bytes")));
    env.rt.block_on(async {
        let o = c
            .get_object()
            .bucket("forms")
            .key("photos/cat.png")
            .send()
            .await
            .unwrap();
        assert_eq!(o.content_type(), Some("image/png"));
        assert_eq!(
            o.metadata().unwrap().get("camera").map(String::as_str),
            Some("fuji")
        );
        let body = o.body.collect().await.unwrap().into_bytes();
        assert_eq!(&body[..], b"PNG bytes");
    });
    // public-read: an anonymous GET reads it.
    let (status, body) =
        crate::s3::http("GET", &format!("http://{host}/forms/photos/cat.png"), b"");
    assert_eq!((status, body), (200, b"PNG bytes".to_vec()));

    // 201: the PostResponse document; a large file streams through.
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = env.signed(
        300,
        vec![
            json!({"key": "big.bin"}),
            json!({"success_action_status": "201"}),
        ],
    );
    f.extend(fields(&[
        ("key", "big.bin"),
        ("success_action_status", "201"),
    ]));
    let a = post(&env, &host, "/forms", None, &form(&f, "big.bin", &big));
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(
        a.body.contains("<Bucket>forms</Bucket><Key>big.bin</Key>"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains(&format!("<Location>http://{host}/forms/big.bin</Location>")),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains(&format!("<ETag>\"{}\"</ETag>", md5_of(&big))),
        "{}",
        a.body
    );
    env.rt.block_on(async {
        let o = c
            .get_object()
            .bucket("forms")
            .key("big.bin")
            .send()
            .await
            .unwrap();
        assert_eq!(o.body.collect().await.unwrap().into_bytes().to_vec(), big);
    });

    // 303 to success_action_redirect, with bucket, key and etag appended.
    let mut f = env.signed(
        300,
        vec![
            json!({"key": "r.txt"}),
            json!([
                "starts-with",
                "$success_action_redirect",
                "https://app.example/"
            ]),
        ],
    );
    f.extend(fields(&[
        ("key", "r.txt"),
        ("success_action_redirect", "https://app.example/done?x=1"),
    ]));
    let a = post(
        &env,
        &host,
        "/forms",
        None,
        &form(&f, "r.txt", b"redirected"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let to = a.header("location").unwrap();
    assert_eq!(
        to,
        format!(
            "https://app.example/done?x=1&bucket=forms&key=r.txt&etag=%22{}%22",
            md5_of(b"redirected")
        )
    );

    // content-length-range: too large and too small are refused, and no object appears.
    for (content, code) in [
        (&b"0123456789A"[..], "EntityTooLarge"),
        (b"", "EntityTooSmall"),
    ] {
        let mut f = env.signed(
            300,
            vec![
                json!({"key": "sized"}),
                json!(["content-length-range", 1, 10]),
            ],
        );
        f.extend(fields(&[("key", "sized")]));
        let a = post(&env, &host, "/forms", None, &form(&f, "s", content));
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(
            a.body.contains(&format!("<Code>{code}</Code>")),
            "{}",
            a.body
        );
    }
    env.rt.block_on(async {
        let e = c.head_object().bucket("forms").key("sized").send().await;
        assert!(e.is_err(), "no object after a refused upload");
    });

    // Refusals: expired policy, bad signature, a field the policy does not cover, no credentials.
    let denied = |f: Vec<(String, String)>, code: &str, message: &str| {
        let a = post(&env, &host, "/forms", None, &form(&f, "d", b"data"));
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            a.body.contains(&format!("<Code>{code}</Code>")),
            "{}",
            a.body
        );
        assert!(a.body.contains(message), "{}", a.body);
    };
    let mut f = env.signed(-10, vec![json!({"key": "denied"})]);
    f.extend(fields(&[("key", "denied")]));
    denied(f, "AccessDenied", "Policy expired.");
    let mut f = env.signed(300, vec![json!({"key": "denied"})]);
    f.extend(fields(&[("key", "denied")]));
    f.iter_mut()
        .find(|(n, _)| n == "x-amz-signature")
        .unwrap()
        .1 = "0".repeat(64);
    denied(f, "SignatureDoesNotMatch", "signature");
    let mut f = env.signed(300, vec![json!({"key": "denied"})]);
    f.extend(fields(&[("key", "denied"), ("x-amz-meta-sneaky", "1")]));
    denied(f, "AccessDenied", "Extra input fields: x-amz-meta-sneaky");
    let mut f = env.signed(300, vec![json!({"key": "denied"})]);
    f.extend(fields(&[("key", "other")]));
    denied(f, "AccessDenied", "Policy Condition failed");
    denied(fields(&[("key", "denied")]), "AccessDenied", "Anonymous");
    env.rt.block_on(async {
        assert!(
            c.head_object()
                .bucket("forms")
                .key("denied")
                .send()
                .await
                .is_err()
        );
    });

    // A valid signature by a key without Write on the bucket.
    let out = env
        .proc
        .cli(&["key", "create", "stranger", "--json"])
        .unwrap();
    let k: Value = serde_json::from_str(&out).unwrap();
    let (id, secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let mut f = env.signed_as(id, secret, 300, vec![json!({"key": "denied"})]);
    f.extend(fields(&[("key", "denied")]));
    denied(f, "AccessDenied", "Access Denied");
    env.rt.block_on(async {
        assert!(
            c.head_object()
                .bucket("forms")
                .key("denied")
                .send()
                .await
                .is_err()
        );
    });

    // Tags (a Tagging document) and a checksum, checked and stored; a wrong checksum stores nothing.
    let tagging =
        "<Tagging><TagSet><Tag><Key>album</Key><Value>2026</Value></Tag></TagSet></Tagging>";
    let sha = |b: &[u8]| {
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b))
    };
    for (content, status) in [(&b"tagged"[..], 204), (b"tampered", 400)] {
        let mut f = env.signed(
            300,
            vec![
                json!({"key": "tagged"}),
                json!({"tagging": tagging}),
                json!(["starts-with", "$x-amz-checksum-sha256", ""]),
            ],
        );
        f.extend(fields(&[
            ("key", "tagged"),
            ("tagging", tagging),
            ("x-amz-checksum-sha256", &sha(b"tagged")),
        ]));
        let a = post(&env, &host, "/forms", None, &form(&f, "t", content));
        assert_eq!(a.status, status, "{}", a.body);
    }
    env.rt.block_on(async {
        let t = c
            .get_object_tagging()
            .bucket("forms")
            .key("tagged")
            .send()
            .await
            .unwrap();
        let tags: Vec<(&str, &str)> = t.tag_set().iter().map(|t| (t.key(), t.value())).collect();
        assert_eq!(tags, vec![("album", "2026")]);
        let h = c
            .head_object()
            .bucket("forms")
            .key("tagged")
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(h.checksum_sha256(), Some(sha(b"tagged").as_str()));
        assert_eq!(
            h.content_length(),
            Some(6),
            "the tampered upload did not replace it"
        );
    });

    // Not a form: 412 as AWS.
    let a = post(&env, &host, "/forms", Some("text/plain"), b"hello");
    assert_eq!(a.status, 412, "{}", a.body);
    assert!(
        a.body.contains("<Code>PreconditionFailed</Code>"),
        "{}",
        a.body
    );
    // A truncated form: 400, nothing stored.
    let mut f = env.signed(300, vec![json!({"key": "cut"})]);
    f.extend(fields(&[("key", "cut")]));
    let full = form(&f, "c", b"some content here");
    let a = post(&env, &host, "/forms", None, &full[..full.len() - 30]);
    assert_eq!(a.status, 400, "{}", a.body);

    // Virtual-host style: POST / on bucket.<root_domain>.
    let mut f = env.signed(
        300,
        vec![json!({"key": "vhost.txt"}), json!({"bucket": "forms"})],
    );
    f.extend(fields(&[("key", "vhost.txt")]));
    let a = post(&env, "forms.s3.test", "/", None, &form(&f, "v", b"virtual"));
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        a.header("location").as_deref(),
        Some("http://forms.s3.test/vhost.txt")
    );
    env.rt.block_on(async {
        let o = c
            .get_object()
            .bucket("forms")
            .key("vhost.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &o.body.collect().await.unwrap().into_bytes()[..],
            b"virtual"
        );
    });
}

fn md5_of(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}
