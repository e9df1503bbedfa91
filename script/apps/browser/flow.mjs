// A browser playing a video from Grenier: headless Chromium (Debian's, driven by playwright-core) loads a
// page from the website endpoint (http://<site>.web.localhost:<port>/), whose <video crossorigin> elements
// read a video cross-origin from the S3 endpoint: a public-read object and a presigned URL of a private
// one. That needs the website endpoint and CORS on the video bucket (GET responses with
// Access-Control-Allow-Origin, Content-Range exposed to the page's fetch()).
//
// Usage (through script/app-flows, which sets the environment): node flow.mjs WORKDIR
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  PutBucketCorsCommand,
  PutBucketWebsiteCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { chromium } from 'playwright-core';
import { env, step, finish, check, checkEq, log, request } from '../lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const work = process.argv[2] || fs.mkdtempSync(path.join(os.tmpdir(), 'browser-flow-'));
const s3Port = env('GRENIER_S3_PORT');
const webPort = env('GRENIER_WEB_PORT');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const mediaBucket = 'browser-media';
const siteBucket = 'browser-site';
const siteOrigin = `http://${siteBucket}.web.localhost:${webPort}`;
const video = fs.readFileSync(path.join(here, '..', 'test-video.webm')); // VP8, 96x64, 2 s
const publicUrl = `http://${mediaBucket}.s3.localhost:${s3Port}/videos/public.webm`;
// The same public video on a bucket without CORS rules: the browser must refuse it to the page.
const noCorsBucket = 'browser-nocors';
const noCorsUrl = `http://${noCorsBucket}.s3.localhost:${s3Port}/videos/public.webm`;

const client = new S3Client({
  endpoint: `http://s3.localhost:${s3Port}`,
  region: env('AWS_REGION'),
  credentials: { accessKeyId: env('AWS_ACCESS_KEY_ID'), secretAccessKey: env('AWS_SECRET_ACCESS_KEY') },
  forcePathStyle: false,
});

let presignedUrl;

await step('upload the video: public-read and private', [], async () => {
  await client.send(new CreateBucketCommand({ Bucket: mediaBucket }));
  await client.send(new CreateBucketCommand({ Bucket: siteBucket }));
  await client.send(new CreateBucketCommand({ Bucket: noCorsBucket }));
  await client.send(
    new PutObjectCommand({ Bucket: noCorsBucket, Key: 'videos/public.webm', Body: video, ContentType: 'video/webm', ACL: 'public-read' }),
  );
  for (const [key, ACL] of [['videos/public.webm', 'public-read'], ['videos/private.webm', 'private']]) {
    await client.send(new PutObjectCommand({ Bucket: mediaBucket, Key: key, Body: video, ContentType: 'video/webm', ACL }));
  }
  presignedUrl = await getSignedUrl(client, new GetObjectCommand({ Bucket: mediaBucket, Key: 'videos/private.webm' }), {
    expiresIn: 600,
  });
  checkEq((await request(publicUrl)).status, 200, 'anonymous GET of the public video');
});

await step('CORS on the video bucket for the site origin', ['cors'], async () => {
  await client.send(
    new PutBucketCorsCommand({
      Bucket: mediaBucket,
      CORSConfiguration: {
        CORSRules: [
          {
            AllowedOrigins: [siteOrigin],
            AllowedMethods: ['GET', 'HEAD'],
            AllowedHeaders: ['*'],
            ExposeHeaders: ['Content-Range', 'Content-Length', 'ETag'],
            MaxAgeSeconds: 600,
          },
        ],
      },
    }),
  );
  const r = await request(publicUrl, { headers: { Origin: siteOrigin } });
  checkEq(r.headers['access-control-allow-origin'], siteOrigin, 'Access-Control-Allow-Origin on a GET');
});

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Grenier video</title></head>
<body>
<video id="public" crossorigin="anonymous" preload="auto" muted src="${publicUrl}"></video>
<video id="presigned" crossorigin="anonymous" preload="auto" muted src="${presignedUrl ? presignedUrl.replace(/&/g, '&amp;') : ''}"></video>
<video id="nocors" crossorigin="anonymous" preload="auto" muted src="${noCorsUrl}"></video>
<script>
  window.results = {};
  function watch(id) {
    return new Promise((resolve) => {
      const v = document.getElementById(id);
      const done = (what) => resolve({ what, readyState: v.readyState, duration: v.duration,
        error: v.error ? v.error.code + ' ' + v.error.message : null });
      if (v.readyState >= 2) return done('already');
      v.addEventListener('loadeddata', () => done('loadeddata'));
      v.addEventListener('error', () => done('error'));
    });
  }
  async function rangeFetch() {
    try {
      const r = await fetch(${JSON.stringify(publicUrl)}, { headers: { Range: 'bytes=0-99' } });
      const b = await r.arrayBuffer();
      return { status: r.status, contentRange: r.headers.get('content-range'), bytes: b.byteLength };
    } catch (e) { return { error: String(e) }; }
  }
  // A header outside the CORS safelist makes the browser send a preflight (OPTIONS) first.
  async function preflightedFetch() {
    try {
      const r = await fetch(document.getElementById('presigned').src,
        { headers: { Range: 'bytes=100-199', 'X-Playback-Session-Id': 'flow-1' } });
      const b = await r.arrayBuffer();
      return { status: r.status, bytes: b.byteLength };
    } catch (e) { return { error: String(e) }; }
  }
  Promise.all([watch('public'), watch('presigned'), watch('nocors'), rangeFetch(), preflightedFetch()]).then(
    ([pub, pre, nocors, range, preflighted]) => {
      window.results = { pub, pre, nocors, range, preflighted };
      window.done = true;
    });
</script>
</body></html>
`;

await step('the page on a website bucket', ['website'], async () => {
  await client.send(
    new PutObjectCommand({ Bucket: siteBucket, Key: 'index.html', Body: page, ContentType: 'text/html; charset=utf-8', ACL: 'public-read' }),
  );
  await client.send(
    new PutBucketWebsiteCommand({ Bucket: siteBucket, WebsiteConfiguration: { IndexDocument: { Suffix: 'index.html' } } }),
  );
  const r = await request(`${siteOrigin}/`);
  checkEq(r.status, 200, `GET ${siteOrigin}/`);
  check(r.body.toString().includes('<video id="public"'), 'the index document is the page');
});

await step('Chromium plays the videos cross-origin (public-read and presigned)', ['website', 'cors'], async () => {
  const userDataDir = fs.mkdtempSync(path.join(work, 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
    timeout: 30000,
  });
  try {
    const tab = context.pages()[0] || (await context.newPage());
    tab.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
    tab.on('requestfailed', (r) => log(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    tab.on('response', (r) => log(`response: ${r.status()} ${r.url().slice(0, 120)}`));
    const resp = await tab.goto(`${siteOrigin}/`, { timeout: 15000 });
    checkEq(resp.status(), 200, 'page status in Chromium');
    await tab.waitForFunction(() => window.done === true, null, { timeout: 20000 });
    const { pub, pre, nocors, range, preflighted } = await tab.evaluate(() => window.results);
    log('results:', JSON.stringify({ pub, pre, nocors, range, preflighted }));
    for (const [name, r] of [['public-read', pub], ['presigned', pre]]) {
      check(r.readyState >= 2 && !r.error, `${name} video has data (readyState ${r.readyState}, ${r.what}, error ${r.error})`);
      check(r.duration > 0, `${name} video duration ${r.duration}`);
    }
    check(nocors.error && nocors.readyState < 2, `the video of a bucket without CORS is refused to the page (${nocors.error})`);
    checkEq(range.status, 206, "page's ranged fetch() status");
    checkEq(range.contentRange, `bytes 0-99/${video.length}`, "Content-Range readable by the page");
    checkEq(preflighted.status, 206, "page's fetch() of the presigned URL after a preflight");
    checkEq(preflighted.bytes, 100, 'bytes of that fetch');
  } finally {
    await context.close();
  }
});

finish();
