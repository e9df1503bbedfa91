"""Nextcloud's S3 primary storage, replayed with boto3 (Nextcloud uses the AWS SDK for PHP; the requests are
the same operations with the same parameters): lib/private/Files/ObjectStore/S3ConnectionTrait.php and
S3ObjectTrait.php. Path style (`use_path_style` => true, what admins set for MinIO/Garage-like stores),
region `garage`, checksums only when required (Nextcloud 31+ sets request_checksum_calculation and
response_checksum_validation to when_required), objects named urn:oid:<fileid>, PutObject for small
files, a multipart upload with 5 MiB parts for large ones, HeadObject, ranged GetObject (the seekable
read stream), CopyObject, DeleteObject, ListObjects v1 pages with a marker; then the same with SSE-C
(Nextcloud's `sse_c_key` option: every request on an object carries the customer key).

Usage (through script/app-flows, which sets the environment): python nextcloud.py WORKDIR
"""

import base64
import hashlib
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

import boto3
from botocore.config import Config

MiB = 1024 * 1024
work = sys.argv[1] if len(sys.argv) > 1 else "."
endpoint = os.environ["AWS_ENDPOINT_URL"]
region = os.environ["AWS_REGION"]
bucket = "nextcloud-data"
results = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def step(name):
    def run(fn):
        t0 = time.time()
        log(f"---- {name}")
        try:
            fn()
            print(f"STEP {name} OK ({time.time() - t0:.1f}s)", flush=True)
            results.append(True)
        except Exception as e:  # noqa: BLE001 - a failed step is reported, the next ones still run
            log(traceback.format_exc())
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            print(f"STEP {name} FAIL: {msg}", flush=True)
            results.append(False)
        return fn

    return run


def check_eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")
    log(f"ok: {what}")


# S3ConnectionTrait::getConnection()
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    config=Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 1},
    ),
)

# S3ConnectionTrait::getSSECParameters(): the raw key, its MD5, on every object request
sse_key = os.urandom(32)
SSEC = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": sse_key}
SSEC_COPY_SOURCE = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": sse_key}
# (boto3 adds SSECustomerKeyMD5 and base64-encodes the key, as the PHP SDK does)


def urn(fileid):
    return f"urn:oid:{fileid}"


def write_object(key, data, sse, multipart_part=None):
    """S3ObjectTrait::writeObject(): PutObject below the put size limit, else a multipart upload."""
    extra = dict(SSEC) if sse else {}
    if multipart_part is None:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/octet-stream", **extra)
        return
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/octet-stream", **extra)
    upload_id = up["UploadId"]
    parts = []
    try:
        for n, off in enumerate(range(0, len(data), multipart_part), start=1):
            r = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data[off : off + multipart_part], **extra
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        extra_complete = extra if sse else {}
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra_complete
        )
    except Exception:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def read_range(key, start, end, sse):
    extra = dict(SSEC) if sse else {}
    r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", **extra)
    return r["Body"].read(), r


small = os.urandom(300 * 1024)
big = os.urandom(17 * MiB + 123)  # 4 parts of 5 MiB (the last shorter)


def flow(sse):
    label = " (SSE-C)" if sse else ""
    ids = (200, 201, 202) if sse else (100, 101, 102)
    extra = dict(SSEC) if sse else {}

    @step(f"PutObject of a small file{label}")
    def _():
        write_object(urn(ids[0]), small, sse)

    @step(f"multipart upload, 5 MiB parts (uploadPart + complete){label}")
    def _():
        write_object(urn(ids[1]), big, sse, multipart_part=5 * MiB)
        h = s3.head_object(Bucket=bucket, Key=urn(ids[1]), **extra)
        check_eq(h["ContentLength"], len(big), "size of the multipart object")
        check_eq(h["ETag"].endswith('-4"'), True, f"a 4-part ETag ({h['ETag']})")

    @step(f"HeadObject (objectExists){label}")
    def _():
        h = s3.head_object(Bucket=bucket, Key=urn(ids[0]), **extra)
        check_eq(h["ContentLength"], len(small), "ContentLength")
        if sse:
            check_eq(h.get("SSECustomerAlgorithm"), "AES256", "SSECustomerAlgorithm echoed")
        try:
            s3.head_object(Bucket=bucket, Key=urn(999999), **extra)
            raise AssertionError("HeadObject of a missing object succeeded")
        except s3.exceptions.ClientError as e:
            check_eq(e.response["Error"]["Code"], "404", "HeadObject of a missing object")

    @step(f"ranged GetObject (seekable read stream){label}")
    def _():
        got, r = read_range(urn(ids[1]), 6 * MiB - 10, 7 * MiB, sse)
        check_eq(got == big[6 * MiB - 10 : 7 * MiB + 1], True, "ranged bytes across a part boundary")
        check_eq(r["ContentRange"], f"bytes {6 * MiB - 10}-{7 * MiB}/{len(big)}", "Content-Range")
        got, _ = read_range(urn(ids[0]), 0, len(small) - 1, sse)
        check_eq(hashlib.md5(got).hexdigest(), hashlib.md5(small).hexdigest(), "whole small file")

    @step(f"CopyObject (copyObject){label}")
    def _():
        src = {"Bucket": bucket, "Key": urn(ids[1])}
        s3.copy_object(Bucket=bucket, Key=urn(ids[2]), CopySource=src, **extra, **(SSEC_COPY_SOURCE if sse else {}))
        body = s3.get_object(Bucket=bucket, Key=urn(ids[2]), **extra)["Body"].read()
        check_eq(hashlib.md5(body).hexdigest(), hashlib.md5(big).hexdigest(), "copied bytes")

    if sse:

        @step("SSE-C objects unreadable without the key, or with another key")
        def _():
            for what, params in (
                ("without the key", {}),
                ("with another key", {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}),
            ):
                try:
                    s3.get_object(Bucket=bucket, Key=urn(ids[0]), **params)
                    raise AssertionError(f"GetObject {what} succeeded")
                except s3.exceptions.ClientError as e:
                    status = e.response["ResponseMetadata"]["HTTPStatusCode"]
                    check_eq(status in (400, 403), True, f"GetObject {what} refused ({status})")
            # and a plain HTTP GET of a presigned URL without the SSE-C headers gets no data either
            url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": urn(ids[0])}, ExpiresIn=60)
            try:
                urllib.request.urlopen(url)
                raise AssertionError("presigned GET without SSE-C headers succeeded")
            except urllib.error.HTTPError as e:
                check_eq(e.code in (400, 403), True, f"presigned GET without the key refused ({e.code})")

    @step(f"DeleteObject (deleteObject){label}")
    def _():
        s3.delete_object(Bucket=bucket, Key=urn(ids[2]))
        try:
            s3.head_object(Bucket=bucket, Key=urn(ids[2]), **extra)
            raise AssertionError("the deleted object is still there")
        except s3.exceptions.ClientError as e:
            check_eq(e.response["Error"]["Code"], "404", "HeadObject after DeleteObject")
        s3.delete_object(Bucket=bucket, Key=urn(ids[2]))  # deleting again succeeds, as on AWS


@step("create the bucket (path style, region garage)")
def _():
    s3.create_bucket(Bucket=bucket)
    check_eq(s3.get_bucket_location(Bucket=bucket).get("LocationConstraint"), region, "bucket location")


flow(sse=False)
flow(sse=True)


@step("ListObjects v1 by prefix, 3 per page with Marker (listObjects)")
def _():
    for i in range(7):
        s3.put_object(Bucket=bucket, Key=f"appdata_oc1/preview/{i:02d}.png", Body=b"p" * i)
    s3.put_object(Bucket=bucket, Key="appdata_oc1/zzz-outside", Body=b"x")
    keys, marker, pages = [], "", 0
    while True:
        r = s3.list_objects(Bucket=bucket, Prefix="appdata_oc1/preview/", Marker=marker, MaxKeys=3)
        pages += 1
        page = [o["Key"] for o in r.get("Contents", [])]
        keys += page
        if not r.get("IsTruncated"):
            break
        # NextMarker is only sent with a delimiter: the client continues from the last key, as the PHP SDK does
        marker = r.get("NextMarker") or page[-1]
    check_eq(keys, [f"appdata_oc1/preview/{i:02d}.png" for i in range(7)], "keys of all pages")
    check_eq(pages, 3, "pages")
    r = s3.list_objects(Bucket=bucket, Prefix="appdata_oc1/", Delimiter="/")
    check_eq([p["Prefix"] for p in r.get("CommonPrefixes", [])], ["appdata_oc1/preview/"], "CommonPrefixes")
    check_eq([o["Key"] for o in r.get("Contents", [])], ["appdata_oc1/zzz-outside"], "Contents with a delimiter")


@step("empty the bucket and delete it")
def _():
    r = s3.list_objects(Bucket=bucket)
    for o in r.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.delete_bucket(Bucket=bucket)


failed = results.count(False)
log(f"{len(results)} steps, {failed} failed")
sys.exit(1 if failed else 0)
