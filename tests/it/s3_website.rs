//! Static websites: the website configuration through the AWS SDK (PutBucketWebsite, GetBucketWebsite,
//! DeleteBucketWebsite) and `grenier bucket website`, and the `[s3_web]` endpoint seen as a browser
//! sees it (raw HTTP with a `Host: <bucket>.web.localhost` header): index documents, directory
//! redirects, the error document with its status, private objects, Range and conditional GETs, HEAD,
//! methods other than GET/HEAD, routing rules and redirect-all.

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    Condition, ErrorDocument, IndexDocument, ObjectCannedAcl, Protocol, Redirect,
    RedirectAllRequestsTo, RoutingRule, WebsiteConfiguration,
};
use serde_json::Value;

use crate::harness::*;
use crate::s3::code;

struct Site {
    proc: Proc,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Site {
    fn start() -> Site {
        let mut plan = plan(1, 1, SECRET);
        let mut procs = vec![Proc::start(plan.specs.remove(0))];
        procs[0].keep_dir(&std::sync::Arc::new(plan.root));
        assign_and_apply(&procs, &[(0, "a")]);
        let proc = procs.into_iter().next().unwrap();
        let out = proc.cli(&["key", "create", "web", "--json"]).unwrap();
        let k: Value = serde_json::from_str(&out).unwrap();
        proc.cli(&["key", "allow", "web", "--create-bucket"])
            .unwrap();
        let client = crate::harness::sdk_client(
            &format!("{}:3900", proc.spec.ip),
            "garage",
            k["id"].as_str().unwrap(),
            k["secret"].as_str().unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Site { client, proc, rt }
    }

    fn put(&self, bucket: &str, key: &str, body: &str, public: bool) {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/html")
            .body(ByteStream::from(body.as_bytes().to_vec()));
        if public {
            req = req.acl(ObjectCannedAcl::PublicRead);
        }
        self.rt.block_on(req.send()).unwrap();
    }

    fn create(&self, bucket: &str) {
        self.rt
            .block_on(self.client.create_bucket().bucket(bucket).send())
            .unwrap();
    }

    /// A request to the website endpoint for `host`: (status, lowercased head, body).
    fn web(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut s = std::net::TcpStream::connect(format!("{}:3902", self.proc.spec.ip)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}:3902\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = vec![];
        s.read_to_end(&mut resp).unwrap();
        let text = String::from_utf8_lossy(&resp).to_string();
        let status = text[9..12].parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    fn get(&self, host: &str, path: &str) -> (u16, String, String) {
        self.web("GET", host, path, &[])
    }
}

fn has_header(head: &str, line: &str) -> bool {
    head.lines().any(|l| l.trim() == line)
}

#[test]
fn website_configuration_through_the_s3_api() {
    let site = Site::start();
    let c = &site.client;
    site.create("conf");
    site.rt.block_on(async {
        let e = c
            .get_bucket_website()
            .bucket("conf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "NoSuchWebsiteConfiguration");
        let config = WebsiteConfiguration::builder()
            .index_document(
                IndexDocument::builder()
                    .suffix("home.html")
                    .build()
                    .unwrap(),
            )
            .error_document(ErrorDocument::builder().key("oops.html").build().unwrap())
            .routing_rules(
                RoutingRule::builder()
                    .condition(Condition::builder().key_prefix_equals("old/").build())
                    .redirect(Redirect::builder().replace_key_prefix_with("new/").build())
                    .build(),
            )
            .build();
        c.put_bucket_website()
            .bucket("conf")
            .website_configuration(config)
            .send()
            .await
            .unwrap();
        let got = c.get_bucket_website().bucket("conf").send().await.unwrap();
        assert_eq!(got.index_document().map(|i| i.suffix()), Some("home.html"));
        assert_eq!(got.error_document().map(|e| e.key()), Some("oops.html"));
        let rules = got.routing_rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].condition().and_then(|c| c.key_prefix_equals()),
            Some("old/")
        );
        assert_eq!(
            rules[0].redirect().unwrap().replace_key_prefix_with(),
            Some("new/")
        );
        // AWS refuses RedirectAllRequestsTo with anything else, and a configuration without index.
        let both = WebsiteConfiguration::builder()
            .index_document(IndexDocument::builder().suffix("i.html").build().unwrap())
            .redirect_all_requests_to(
                RedirectAllRequestsTo::builder()
                    .host_name("example.org")
                    .build()
                    .unwrap(),
            )
            .build();
        let e = c
            .put_bucket_website()
            .bucket("conf")
            .website_configuration(both)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument");
        let e = c
            .put_bucket_website()
            .bucket("conf")
            .website_configuration(WebsiteConfiguration::builder().build())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument");
        c.delete_bucket_website()
            .bucket("conf")
            .send()
            .await
            .unwrap();
        let e = c
            .get_bucket_website()
            .bucket("conf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "NoSuchWebsiteConfiguration");
    });
    // The admin CLI sets the same configuration and `bucket info` shows it.
    site.proc
        .cli(&[
            "bucket",
            "website",
            "conf",
            "--allow",
            "--error-document",
            "404.html",
        ])
        .unwrap();
    let info = site.proc.cli_json(&["bucket", "info", "conf"]);
    assert_eq!(info["website"]["index_document"], "index.html");
    assert_eq!(info["website"]["error_document"], "404.html");
    let got = site
        .rt
        .block_on(c.get_bucket_website().bucket("conf").send())
        .unwrap();
    assert_eq!(got.index_document().map(|i| i.suffix()), Some("index.html"));
    site.proc
        .cli(&["bucket", "website", "conf", "--deny"])
        .unwrap();
    assert!(site.proc.cli_json(&["bucket", "info", "conf"])["website"].is_null());
}

#[test]
fn website_endpoint_serves_public_pages() {
    let site = Site::start();
    let c = &site.client;
    // `site`: every object public (the admins' switch), error document; made a website by the CLI.
    site.create("site");
    site.put("site", "index.html", "<h1>home</h1>", false);
    site.put("site", "dir/index.html", "<h1>dir</h1>", false);
    site.put("site", "error.html", "<h1>custom error</h1>", false);
    site.put("site", "page.html", "0123456789abcdef", false);
    site.proc
        .cli(&["bucket", "public", "site", "--read"])
        .unwrap();
    site.proc
        .cli(&[
            "bucket",
            "website",
            "site",
            "--allow",
            "--error-document",
            "error.html",
        ])
        .unwrap();
    let host = "site.web.localhost";
    wait_for("the website served", Duration::from_secs(10), || {
        (site.get(host, "/").0 == 200).then_some(())
    });
    let (s, head, body) = site.get(host, "/");
    assert_eq!((s, body.as_str()), (200, "<h1>home</h1>"), "{head}");
    assert!(has_header(&head, "content-type: text/html"), "{head}");
    assert_eq!(site.get(host, "/dir/").2, "<h1>dir</h1>");
    let (s, head, _) = site.get(host, "/dir");
    assert_eq!(s, 302, "{head}");
    assert!(has_header(&head, "location: /dir/"), "{head}");
    let (s, _, body) = site.get(host, "/nothing/here.html");
    assert_eq!((s, body.as_str()), (404, "<h1>custom error</h1>"));
    // Range and conditional GETs, HEAD: as the S3 endpoint answers them.
    let (s, head, body) = site.web("GET", host, "/page.html", &[("Range", "bytes=2-5")]);
    assert_eq!((s, body.as_str()), (206, "2345"));
    assert!(has_header(&head, "content-range: bytes 2-5/16"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_string();
    let (s, _, body) = site.web("GET", host, "/page.html", &[("If-None-Match", &etag)]);
    assert_eq!((s, body.as_str()), (304, ""));
    let (s, head, body) = site.web("HEAD", host, "/page.html", &[]);
    assert_eq!((s, body.as_str()), (200, ""));
    assert!(has_header(&head, "content-length: 16"), "{head}");
    // Nothing is ever written through the website endpoint.
    let (s, _, body) = site.web("PUT", host, "/page.html", &[]);
    assert_eq!(s, 405);
    assert!(body.contains("MethodNotAllowed"), "{body}");
    // A global bucket name equal to the whole host: the site on its own domain.
    site.proc
        .cli(&["bucket", "alias", "site", "www.example.test"])
        .unwrap();
    assert_eq!(site.get("www.example.test", "/dir/").2, "<h1>dir</h1>");
    let (s, _, body) = site.get("nosuchbucket.web.localhost", "/");
    assert_eq!(s, 404);
    assert!(body.contains("NoSuchBucket"), "{body}");

    // `acl`: objects public by their own ACL only; a routing rule; made a website by the S3 API.
    site.create("acl");
    site.put("acl", "index.html", "acl home", true);
    site.put("acl", "secret.html", "secret", false);
    let rule = RoutingRule::builder()
        .condition(Condition::builder().key_prefix_equals("old/").build())
        .redirect(Redirect::builder().replace_key_prefix_with("new/").build())
        .build();
    let on_error = RoutingRule::builder()
        .condition(
            Condition::builder()
                .key_prefix_equals("gone/")
                .http_error_code_returned_equals("403")
                .build(),
        )
        .redirect(
            Redirect::builder()
                .replace_key_with("index.html")
                .http_redirect_code("302")
                .build(),
        )
        .build();
    let config = WebsiteConfiguration::builder()
        .index_document(
            IndexDocument::builder()
                .suffix("index.html")
                .build()
                .unwrap(),
        )
        .routing_rules(rule)
        .routing_rules(on_error)
        .build();
    site.rt
        .block_on(
            c.put_bucket_website()
                .bucket("acl")
                .website_configuration(config)
                .send(),
        )
        .unwrap();
    let host = "acl.web.localhost";
    assert_eq!(site.get(host, "/").2, "acl home");
    let (s, _, body) = site.get(host, "/secret.html");
    assert_eq!(s, 403);
    assert!(body.contains("AccessDenied"), "{body}");
    // Absent looks like private where the listing is not public (as AWS).
    assert_eq!(site.get(host, "/absent.html").0, 403);
    let (s, head, body) = site.web("HEAD", host, "/absent.html", &[]);
    assert_eq!((s, body.as_str()), (403, ""), "{head}");
    // A rule on the error returned: only when that error happens.
    let (s, head, _) = site.get(host, "/gone/page.html");
    assert_eq!(s, 302, "{head}");
    assert!(
        has_header(&head, "location: http://acl.web.localhost:3902/index.html"),
        "{head}"
    );
    site.put("acl", "gone/here.html", "still here", true);
    assert_eq!(site.get(host, "/gone/here.html").2, "still here");
    let (s, head, _) = site.get(host, "/old/a%20b.html");
    assert_eq!(s, 301, "{head}");
    assert!(
        has_header(
            &head,
            "location: http://acl.web.localhost:3902/new/a%20b.html"
        ),
        "{head}"
    );

    // A bucket without a website configuration, and one that redirects everything.
    site.create("plain");
    let (s, _, body) = site.get("plain.web.localhost", "/");
    assert_eq!(s, 404);
    assert!(body.contains("NoSuchWebsiteConfiguration"), "{body}");
    site.create("moved");
    let config = WebsiteConfiguration::builder()
        .redirect_all_requests_to(
            RedirectAllRequestsTo::builder()
                .host_name("example.org")
                .protocol(Protocol::Https)
                .build()
                .unwrap(),
        )
        .build();
    site.rt
        .block_on(
            c.put_bucket_website()
                .bucket("moved")
                .website_configuration(config)
                .send(),
        )
        .unwrap();
    let (s, head, _) = site.get("moved.web.localhost", "/a/b?x=1");
    assert_eq!(s, 301, "{head}");
    assert!(
        has_header(&head, "location: https://example.org/a/b?x=1"),
        "{head}"
    );
}
