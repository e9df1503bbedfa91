//! Canned ACLs and anonymous reads through the AWS SDK and a plain HTTP client (what a browser
//! fetching a Mastodon or PeerTube media URL does): public-read objects are readable by anyone (GET,
//! HEAD, ranged, conditional), everything else stays private and answers AccessDenied whether it
//! exists or not; `PUT ?acl` switches an object without touching its data; a public-read bucket ACL
//! opens its listing.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, Owner, Permission, Type,
};
use serde_json::Value;

use crate::harness::wait_for;
use crate::s3::{S3Env, code, data, http, http_with};

#[test]
fn public_read_objects_are_served_without_a_signature_and_the_rest_stays_private() {
    let env = S3Env::start("");
    let (a, b) = (env.client(0), env.client(1));
    let base = format!("http://{}:3900", env.procs[2].spec.ip);
    let url = |path: &str| format!("{base}/{path}");
    let anon = |path: &str| http("GET", &url(path), b"");
    // Printable bytes: the raw HTTP helper with headers answers text.
    let media: Vec<u8> = data(100_000, 7).iter().map(|b| b'a' + b % 26).collect();
    env.block_on(async {
        a.create_bucket().bucket("media").send().await.unwrap();
        a.put_object()
            .bucket("media")
            .key("public.png")
            .acl(ObjectCannedAcl::PublicRead)
            .body(ByteStream::from(media.clone()))
            .send()
            .await
            .unwrap();
        a.put_object()
            .bucket("media")
            .key("private.png")
            .body(ByteStream::from_static(b"secret"))
            .send()
            .await
            .unwrap();
    });
    // GET, HEAD, ranged and conditional GET of the public object, without any signature.
    // Unsigned requests find buckets in the node's own copy of the bucket table: this node may learn
    // of the new bucket a moment after the quorum that acknowledged its creation.
    wait_for(
        "the bucket known to the node",
        Duration::from_secs(10),
        || (anon("media/public.png").0 != 403).then_some(()),
    );
    assert_eq!(anon("media/public.png"), (200, media.clone()));
    assert_eq!(http("HEAD", &url("media/public.png"), b"").0, 200);
    // An anonymous request may not rewrite response headers (AWS answers 400 InvalidRequest).
    let (status, body) = anon("media/public.png?response-content-type=text%2Fhtml");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<Code>InvalidRequest</Code>"));
    let mut range = hyper::HeaderMap::new();
    range.insert("range", "bytes=10-19".parse().unwrap());
    range.insert("host", "s3".parse().unwrap());
    let (status, text) = http_with("GET", &url("media/public.png"), &range, b"");
    assert_eq!(status, 206, "{text}");
    assert!(text.as_bytes().ends_with(&media[10..20]));
    let etag = env.block_on(async {
        let h = b
            .head_object()
            .bucket("media")
            .key("public.png")
            .send()
            .await
            .unwrap();
        h.e_tag().unwrap().to_string()
    });
    let mut cond = hyper::HeaderMap::new();
    cond.insert("if-none-match", etag.parse().unwrap());
    cond.insert("host", "s3".parse().unwrap());
    assert_eq!(
        http_with("GET", &url("media/public.png"), &cond, b"").0,
        304
    );

    // Private, absent, and anything but reading: AccessDenied, the same for what exists and not.
    for path in [
        "media/private.png",
        "media/absent.png",
        "nobucket/x",
        "media",
        "media?list-type=2",
        "media/public.png?acl",
        "media/public.png?tagging",
        "",
    ] {
        let (status, body) = anon(path);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{path}: {body}");
    }
    assert_eq!(http("HEAD", &url("media/private.png"), b"").0, 403);
    assert_eq!(http("PUT", &url("media/public.png"), b"overwrite").0, 403);
    assert_eq!(http("DELETE", &url("media/public.png"), b"").0, 403);
    assert_eq!(anon("media/public.png"), (200, media.clone()), "unchanged");

    env.block_on(async {
        // A bad signature never falls back to anonymous, even on a public object.
        let forged = env.client_with(0, &env.key_id, "not-the-secret-at-all");
        let e = forged
            .get_object()
            .bucket("media")
            .key("public.png")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "SignatureDoesNotMatch");

        // The ACLs as S3 shows them: owner FULL_CONTROL, plus AllUsers READ when public.
        let acl = a
            .get_object_acl()
            .bucket("media")
            .key("public.png")
            .send()
            .await
            .unwrap();
        let owner = acl.owner().unwrap().id().unwrap().to_string();
        assert_eq!(owner, env.key_id);
        let described: Vec<String> = acl
            .grants()
            .iter()
            .map(|g| {
                let who = g.grantee().unwrap();
                format!(
                    "{:?} {} {}",
                    who.r#type(),
                    who.id().or(who.uri()).unwrap_or(""),
                    g.permission().unwrap().as_str()
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![
                format!("CanonicalUser {owner} FULL_CONTROL"),
                "Group http://acs.amazonaws.com/groups/global/AllUsers READ".to_string()
            ]
        );
        let private = b
            .get_object_acl()
            .bucket("media")
            .key("private.png")
            .send()
            .await
            .unwrap();
        assert_eq!(private.grants().len(), 1);

        // PeerTube's switch: the object becomes public, then private again; its data never moves.
        b.put_object_acl()
            .bucket("media")
            .key("private.png")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
            .await
            .unwrap();
    });
    assert_eq!(anon("media/private.png"), (200, b"secret".to_vec()));
    env.block_on(async {
        // boto3's way: the AccessControlPolicy it read, edited back to private.
        let owner = Owner::builder().id(&env.key_id).build();
        let owner_grant = Grant::builder()
            .grantee(
                Grantee::builder()
                    .r#type(Type::CanonicalUser)
                    .id(&env.key_id)
                    .build()
                    .unwrap(),
            )
            .permission(Permission::FullControl)
            .build();
        a.put_object_acl()
            .bucket("media")
            .key("private.png")
            .access_control_policy(
                AccessControlPolicy::builder()
                    .owner(owner.clone())
                    .grants(owner_grant.clone())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // Grants other than the canned ACLs: NotImplemented, nothing changed.
        let everyone_writes = Grant::builder()
            .grantee(
                Grantee::builder()
                    .r#type(Type::Group)
                    .uri("http://acs.amazonaws.com/groups/global/AllUsers")
                    .build()
                    .unwrap(),
            )
            .permission(Permission::Write)
            .build();
        let e = a
            .put_object_acl()
            .bucket("media")
            .key("private.png")
            .access_control_policy(
                AccessControlPolicy::builder()
                    .owner(owner)
                    .grants(owner_grant)
                    .grants(everyone_writes)
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "NotImplemented");
        let e = a
            .put_object()
            .bucket("media")
            .key("x")
            .acl(ObjectCannedAcl::PublicReadWrite)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "NotImplemented");
        let e = a
            .put_object_acl()
            .bucket("media")
            .key("absent")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "NoSuchKey");
        // A copy takes the request's ACL (default private), not the source's.
        a.copy_object()
            .bucket("media")
            .key("copy.png")
            .copy_source("media/public.png")
            .send()
            .await
            .unwrap();
        a.copy_object()
            .bucket("media")
            .key("public-copy.png")
            .copy_source("media/public.png")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
            .await
            .unwrap();
    });
    assert_eq!(anon("media/private.png").0, 403);
    assert_eq!(anon("media/copy.png").0, 403);
    assert_eq!(anon("media/public-copy.png"), (200, media.clone()));

    // A key with no permission on the bucket reads what is public, and nothing else.
    let out = env.procs[0]
        .cli(&["key", "create", "stranger", "--json"])
        .unwrap();
    let k: Value = serde_json::from_str(&out).unwrap();
    let stranger = env.client_with(0, k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    env.block_on(async {
        let got = stranger
            .get_object()
            .bucket("media")
            .key("public.png")
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().len(),
            media.len()
        );
        let e = stranger
            .get_object()
            .bucket("media")
            .key("private.png")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "AccessDenied");
    });

    // The bucket ACL: public-read opens the listing (not the private objects), private closes it.
    env.block_on(async {
        a.put_bucket_acl()
            .bucket("media")
            .acl(BucketCannedAcl::PublicRead)
            .send()
            .await
            .unwrap();
    });
    // Bucket settings live in a table every node keeps a full copy of, read locally: another node
    // sees the change once its copy has it (a quorum has it when PutBucketAcl answers).
    wait_for(
        "the bucket ACL on another node",
        Duration::from_secs(10),
        || {
            let acl = env
                .block_on(b.get_bucket_acl().bucket("media").send())
                .unwrap();
            (acl.grants().len() == 2).then_some(())
        },
    );
    let (status, body) = wait_for("a public listing", Duration::from_secs(10), || {
        let r = anon("media?list-type=2");
        (r.0 == 200).then_some(r)
    });
    let listing = String::from_utf8_lossy(&body);
    assert!(
        status == 200 && listing.contains("<Key>private.png</Key>"),
        "{listing}"
    );
    assert_eq!(anon("media?prefix=pub").0, 200, "ListObjects v1 too");
    assert_eq!(anon("media/private.png").0, 403);
    env.block_on(async {
        a.put_bucket_acl()
            .bucket("media")
            .acl(BucketCannedAcl::Private)
            .send()
            .await
            .unwrap();
        // CreateBucket with a public-read ACL.
        a.create_bucket()
            .bucket("open")
            .acl(BucketCannedAcl::PublicRead)
            .send()
            .await
            .unwrap();
    });
    wait_for("the listing closed again", Duration::from_secs(10), || {
        (anon("media?list-type=2").0 == 403).then_some(())
    });
    wait_for(
        "a bucket created public-read",
        Duration::from_secs(10),
        || (anon("open?list-type=2").0 == 200).then_some(()),
    );

    // The admins' switch: `grenier bucket public --read` opens every object (not the listing) to
    // anonymous reads, `--deny` closes them again; `bucket info` shows both settings.
    let cli = |args: &[&str]| env.procs[1].cli(args).unwrap();
    cli(&["bucket", "public", "media", "--read"]);
    wait_for(
        "the bucket switch opens private objects",
        Duration::from_secs(10),
        || (anon("media/private.png") == (200, b"secret".to_vec())).then_some(()),
    );
    assert_eq!(
        anon("media?list-type=2").0,
        403,
        "the switch does not open the listing"
    );
    let info: Value = serde_json::from_str(&cli(&["bucket", "info", "media", "--json"])).unwrap();
    assert_eq!(
        (info["public_read"].as_bool(), info["acl"].as_str()),
        (Some(true), Some("private"))
    );
    assert!(cli(&["bucket", "info", "open"]).contains("ACL:      public-read   Public read: no"));
    cli(&["bucket", "public", "media", "--deny"]);
    wait_for(
        "the bucket switch closed again",
        Duration::from_secs(10),
        || (anon("media/private.png").0 == 403).then_some(()),
    );
    assert_eq!(
        anon("media/public.png").0,
        200,
        "the object's own ACL still counts"
    );
    assert!(
        env.procs[1].cli(&["bucket", "public", "media"]).is_err(),
        "--read or --deny"
    );
}
