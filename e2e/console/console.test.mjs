// Browser test of the Vigil console in real Chromium (Debian's, through
// playwright-core; no browser download). e2e/console_test.go starts a real
// collector and agent, makes the agent raise a screen alert under Xvfb,
// creates the accounts and runs this script; it can also be run by hand:
//
//   BASE_URL=https://127.0.0.1:7080 CONSOLE_SPKI=... DSL1_USER=dsl1 DSL1_PASS=... DSL2_USER=dsl2 DSL2_PASS=... \
//   TECH_USER=tech1 TECH_PASS=... ALERT_TERM="kill myself" SCREENSHOT_DIR=/tmp/shots node console.test.mjs
//
// Optional: ADMIN_USER/ADMIN_PASS (access log page, and the users page:
// disable, reset, forced change), GOV_USER/GOV_PASS (trends page),
// HEAD_USER/HEAD_PASS (a headteacher opening the pupil's alert),
// TOTP_USER/TOTP_PASS/TOTP_SECRET (two-step sign-in), CHROMIUM (default
// /usr/bin/chromium), SLOWMO.
// PHASE=audit runs only the device audit (TestConsoleAuditBrowser): HEAD_USER/
// HEAD_PASS, AUDIT_GROUP (two devices, one offline), AUDIT_REASON,
// SIGNAL_DIR (the script writes SIGNAL_DIR/queued once the page shows the
// offline device queued; the Go test then starts it) and DOWNLOAD_DIR
// (where the audit PDF is saved).
// PHASE=staff runs only the staff-concern review instead (e2e/console_test.go
// runs it second, once the device account is a staff member in the
// directory): HEAD_USER/HEAD_PASS, CHAIR_USER/CHAIR_PASS, CHAIR_NAME and
// STAFF_TERM (the term of the staff member's alert).
// PHASE=dfe runs only the DfE evidence page (TestConsoleDFEBrowser):
// HEAD_USER/HEAD_PASS, DEVICE_ID (a connected device), DOWNLOAD_DIR (where
// the evidence pack's PDF is saved).
// CONSOLE_SPKI: base64 SHA-256 of the console certificate's public key;
// Chromium then accepts that one key for the HTTPS console (it cannot be
// told to trust the collector's CA without an NSS database tool), and every
// other certificate error still fails.
// Exit status 0 when every step passed; 1 with the failing step otherwise.

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
const BASE = (env.BASE_URL || '').replace(/\/$/, '');
const TERM = env.ALERT_TERM || 'kill myself';
const HOSTNAME = env.DEVICE_HOSTNAME || os.hostname();
const SHOTS = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-shots-'));
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_BUDGET_MS = Number(env.TOTAL_TIMEOUT_MS || 300000);
// Sign-in checks a bcrypt hash (cost 12): seconds under the race detector
// on a busy 2-core machine.
const LOGIN_TIMEOUT_MS = 60000;
const STEP_TIMEOUT_MS = 15000;

const REQUIRED = env.PHASE === 'audit' ? ['BASE_URL', 'HEAD_USER', 'HEAD_PASS', 'AUDIT_GROUP', 'AUDIT_REASON', 'SIGNAL_DIR', 'DOWNLOAD_DIR']
  : env.PHASE === 'dfe' ? ['BASE_URL', 'HEAD_USER', 'HEAD_PASS', 'DEVICE_ID', 'DOWNLOAD_DIR']
  : ['BASE_URL', 'DSL1_USER', 'DSL1_PASS', 'DSL2_USER', 'DSL2_PASS', 'TECH_USER', 'TECH_PASS'];
for (const k of REQUIRED) {
  if (!env[k]) {
    console.error(`missing environment variable ${k}`);
    process.exit(2);
  }
}
fs.mkdirSync(SHOTS, { recursive: true });

// Every wait below is bounded; this bounds the whole run as well.
const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser test did not finish within ${TOTAL_BUDGET_MS / 1000}s`);
  process.exit(1);
}, TOTAL_BUDGET_MS);
watchdog.unref();

const t0 = Date.now();
let currentStep = 'start';
function step(name) {
  currentStep = name;
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${name}`);
}
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// RFC 6238 code (SHA-1, 30 s, 6 digits) for a base32 secret, as an
// authenticator app computes it.
function totpCode(secret, when = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0; let val = 0; const bytes = [];
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    val = (val << 5) | alphabet.indexOf(c); bits += 5;
    if (bits >= 8) { bytes.push((val >>> (bits - 8)) & 255); bits -= 8; }
  }
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(when / 30000)));
  const mac = crypto.createHmac('sha1', Buffer.from(bytes)).update(msg).digest();
  const off = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1000000).padStart(6, '0');
}

const launchOptions = {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', '--lang=en-GB',
    ...(env.CONSOLE_SPKI ? [`--ignore-certificate-errors-spki-list=${env.CONSOLE_SPKI}`] : [])],
  viewport: { width: 1280, height: 800 },
  acceptDownloads: true,
  locale: 'en-GB',
  timezoneId: 'Europe/London',
  slowMo: Number(env.SLOWMO || 0),
  timeout: 30000,
};
const profile = fs.mkdtempSync(path.join(env.TMPDIR || os.tmpdir(), 'vigil-chromium-'));
const context = await chromium.launchPersistentContext(profile, launchOptions);
context.setDefaultTimeout(STEP_TIMEOUT_MS);
context.setDefaultNavigationTimeout(20000);
const page = context.pages()[0] || await context.newPage();

// Page errors, CSP violations and console errors fail the run; the 400
// and 422 (a licence file or a school term refused naming its line), 401,
// 403, 404 (an alert not routed to the headteacher), 409 (a duplicate
// account) and 429 (the sign-in limit) answers the
// test provokes show up as "Failed to load resource" and are expected.
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  const text = m.text();
  if (/Failed to load resource: the server responded with a status of (400|401|403|404|409|422|429)/.test(text)) return;
  problems.push(`console error: ${text}`);
});
const requests = [];
page.on('request', (r) => requests.push(r.url()));
const evidenceRequests = () => requests.filter((u) => u.includes('/api/v1/evidence/'));

async function shot(name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false, animations: 'disabled', caret: 'hide' });
}

// a11y: every visible form control has a label, there is one h1, the
// document has a language, and nothing scrolls sideways at tablet width.
async function checkA11y(where) {
  const r = await page.evaluate(() => {
    const unlabelled = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden' || el.closest('[hidden]')) continue;
      const ok = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
      if (!ok) unlabelled.push(el.outerHTML.slice(0, 80));
    }
    const unnamedButtons = [...document.querySelectorAll('button, a[href]')]
      .filter((b) => !b.closest('[hidden]') && !(b.textContent.trim() || b.getAttribute('aria-label')))
      .map((b) => b.outerHTML.slice(0, 80));
    return {
      lang: document.documentElement.lang,
      unlabelled,
      unnamedButtons,
      h1: document.querySelectorAll('h1').length,
      live: !!document.querySelector('[aria-live]'),
    };
  });
  assert(r.lang === 'en', `${where}: html lang is ${r.lang}`);
  assert(r.unlabelled.length === 0, `${where}: unlabelled controls ${r.unlabelled.join(', ')}`);
  assert(r.unnamedButtons.length === 0, `${where}: buttons/links without a name ${r.unnamedButtons.join(', ')}`);
  assert(r.h1 === 1, `${where}: ${r.h1} h1 elements`);
  assert(r.live, `${where}: no aria-live region`);
}

async function checkNoHorizontalScroll(where) {
  for (const width of [768, 1024]) {
    await page.setViewportSize({ width, height: 1024 });
    await page.waitForTimeout(50);
    const { sw, cw } = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth }));
    assert(sw <= cw, `${where}: horizontal scroll at ${width}px (${sw} > ${cw})`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function login(user, pass, pg = page) {
  await pg.goto(`${BASE}/#/login`);
  await pg.getByLabel('Username').fill(user);
  await pg.getByLabel('Password', { exact: true }).fill(pass);
  await pg.getByRole('button', { name: 'Sign in' }).click();
  await pg.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: LOGIN_TIMEOUT_MS });
  await pg.locator('#account-name').waitFor({ state: 'visible' });
}

// Column headers break between words only ("Statu s" was a header split
// inside a word): every word of every visible header is on one line.
async function checkHeadersUnbroken(where) {
  for (const width of [1024, 1280]) {
    await page.setViewportSize({ width, height: 800 });
    await page.waitForTimeout(50);
    const broken = await page.evaluate(() => {
      const out = [];
      for (const th of document.querySelectorAll('thead th')) {
        for (const tn of th.childNodes) {
          if (tn.nodeType !== 3) continue;
          const text = tn.textContent;
          // A break after a hyphen ("sign-|in") is ordinary; inside a word is not.
          const re = /[^\s-]+/g;
          let m;
          while ((m = re.exec(text))) {
            const r = document.createRange();
            r.setStart(tn, m.index);
            r.setEnd(tn, m.index + m[0].length);
            const lines = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
            if (lines.size > 1) out.push(m[0]);
          }
        }
      }
      return out;
    });
    assert(broken.length === 0, `${where} at ${width}px: headers split inside a word: ${broken.join(', ')}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function logout() {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  assert(me === 401, `after sign-out GET /api/v1/me answered ${me}, want 401`);
}

async function navNames() {
  return page.locator('#nav a').allTextContents();
}

// A concern about a member of staff, in a school with one headteacher
// (seed 002 §5.3, docs/console.md "Who reviews what"): the headteacher
// starts the review and signs, sees who may sign second and asks the chair
// of governors; a DSL who was not asked does not see it; the chair signs as
// second reviewer and concludes.
async function staffConcern() {
  const STAFF_TERM = env.STAFF_TERM;
  assert(STAFF_TERM && env.HEAD_USER && env.CHAIR_USER, 'PHASE=staff needs STAFF_TERM, HEAD_USER and CHAIR_USER');
  step(`sign in as ${env.HEAD_USER} (headteacher): the staff concern is in the queue`);
  await login(env.HEAD_USER, env.HEAD_PASS);
  await page.waitForURL(/#\/alerts/);
  await page.locator('table.queue a.term', { hasText: STAFF_TERM }).first().click();
  await page.locator('#triage').waitFor();

  step('the headteacher starts the review and signs as first reviewer');
  await page.getByLabel('Reason for investigation').fill('Drugs search on a staff laptop (e2e)');
  await page.getByRole('button', { name: 'Start review' }).click();
  await page.getByRole('button', { name: 'Sign as first reviewer' }).click();
  await page.locator('#reviewer-1').filter({ hasNotText: 'Not signed yet' }).waitFor();

  step('the headteacher sees who may sign second, and asks the chair of governors');
  const who = page.locator('#second-reviewers');
  await who.waitFor();
  const list = await who.innerText();
  assert(list.includes(env.CHAIR_NAME) && /Chair of Governors/.test(list), `eligible second reviewers lack the chair: ${list}`);
  assert(/Designated Safeguarding Lead/.test(list), `eligible second reviewers lack the DSLs: ${list}`);
  assert(!list.includes('Gina Governor') && !list.includes('Tom Technician'), `a governor or technician offered as second reviewer: ${list}`);
  await page.getByLabel('Second reviewer').selectOption({ label: `${env.CHAIR_NAME} (Chair of Governors)` });
  await page.getByRole('button', { name: 'Ask to sign' }).click();
  await page.locator('#second-requested').filter({ hasText: env.CHAIR_NAME }).waitFor();
  assert(await page.getByRole('button', { name: 'Sign as second reviewer' }).isDisabled(), 'the headteacher may sign twice');
  await checkA11y('staff concern, first reviewer');
  await logout();

  step(`sign in as ${env.DSL1_USER} (a DSL not asked): the staff concern is not shown`);
  await login(env.DSL1_USER, env.DSL1_PASS);
  await page.waitForURL(/#\/alerts/);
  await page.locator('#queue-summary').filter({ hasText: /shown/ }).waitFor();
  assert(await page.locator('table.queue a.term', { hasText: STAFF_TERM }).count() === 0, 'a DSL who was not asked sees the staff concern');
  await logout();

  step(`sign in as ${env.CHAIR_USER} (chair of governors): asked, signs as second reviewer`);
  await login(env.CHAIR_USER, env.CHAIR_PASS);
  const nav = await navNames();
  assert(nav.includes('Alerts') && nav.includes('Trends'), `chair nav: ${nav}`);
  await page.waitForURL(/#\/alerts/);
  await page.locator('table.queue a.term', { hasText: STAFF_TERM }).first().click();
  await page.locator('#second-requested').filter({ hasText: 'asked you' }).waitFor();
  await page.getByRole('button', { name: 'Sign as second reviewer' }).click();
  await page.locator('#reviewer-2').filter({ hasText: env.CHAIR_NAME }).waitFor();

  step('the chair concludes: Kept on file');
  await page.getByLabel('Conclusion', { exact: true }).selectOption({ label: 'Kept on file' });
  await page.getByRole('button', { name: 'Conclude' }).click();
  await page.locator('#alert-badges').filter({ hasText: 'Concluded' }).waitFor();
  await page.locator('#conclusion').filter({ hasText: 'Kept on file' }).waitFor();
  await page.locator('#triage').scrollIntoViewIfNeeded();
  await checkA11y('staff concern, concluded by the chair');
  await shot('staff-concern');
  await logout();
}

// A device audit (issue 11): the headteacher requests an audit of a group
// with a reason, watches progress while one device is offline, sees its
// answer arrive when it reconnects, signs the audit off and downloads the
// PDF.
async function deviceAudit() {
  step(`sign in as ${env.HEAD_USER} (headteacher): Audits is in the navigation`);
  await login(env.HEAD_USER, env.HEAD_PASS);
  const nav = await navNames();
  assert(nav.includes('Audits'), `headteacher nav lacks Audits: ${nav}`);
  await page.locator('#nav a', { hasText: 'Audits' }).click();
  await page.getByRole('heading', { name: 'Request an audit' }).waitFor();
  await checkA11y('audits');

  step(`request an audit of group ${env.AUDIT_GROUP}`);
  await page.getByLabel('Audit', { exact: true }).selectOption('group');
  await page.getByLabel('Group', { exact: true }).selectOption(env.AUDIT_GROUP);
  await page.getByRole('button', { name: 'Request audit' }).click();
  await page.locator('#audit-request .form-error').filter({ hasText: 'reason' }).waitFor();
  await page.getByLabel('Reason').fill(env.AUDIT_REASON);
  await page.getByRole('button', { name: 'Request audit' }).click();
  await page.waitForURL(/#\/audits\/au-/);

  step('watch progress: the online device answers, the offline one is queued');
  await page.locator('#audit-progress-text').filter({ hasText: '1/2 answered, 1 offline: queued' }).waitFor({ timeout: 120000 });
  await checkA11y('audit in progress');
  await shot('audit-progress');
  fs.writeFileSync(path.join(env.SIGNAL_DIR, 'queued'), '');

  step('the offline device reconnects: its answer appears without a reload');
  await page.locator('#audit-progress-text').filter({ hasText: '2/2 answered' }).waitFor({ timeout: 180000 });
  await page.locator('#audit-progress-text').filter({ hasText: 'complete' }).waitFor();
  assert(await page.locator('.audit-device[data-status="answered"]').count() === 2, 'both devices answered');
  await page.locator('#audit-verified').filter({ hasText: 'Verified' }).waitFor();
  const hash = (await page.locator('#audit-hash').innerText()).trim();
  assert(/^[0-9a-f]{64}$/.test(hash), `record hash: ${hash}`);
  const record = await page.locator('main').innerText();
  assert(record.includes(env.AUDIT_REASON), 'the record lacks the reason');
  assert(!record.includes('[object'), 'the record shows an object where text belongs');
  assert(/Group ict/.test(record), 'the record lacks the scope');
  await page.locator('.audit-device summary').first().click();
  await page.locator('.audit-device table.software td', { hasText: /^bash$/ }).first().waitFor();

  step('the headteacher signs the audit off');
  await page.getByLabel('Note').fill('Checked in the console (e2e)');
  await page.getByRole('button', { name: 'Sign off audit' }).click();
  await page.locator('#audit-signoff li').filter({ hasText: 'Checked in the console (e2e)' }).waitFor();
  const signoff = await page.locator('#audit-signoff').innerText();
  assert(signoff.includes('Hana Head') || signoff.includes(env.HEAD_USER), `sign-off: ${signoff}`);
  await checkA11y('audit signed off');
  await page.locator('#audit-signoff').scrollIntoViewIfNeeded();
  await shot('audit');

  step('download the audit as PDF');
  const dl = page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS });
  await page.getByRole('link', { name: 'Download PDF' }).click();
  const download = await dl;
  const pdfPath = path.join(env.DOWNLOAD_DIR, 'audit.pdf');
  await download.saveAs(pdfPath);
  const pdf = fs.readFileSync(pdfPath);
  assert(pdf.subarray(0, 5).toString() === '%PDF-', `export is not a PDF: ${pdf.subarray(0, 16)}`);
  console.log(`  audit PDF: ${pdf.length} bytes`);
  await logout();
}

// The DfE evidence: the review reminder on every page until a review is
// recorded, the roles register, a review, a fleet check that proves the
// device working end to end, and the pack downloaded as PDF.
async function dfeEvidence() {
  step(`sign in as ${env.HEAD_USER} (headteacher): the review reminder shows`);
  await login(env.HEAD_USER, env.HEAD_PASS);
  await page.locator('#review-reminder').filter({ hasText: 'No review of filtering and monitoring is recorded' }).waitFor();
  await page.locator('#nav a', { hasText: 'DfE evidence' }).click();
  await page.getByRole('heading', { name: 'Roles and responsibilities' }).waitFor();
  await checkA11y('dfe evidence');

  step('name the roles');
  const roles = await page.locator('#roles-form fieldset').all();
  assert(roles.length === 4, `${roles.length} roles in the register form`);
  const names = ['Priya Shah', 'Tom Evans', 'Grace Obi', 'Northgate IT Ltd'];
  for (let i = 0; i < roles.length; i++) await roles[i].getByLabel('Name').fill(names[i]);
  await page.getByRole('button', { name: 'Save the register' }).click();
  await page.locator('#status').filter({ hasText: 'Roles register saved' }).waitFor();

  step('record the annual review: the reminder goes');
  await page.getByLabel('Date of the review').fill(new Date().toISOString().slice(0, 10));
  await page.getByLabel('Attendees').fill('Priya Shah\nTom Evans\nGrace Obi');
  await page.getByLabel('Findings', { exact: true }).fill('Provision meets the standards (e2e)');
  await page.getByLabel('Actions agreed').fill('Run the fleet check each half term');
  await page.getByRole('button', { name: 'Record the review' }).click();
  await page.locator('#status').filter({ hasText: 'Review recorded' }).waitFor();
  await page.locator('article.review', { hasText: 'Provision meets the standards (e2e)' }).waitFor();
  await page.locator('#review-reminder').waitFor({ state: 'hidden' });

  step('run the fleet check: the device proves itself end to end');
  await page.getByLabel('Reason (optional)').fill('half-termly check (e2e)');
  await page.getByRole('button', { name: 'Run the fleet check' }).click();
  await page.locator(`tr[data-device="${env.DEVICE_ID}"][data-outcome="working"]`).waitFor({ timeout: 120000 });
  await page.locator('#check-result caption', { hasText: 'completed' }).waitFor({ timeout: 120000 });
  await checkA11y('fleet check done');
  await checkHeadersUnbroken('fleet check');
  await shot('dfe-evidence');

  step('download the evidence pack as PDF');
  const dl = page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS });
  await page.locator('#dfe-pdf').click();
  const download = await dl;
  const pdfPath = path.join(env.DOWNLOAD_DIR, 'dfe.pdf');
  await download.saveAs(pdfPath);
  const pdf = fs.readFileSync(pdfPath);
  assert(pdf.subarray(0, 5).toString() === '%PDF-', `pack is not a PDF: ${pdf.subarray(0, 16)}`);
  await logout();
}

function finish() {
  assert(problems.length === 0, `browser reported problems:\n  ${problems.join('\n  ')}`);
  console.log(`PASS in ${((Date.now() - t0) / 1000).toFixed(1)}s; screenshots in ${SHOTS}`);
}

let alertId = '';
let alertContext = '';
try {
  if (env.PHASE === 'audit') {
    await deviceAudit();
    finish();
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(0);
  }
  if (env.PHASE === 'dfe') {
    await dfeEvidence();
    finish();
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(0);
  }
  if (env.PHASE === 'staff') {
    await staffConcern();
    finish();
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(0);
  }
  // ---- DSL 1: queue, alert, evidence, start review, first signature --------
  step('login page');
  await page.goto(`${BASE}/`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert(page.url().includes('#/login'), `not redirected to the login page: ${page.url()}`);
  await checkA11y('login');
  await shot('login');

  step('wrong password is refused');
  await page.getByLabel('Username').fill(env.DSL1_USER);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error').filter({ hasText: /not recognised|too many/i }).waitFor({ timeout: LOGIN_TIMEOUT_MS });

  step(`sign in as ${env.DSL1_USER} (dsl)`);
  await login(env.DSL1_USER, env.DSL1_PASS);
  if (BASE.startsWith('https:')) {
    const sc = (await context.cookies(BASE)).find((c) => c.name === 'vigil_session');
    assert(sc && sc.secure && sc.httpOnly && sc.sameSite === 'Strict',
      `session cookie over HTTPS: ${JSON.stringify(sc)}, want Secure, HttpOnly, SameSite=Strict`);
  }
  await page.waitForURL(/#\/alerts/);
  let nav = await navNames();
  assert(nav.includes('Alerts') && nav.includes('Devices'), `dsl nav: ${nav}`);
  assert(!nav.includes('Users'), `dsl nav shows Users: ${nav}`);

  step('alert from the real agent is in the queue');
  const link = page.locator('table.queue a.term', { hasText: TERM }).first();
  await link.waitFor();
  const row = page.locator('tr.alert-row').filter({ has: page.locator('a.term', { hasText: TERM }) }).first();
  const rowText = await row.innerText();
  assert(/critical/i.test(rowText), `queue row has no critical severity badge: ${rowText}`);
  assert(/new/i.test(rowText), `queue row is not New: ${rowText}`);
  // The device by its hostname, not a truncated id.
  assert(rowText.includes(HOSTNAME), `queue row does not name the device ${HOSTNAME}: ${rowText}`);
  // The category filter offers the categories the alerts have, not every
  // category a rule could raise.
  const catOptions = await page.locator('select[name=category] option').evaluateAll((os) => os.map((o) => o.value));
  assert(JSON.stringify(catOptions) === JSON.stringify(['', 'self_harm']), `category filter offers ${catOptions}, want only self_harm`);
  alertId = decodeURIComponent((await link.getAttribute('href')).replace('#/alerts/', ''));
  await page.getByLabel('Severity').waitFor();
  await checkA11y('queue');
  await shot('queue');
  await checkNoHorizontalScroll('queue');
  await checkHeadersUnbroken('queue');

  step('on a tablet the filters start folded and the first alert is on the first screen');
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.reload();
  await page.locator('tr.alert-row').first().waitFor();
  assert(!(await page.locator('#filters-panel').evaluate((d) => d.open)), 'filter panel open on a tablet');
  const firstRow = await page.locator('tr.alert-row').first().boundingBox();
  assert(firstRow && firstRow.y < 1024, `first alert starts at ${firstRow && firstRow.y}px, below the first screen`);
  await page.locator('#filters-panel summary').click();
  await page.getByLabel('Severity').waitFor({ state: 'visible' });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.reload();
  await page.locator('tr.alert-row').first().waitFor();
  assert(await page.locator('#filters-panel').evaluate((d) => d.open), 'filter panel folded on a desktop');

  step('filter by severity keeps the alert; another severity hides it');
  await page.getByLabel('Severity').selectOption('low');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.waitForURL(/severity=low/);
  await page.locator('#queue').filter({ hasText: /No alerts match|Low/ }).waitFor();
  assert(await page.locator('table.queue a.term', { hasText: TERM }).count() === 0, 'low-severity filter still shows the critical alert');
  await page.getByLabel('Severity').selectOption('critical');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.waitForURL(/severity=critical/);
  await page.locator('table.queue a.term', { hasText: TERM }).first().waitFor();

  step('open the alert');
  await page.locator('table.queue a.term', { hasText: TERM }).first().click();
  await page.waitForURL(/#\/alerts\/.+/);
  await page.locator('#alert-context').waitFor();
  alertContext = (await page.locator('#alert-context').innerText()).trim();
  assert(alertContext.toLowerCase().includes(TERM), `context "${alertContext}" lacks the term`);
  const details = await page.locator('dl.details').innerText();
  assert(details.includes(TERM), 'details do not show the term');

  step('evidence is blurred and not fetched before it is revealed');
  const placeholder = page.locator('#evidence .evidence-placeholder').first();
  await placeholder.waitFor();
  const filter = await placeholder.evaluate((el) => getComputedStyle(el).filter);
  assert(filter === 'blur(16px)', `placeholder filter is ${filter}`);
  assert(await page.locator('#evidence img').count() === 0, 'an evidence image is in the page before reveal');
  assert(evidenceRequests().length === 0, `evidence fetched before reveal: ${evidenceRequests()}`);
  await checkA11y('alert');
  await shot('alert');
  await checkNoHorizontalScroll('alert');

  step('reveal needs a reason (keyboard)');
  await page.getByRole('button', { name: 'Reveal evidence' }).focus();
  await page.keyboard.press('Enter');
  const reasonBox = page.getByLabel('Reason for viewing');
  await reasonBox.waitFor();
  assert(await reasonBox.evaluate((el) => el === document.activeElement), 'focus did not move to the reason field');
  await page.getByRole('button', { name: 'Reveal and record' }).click();
  await page.locator('#evidence .form-error').filter({ hasText: /reason/i }).waitFor();
  assert(evidenceRequests().length === 0, 'evidence fetched without a reason');

  step('reveal with a reason: image loads, view recorded');
  const reason = 'Checking the context of a self-harm search (e2e)';
  await reasonBox.fill(reason);
  const evResp = page.waitForResponse((r) => r.url().includes('/api/v1/evidence/'), { timeout: STEP_TIMEOUT_MS });
  await page.getByRole('button', { name: 'Reveal and record' }).click();
  const resp = await evResp;
  assert(resp.status() === 200, `evidence answered ${resp.status()}`);
  assert((resp.headers()['content-type'] || '').startsWith('image/png'), `evidence content type ${resp.headers()['content-type']}`);
  // The reason travels in the POST body, never in the URL (issue 10 item 7).
  assert(resp.request().method() === 'POST', `evidence requested with ${resp.request().method()}`);
  assert(JSON.parse(resp.request().postData() || '{}').reason === reason, 'reason not sent in the evidence request body');
  assert(!resp.url().includes('reason') && !resp.url().includes(encodeURIComponent(reason)), `reason in the evidence URL: ${resp.url()}`);
  const img = page.locator('#evidence img');
  await img.waitFor();
  await page.waitForFunction(() => { const i = document.querySelector('#evidence img'); return i && i.complete && i.naturalWidth > 0; }, null, { timeout: STEP_TIMEOUT_MS });
  const size = await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]);
  assert(size[0] > 100 && size[1] > 100, `evidence image is ${size}`);
  assert(await img.evaluate((el) => getComputedStyle(el).filter) === 'none', 'revealed evidence is still blurred');
  await page.locator('#status').filter({ hasText: /recorded/ }).waitFor();
  assert(evidenceRequests().length === 1, `evidence fetched ${evidenceRequests().length} times`);

  step('start review with a reason');
  await page.getByLabel('Reason for investigation').fill('Pupil searched for a self-harm method; check wellbeing (e2e)');
  await page.getByRole('button', { name: 'Start review' }).click();
  await page.getByRole('button', { name: 'Sign as first reviewer' }).waitFor();
  await page.locator('#alert-badges').filter({ hasText: 'In review' }).waitFor();
  // Triage actions re-render the form but leave the revealed evidence alone.
  assert(await page.locator('#evidence img').count() === 1, 'evidence image lost after a triage action');

  step('sign as first reviewer; a second signature by the same person is not offered');
  await page.getByRole('button', { name: 'Sign as first reviewer' }).click();
  await page.locator('#reviewer-1').filter({ hasNotText: 'Not signed yet' }).waitFor();
  const second = page.getByRole('button', { name: 'Sign as second reviewer' });
  await second.waitFor();
  assert(await second.isDisabled(), 'the first reviewer may sign as second reviewer');
  assert(await page.getByRole('button', { name: 'Conclude' }).isDisabled(), 'conclude enabled with one signature');

  step('add a note');
  await page.getByLabel('New note').fill('Spoke to the form tutor (e2e)');
  await page.getByRole('button', { name: 'Add note' }).click();
  await page.locator('ul.notes').filter({ hasText: 'Spoke to the form tutor (e2e)' }).waitFor();
  await page.reload();
  await page.locator('#triage').waitFor();
  await page.locator('#triage').scrollIntoViewIfNeeded();
  await checkA11y('triage');
  await shot('triage');

  step('devices page');
  await page.getByRole('link', { name: 'Devices' }).click();
  await page.waitForURL(/#\/devices/);
  await page.locator('table.devices tbody tr').first().waitFor();
  await checkA11y('devices');
  await shot('devices');
  await checkNoHorizontalScroll('devices');

  // ---- DSL 1: a term added by the school, refused, added, removed ----------
  step('school terms: a bad case is refused with its line');
  await page.getByRole('link', { name: 'School terms' }).click();
  await page.waitForURL(/#\/terms/);
  const tf = page.locator('#term-form');
  await tf.waitFor();
  await tf.locator('[name=term]').fill('wonky wes');
  await tf.locator('[name=category]').selectOption('bullying');
  await tf.locator('[name=severity]').selectOption('high');
  await tf.locator('[name=rationale]').fill('nickname Year 9 pupils use to taunt a classmate');
  await tf.locator('[name=cases]').fill('+ lol wonky wes again\n- wonky wes is a legend\n');
  await tf.getByRole('button', { name: 'Add term' }).click();
  await page.locator('#term-error').filter({ hasText: 'Test cases, line 2' }).waitFor();
  assert(await tf.locator('[name=cases]').getAttribute('aria-invalid') === 'true', 'the cases field is not marked invalid');
  assert(await tf.locator('[name=cases]').evaluate((el) => el === document.activeElement), 'focus is not on the cases field');
  await shot('terms-refused');

  step('school terms: a valid term is added and logged');
  await tf.locator('[name=cases]').fill('+ lol wonky wes again\n- wes anderson films\n');
  await tf.getByRole('button', { name: 'Add term' }).click();
  await page.locator('section.term h2', { hasText: 'wonky wes' }).waitFor();
  await page.locator('table.term-log tbody tr', { hasText: 'Added' }).waitFor();
  await checkA11y('terms');
  await shot('terms');
  await checkNoHorizontalScroll('terms');

  step('school terms: removal needs a reason and is logged');
  const rm = page.locator('section.term form.term-remove');
  await rm.getByRole('button', { name: 'Remove term' }).click();
  await rm.locator('.form-error').filter({ hasText: /reason/i }).waitFor();
  await rm.locator('[name=reason]').fill('the form tutor says it has stopped');
  await rm.getByRole('button', { name: 'Remove term' }).click();
  await page.getByText('The school has added no terms.').waitFor();
  const logText = await page.locator('table.term-log tbody').innerText();
  assert(/Removed/.test(logText) && /the form tutor says it has stopped/.test(logText) && /Added/.test(logText),
    `decision log: ${logText}`);

  step('sign out');
  await logout();

  // ---- DSL 2: second signature, conclusion, PDF ----------------------------
  step(`sign in as ${env.DSL2_USER} (second dsl)`);
  await login(env.DSL2_USER, env.DSL2_PASS);
  await page.waitForURL(/#\/alerts/);
  await page.locator('table.queue a.term', { hasText: TERM }).first().click();
  await page.locator('#triage').waitFor();
  assert(await page.locator('#evidence img').count() === 0, 'evidence shown to the second reviewer without a reveal');

  step('sign as second reviewer');
  await page.getByRole('button', { name: 'Sign as second reviewer' }).click();
  await page.locator('#reviewer-2').filter({ hasNotText: 'Not signed yet' }).waitFor();
  const r1 = await page.locator('#reviewer-1').innerText();
  const r2 = await page.locator('#reviewer-2').innerText();
  assert(r1 !== r2, 'both reviewer boxes show the same person');
  assert(r1.includes('Dana Lead') && r2.includes('Sam Deputy'), `reviewers not by display name: "${r1}" / "${r2}"`);

  step('conclude: Referred to safeguarding board');
  await page.getByLabel('Conclusion', { exact: true }).selectOption({ label: 'Referred to safeguarding board' });
  await page.getByRole('button', { name: 'Conclude' }).click();
  await page.locator('#conclusion').filter({ hasText: 'Referred to safeguarding board' }).waitFor();
  await page.locator('#alert-badges').filter({ hasText: 'Concluded' }).waitFor();
  const hist = await page.locator('ol.history li').count();
  assert(hist >= 4, `history has ${hist} entries, want start, note, two signatures and conclusion`);

  step('export the review form as PDF');
  const dl = page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS });
  await page.getByRole('link', { name: 'Export PDF' }).click();
  const download = await dl;
  const pdfPath = path.join(profile, 'review.pdf');
  await download.saveAs(pdfPath);
  const pdf = fs.readFileSync(pdfPath);
  assert(pdf.subarray(0, 5).toString() === '%PDF-', `export is not a PDF: ${pdf.subarray(0, 16)}`);
  console.log(`  review form PDF: ${pdf.length} bytes`);

  step('sign out');
  await logout();

  // ---- Technician: no safeguarding content ---------------------------------
  step(`sign in as ${env.TECH_USER} (technician)`);
  await login(env.TECH_USER, env.TECH_PASS);
  nav = await navNames();
  assert(!nav.includes('Alerts'), `technician nav shows Alerts: ${nav}`);
  assert(!nav.includes('School terms'), `technician nav shows School terms: ${nav}`);
  assert(nav.includes('Devices'), `technician nav lacks Devices: ${nav}`);

  step('technician cannot open the alert');
  const apiResp = page.waitForResponse((r) => r.url().includes(`/api/v1/alerts/`), { timeout: STEP_TIMEOUT_MS });
  await page.goto(`${BASE}/#/alerts/${encodeURIComponent(alertId)}`);
  assert((await apiResp).status() === 403, 'GET alert as technician was not 403');
  await page.getByRole('heading', { name: 'Not available for your role' }).waitFor();
  let body = await page.evaluate(() => document.body.innerText + document.body.innerHTML);
  assert(!body.includes(TERM) && !body.includes(alertContext), 'alert data in the page for the technician');
  assert(await page.locator('#evidence, #triage').count() === 0, 'alert panels rendered for the technician');

  step('technician cannot list alerts');
  await page.goto(`${BASE}/#/alerts`);
  await page.getByRole('heading', { name: 'Not available for your role' }).waitFor();
  body = await page.evaluate(() => document.body.innerText + document.body.innerHTML);
  assert(!body.includes(TERM), 'alert data in the queue page for the technician');
  await checkA11y('denied');

  step('technician: a bad licence file is refused naming its line; a good one is reconciled; the inventory lists the device');
  await page.goto(`${BASE}/#/licences`);
  await page.getByRole('heading', { name: 'ICT inventory' }).waitFor();
  const csvInput = page.locator('input[type=file][name=csv]');
  await csvInput.setInputFiles({ name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from('product,seats\nMicrosoft Office 2021,ten\n') });
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  await page.locator('.form-error', { hasText: 'line 2, column 2 (seats)' }).waitFor();
  assert(await page.getByText('No licences in the register yet.').count() === 1, 'a refused licence file changed the register');
  await csvInput.setInputFiles({ name: 'licences.csv', mimeType: 'text/csv', buffer: Buffer.from('product,publisher,seats,expiry,reference\nMicrosoft Office 2021,Microsoft,30,2027-08-31,EES-1\n') });
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  await page.getByRole('cell', { name: 'Microsoft Office 2021' }).waitFor();
  assert(await page.locator('section[aria-labelledby=iv-h] tbody tr').count() >= 1, 'the inventory lists no device');
  await checkA11y('licences');
  await shot('licences');
  await logout();

  // ---- Optional: admin reads the access log; governor sees trends ----------
  if (env.ADMIN_USER) {
    step(`sign in as ${env.ADMIN_USER} (admin): access log shows the reveal`);
    await login(env.ADMIN_USER, env.ADMIN_PASS);
    nav = await navNames();
    assert(nav.includes('Access log') && !nav.includes('Alerts'), `admin nav: ${nav}`);
    await page.getByRole('link', { name: 'Access log' }).click();
    const logRow = page.locator('table.access-log tr', { hasText: reason });
    await logRow.first().waitFor();
    const text = await logRow.first().innerText();
    assert(text.includes(env.DSL1_USER), `access log row does not name ${env.DSL1_USER}: ${text}`);
    await checkA11y('access log');
    await shot('access-log');
    await logout();
  }
  if (env.GOV_USER) {
    step(`sign in as ${env.GOV_USER} (governor): trends, counts only`);
    await login(env.GOV_USER, env.GOV_PASS);
    nav = await navNames();
    assert(nav.join() === 'Trends,Reports', `governor nav: ${nav}`);
    await page.locator('main table').first().waitFor();
    body = await page.evaluate(() => document.body.innerText);
    assert(!body.includes(TERM) && !body.includes(env.DSL1_USER), 'names or terms on the governor page');
    // The test's few alerts are small counts: a governor sees them as words.
    assert(body.includes('fewer than 5') && !/Alerts per week[\s\S]*\t[1-4]\n/.test(body), 'small counts shown to a governor');
    await checkA11y('trends');
    await shot('trends');

    step("governor downloads the governors' report (PDF), and has no monitoring report");
    await page.getByRole('link', { name: 'Reports' }).click();
    await page.getByRole('heading', { name: "Governors' termly report" }).waitFor();
    assert(await page.locator('#monitoring-pdf').count() === 0, 'monitoring report offered to a governor');
    await checkA11y('reports');
    const gdl = page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS });
    await page.locator('#governors-pdf').click();
    const gpath = path.join(profile, 'governors.pdf');
    await (await gdl).saveAs(gpath);
    const gpdf = fs.readFileSync(gpath);
    assert(gpdf.subarray(0, 5).toString() === '%PDF-', `governors' report is not a PDF: ${gpdf.subarray(0, 16)}`);
    console.log(`  governors' report PDF: ${gpdf.length} bytes`);
    await shot('reports');
    await logout();
  }

  if (env.ADMIN_USER) {
    // A second browser, for the person whose account the admin manages.
    const profile2 = fs.mkdtempSync(path.join(env.TMPDIR || os.tmpdir(), 'vigil-chromium-'));
    const ctx2 = await chromium.launchPersistentContext(profile2, launchOptions);
    ctx2.setDefaultTimeout(STEP_TIMEOUT_MS);
    const other = ctx2.pages()[0] || await ctx2.newPage();
    other.on('pageerror', (e) => problems.push(`page error (second browser): ${e.message}`));
    page.on('dialog', (d) => d.accept());
    const newUser = 'dsl3';
    const firstPw = 'first-password-from-admin';
    try {
      step(`admin: users page lists last sign-in; creating ${newUser}`);
      await login(env.ADMIN_USER, env.ADMIN_PASS);
      await page.getByRole('link', { name: 'Users' }).click();
      await page.waitForURL(/#\/users/);
      const dslRow = page.locator(`table.users tr[data-user="${env.DSL1_USER}"]`);
      await dslRow.waitFor();
      assert(!/Never/.test(await dslRow.locator('td.last-sign-in').innerText()), `${env.DSL1_USER} signed in but the list says never`);
      await checkA11y('users');
      await checkHeadersUnbroken('users');
      await shot('users');
      const addForm = page.locator('section[aria-labelledby="ua-h"]');
      await addForm.getByLabel('Username', { exact: true }).fill(newUser);
      await addForm.getByLabel('Display name').fill('Łucja Wiśniewska');
      await addForm.getByLabel('Initial password').fill(firstPw);
      await page.getByRole('button', { name: 'Create account' }).click();
      // Creating, changing and resetting hash a password (bcrypt cost 12):
      // as slow as a sign-in on a busy machine.
      await page.locator('#status').filter({ hasText: `Account ${newUser} created` }).waitFor({ timeout: LOGIN_TIMEOUT_MS });
      await page.locator(`table.users tr[data-user="${newUser}"]`).waitFor();

      step('a new error replaces the stale success banner');
      await addForm.getByLabel('Username', { exact: true }).fill(newUser);
      await addForm.getByLabel('Initial password').fill(firstPw);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.locator('form .form-error').filter({ hasText: /already exists/ }).waitFor({ timeout: LOGIN_TIMEOUT_MS });
      const status = await page.locator('#status').innerText();
      assert(!/created/.test(status), `success banner still above the error: "${status}"`);

      step(`${newUser} signs in: only the password change is offered until done`);
      await login(newUser, firstPw, other);
      await other.waitForURL(/#\/password/);
      await other.locator('#password-required').waitFor();
      assert((await other.locator('#nav a').count()) === 0, 'navigation offered before the forced change');
      await other.goto(`${BASE}/#/alerts`);
      await other.waitForURL(/#\/password/);
      await other.getByLabel('Password you were given').fill(firstPw);
      await other.locator('input[name="new_password"]').fill('dsl3-chose-this-one');
      await other.locator('input[name="new_password_again"]').fill('dsl3-chose-this-one');
      await other.getByRole('button', { name: 'Change password' }).click();
      await other.waitForURL(/#\/alerts/, { timeout: LOGIN_TIMEOUT_MS });
      await other.locator('table.queue a.term', { hasText: TERM }).first().waitFor();

      step(`admin disables ${newUser}: the open session ends at once`);
      await page.reload();
      const row = page.locator(`table.users tr[data-user="${newUser}"]`);
      await row.getByRole('button', { name: /^Disable/ }).click();
      await page.locator(`table.users tr[data-user="${newUser}"] td.user-state`).filter({ hasText: 'Disabled' }).waitFor();
      await other.goto(`${BASE}/#/devices`);
      await other.getByRole('heading', { name: 'Sign in' }).waitFor();
      const me2 = await other.evaluate(async () => (await fetch('/api/v1/me')).status);
      assert(me2 === 401, `disabled account's session answered ${me2}`);
      await other.getByLabel('Username').fill(newUser);
      await other.getByLabel('Password', { exact: true }).fill('dsl3-chose-this-one');
      await other.getByRole('button', { name: 'Sign in' }).click();
      await other.locator('#login-error').filter({ hasText: /not recognised/ }).waitFor({ timeout: LOGIN_TIMEOUT_MS });

      step(`admin enables ${newUser} and resets the password: a temporary one, changed at sign-in`);
      await page.locator(`table.users tr[data-user="${newUser}"]`).getByRole('button', { name: /^Enable/ }).click();
      await page.locator(`table.users tr[data-user="${newUser}"] td.user-state`).filter({ hasText: 'Active' }).waitFor();
      await page.locator(`table.users tr[data-user="${newUser}"]`).getByRole('button', { name: /^Reset password/ }).click();
      await page.locator('#temporary-password').waitFor({ timeout: LOGIN_TIMEOUT_MS });
      const temp = (await page.locator('#temporary-password').innerText()).trim();
      assert(temp.length === 16, `temporary password "${temp}"`);
      await page.locator(`table.users tr[data-user="${newUser}"] td.user-state`).filter({ hasText: 'Must change password' }).waitFor();
      await shot('users-reset');
      await login(newUser, temp, other);
      await other.waitForURL(/#\/password/);
      await other.locator('#password-required').waitFor();
      await logout();
    } finally {
      await ctx2.close().catch(() => {});
      fs.rmSync(profile2, { recursive: true, force: true });
    }
  }

  if (env.HEAD_USER) {
    step(`sign in as ${env.HEAD_USER} (headteacher): the pupil's alert says why it is not theirs`);
    await login(env.HEAD_USER, env.HEAD_PASS);
    await page.goto(`${BASE}/#/alerts/${encodeURIComponent(alertId)}`);
    await page.getByRole('heading', { name: 'Not available for your role' }).waitFor();
    const text = await page.locator('main').innerText();
    assert(!/something went wrong/i.test(text), `headteacher sees a generic error: ${text}`);
    assert(/Designated Safeguarding Lead/.test(text) && /Headteacher/.test(text), `no role explanation: ${text}`);
    body = await page.evaluate(() => document.body.innerText + document.body.innerHTML);
    assert(!body.includes(TERM) && !body.includes(alertContext), 'alert data in the page for the headteacher');
    await logout();
  }

  if (env.TOTP_USER) {
    step('too many failed sign-ins: the wait is said in minutes');
    await page.goto(`${BASE}/#/login`);
    const who = `nobody-${Date.now()}`;
    let limited = '';
    for (let i = 0; i < 7 && !limited; i++) {
      await page.getByLabel('Username').fill(who);
      await page.getByLabel('Password', { exact: true }).fill('not-a-password');
      const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/session'), { timeout: LOGIN_TIMEOUT_MS });
      await page.getByRole('button', { name: 'Sign in' }).click();
      const r = await answered;
      if (r.status() === 429) {
        await page.locator('#login-error').filter({ hasText: /Too many/ }).waitFor();
        limited = await page.locator('#login-error').innerText();
      } else {
        await page.locator('#login-error').filter({ hasText: /not recognised/ }).waitFor();
      }
    }
    // 15 minutes from the first failure, less the time the five took.
    assert(/Try again in (1[0-5]|[1-9]) minutes?\./.test(limited), `rate-limit message: "${limited}"`);
    assert(!/seconds/.test(limited), `rate-limit message in seconds: "${limited}"`);

    step(`two-step sign-in as ${env.TOTP_USER}`);
    await page.getByLabel('Username').fill(env.TOTP_USER);
    await page.getByLabel('Password', { exact: true }).fill(env.TOTP_PASS);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#login-error').filter({ hasText: /one-time code/ }).waitFor({ timeout: LOGIN_TIMEOUT_MS });
    assert(page.url().includes('#/login'), 'signed in without the one-time code');
    await page.getByLabel('Password', { exact: true }).fill(env.TOTP_PASS);
    await page.getByLabel('One-time code').fill('000000' === totpCode(env.TOTP_SECRET) ? '111111' : '000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#login-error').filter({ hasText: /not accepted/ }).waitFor({ timeout: LOGIN_TIMEOUT_MS });
    await page.getByLabel('Password', { exact: true }).fill(env.TOTP_PASS);
    await page.getByLabel('One-time code').fill(totpCode(env.TOTP_SECRET));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: LOGIN_TIMEOUT_MS });
    await page.locator('#account-name').waitFor({ state: 'visible' });
    await logout();
  }

  assert(problems.length === 0, `browser reported problems:\n  ${problems.join('\n  ')}`);
  console.log(`PASS in ${((Date.now() - t0) / 1000).toFixed(1)}s; screenshots in ${SHOTS}`);
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.error(`FAIL at step "${currentStep}": ${e.message}`);
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  try {
    await page.screenshot({ path: path.join(SHOTS, 'failure.png') });
    console.error(`page at failure: ${page.url()} (screenshot ${path.join(SHOTS, 'failure.png')})`);
    console.error((await page.locator('main').innerText()).slice(0, 2000));
  } catch { /* browser gone */ }
  await context.close().catch(() => {});
  process.exit(1);
}
