// Browser test of the Vigil console in real Chromium (Debian's, through
// playwright-core; no browser download). e2e/console_test.go starts a real
// collector and agent, makes the agent raise a screen alert under Xvfb,
// creates the accounts and runs this script; it can also be run by hand:
//
//   BASE_URL=https://127.0.0.1:7080 CONSOLE_SPKI=... DSL1_USER=dsl1 DSL1_PASS=... DSL2_USER=dsl2 DSL2_PASS=... \
//   TECH_USER=tech1 TECH_PASS=... ALERT_TERM="kill myself" SCREENSHOT_DIR=/tmp/shots node console.test.mjs
//
// Optional: ADMIN_USER/ADMIN_PASS (access log page), GOV_USER/GOV_PASS
// (trends page), CHROMIUM (default /usr/bin/chromium), SLOWMO.
// PHASE=staff runs only the staff-concern review instead (e2e/console_test.go
// runs it second, once the device account is a staff member in the
// directory): HEAD_USER/HEAD_PASS, CHAIR_USER/CHAIR_PASS, CHAIR_NAME and
// STAFF_TERM (the term of the staff member's alert).
// CONSOLE_SPKI: base64 SHA-256 of the console certificate's public key;
// Chromium then accepts that one key for the HTTPS console (it cannot be
// told to trust the collector's CA without an NSS database tool), and every
// other certificate error still fails.
// Exit status 0 when every step passed; 1 with the failing step otherwise.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
const BASE = (env.BASE_URL || '').replace(/\/$/, '');
const TERM = env.ALERT_TERM || 'kill myself';
const SHOTS = env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-shots-'));
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_BUDGET_MS = Number(env.TOTAL_TIMEOUT_MS || 300000);
// Sign-in checks a bcrypt hash (cost 12): seconds under the race detector
// on a busy 2-core machine.
const LOGIN_TIMEOUT_MS = 60000;
const STEP_TIMEOUT_MS = 15000;

for (const k of ['BASE_URL', 'DSL1_USER', 'DSL1_PASS', 'DSL2_USER', 'DSL2_PASS', 'TECH_USER', 'TECH_PASS']) {
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

const profile = fs.mkdtempSync(path.join(env.TMPDIR || os.tmpdir(), 'vigil-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
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
});
context.setDefaultTimeout(STEP_TIMEOUT_MS);
context.setDefaultNavigationTimeout(20000);
const page = context.pages()[0] || await context.newPage();

// Page errors, CSP violations and console errors fail the run; the 401 and
// 403 answers the test provokes show up as "Failed to load resource" and
// are expected.
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  const text = m.text();
  if (/Failed to load resource: the server responded with a status of (401|403)/.test(text)) return;
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

async function login(user, pass) {
  await page.goto(`${BASE}/#/login`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(pass);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: LOGIN_TIMEOUT_MS });
  await page.locator('#account-name').waitFor({ state: 'visible' });
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

function finish() {
  assert(problems.length === 0, `browser reported problems:\n  ${problems.join('\n  ')}`);
  console.log(`PASS in ${((Date.now() - t0) / 1000).toFixed(1)}s; screenshots in ${SHOTS}`);
}

let alertId = '';
let alertContext = '';
try {
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
  alertId = decodeURIComponent((await link.getAttribute('href')).replace('#/alerts/', ''));
  await page.getByLabel('Severity').waitFor();
  await checkA11y('queue');
  await shot('queue');
  await checkNoHorizontalScroll('queue');

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
  assert(new URL(resp.url()).searchParams.get('reason') === reason, 'reason not sent with the evidence request');
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
    assert(nav.join() === 'Trends', `governor nav: ${nav}`);
    await page.locator('main table').first().waitFor();
    body = await page.evaluate(() => document.body.innerText);
    assert(!body.includes(TERM) && !body.includes(env.DSL1_USER), 'names or terms on the governor page');
    await checkA11y('trends');
    await shot('trends');
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
