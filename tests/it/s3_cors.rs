//! CORS as a browser meets it: PutBucketCors / GetBucketCors / DeleteBucketCors through the SDK, then
//! raw HTTP as a browser sends it: unsigned preflights (`OPTIONS` with `Origin` and
//! `Access-Control-Request-*`), and actual requests (anonymous, presigned, failing) whose answers
//! carry `Access-Control-Allow-Origin` and `Vary: Origin` when a rule allows their origin.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule, ObjectCannedAcl};

use crate::harness::wait_for;
use crate::s3::{S3Env, code};

/// One HTTP/1.1 exchange: status, headers (lower-case names; repeated ones joined by ", "), body.
fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = vec![];
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut map: HashMap<String, String> = HashMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(':').unwrap();
        map.entry(k.trim().to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v.trim())
            })
            .or_insert_with(|| v.trim().to_string());
    }
    (head[9..12].parse().unwrap(), map, body.to_string())
}

fn rule(origins: &[&str], methods: &[&str], headers: &[&str], expose: &[&str]) -> CorsRule {
    let mut r = CorsRule::builder();
    for o in origins {
        r = r.allowed_origins(*o);
    }
    for m in methods {
        r = r.allowed_methods(*m);
    }
    for h in headers {
        r = r.allowed_headers(*h);
    }
    for e in expose {
        r = r.expose_headers(*e);
    }
    r.build().unwrap()
}

const APP: &str = "http://app.example.com";

#[test]
fn cors_rules_answer_preflights_and_every_response_to_an_allowed_origin() {
    let env = S3Env::start("");
    let a = env.client(0);
    let base = format!("http://{}:3900", env.procs[2].spec.ip);
    let url = |path: &str| format!("{base}/{path}");
    let preflight = |path: &str, origin: Option<&str>, method: &str, headers: Option<&str>| {
        let mut h = vec![("Access-Control-Request-Method", method)];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        if let Some(x) = headers {
            h.push(("Access-Control-Request-Headers", x));
        }
        raw("OPTIONS", &url(path), &h)
    };

    let config = CorsConfiguration::builder()
        .cors_rules({
            let mut r = rule(
                &[APP],
                &["GET", "PUT"],
                &["content-type", "x-amz-*"],
                &["ETag", "x-amz-request-id"],
            );
            r.max_age_seconds = Some(600);
            r.id = Some("app".into());
            r
        })
        .cors_rules(rule(&["http://*.example.org"], &["GET"], &[], &[]))
        .cors_rules(rule(&["*"], &["HEAD"], &[], &[]))
        .build()
        .unwrap();
    let presigned = env.block_on(async {
        a.create_bucket().bucket("web").send().await.unwrap();
        let e = a.get_bucket_cors().bucket("web").send().await.unwrap_err();
        assert_eq!(
            code(e.as_service_error().unwrap()),
            "NoSuchCORSConfiguration"
        );
        a.put_bucket_cors()
            .bucket("web")
            .cors_configuration(config.clone())
            .send()
            .await
            .unwrap();
        // Read back, rules in order (through the node that wrote: the other nodes' own copies of
        // the bucket table learn of a change a moment later).
        let got = a.get_bucket_cors().bucket("web").send().await.unwrap();
        assert_eq!(got.cors_rules(), config.cors_rules());
        // AWS's validation: only the five S3 methods, at most one `*` per origin.
        let bad = CorsConfiguration::builder()
            .cors_rules(rule(&["*"], &["PATCH"], &[], &[]))
            .build()
            .unwrap();
        let e = a
            .put_bucket_cors()
            .bucket("web")
            .cors_configuration(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidRequest");
        let bad = CorsConfiguration::builder()
            .cors_rules(rule(&["http://*.*.org"], &["GET"], &[], &[]))
            .build()
            .unwrap();
        let e = a
            .put_bucket_cors()
            .bucket("web")
            .cors_configuration(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e.as_service_error().unwrap()), "InvalidRequest");

        a.put_object()
            .bucket("web")
            .key("pub.txt")
            .acl(ObjectCannedAcl::PublicRead)
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await
            .unwrap();
        a.put_object()
            .bucket("web")
            .key("video.mp4")
            .body(ByteStream::from_static(b"private bytes"))
            .send()
            .await
            .unwrap();
        let conf = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
        let presign = |key: &'static str| {
            let c = env.client(2);
            let conf = conf.clone();
            async move {
                c.get_object()
                    .bucket("web")
                    .key(key)
                    .presigned(conf)
                    .await
                    .unwrap()
                    .uri()
                    .to_string()
            }
        };
        (presign("video.mp4").await, presign("absent.mp4").await)
    });

    // Preflights are unsigned and answered from the node's own copy of the bucket: wait for it.
    let (status, h, _) = wait_for("the rules known to node 2", Duration::from_secs(10), || {
        let r = preflight(
            "web/pub.txt",
            Some(APP),
            "PUT",
            Some("Content-Type, X-Amz-Date"),
        );
        (r.0 == 200).then_some(r)
    });
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, x-amz-date"
    );
    assert_eq!(h["access-control-expose-headers"], "ETag, x-amz-request-id");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].contains("Origin"), "{h:?}");
    // A preflight never needs a signature; one sent (even a bogus one) is ignored.
    let (status, h, _) = raw(
        "OPTIONS",
        &url("web/pub.txt"),
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=GKnope/20260101/garage/s3/aws4_request, \
                 SignedHeaders=host, Signature=00",
            ),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], APP);
    // On the bucket itself too.
    assert_eq!(preflight("web", Some(APP), "GET", None).0, 200);

    // A header, a method or an origin no rule allows; the same answer for a bucket that does not
    // exist.
    for (path, origin, method, headers) in [
        ("web/pub.txt", APP, "PUT", Some("authorization")),
        ("web/pub.txt", APP, "DELETE", None),
        ("web/pub.txt", "http://evil.com", "GET", None),
        ("web/pub.txt", "http://example.org", "GET", None),
        ("nobucket/x", APP, "GET", None),
    ] {
        let (status, h, body) = preflight(path, Some(origin), method, headers);
        assert_eq!(status, 403, "{origin} {method} {headers:?}: {body}");
        assert!(body.contains("<Code>AccessForbidden</Code>"), "{body}");
        assert!(!h.contains_key("access-control-allow-origin"));
    }
    let (status, _, body) = preflight("web/pub.txt", None, "GET", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>BadRequest</Code>"), "{body}");
    assert!(body.contains("Origin request header needed"), "{body}");
    // The `http://*.example.org` rule echoes the origin; the `*` rule answers `*`.
    let (status, h, _) = preflight("web/x", Some("http://www.example.org"), "GET", None);
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "http://www.example.org");
    let (status, h, _) = preflight("web/x", Some("http://anyone.net"), "HEAD", None);
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "*");

    // Actual requests: an anonymous GET of a public object, with and without Origin.
    let (status, h, body) = raw("GET", &url("web/pub.txt"), &[("Origin", APP)]);
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-expose-headers"], "ETag, x-amz-request-id");
    assert!(h["vary"].contains("Origin"));
    let (status, h, _) = raw("GET", &url("web/pub.txt"), &[]);
    assert_eq!(status, 200);
    assert!(!h.keys().any(|k| k.starts_with("access-control-")), "{h:?}");
    // An origin or a method no rule allows: no grant.
    let (_, h, _) = raw("GET", &url("web/pub.txt"), &[("Origin", "http://evil.com")]);
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
    // Errors carry the grant too, so the page can read why: anonymous AccessDenied...
    let (status, h, body) = raw("GET", &url("web/video.mp4"), &[("Origin", APP)]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(h["access-control-allow-origin"], APP);
    assert!(h["vary"].contains("Origin"));
    // ... a presigned URL (what a <video> element plays), and its NoSuchKey ...
    let (video, absent) = presigned;
    let (status, h, body) = raw("GET", &video, &[("Origin", APP)]);
    assert_eq!((status, body.as_str()), (200, "private bytes"));
    assert_eq!(h["access-control-allow-origin"], APP);
    let (status, h, body) = raw("GET", &absent, &[("Origin", APP)]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("<Code>NoSuchKey</Code>"));
    assert_eq!(h["access-control-allow-origin"], APP);
    // ... and a broken signature.
    let forged = video.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let (status, h, _) = raw("GET", &forged, &[("Origin", APP)]);
    assert_eq!(status, 403);
    assert_eq!(h["access-control-allow-origin"], APP);

    // DeleteBucketCors: the rules are gone, preflights are refused.
    env.block_on(async {
        a.delete_bucket_cors().bucket("web").send().await.unwrap();
        let e = a.get_bucket_cors().bucket("web").send().await.unwrap_err();
        assert_eq!(
            code(e.as_service_error().unwrap()),
            "NoSuchCORSConfiguration"
        );
        // Idempotent.
        a.delete_bucket_cors().bucket("web").send().await.unwrap();
    });
    wait_for(
        "the rules gone from node 2",
        Duration::from_secs(10),
        || (preflight("web/pub.txt", Some(APP), "GET", None).0 == 403).then_some(()),
    );
    let (_, h, _) = raw("GET", &url("web/pub.txt"), &[("Origin", APP)]);
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
}
