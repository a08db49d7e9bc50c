// The dashboard as a person uses it: real `shoal node` processes, Debian's
// Chromium driven by playwright-core. Run by `cargo test` (the shoal-cli
// test `dashboard_browser`), or here with
//   SHOAL_BIN=../target/release/shoal npm test
// Screenshots go to $SHOAL_SCREENSHOTS (default: ./screenshots).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const SHOAL = process.env.SHOAL_BIN ?? join(here, '../../target/release/shoal');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.SHOAL_SCREENSHOTS ?? join(here, '../screenshots');
const scratch = mkdtempSync(join(tmpdir(), 'shoal-dashboard-'));
const nodes = [];
let browser;

/** Starts `shoal node` and resolves with its peer id, address and API URL
 *  once it prints its ready line. */
function startNode(name, extra = []) {
  const child = spawn(SHOAL, [
    'node', '--heartbeat-ms', '200', '--http', '127.0.0.1:0',
    '--data-dir', join(scratch, name), ...extra,
  ], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      const field = (key) => line.split(/\s+/).find((f) => f.startsWith(`${key}=`))?.slice(key.length + 1).split(',')[0];
      const node = { name, child, peer: field('peer_id'), listen: field('listen'), http: field('http') };
      if (!node.http) reject(new Error(`no ready line from shoal node: ${line}`));
      nodes.push(node);
      resolve(node);
    });
  });
}

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) { last = error; }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not happen within ${ms} ms (last: ${last})`);
}

async function openPage(url) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const problems = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
  const started = Date.now();
  await page.goto(url);
  return { page, problems, started };
}

let cluster;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const first = await startNode('a');
  const others = await Promise.all(['b', 'c'].map((name) => startNode(name, ['--join', first.listen])));
  cluster = [first, ...others];
  await until('three live members', async () => {
    const view = await (await fetch(`${first.http}/v1/cluster`)).json();
    return view.members.filter((m) => m.liveness === 'alive').length === 3;
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  for (const node of nodes) node.child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

test('the page lists the three nodes, alive, with the Raft leader', async () => {
  const { page, problems, started } = await openPage(`${cluster[0].http}/`);
  const rows = page.locator('#members tbody tr[data-liveness="alive"]');
  await until('three rows', async () => (await rows.count()) === 3);
  const firstPaint = Date.now() - started;
  for (const node of cluster) {
    assert.equal(await page.locator(`#members tr[data-peer="${node.peer}"]`).count(), 1, `row of ${node.name}`);
  }
  assert.match(await page.locator('#members').innerText(), /leader/);
  await page.screenshot({ path: join(SHOTS, 'cluster.png'), fullPage: true });
  console.log(`first useful paint (three members listed): ${firstPaint} ms`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a job submitted from the form runs and its progress bar reaches 100 %', async () => {
  const { page, problems } = await openPage(`${cluster[1].http}/#jobs`);
  await page.getByLabel('function').last().fill('steps');
  await page.getByLabel('arguments (JSON)').fill('{"count": 5, "ms": 200}');
  await page.getByRole('button', { name: 'Submit' }).click();
  const status = await page.getByRole('status').innerText();
  const id = status.match(/job (\d+)/)[1];
  const row = page.locator(`#jobs tr[data-job="${id}"]`);
  const seen = new Set();
  await until('the job to succeed', async () => {
    const state = await row.getAttribute('data-state');
    seen.add(await row.locator('.pct').innerText());
    return state === 'succeeded';
  }, 30000);
  assert.equal(await row.locator('.pct').innerText(), '100 %');
  assert.equal(await row.locator('progress').evaluate((bar) => bar.value), 1);
  assert.ok(seen.size > 1, `the bar moved on its way (saw ${[...seen]})`);
  await page.screenshot({ path: join(SHOTS, 'jobs.png'), fullPage: true });
  const detail = await page.locator('#job-title').innerText();
  assert.equal(detail, `Job ${id}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the calls view draws live charts', async () => {
  const { page, problems } = await openPage(`${cluster[0].http}/#calls`);
  for (let i = 0; i < 20; i++) {
    await fetch(`${cluster[0].http}/v1/batch`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ calls: Array.from({ length: 20 }, () => ({ function: 'sleep', args: 20 })) }),
    });
  }
  await until('three charts', async () => (await page.locator('figure.chart canvas').count()) === 3);
  await until('a nonzero call rate', async () => {
    const text = await page.locator('.facts dd').first().innerText();
    return Number(text) > 0;
  });
  await page.screenshot({ path: join(SHOTS, 'calls.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test('a SIGKILLed node turns dead on the page', async () => {
  const { page } = await openPage(`${cluster[0].http}/`);
  const victim = cluster[2];
  const row = page.locator(`#members tr[data-peer="${victim.peer}"]`);
  await until('the victim listed alive', async () => (await row.getAttribute('data-liveness')) === 'alive');
  const killed = Date.now();
  victim.child.kill('SIGKILL');
  await until('the victim shown dead', async () => (await row.getAttribute('data-liveness')) === 'dead', 30000);
  console.log(`a SIGKILLed node shown dead after ${Date.now() - killed} ms`);
  assert.match(await page.locator('ol.feed').innerText(), /node left/);
  await page.screenshot({ path: join(SHOTS, 'dead-node.png'), fullPage: true });
  await page.close();
});

test('with an API token, nothing shows until the token is given', async () => {
  const tokenFile = join(scratch, 'token');
  writeFileSync(tokenFile, 'open sesame 42\n');
  const guarded = await startNode('guarded', ['--api-token-file', tokenFile]);
  assert.equal((await fetch(`${guarded.http}/v1/cluster`)).status, 401);
  const { page, problems } = await openPage(`${guarded.http}/`);
  await page.locator('#token-form').waitFor();
  assert.equal(await page.locator('#members').count(), 0);
  await page.screenshot({ path: join(SHOTS, 'token.png') });

  await page.getByLabel('API token').fill('wrong');
  await page.getByRole('button', { name: 'Open the dashboard' }).click();
  await page.locator('#token-form').waitFor();
  assert.equal(await page.locator('#members').count(), 0, 'a wrong token shows nothing');

  await page.getByLabel('API token').fill('open sesame 42');
  await page.getByRole('button', { name: 'Open the dashboard' }).click();
  await page.locator(`#members tr[data-peer="${guarded.peer}"]`).waitFor();
  assert.equal(await page.locator('#token-form').count(), 0);
  assert.deepEqual(problems.filter((p) => !p.includes('401')), []);
  await page.close();
});

test('on a phone, by keyboard alone, in colours that pass contrast checks', async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
  await page.goto(`${cluster[0].http}/`);
  await page.locator('#members tbody tr').first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  await page.screenshot({ path: join(SHOTS, 'phone.png'), fullPage: true });

  // Tab to the Jobs tab and press Enter: the jobs view opens.
  await page.setViewportSize({ width: 1280, height: 860 });
  let focused = '';
  for (let i = 0; i < 10 && focused !== 'Jobs'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement?.textContent ?? '');
  }
  assert.equal(focused, 'Jobs', 'the Jobs tab is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.locator('#submit-job').waitFor();

  // WCAG AA: 4.5:1 for text, against the nearest opaque background.
  const failures = await page.evaluate(() => {
    const rgb = (text) => text.match(/[\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => {
      const [R, G, B] = [r, g, b].map((c) => {
        const v = c / 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * R + 0.7152 * G + 0.0722 * B;
    };
    const background = (element) => {
      for (let e = element; e; e = e.parentElement) {
        const color = rgb(getComputedStyle(e).backgroundColor);
        if (color.length < 4 || color[3] > 0) return color.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const failed = [];
    for (const element of document.querySelectorAll('body *')) {
      const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || element.closest('figure.chart') || element.disabled) continue;
      const style = getComputedStyle(element);
      if (style.visibility === 'hidden' || style.display === 'none') continue;
      const [fg, bg] = [luminance(rgb(style.color)), luminance(background(element))];
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      if (ratio < 4.5) failed.push(`${element.tagName}.${element.className} "${element.textContent.trim().slice(0, 20)}" ${ratio.toFixed(2)}`);
    }
    return failed;
  });
  assert.deepEqual(failures, []);
  await page.close();
});

test('the page and its assets weigh under 300 KB gzipped, all from the node', async () => {
  const base = cluster[0].http;
  const assets = ['/', '/ui/app.js', '/ui/style.css', '/ui/htm-preact.js', '/ui/uPlot.js', '/ui/uPlot.css'];
  let gzipped = 0;
  for (const path of assets) {
    const response = await fetch(base + path);
    assert.equal(response.status, 200, path);
    gzipped += gzipSync(Buffer.from(await response.arrayBuffer())).length;
  }
  console.log(`page weight: ${(gzipped / 1024).toFixed(1)} KB gzipped`);
  assert.ok(gzipped < 300 * 1024, `${gzipped} bytes`);
  assert.equal((await fetch(`${base}/ui/nothing.js`)).status, 404);
});
