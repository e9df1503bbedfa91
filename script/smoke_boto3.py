#!/usr/bin/env python3
"""boto3 smoke test against a running Grenier node (run by script/s3-smoke, in its venv).

Needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and AWS_REGION in the environment (the
dev node's credentials.env) and a scratch directory as its only argument. Creates its own bucket, checks
every answer byte for byte, and deletes what it made. Exits non-zero, naming the failed check, on the
first failure.
"""

import hashlib
import os
import sys
import urllib.error
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        got = e.response.get("Error", {}).get("Code")
        check(got == code, f"{fn.__name__}: expected error {code}, got {got}: {e}")
        return e
    raise AssertionError(f"{fn.__name__}: expected error {code}, got success")


def main():
    scratch = sys.argv[1]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ["AWS_REGION"],
        # no retries and a short read timeout: a request the server leaves hanging fails the test
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=20
        ),
    )
    bucket = "smoke-boto3"
    s3.create_bucket(Bucket=bucket)
    check(
        any(b["Name"] == bucket for b in s3.list_buckets()["Buckets"]),
        "list_buckets shows the new bucket",
    )

    # put / get / head, with metadata and a content type
    body = os.urandom(100_000)
    put = s3.put_object(
        Bucket=bucket,
        Key="obj/one.bin",
        Body=body,
        ContentType="application/x-smoke",
        Metadata={"origin": "boto3"},
    )
    check(put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), "put_object ETag is the MD5")
    got = s3.get_object(Bucket=bucket, Key="obj/one.bin")
    check(got["Body"].read() == body, "get_object returns the bytes put")
    head = s3.head_object(Bucket=bucket, Key="obj/one.bin")
    check(head["ContentLength"] == len(body), "head_object ContentLength")
    check(head["ContentType"] == "application/x-smoke", "head_object ContentType")
    check(head["Metadata"] == {"origin": "boto3"}, f"head_object Metadata: {head['Metadata']}")
    rng = s3.get_object(Bucket=bucket, Key="obj/one.bin", Range="bytes=1000-1999")
    check(rng["Body"].read() == body[1000:2000], "ranged get_object")
    # conditional requests
    expect_error("304", s3.get_object, Bucket=bucket, Key="obj/one.bin", IfNoneMatch=put["ETag"])
    expect_error("PreconditionFailed", s3.get_object, Bucket=bucket, Key="obj/one.bin", IfMatch='"0"')
    # keys that need escaping, in paths and in listings (boto3 asks for EncodingType=url)
    odd = ["odd/a+b c.txt", "odd/ü?#&=;:@$,'!().txt", "odd/%41%2F.txt", "odd/tab\tand~star*.txt"]
    for k in odd:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        check(s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode(), f"get of key {k!r}")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="odd/")["Contents"]]
    check(listed == sorted(odd), f"listing of odd keys: {listed}")

    # an empty object, then another PUT (on the same pooled connection)
    s3.put_object(Bucket=bucket, Key="obj/empty", Body=b"")
    check(s3.get_object(Bucket=bucket, Key="obj/empty")["Body"].read() == b"", "empty object")
    check(s3.head_object(Bucket=bucket, Key="obj/empty")["ContentLength"] == 0, "empty object size")

    # listing: ~1,200 keys through the paginator, 500 per page
    n = 1200
    keys = [f"many/{i:05d}" for i in range(n)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="many/", PaginationConfig={"PageSize": 500}
        )
    )
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    check(len(pages) == 3, f"1,200 keys in pages of 500: {len(pages)} pages")
    check([p["KeyCount"] for p in pages] == [500, 500, 200], "KeyCount per page")
    check(listed == keys, "paginated listing returns every key once, in order")
    v1 = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Prefix="many/", PaginationConfig={"PageSize": 500}
        )
    )
    check([o["Key"] for p in v1 for o in p.get("Contents", [])] == keys, "ListObjects (v1) paginated")

    # multipart through the transfer manager, then download_file
    big = os.path.join(scratch, "boto3-12M.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(12 * MiB))
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(big, bucket, "big/12M.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big/12M.bin")
    check(head["ContentLength"] == 12 * MiB, "multipart object size")
    check(head["ETag"].endswith('-3"'), f"multipart ETag has 3 parts: {head['ETag']}")
    back = big + ".back"
    s3.download_file(bucket, "big/12M.bin", back, Config=cfg)
    with open(big, "rb") as a, open(back, "rb") as b:
        check(a.read() == b.read(), "download_file returns the uploaded bytes")

    # server-side copies: CopyObject (metadata copied, then replaced) and a managed multipart copy
    s3.copy_object(Bucket=bucket, Key="copy/one.bin", CopySource={"Bucket": bucket, "Key": "obj/one.bin"})
    head = s3.head_object(Bucket=bucket, Key="copy/one.bin")
    check(head["Metadata"] == {"origin": "boto3"}, f"copy_object copies metadata: {head['Metadata']}")
    check(head["ContentType"] == "application/x-smoke", "copy_object copies the content type")
    s3.copy_object(
        Bucket=bucket,
        Key="copy/one.bin",
        CopySource={"Bucket": bucket, "Key": "obj/one.bin"},
        MetadataDirective="REPLACE",
        Metadata={"origin": "copy"},
    )
    head = s3.head_object(Bucket=bucket, Key="copy/one.bin")
    check(head["Metadata"] == {"origin": "copy"}, f"copy_object REPLACE: {head['Metadata']}")
    got = s3.get_object(Bucket=bucket, Key="copy/one.bin")["Body"].read()
    check(got == body, "copy_object bytes")
    s3.copy({"Bucket": bucket, "Key": "big/12M.bin"}, bucket, "copy/12M.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="copy/12M.bin")
    check(head["ETag"].endswith('-3"'), f"managed copy is a 3-part multipart copy: {head['ETag']}")
    got = s3.get_object(Bucket=bucket, Key="copy/12M.bin")["Body"].read()
    with open(big, "rb") as a:
        check(got == a.read(), "managed multipart copy bytes")

    # presigned GET and PUT, used with a plain HTTP client
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "obj/one.bin"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url) as r:
        check(r.read() == body, "presigned GET returns the bytes")
    put_body = b"presigned put " + os.urandom(5000)
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "obj/presigned"}, ExpiresIn=300
    )
    req = urllib.request.Request(url, data=put_body, method="PUT")
    with urllib.request.urlopen(req) as r:
        check(r.status == 200, f"presigned PUT status {r.status}")
    got = s3.get_object(Bucket=bucket, Key="obj/presigned")["Body"].read()
    check(got == put_body, "object written by presigned PUT")
    # a tampered presigned URL is refused
    bad = url.replace("obj/presigned", "obj/presigneX")
    try:
        urllib.request.urlopen(urllib.request.Request(bad, data=b"x", method="PUT"))
        raise AssertionError("tampered presigned URL accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 403, f"tampered presigned URL: HTTP {e.code}")

    # errors
    expect_error("NoSuchKey", s3.get_object, Bucket=bucket, Key="no/such/key")
    expect_error("404", s3.head_object, Bucket=bucket, Key="no/such/key")
    expect_error("NoSuchBucket", s3.get_object, Bucket="no-such-bucket-smoke", Key="k")
    expect_error("NoSuchBucket", s3.list_objects_v2, Bucket="no-such-bucket-smoke")
    expect_error("BucketNotEmpty", s3.delete_bucket, Bucket=bucket)

    # delete_objects (batches of at most 1,000), then the bucket
    all_keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in p.get("Contents", [])]
    check(len(all_keys) == n + 6 + len(odd), f"{len(all_keys)} keys before delete_objects")
    for i in range(0, len(all_keys), 1000):
        batch = all_keys[i : i + 1000]
        r = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": False}
        )
        check(not r.get("Errors"), f"delete_objects errors: {r.get('Errors')}")
        check(sorted(d["Key"] for d in r["Deleted"]) == sorted(batch), "delete_objects Deleted")
    check(s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, "bucket empty after delete_objects")
    expect_error("NoSuchKey", s3.get_object, Bucket=bucket, Key="obj/one.bin")
    s3.delete_bucket(Bucket=bucket)
    expect_error("NoSuchBucket", s3.list_objects_v2, Bucket=bucket)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"boto3 smoke: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
