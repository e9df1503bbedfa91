// PeerTube's object storage, replayed: the calls of server/lib/object-storage/shared/object-storage-helpers.ts
// (and client.ts) with the same SDK (@aws-sdk/client-s3 v3, @aws-sdk/lib-storage, s3-request-presigner),
// the same client options (virtual-hosted style: PeerTube's object_storage.force_path_style defaults to
// false) and the same call shapes: a multipart Upload with an ACL per object, PutObjectAcl when a video
// changes privacy, ranged GETs, listing a prefix and DeleteObjects to remove it, presigned URLs for private
// files. Then, as a browser's video player: the public file through the website endpoint, a presigned URL
// fetched cross-origin after a CORS preflight, and a private file refused to anonymous requests.
//
// Usage (through script/app-flows, which sets the environment): node flow.mjs WORKDIR
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  S3Client,
  CreateBucketCommand,
  HeadObjectCommand,
  GetObjectCommand,
  PutObjectAclCommand,
  CopyObjectCommand,
  ListObjectsV2Command,
  DeleteObjectsCommand,
  PutBucketWebsiteCommand,
  PutBucketCorsCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { env, step, finish, check, checkEq, log, request } from '../lib.mjs';

const work = process.argv[2] || fs.mkdtempSync('/tmp/peertube-flow-');
const s3Port = env('GRENIER_S3_PORT');
const webPort = env('GRENIER_WEB_PORT');
const region = env('AWS_REGION');
// Virtual-hosted style: the bucket goes in the host name, <bucket>.s3.localhost (the dev node's
// [s3_api] root_domain is ".s3.localhost").
const endpoint = `http://s3.localhost:${s3Port}`;
const bucket = 'peertube-videos';
const origin = 'http://peertube.localhost:9000'; // the PeerTube instance whose player reads the files
const MiB = 1024 * 1024;

// object-storage/shared/client.ts: getClient()
const client = new S3Client({
  endpoint,
  region,
  credentials: { accessKeyId: env('AWS_ACCESS_KEY_ID'), secretAccessKey: env('AWS_SECRET_ACCESS_KEY') },
  forcePathStyle: false, // CONFIG.OBJECT_STORAGE.FORCE_PATH_STYLE, default false
});

// What went on the wire: the traps this flow is meant to exercise are asserted at the end.
const seen = { expectContinue: 0, crc32: 0, xId: new Set(), hosts: new Set() };
client.middlewareStack.add(
  (next) => async (args) => {
    const r = args.request;
    const h = Object.fromEntries(Object.entries(r.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    if (h.expect === '100-continue') seen.expectContinue++;
    if (h['x-amz-checksum-crc32'] || h['x-amz-sdk-checksum-algorithm'] === 'CRC32' || h['x-amz-trailer'] === 'x-amz-checksum-crc32') seen.crc32++;
    if (r.query && r.query['x-id']) seen.xId.add(r.query['x-id']);
    seen.hosts.add(r.hostname);
    return next(args);
  },
  { step: 'finalizeRequest', priority: 'low', name: 'flowWireRecorder' },
);

// A request with `Expect: 100-continue` whose server never answers `100 Continue` still works: the SDK
// sends the body after 6 s. Count the interim responses to see that the server does answer.
let continues = 0;
const emit = http.ClientRequest.prototype.emit;
http.ClientRequest.prototype.emit = function (event, ...args) {
  if (event === 'continue') continues++;
  return emit.call(this, event, ...args);
};

const videoKey = 'videos/web-videos/3f0c-1080.mp4';
const playlistKey = 'videos/streaming-playlists/hls/3f0c/master.m3u8';
const privateKey = 'videos/web-videos/private/9a1e-720.mp4';
const videoFile = path.join(work, 'video.bin');
const videoSize = 40 * MiB;
const partSize = 8 * MiB; // PeerTube: object_storage.max_upload_part (100MB by default)

const objectUrl = (key) => `http://${bucket}.s3.localhost:${s3Port}/${key}`;
const websiteUrl = (key) => `http://${bucket}.web.localhost:${webPort}/${key}`;
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
const readRange = (file, start, end) => {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(end - start + 1);
  fs.readSync(fd, buf, 0, buf.length, start);
  fs.closeSync(fd);
  return buf;
};

// object-storage-helpers.ts: uploadToStorage() / storeObject()
async function storeObject(key, body, isPrivate, contentType) {
  const upload = new Upload({
    client,
    queueSize: 4,
    partSize,
    leavePartsOnError: false,
    params: {
      Bucket: bucket,
      Key: key,
      Body: body,
      ACL: isPrivate ? 'private' : 'public-read', // object_storage.upload_acl.{private,public}
      ContentType: contentType,
    },
  });
  const response = await upload.done();
  // PeerTube refuses a result without Bucket ("Error uploading ... to object storage, check your
  // credentials"): lib-storage fills it from the CompleteMultipartUpload XML.
  check(response.Bucket === bucket, `upload result has Bucket=${bucket} (got ${response.Bucket})`);
  return response;
}

async function anonymousStatus(url, headers = {}) {
  const r = await request(url, { headers });
  return r.status;
}

await step('create bucket (virtual-hosted style)', [], async () => {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
});

await step('multipart Upload of a 40 MiB public video (8 MiB parts, ACL public-read)', [], async () => {
  fs.writeFileSync(videoFile, crypto.randomBytes(videoSize));
  const r = await storeObject(videoKey, fs.createReadStream(videoFile), false, 'video/mp4');
  check(/^"[0-9a-f]{32}-5"$/.test(r.ETag), `multipart ETag of 5 parts (${r.ETag})`);
  checkEq(r.Key, videoKey, 'upload result Key');
});

await step('small private uploads (playlist and a private video, ACL private)', [], async () => {
  await storeObject(playlistKey, '#EXTM3U\n#EXT-X-VERSION:6\n', true, 'application/vnd.apple.mpegurl');
  await storeObject(privateKey, readRange(videoFile, 0, 3 * MiB - 1), true, 'video/mp4');
});

await step('HeadObject', [], async () => {
  const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: videoKey }));
  checkEq(h.ContentLength, videoSize, 'ContentLength');
  checkEq(h.ContentType, 'video/mp4', 'ContentType');
});

await step('ranged GetObject (createObjectReadStream with a range)', [], async () => {
  const start = 5 * MiB + 17;
  const end = start + MiB - 1;
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: videoKey, Range: `bytes=${start}-${end}` }));
  const got = Buffer.from(await r.Body.transformToByteArray());
  checkEq(r.ContentRange, `bytes ${start}-${end}/${videoSize}`, 'Content-Range');
  check(got.equals(readRange(videoFile, start, end)), 'ranged bytes equal the file');
});

await step('full GetObject (makeAvailable: download to a file)', [], async () => {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: videoKey }));
  const out = path.join(work, 'video.back');
  await new Promise((resolve, reject) => r.Body.pipe(fs.createWriteStream(out)).on('finish', resolve).on('error', reject));
  checkEq(sha256(fs.readFileSync(out)), sha256(fs.readFileSync(videoFile)), 'downloaded bytes');
});

await step('anonymous GET: public-read served, private refused', [], async () => {
  checkEq(await anonymousStatus(objectUrl(videoKey), { Range: 'bytes=0-1023' }), 206, 'anonymous ranged GET of the public video');
  checkEq(await anonymousStatus(objectUrl(privateKey)), 403, 'anonymous GET of the private video');
});

await step('privacy change: PutObjectAcl private then public-read (updateObjectACL)', [], async () => {
  await client.send(new PutObjectAclCommand({ Bucket: bucket, Key: videoKey, ACL: 'private' }));
  checkEq(await anonymousStatus(objectUrl(videoKey), { Range: 'bytes=0-0' }), 403, 'anonymous GET after ACL private');
  await client.send(new PutObjectAclCommand({ Bucket: bucket, Key: videoKey, ACL: 'public-read' }));
  checkEq(await anonymousStatus(objectUrl(videoKey), { Range: 'bytes=0-0' }), 206, 'anonymous GET after ACL public-read');
  await client.send(new PutObjectAclCommand({ Bucket: bucket, Key: playlistKey, ACL: 'public-read' }));
  const r = await request(objectUrl(playlistKey));
  checkEq(r.status, 200, 'anonymous GET of the playlist made public');
  checkEq(r.body.toString(), '#EXTM3U\n#EXT-X-VERSION:6\n', 'playlist bytes');
});

await step('CopyObject', [], async () => {
  const copyKey = 'videos/web-videos/3f0c-1080-copy.mp4';
  await client.send(new CopyObjectCommand({ Bucket: bucket, Key: copyKey, CopySource: `${bucket}/${privateKey}`, ACL: 'private' }));
  const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: copyKey }));
  checkEq(h.ContentLength, 3 * MiB, 'copy ContentLength');
  checkEq(h.ContentType, 'video/mp4', 'copy ContentType');
});

await step('ListObjectsV2 by prefix (listKeysOfPrefix)', [], async () => {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'videos/web-videos/' }));
  const keys = (r.Contents || []).map((o) => o.Key).sort();
  checkEq(keys.join(','), ['videos/web-videos/3f0c-1080-copy.mp4', videoKey, privateKey].sort().join(','), 'keys under the prefix');
});

// ---- website and CORS: a browser's video player reading the files

await step('public video through the website endpoint', ['website'], async () => {
  await client.send(
    new PutBucketWebsiteCommand({ Bucket: bucket, WebsiteConfiguration: { IndexDocument: { Suffix: 'index.html' } } }),
  );
  const r = await request(websiteUrl(videoKey), { headers: { Range: 'bytes=1000-1999' } });
  checkEq(r.status, 206, `website GET ${websiteUrl(videoKey)} with a Range`);
  check(r.body.equals(readRange(videoFile, 1000, 1999)), 'website ranged bytes equal the file');
  checkEq((await request(websiteUrl(privateKey))).status, 403, 'the private video through the website endpoint');
});

await step('presigned URL of a private video after a CORS preflight (the player)', ['cors'], async () => {
  await client.send(
    new PutBucketCorsCommand({
      Bucket: bucket,
      CORSConfiguration: {
        CORSRules: [
          {
            AllowedOrigins: [origin],
            AllowedMethods: ['GET', 'HEAD'],
            AllowedHeaders: ['*'],
            ExposeHeaders: ['Content-Length', 'Content-Range', 'ETag'],
            MaxAgeSeconds: 3000,
          },
        ],
      },
    }),
  );
  // object-storage/urls.ts: a private file's URL when it is not proxied by PeerTube
  const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: privateKey }), { expiresIn: 3600 });
  log('presigned:', url);
  const pre = await request(url, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'range' },
  });
  log('preflight:', pre.status, pre.headers);
  checkEq(pre.status, 200, 'preflight status');
  checkEq(pre.headers['access-control-allow-origin'], origin, 'preflight Access-Control-Allow-Origin');
  check(/\bGET\b/.test(pre.headers['access-control-allow-methods'] || ''), 'preflight allows GET');
  check(/\brange\b/i.test(pre.headers['access-control-allow-headers'] || ''), 'preflight allows the Range header');
  const r = await request(url, { headers: { Origin: origin, Range: 'bytes=0-65535' } });
  checkEq(r.status, 206, 'presigned ranged GET');
  checkEq(r.headers['access-control-allow-origin'], origin, 'presigned GET Access-Control-Allow-Origin');
  check(/content-range/i.test(r.headers['access-control-expose-headers'] || ''), 'Content-Range exposed to the player');
  check(r.body.equals(readRange(videoFile, 0, 65535)), 'presigned ranged bytes');
  checkEq(await anonymousStatus(objectUrl(privateKey), { Origin: origin, Range: 'bytes=0-65535' }), 403, 'the same object without the signature');
});

await step('remove the video: list the prefix, DeleteObjects (removePrefix)', [], async () => {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'videos/' }));
  const objects = (listed.Contents || []).map((o) => ({ Key: o.Key }));
  checkEq(objects.length, 4, 'objects under videos/');
  const r = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects } }));
  checkEq((r.Deleted || []).length, 4, 'Deleted entries');
  checkEq((r.Errors || []).length, 0, 'Errors entries');
  const after = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'videos/' }));
  checkEq(after.KeyCount, 0, 'KeyCount after DeleteObjects');
});

await step('the traps were on the wire (Expect: 100-continue, CRC32 checksums, x-id, vhost)', [], async () => {
  log('seen:', { ...seen, xId: [...seen.xId], hosts: [...seen.hosts] });
  check(seen.expectContinue > 0, `requests with Expect: 100-continue (${seen.expectContinue})`);
  checkEq(continues, seen.expectContinue, 'a 100 Continue for each of them');
  check(seen.crc32 > 0, `requests with a CRC32 checksum (${seen.crc32})`);
  check(seen.xId.has('PutObject') || seen.xId.has('UploadPart') || seen.xId.has('GetObject'), `x-id query parameter (${[...seen.xId]})`);
  check(seen.hosts.has(`${bucket}.s3.localhost`), 'virtual-hosted-style host name');
});

fs.rmSync(videoFile, { force: true });
fs.rmSync(path.join(work, 'video.back'), { force: true });
finish();
