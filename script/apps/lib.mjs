// Shared by the Node.js flows (peertube, browser): steps with OK/FAIL/SKIP lines, *.localhost name
// resolution, and plain (unsigned) HTTP requests as a browser or a video player makes them.
import dns from 'node:dns';
import http from 'node:http';

// Browsers resolve every *.localhost name to loopback (RFC 6761); Node.js asks the system resolver, which
// on most Linux systems (nsswitch `files dns`) knows only `localhost` itself. The virtual-hosted-style
// buckets (<bucket>.s3.localhost) and the website endpoint (<bucket>.web.localhost) need the browser's
// behaviour: net.connect looks names up through dns.lookup at call time, so this covers every socket of
// the process, the SDK's included.
const systemLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  const h = String(hostname).toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) {
    const all = typeof options === 'object' && options.all;
    if (all) process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
    else process.nextTick(callback, null, '127.0.0.1', 4);
    return {};
  }
  return systemLookup.call(dns, hostname, options, callback);
};

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run the flow through script/app-flows)`);
  return v;
};

// Features of Grenier a step depends on beyond the core S3 API: GRENIER_FLOW_SKIP="website cors" skips
// those steps (for a branch where they are not there yet).
const skipped = new Set((process.env.GRENIER_FLOW_SKIP || '').split(/[\s,]+/).filter(Boolean));
const results = [];

export function log(...args) {
  console.error(...args);
}

// step(name, [features], fn): runs fn, prints "STEP <name> OK|FAIL|SKIP". A failed step does not stop
// the flow (the next steps say what else works), but the flow's exit status is 1.
export async function step(name, features, fn) {
  const t0 = Date.now();
  const tag = features.length ? ` [${features.join(', ')}]` : '';
  const skip = features.filter((f) => skipped.has(f));
  if (skip.length) {
    console.log(`STEP ${name}${tag} SKIP (GRENIER_FLOW_SKIP=${skip.join(' ')})`);
    results.push('SKIP');
    return;
  }
  log(`---- ${name}`);
  try {
    await fn();
    console.log(`STEP ${name}${tag} OK (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    results.push('OK');
  } catch (e) {
    log(e && e.stack ? e.stack : e);
    if (e && e.$response) log('response:', e.$metadata, e.$response.statusCode, e.$response.headers);
    const msg = String(e && e.message ? e.message : e).split('\n')[0].slice(0, 200);
    console.log(`STEP ${name}${tag} FAIL: ${e && e.name && e.name !== 'Error' ? e.name + ': ' : ''}${msg}`);
    results.push('FAIL');
  }
}

export function finish() {
  const failed = results.filter((r) => r === 'FAIL').length;
  log(`${results.length} steps, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log(`ok: ${what}`);
}

export function checkEq(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  log(`ok: ${what}`);
}

// An unsigned HTTP request: { status, headers, body (Buffer) }. The body is read whole (small objects
// and ranges only).
export function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}
