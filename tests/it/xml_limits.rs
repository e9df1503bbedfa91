//! Issue 9, point 6: XML request bodies are bounded while they are parsed, and their size by
//! `[s3_api] xml_body_max`: a hostile DeleteObjects or CompleteMultipartUpload body gets its 4xx
//! without the node's memory growing with the number of elements sent.

use std::io::{Read, Write};

use grenier::s3::sigv4::{self, Credentials};
use hyper::{HeaderMap, Method};

use crate::harness::proc_memory;
use crate::s3::S3Env;

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: i32) -> u64 {
    proc_memory(pid, "VmHWM").unwrap()
}

/// Sends `body` as a header-signed request; returns (status, response text).
fn signed_request(env: &S3Env, method: Method, path: &str, body: &[u8]) -> (u16, String) {
    let ip = &env.procs[0].spec.ip;
    let host = format!("{ip}:3900");
    let uri: hyper::Uri = format!("http://{host}{path}").parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", host.parse().unwrap());
    let creds = Credentials {
        access_key: &env.key_id,
        secret_key: &env.secret,
        region: "garage",
    };
    sigv4::sign(&method, &uri, &mut h, &creds, std::time::SystemTime::now());
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in &h {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (and close) before reading everything: read while writing.
    let mut w = s.try_clone().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut resp = vec![];
    let _ = s.read_to_end(&mut resp);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&resp).to_string();
    (
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        text,
    )
}

#[test]
fn hostile_xml_bodies_are_refused_without_memory_growth() {
    let env = S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        c.create_bucket().bucket("xml").send().await.unwrap();
    });
    let pid = env.procs[0].pid();
    let before = peak_rss(pid);

    // Just under 8 MiB of empty elements: about 900,000 of them. Refused at the 1002nd.
    let mut wide = b"<Delete>".to_vec();
    while wide.len() < (8 << 20) - 64 {
        wide.extend_from_slice(b"<Object/>");
    }
    wide.extend_from_slice(b"</Delete>");
    let mut parts = b"<CompleteMultipartUpload>".to_vec();
    while parts.len() < (8 << 20) - 64 {
        parts.extend_from_slice(b"<Part/>");
    }
    parts.extend_from_slice(b"</CompleteMultipartUpload>");
    let upload = "0".repeat(64);
    for _ in 0..3 {
        let (status, text) = signed_request(&env, Method::POST, "/xml?delete", &wide);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("<Code>MalformedXML</Code>"), "{text}");
        let path = format!("/xml/k?uploadId={upload}");
        let (status, text) = signed_request(&env, Method::POST, &path, &parts);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("<Code>MalformedXML</Code>"), "{text}");
    }
    // The body is held (8 MiB, plus hyper's buffers), the tree never is: a tree of 900,000 nodes
    // took more than 100 MiB.
    let grown = peak_rss(pid).saturating_sub(before);
    eprintln!("peak RSS grew by {} MiB", grown >> 20);
    assert!(grown < 48 << 20, "peak RSS grew by {} MiB", grown >> 20);

    // Past xml_body_max (default 8 MiB): refused by size.
    let mut big = wide.clone();
    big.extend_from_slice(&vec![b' '; 1 << 20]);
    let (status, text) = signed_request(&env, Method::POST, "/xml?delete", &big);
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("<Code>MaxMessageLengthExceeded</Code>"),
        "{text}"
    );

    // Still serving, nothing panicked.
    env.block_on(async {
        c.head_bucket().bucket("xml").send().await.unwrap();
    });
    assert!(!env.procs[0].log_text().contains("panicked"));
}
