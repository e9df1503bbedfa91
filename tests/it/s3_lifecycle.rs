//! Bucket lifecycle (issue 12): the configuration's S3 operations through the SDK, and the lifecycle
//! worker expiring objects, aborting old multipart uploads and sweeping a crashed PUT's blocks, with
//! time driven by the test clock offset (`GRENIER_TEST_CLOCK_OFFSET_MS`) across restarts.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter, Tag,
    Transition, TransitionStorageClass,
};
use serde_json::Value;

use crate::harness::*;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One node (replication factor 1, so that it leads every partition), a key allowed to create
/// buckets, and a runtime for the SDK.
struct One {
    proc: Proc,
    key_id: String,
    secret: String,
    rt: tokio::runtime::Runtime,
}

impl One {
    fn start(extra: &str) -> One {
        let mut plan = plan(1, 1, SECRET);
        let mut spec = plan.specs.remove(0);
        spec.extra = extra.to_string();
        let mut proc = Proc::start(spec);
        proc.keep_dir(&std::sync::Arc::new(plan.root));
        assign_and_apply(std::slice::from_ref(&proc), &[(0, "a")]);
        let k = proc.cli_json(&["key", "create", "tester"]);
        proc.cli(&["key", "allow", "tester", "--create-bucket"])
            .unwrap();
        One {
            proc,
            key_id: k["id"].as_str().unwrap().to_string(),
            secret: k["secret"].as_str().unwrap().to_string(),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn client(&self) -> Client {
        let addr = format!("{}:3900", self.proc.spec.ip);
        crate::harness::sdk_client(&addr, "garage", &self.key_id, &self.secret)
    }

    /// Restart the node with its clock shifted by `offset_ms`.
    fn restart_at(&mut self, offset_ms: i64) {
        self.proc.kill();
        self.proc.spec.env = vec![(
            "GRENIER_TEST_CLOCK_OFFSET_MS".to_string(),
            offset_ms.to_string(),
        )];
        self.proc.restart();
    }

    fn lifecycle_status(&self) -> Value {
        let v = self.proc.cli_json(&["worker", "list"]);
        v.as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "lifecycle")
            .unwrap_or_else(|| panic!("no lifecycle worker in {v}"))
            .clone()
    }

    fn blocks(&self) -> BTreeSet<String> {
        let v: Value =
            serde_json::from_str(&self.proc.cli(&["debug", "block-local"]).unwrap()).unwrap();
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }
}

fn failure<E: ProvideErrorMetadata>(e: SdkError<E>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default()
        .to_string();
    (code, status)
}

fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
}

#[test]
fn lifecycle_configuration_put_get_delete() {
    let env = One::start("");
    let c = env.client();
    env.rt.block_on(async {
        c.create_bucket().bucket("lcb").send().await.unwrap();
        let e = c
            .get_bucket_lifecycle_configuration()
            .bucket("lcb")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            failure(e),
            ("NoSuchLifecycleConfiguration".to_string(), 404)
        );
        let config = BucketLifecycleConfiguration::builder()
            .rules(
                rule("logs")
                    .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
                    .expiration(LifecycleExpiration::builder().days(30).build())
                    .build()
                    .unwrap(),
            )
            .rules(
                rule("tagged-big")
                    .filter(
                        LifecycleRuleFilter::builder()
                            .and(
                                LifecycleRuleAndOperator::builder()
                                    .prefix("tmp/")
                                    .tags(Tag::builder().key("t").value("1").build().unwrap())
                                    .object_size_greater_than(1000)
                                    .build(),
                            )
                            .build(),
                    )
                    .expiration(
                        LifecycleExpiration::builder()
                            .date(aws_sdk_s3::primitives::DateTime::from_secs(1_798_761_600))
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .rules(
                rule("uploads")
                    .status(ExpirationStatus::Disabled)
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .abort_incomplete_multipart_upload(
                        AbortIncompleteMultipartUpload::builder()
                            .days_after_initiation(7)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        c.put_bucket_lifecycle_configuration()
            .bucket("lcb")
            .lifecycle_configuration(config)
            .send()
            .await
            .unwrap();
        let got = c
            .get_bucket_lifecycle_configuration()
            .bucket("lcb")
            .send()
            .await
            .unwrap();
        let rules = got.rules();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].id(), Some("logs"));
        assert_eq!(rules[0].filter().and_then(|f| f.prefix()), Some("logs/"));
        assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(30));
        let and = rules[1].filter().and_then(|f| f.and()).unwrap();
        assert_eq!(and.prefix(), Some("tmp/"));
        assert_eq!(and.tags()[0].key(), "t");
        assert_eq!(and.object_size_greater_than(), Some(1000));
        assert_eq!(
            rules[1]
                .expiration()
                .and_then(|e| e.date())
                .map(|d| d.secs()),
            Some(1_798_761_600)
        );
        assert_eq!(rules[2].status(), &ExpirationStatus::Disabled);
        assert_eq!(
            rules[2]
                .abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation()),
            Some(7)
        );

        // What Grenier cannot honour is refused, and the stored configuration stays.
        let glacier = BucketLifecycleConfiguration::builder()
            .rules(
                rule("cold")
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .transitions(
                        Transition::builder()
                            .days(30)
                            .storage_class(TransitionStorageClass::Glacier)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = c
            .put_bucket_lifecycle_configuration()
            .bucket("lcb")
            .lifecycle_configuration(glacier)
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("NotImplemented".to_string(), 501));
        // A rule without an action, as AWS.
        let idle = BucketLifecycleConfiguration::builder()
            .rules(
                rule("idle")
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = c
            .put_bucket_lifecycle_configuration()
            .bucket("lcb")
            .lifecycle_configuration(idle)
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(e), ("InvalidRequest".to_string(), 400));
        let again = c
            .get_bucket_lifecycle_configuration()
            .bucket("lcb")
            .send()
            .await
            .unwrap();
        assert_eq!(again.rules().len(), 3);

        c.delete_bucket_lifecycle()
            .bucket("lcb")
            .send()
            .await
            .unwrap();
        let e = c
            .get_bucket_lifecycle_configuration()
            .bucket("lcb")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            failure(e),
            ("NoSuchLifecycleConfiguration".to_string(), 404)
        );
    });
}

async fn exists(c: &Client, key: &str) -> bool {
    match c.head_object().bucket("lcb").key(key).send().await {
        Ok(_) => true,
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
        Err(e) => panic!("HEAD {key}: {e:?}"),
    }
}

/// Objects past their expiration go, others stay; an old multipart upload is aborted; the worker's
/// status shows it; a restart within the same day does not run the day again.
#[test]
fn the_worker_expires_objects_and_aborts_old_uploads_once_a_day() {
    let mut env = One::start("");
    let c = env.client();
    assert_eq!(env.lifecycle_status()["state"], "idle");
    env.rt.block_on(async {
        c.create_bucket().bucket("lcb").send().await.unwrap();
        let config = BucketLifecycleConfiguration::builder()
            .rules(
                rule("logs")
                    .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
                    .expiration(LifecycleExpiration::builder().days(1).build())
                    .build()
                    .unwrap(),
            )
            .rules(
                rule("uploads")
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .abort_incomplete_multipart_upload(
                        AbortIncompleteMultipartUpload::builder()
                            .days_after_initiation(2)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        c.put_bucket_lifecycle_configuration()
            .bucket("lcb")
            .lifecycle_configuration(config)
            .send()
            .await
            .unwrap();
        for key in ["logs/old", "data/kept"] {
            c.put_object()
                .bucket("lcb")
                .key(key)
                .body(ByteStream::from_static(b"contents"))
                .send()
                .await
                .unwrap();
        }
        c.create_multipart_upload()
            .bucket("lcb")
            .key("big")
            .send()
            .await
            .unwrap();
    });

    // One day later: the object is not due yet (created today + 1 day, rounded to the next midnight
    // is at most 2 days away), nor is the upload. Three days later, both are.
    env.restart_at(3 * DAY_MS);
    let status = wait_for(
        "the lifecycle run of the day (+3 days)",
        Duration::from_secs(30),
        || {
            let s = env.lifecycle_status();
            (s["done"].as_u64() == Some(2) && s["state"] == "idle").then_some(s)
        },
    );
    let progress = status["progress"].as_str().unwrap().to_string();
    assert!(
        progress.contains("1 objects expired, 1 uploads aborted"),
        "{progress}"
    );
    env.rt.block_on(async {
        assert!(!exists(&c, "logs/old").await, "expired");
        assert!(exists(&c, "data/kept").await, "not matched by the filter");
        let l = c
            .list_multipart_uploads()
            .bucket("lcb")
            .send()
            .await
            .unwrap();
        assert!(l.uploads().is_empty(), "{l:?}");
    });

    // Back to the real time, write an object that the day's run would expire, and come back to that
    // day: the day was completed, it is not run again.
    env.restart_at(0);
    env.rt.block_on(async {
        c.put_object()
            .bucket("lcb")
            .key("logs/late")
            .body(ByteStream::from_static(b"late"))
            .send()
            .await
            .unwrap();
    });
    env.restart_at(3 * DAY_MS);
    let s = env.lifecycle_status();
    assert_eq!(s["progress"].as_str().unwrap(), progress, "persisted");
    // Nothing to wait for if the day is not redone: watch for a few seconds that it is not.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let s = env.lifecycle_status();
        assert_eq!(s["progress"].as_str().unwrap(), progress, "not run again");
        std::thread::sleep(Duration::from_millis(300));
    }
    env.rt.block_on(async {
        assert!(
            exists(&c, "logs/late").await,
            "the completed day was not redone"
        );
    });
}

/// A PutObject whose node died mid-stream leaves an uploading version holding blocks: the worker
/// aborts it once `lifecycle-stale-upload-secs` (24 h by default) have passed, and the blocks go.
#[test]
fn a_crashed_put_is_swept_and_its_blocks_released() {
    let mut env = One::start("block_gc_delay_secs = 1\nblock_size = \"64KiB\"");
    let c = env.client();
    let before = env.blocks();
    let uri = env.rt.block_on(async {
        c.create_bucket().bucket("lcb").send().await.unwrap();
        let conf = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
        c.put_object()
            .bucket("lcb")
            .key("crashed")
            .presigned(conf)
            .await
            .unwrap()
            .uri()
            .to_string()
    });
    let rest = uri.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    // Announce 4 MiB, send 1 MiB, then stall: the node writes the blocks it has.
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        4 << 20
    )
    .unwrap();
    // Distinct blocks (blocks are content-addressed: equal ones would be one).
    let sent: Vec<u8> = (0..1u32 << 20)
        .map(|i| i.wrapping_mul(2654435761).to_le_bytes()[2])
        .collect();
    s.write_all(&sent).unwrap();
    let written = wait_for("the PUT's blocks on disk", Duration::from_secs(30), || {
        let now: BTreeSet<String> = env.blocks().difference(&before).cloned().collect();
        (now.len() >= 4).then_some(now)
    });
    // The node dies mid-upload; its blocks stay, held by the uploading version.
    env.proc.kill();
    drop(s);
    env.restart_at(0);
    assert!(
        env.blocks().is_superset(&written),
        "a crash keeps the blocks"
    );
    // A day and a bit later the upload is stale: swept, its blocks released.
    env.restart_at(DAY_MS + 3600 * 1000);
    wait_for("the stale upload swept", Duration::from_secs(30), || {
        let s = env.lifecycle_status();
        s["progress"]
            .as_str()
            .unwrap()
            .contains("1 stale uploads swept")
            .then_some(())
    });
    wait_for(
        "the crashed PUT's blocks deleted",
        Duration::from_secs(60),
        || {
            let held = env.blocks();
            written.iter().all(|h| !held.contains(h)).then_some(())
        },
    );
    env.rt.block_on(async {
        assert!(!exists(&c, "crashed").await);
    });
}

/// Three nodes holding every object (replication factor 3): only the first node of the bucket's
/// partition runs the rules, so each object is expired once, by one node.
#[test]
fn one_node_per_bucket_does_the_work() {
    let mut env = crate::s3::S3Env::start("");
    let c = env.client(0);
    env.block_on(async {
        c.create_bucket().bucket("lcb").send().await.unwrap();
        let config = BucketLifecycleConfiguration::builder()
            .rules(
                rule("all")
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .expiration(LifecycleExpiration::builder().days(1).build())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        c.put_bucket_lifecycle_configuration()
            .bucket("lcb")
            .lifecycle_configuration(config)
            .send()
            .await
            .unwrap();
        for key in ["a", "b", "c"] {
            c.put_object()
                .bucket("lcb")
                .key(key)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap();
        }
    });
    for p in env.procs.iter_mut() {
        p.kill();
        p.spec.env = vec![(
            "GRENIER_TEST_CLOCK_OFFSET_MS".to_string(),
            (3 * DAY_MS).to_string(),
        )];
    }
    for p in env.procs.iter_mut() {
        p.restart();
    }
    let done = |p: &Proc| -> u64 {
        let v = p.cli_json(&["worker", "list"]);
        v.as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "lifecycle")
            .and_then(|w| w["done"].as_u64())
            .unwrap()
    };
    let counts = wait_for("the three objects expired", Duration::from_secs(60), || {
        let counts: Vec<u64> = env.procs.iter().map(done).collect();
        (counts.iter().sum::<u64>() >= 3).then_some(counts)
    });
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![0, 0, 3],
        "one node did all the work: {counts:?}"
    );
    env.block_on(async {
        let l = c.list_objects_v2().bucket("lcb").send().await.unwrap();
        assert!(l.contents().is_empty(), "{l:?}");
    });
}
