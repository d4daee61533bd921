// Vigil console: a single-page app on hash routes, served by the collector
// from its own binary. No framework, no build step, nothing fetched from
// outside this origin (CSP default-src 'self'). Everything that comes from a
// device (window titles, context, names) is untrusted: the DOM is built with
// text nodes only, never innerHTML.

const API = '/api/v1';

const ROLE_LABELS = {
  dsl: 'Designated Safeguarding Lead',
  headteacher: 'Headteacher',
  technician: 'Technician',
  governor: 'Governor',
  admin: 'Administrator',
};

// What each role may use; the server enforces the same (403 otherwise).
// The chair of governors also reviews alerts about the headteacher.
const NAV = [
  { route: 'alerts', label: 'Alerts', roles: ['dsl', 'headteacher'], chair: true },
  { route: 'exclusions', label: 'Exclusions', roles: ['dsl'] },
  { route: 'terms', label: 'School terms', roles: ['dsl'] },
  { route: 'devices', label: 'Devices', roles: ['dsl', 'headteacher', 'technician'] },
  { route: 'audits', label: 'Audits', roles: ['headteacher', 'technician'] },
  { route: 'access-log', label: 'Access log', roles: ['admin', 'headteacher'] },
  { route: 'trends', label: 'Trends', roles: ['governor', 'headteacher', 'dsl'] },
  { route: 'reports', label: 'Reports', roles: ['headteacher', 'dsl', 'governor'] },
  { route: 'users', label: 'Users', roles: ['admin'] },
  { route: 'deploy', label: 'Deploy', roles: ['technician', 'admin'] },
  { route: 'licences', label: 'Licences', roles: ['technician', 'admin', 'headteacher'] },
  { route: 'evidence', label: 'DfE evidence', roles: ['headteacher', 'dsl', 'technician'] },
];

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
const SEVERITY_RANK = Object.fromEntries(SEVERITIES.map((s, i) => [s, i]));
// The review statuses (collector/triage.Status). Concluded and false
// positive end the review.
const STATUSES = { new: 'New', in_review: 'In review', concluded: 'Concluded', false_positive: 'False positive' };
const CLOSED = new Set(['concluded', 'false_positive']);
const CONCLUSIONS = [
  ['no_concern', 'No concern'],
  ['kept_on_file', 'Kept on file'],
  ['parents_informed', 'Parents informed'],
  ['referred_safeguarding_board', 'Referred to safeguarding board'],
  ['referred_police', 'Referred to police'],
  ['other', 'Other'],
];
const CONCLUSION_LABEL = Object.fromEntries(CONCLUSIONS);

let session = null; // {username, display_name, role, csrf_token}
let renderSeq = 0; // bumps on every navigation; stale async renders stop
let afterLogin = null;

// ---------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');

let idSeq = 0;
const uid = (p) => `${p}-${++idSeq}`;

function field(label, control, hint) {
  const id = control.id || (control.id = uid('f'));
  const hintEl = hint ? h('span', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label, hintEl), control);
}

function select(name, options, value) {
  const s = h('select', { name, id: uid(name) });
  for (const [v, label] of options) {
    const o = h('option', { value: v }, label);
    if (v === (value ?? '')) o.selected = true;
    s.append(o);
  }
  return s;
}

let keepStatus = false;

// clearSuccess removes a success message from the status line.
function clearSuccess() {
  const s = $('#status');
  if (s && s.classList.contains('ok')) {
    keepStatus = false;
    s.className = 'status';
    s.textContent = '';
  }
}

// waitText words a wait for people: "15 minutes", not "882 seconds".
function waitText(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  if (s < 60) return s === 1 ? '1 second' : `${s} seconds`;
  const m = Math.ceil(s / 60);
  return m === 1 ? '1 minute' : `${m} minutes`;
}

// announce puts a message in the aria-live status line. keep: the message
// survives the next navigation (say, "Signed in" before the first page).
function announce(msg, kind = '', keep = false) {
  keepStatus = keep;
  const s = $('#status');
  s.className = `status ${kind}`.trim();
  // Clear first so the same message is announced again.
  s.textContent = '';
  if (msg) requestAnimationFrame(() => { s.textContent = msg; });
}

const dateFmt = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' });

function when(t) {
  if (!t) return h('span', { class: 'muted' }, '—');
  const d = new Date(t);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 2000) return h('span', { class: 'muted' }, t ? String(t) : '—');
  return h('time', { datetime: d.toISOString() }, dateFmt.format(d));
}

function ago(t) {
  const d = new Date(t);
  if (!t || Number.isNaN(d.getTime()) || d.getFullYear() < 2000) return 'never';
  const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

const titleCase = (s) => String(s || '').replace(/[_-]+/g, ' ').replace(/^\w/, (c) => c.toUpperCase());

function sevBadge(sev) {
  const s = String(sev || 'info').toLowerCase();
  return h('span', { class: `badge sev-${SEVERITY_RANK[s] === undefined ? 'info' : s}` }, titleCase(s));
}

function statusBadge(st) {
  return h('span', { class: `badge st-${st}` }, STATUSES[st] || titleCase(st));
}

function personLabel(a) {
  const name = a.person_name || a.person;
  if (!name) return h('span', { class: 'muted' }, 'Not mapped');
  return [name, a.person_role ? h('span', { class: 'muted' }, ` (${a.person_role})`) : null];
}

function shortId(id) {
  const s = String(id || '');
  return s.length > 14 ? `${s.slice(0, 12)}…` : s;
}

// ---------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && session && session.csrf_token) opts.headers['X-CSRF-Token'] = session.csrf_token;
  let res;
  try {
    res = await fetch(API + path, opts);
  } catch (e) {
    throw new ApiError(0, 'The collector could not be reached. Check the connection and try again.');
  }
  let data = null;
  if ((res.headers.get('Content-Type') || '').includes('json')) data = await res.json().catch(() => null);
  if (!res.ok) {
    // A success message from before must not stand above this failure
    // (issue 10 item 7: "Account created" over "already exists").
    clearSuccess();
    const msg = (data && (data.error || data.message)) || res.statusText || `HTTP ${res.status}`;
    const err = new ApiError(res.status, msg, data);
    err.retryAfter = res.headers.get('Retry-After');
    if (res.status === 401 && path !== '/session') {
      signedOut('Your session has ended. Please sign in again.');
    }
    if (res.status === 403 && data && data.password_change_required && session) {
      session.must_change_password = true;
      location.hash = '#/password';
    }
    throw err;
  }
  return data;
}

function signedOut(msg) {
  const wasIn = session !== null;
  session = null;
  renderChrome();
  if (!location.hash.startsWith('#/login')) afterLogin = location.hash;
  if (wasIn || !location.hash.startsWith('#/login')) {
    if (msg) announce(msg, '', true);
    location.hash = '#/login';
  }
}

// ---------------------------------------------------------------------------
// Chrome: nav and account

function mayUse(item) {
  return !!(session && (item.roles.includes(session.role) || (item.chair && session.role === 'governor' && session.chair)));
}

function homeRoute() {
  const item = NAV.find(mayUse);
  return item ? `#/${item.route}` : '#/me';
}

function renderChrome(current) {
  const nav = $('#nav');
  const list = $('#nav-list');
  list.replaceChildren();
  if (!session) {
    nav.hidden = true;
    $('#account').hidden = true;
    return;
  }
  for (const item of NAV) {
    if (!mayUse(item) || session.must_change_password) continue;
    const a = h('a', { href: `#/${item.route}`, dataset: { route: item.route } }, item.label);
    if (item.route === current) a.setAttribute('aria-current', 'page');
    list.append(h('li', {}, a));
  }
  nav.hidden = false;
  $('#account').hidden = false;
  // In a trust the header names the school whose data this is (and the
  // schools granted), so a trust lead never mistakes one for another.
  const schools = session.school ? ` · ${[session.school, ...(session.granted_schools || [])].join(', ')}` : '';
  $('#account-name').textContent = `${session.display_name || session.username} · ${ROLE_LABELS[session.role] || session.role}${schools}`;
}

// ---------------------------------------------------------------------------
// Router

// Reports: downloads only (PDF with charts, CSV for spreadsheets). The
// monitoring report is the headteacher's and the DSL's; the governors'
// report (aggregates, small counts suppressed) the governors'.
function reportPanel(id, title, intro, base, hint, query) {
  const from = h('input', { type: 'date', name: 'from', id: uid('from') });
  const to = h('input', { type: 'date', name: 'to', id: uid('to') });
  // A scheduled e-mail links here with ?report=…&from=…&to=… (its window).
  const date = (v) => (/^\d{4}-\d{2}-\d{2}$/.test(v || '') ? v : '');
  if (query && query.get('report') === base) {
    from.value = date(query.get('from'));
    to.value = date(query.get('to'));
  }
  const pdf = h('a', { class: 'button', id: `${id}-pdf` }, 'Download PDF');
  const csv = h('a', { class: 'button secondary', id: `${id}-csv` }, 'Download CSV');
  const update = () => {
    const q = new URLSearchParams();
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    const qs = q.toString() ? `?${q}` : '';
    pdf.href = `${API}/reports/${base}.pdf${qs}`;
    csv.href = `${API}/reports/${base}.csv${qs}`;
    pdf.setAttribute('download', `${base}.pdf`);
    csv.setAttribute('download', `${base}.csv`);
  };
  from.addEventListener('change', update);
  to.addEventListener('change', update);
  update();
  return h('section', { class: 'panel', 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), h('p', {}, intro),
    field('From', from, hint), field('To (not included)', to), h('div', { class: 'actions' }, pdf, csv));
}

function viewReports(query) {
  const panels = [];
  if (session.role === 'headteacher' || session.role === 'dsl') {
    panels.push(reportPanel('monitoring', 'Monitoring report',
      'Alerts by category, severity and outcome; time from alert to first review and to conclusion (median and 90th percentile); exclusions in force and expiring; devices out of compliance and devices not reporting. Only alerts you may see are counted.',
      'monitoring', 'Leave both empty for the last 7 days.', query));
  }
  if (session.role === 'governor') {
    panels.push(reportPanel('governors', "Governors' termly report",
      'Aggregates only: no names, devices or search terms. Counts from 1 to 4 are shown as "fewer than 5", and counts that would let them be worked out are withheld, so that no child can be identified.',
      'governors', 'Leave both empty for the current term.', query));
  }
  page('Reports', h('p', {}, 'Reports are built when you download them, from the records as they stand.'), panels);
}

// The DfE annual review reminder, above every page of those who take part
// in the review, once it is due within a month or overdue.
const REMINDER_ROLES = ['headteacher', 'dsl', 'technician', 'governor'];
async function showReviewReminder() {
  let box = document.getElementById('review-reminder');
  if (!box) {
    box = h('div', { id: 'review-reminder', class: 'notice', role: 'note', hidden: true });
    main().before(box);
  }
  if (!session || session.must_change_password || !REMINDER_ROLES.includes(session.role)) { box.hidden = true; return; }
  try {
    const st = await api('GET', '/dfe/status');
    box.replaceChildren(h('strong', {}, 'Filtering and monitoring review: '), st.reminder || '',
      ['headteacher', 'dsl'].includes(session.role) ? h('span', {}, ' ', h('a', { href: '#/evidence' }, 'Record the review')) : '');
    box.hidden = !st.reminder;
  } catch (e) {
    box.hidden = true; // the reminder is a courtesy: never block a page on it
  }
}

const CHECK_LABELS = {
  pending: 'Waiting', working: 'Working end to end', session_helper_missing: 'Session helper missing: screen not monitored',
  not_connected: 'Not connected', no_answer: 'Did not answer', not_received: 'Selftest finding did not arrive',
};

function checkTable(c) {
  const cols = ['Device', 'Group', 'Outcome', 'Last selftest received', 'Detail'];
  const rows = [...(c.devices || [])].sort((a, b) => (a.outcome === 'working') - (b.outcome === 'working'));
  return h('table', { class: 'responsive fleet-check' },
    h('caption', {}, c.completed_at ? `Fleet check ${c.id}, completed` : `Fleet check ${c.id}, running…`),
    h('thead', {}, h('tr', {}, cols.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((d) => h('tr', { dataset: { device: d.device_id, outcome: d.outcome } },
      h('td', { 'data-label': 'Device' }, h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}` }, d.hostname || d.device_id)),
      h('td', { 'data-label': 'Group' }, d.group || ''),
      h('td', { 'data-label': 'Outcome' }, CHECK_LABELS[d.outcome] || d.outcome),
      h('td', { 'data-label': 'Last selftest received' }, d.last_proved ? when(d.last_proved) : 'never'),
      h('td', { 'data-label': 'Detail' }, d.detail || '')))));
}

// The DfE evidence: the pack to download, the roles register, the review
// records, and the fleet-wide end-to-end check (the technician sees the
// check only).
async function viewEvidence(query, seq) {
  loading('evidence');
  const keeper = session.role === 'headteacher' || session.role === 'dsl';
  const [roles, reviews] = keeper ? await Promise.all([api('GET', '/dfe/roles'), api('GET', '/dfe/reviews')]) : [null, null];
  if (!isCurrent(seq)) return;
  const panels = [];
  if (keeper) {
    panels.push(reportPanel('dfe', 'DfE evidence pack',
      'The roles register, the annual review record, the decision log (rule changes, exclusions with reason, approver and expiry, school terms), alert-handling figures and the check record: when monitoring last proved itself end to end on every device.',
      'dfe', 'Leave both empty for the last year.', query));

    const inputs = {};
    const rows = (roles.roles || []).map((r) => {
      const name = h('input', { type: 'text', name: `${r.role}-name`, value: r.name || '', autocomplete: 'off' });
      const contact = h('input', { type: 'text', name: `${r.role}-contact`, value: r.contact || '', autocomplete: 'off' });
      inputs[r.role] = { name, contact };
      return h('fieldset', {}, h('legend', {}, r.label), field('Name', name), field('Contact', contact, 'E-mail, phone or company.'));
    });
    const rerr = h('p', { class: 'form-error', role: 'alert' });
    const rbtn = h('button', { type: 'submit' }, 'Save the register');
    const rform = h('form', { novalidate: true, id: 'roles-form' }, rows, rerr, h('div', { class: 'actions' }, rbtn));
    rform.addEventListener('submit', async (e) => {
      e.preventDefault();
      rerr.textContent = '';
      rbtn.disabled = true;
      try {
        await api('PUT', '/dfe/roles', { roles: Object.entries(inputs).map(([role, i]) => ({ role, name: i.name.value.trim(), contact: i.contact.value.trim() })) });
        announce('Roles register saved; the change is in the decision log.', 'ok', true);
        route();
      } catch (ex) {
        rerr.textContent = ex.message;
        rbtn.disabled = false;
      }
    });
    panels.push(h('section', { class: 'panel', 'aria-labelledby': 'roles-h' }, h('h2', { id: 'roles-h' }, 'Roles and responsibilities'),
      roles.updated_by ? h('p', { class: 'hint' }, 'Last updated ', when(roles.updated_at), ` by ${roles.updated_by}.`) : null, rform));

    const list = (reviews.reviews || []).slice().reverse().map((r) => h('article', { class: 'review' },
      h('h3', {}, `Review of ${r.date.slice(0, 10)}`),
      h('dl', { class: 'details' },
        h('dt', {}, 'Attendees'), h('dd', {}, (r.attendees || []).join(', ')),
        h('dt', {}, 'Findings'), h('dd', {}, r.findings),
        h('dt', {}, 'Actions'), h('dd', {}, (r.actions || []).length ? h('ul', {}, r.actions.map((a) => h('li', {}, a))) : 'None'),
        h('dt', {}, 'Next review'), h('dd', {}, (r.next_review || '').slice(0, 10)))));
    const date = h('input', { type: 'date', name: 'date', required: true });
    const attendees = h('textarea', { name: 'attendees', rows: '3', required: true });
    const findings = h('textarea', { name: 'findings', rows: '4', required: true });
    const actions = h('textarea', { name: 'actions', rows: '3' });
    const next = h('input', { type: 'date', name: 'next_review' });
    const verr = h('p', { class: 'form-error', role: 'alert' });
    const vbtn = h('button', { type: 'submit' }, 'Record the review');
    const lines = (t) => t.value.split('\n').map((x) => x.trim()).filter(Boolean);
    const vform = h('form', { novalidate: true, id: 'review-form' },
      field('Date of the review', date), field('Attendees', attendees, 'One per line.'), field('Findings', findings),
      field('Actions agreed', actions, 'One per line.'), field('Next review', next, 'Within a year; leave empty for a year on.'),
      verr, h('div', { class: 'actions' }, vbtn));
    vform.addEventListener('submit', async (e) => {
      e.preventDefault();
      verr.textContent = '';
      vbtn.disabled = true;
      try {
        await api('POST', '/dfe/reviews', { date: date.value, attendees: lines(attendees), findings: findings.value.trim(), actions: lines(actions), next_review: next.value || undefined });
        announce('Review recorded.', 'ok', true);
        route();
      } catch (ex) {
        verr.textContent = ex.message;
        vbtn.disabled = false;
      }
    });
    panels.push(h('section', { class: 'panel', 'aria-labelledby': 'rev-h' }, h('h2', { id: 'rev-h' }, 'Annual review'),
      h('p', {}, reviews.reminder || `Next review due ${reviews.due}.`), list, h('h3', {}, 'Record a review'), vform));
  }

  const out = h('div', { id: 'check-result' });
  const reason = h('input', { type: 'text', name: 'reason', autocomplete: 'off' });
  const cerr = h('p', { class: 'form-error', role: 'alert' });
  const cbtn = h('button', { type: 'submit' }, 'Run the fleet check');
  const cform = h('form', { novalidate: true, id: 'check-form' }, field('Reason (optional)', reason, 'Recorded with your name.'), cerr, h('div', { class: 'actions' }, cbtn));
  cform.addEventListener('submit', async (e) => {
    e.preventDefault();
    cerr.textContent = '';
    cbtn.disabled = true;
    try {
      let c = await api('POST', '/dfe/checks', { reason: reason.value.trim() });
      out.replaceChildren(checkTable(c));
      while (!c.completed_at && isCurrent(seq)) {
        await new Promise((r) => setTimeout(r, 1000));
        c = await api('GET', `/dfe/checks/${encodeURIComponent(c.id)}`);
        out.replaceChildren(checkTable(c));
      }
      announce('Fleet check complete.', 'ok');
    } catch (ex) {
      cerr.textContent = ex.message;
    }
    cbtn.disabled = false;
  });
  panels.push(h('section', { class: 'panel', 'aria-labelledby': 'chk-h' }, h('h2', { id: 'chk-h' }, 'Check that monitoring works'),
    h('p', {}, 'Asks every device for a synthetic selftest and follows it through the real path (the device, the network, the collector). Devices that do not prove themselves are named: not connected, no answer, or a session helper missing.'),
    cform, out));
  page('DfE filtering and monitoring evidence', panels);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(qs || '') };
}

async function route() {
  const seq = ++renderSeq;
  const { parts, query } = parseHash();
  const top = parts[0] || '';
  if (!session && top !== 'login') {
    afterLogin = location.hash || null;
    location.replace('#/login');
    return;
  }
  if (session && session.must_change_password && top !== 'password') {
    location.replace('#/password');
    return;
  }
  if (session && (top === '' || top === 'login')) {
    location.replace(homeRoute());
    return;
  }
  renderChrome(top);
  showReviewReminder();
  if (keepStatus) keepStatus = false; else announce('');
  const view = {
    exclusions: () => viewExclusions(seq),
    terms: () => viewTerms(seq),
    login: viewLogin,
    alerts: parts[1] ? () => viewAlert(parts[1], seq) : () => viewQueue(query, seq),
    devices: parts[1] ? () => viewDevice(parts[1], seq) : () => viewDevices(seq),
    audits: parts[1] ? () => viewAudit(parts[1], seq) : () => viewAudits(seq),
    'access-log': () => viewAccessLog(seq),
    trends: () => viewTrends(seq),
    reports: () => viewReports(query),
    users: () => viewUsers(seq),
    password: () => viewPassword(),
    deploy: () => viewDeploy(seq),
    licences: () => viewLicences(seq),
    evidence: () => viewEvidence(query, seq),
    me: () => viewMe(),
  }[top];
  if (!view) {
    page('Page not found', h('p', {}, 'There is no such page. ', h('a', { href: homeRoute() }, 'Go to the start page.')));
    return;
  }
  try {
    await view();
  } catch (e) {
    if (seq !== renderSeq) return;
    showError(e);
  }
}

function isCurrent(seq) {
  return seq === renderSeq;
}

// page replaces the main area with a heading and content and moves focus to
// the heading so screen-reader and keyboard users start at the top.
function page(title, ...content) {
  document.title = `${title} · Vigil`;
  const h1 = h('h1', { tabindex: '-1' }, title);
  main().replaceChildren(h1, ...content.flat());
  h1.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  return h1;
}

function loading(what) {
  main().replaceChildren(h('p', { class: 'loading', role: 'status' }, `Loading ${what}…`));
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) return; // already sent to login
  if (e instanceof ApiError && e.status === 403) {
    denied(e);
    return;
  }
  page('Something went wrong', h('div', { class: 'notice denied' }, h('p', {}, e.message || String(e)),
    h('p', {}, h('a', { href: homeRoute() }, 'Back to the start page'))));
  announce(e.message || String(e), 'error');
}

// denied: 403 from the server. Nothing of the requested data is shown.
function denied(e) {
  page('Not available for your role',
    h('div', { class: 'notice denied', id: 'denied' },
      h('p', {}, `This page is not available for your role (${ROLE_LABELS[session?.role] || session?.role || 'unknown'}). `,
        'Nothing from it has been loaded.'),
      e && e.body && e.body.guidance ? h('p', {}, e.body.guidance) : null,
      h('p', {}, h('a', { href: homeRoute() }, 'Go to your start page'))));
  announce('Not available for your role.', 'error');
}

// notRouted: an alert the server will not show this person (not routed
// to them, about them, or gone).
function notRouted() {
  page('Not available for your role',
    h('div', { class: 'notice denied', id: 'denied' },
      h('p', {}, `This alert is not available to you as ${ROLE_LABELS[session?.role] || session?.role || 'this role'}. Nothing from it has been loaded.`),
      h('p', {}, 'Alerts go to the person the school policy names (seed 002 §5.3): about a pupil, to the Designated Safeguarding Lead; ',
        'about a member of staff, to the headteacher; about the headteacher, to the chair of governors. Nobody sees an alert about themselves. ',
        'The alert may also have passed its retention period.'),
      h('p', {}, h('a', { href: homeRoute() }, 'Go to your start page'))));
  announce('This alert is not available to you.', 'error');
}

// ---------------------------------------------------------------------------
// Login

function viewLogin() {
  document.title = 'Sign in · Vigil';
  renderChrome();
  const err = h('p', { class: 'form-error', id: 'login-error', role: 'alert' });
  const user = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const totp = h('input', { type: 'text', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]*' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'panel', novalidate: true, 'aria-describedby': 'login-error' },
    field('Username', user),
    field('Password', pass),
    field('One-time code', totp, 'Only if your account uses two-step sign-in'),
    err,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    if (!user.value.trim() || !pass.value) {
      err.textContent = 'Enter your username and password.';
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    try {
      const body = { username: user.value.trim(), password: pass.value };
      if (totp.value.trim()) body.totp = totp.value.replace(/\s+/g, '');
      session = await api('POST', '/session', body);
      pass.value = '';
      announce(`Signed in as ${session.display_name || session.username}.`, 'ok', true);
      const next = afterLogin && !afterLogin.startsWith('#/login') ? afterLogin : homeRoute();
      afterLogin = null;
      location.hash = next;
    } catch (e) {
      if (e.status === 429 && e.body && e.body.busy) {
        err.textContent = 'The console is busy signing others in. Try again in a moment.';
      } else if (e.status === 429) {
        const s = parseInt(e.retryAfter, 10);
        const wait = (e.body && e.body.retry_after_text) || (s > 0 ? waitText(s) : '');
        err.textContent = `Too many attempts. Try again${wait ? ` in ${wait}` : ' later'}.`;
      } else if (e.status === 401) {
        if (e.body && e.body.totp_required) {
          err.textContent = totp.value.trim()
            ? 'That one-time code was not accepted (wrong, expired or already used). Enter the current code.'
            : 'Enter the one-time code from your authenticator app.';
          if (totp.value.trim()) { totp.value = ''; }
        } else {
          err.textContent = 'Username, password or one-time code not recognised.';
        }
      } else {
        err.textContent = e.message;
      }
      pass.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const sso = h('div', { class: 'panel sso', id: 'sso', hidden: true });
  main().replaceChildren(h('div', { class: 'login' }, h('h1', {}, 'Sign in'), sso, form));
  const reason = parseHash().query.get('error');
  if (reason) err.textContent = OIDC_ERRORS[reason] || OIDC_ERRORS.failed;
  user.focus();
  showSSO(sso);
}

// Messages for /#/login?error=… after OIDC sign-in (collector/console/oidc.go).
const OIDC_ERRORS = {
  'not-registered': 'That account is not registered in Vigil. Ask an administrator to give your Vigil account this e-mail address.',
  disabled: 'Your Vigil account is disabled. Ask an administrator.',
  unverified: 'Your identity provider did not confirm your e-mail address.',
  domain: 'Accounts from that organisation cannot sign in here. Use your school account.',
  expired: 'The sign-in took too long or was started in another tab or browser. Please try again.',
  denied: 'Sign-in was cancelled.',
  unavailable: 'The identity provider cannot be reached. Try again later, or sign in with your Vigil password.',
  failed: 'Sign-in with the identity provider failed. Try again; if it keeps failing, an administrator can check the collector log.',
};

// showSSO adds "Sign in with <name>" when GET /api/v1/oidc says it is on.
// It is a plain link: the browser goes to the provider and comes back.
async function showSSO(box) {
  let info;
  try {
    const res = await fetch(`${API}/oidc`, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!res.ok) return;
    info = await res.json();
  } catch { return; }
  if (!info.enabled || !box.isConnected) return;
  const name = String(info.name || 'single sign-on');
  const label = /^sign in/i.test(name) ? name : `Sign in with ${name}`;
  box.replaceChildren(
    h('a', { class: 'button', id: 'oidc-login', href: `${API}/oidc/login` }, label),
    h('p', { class: 'hint' }, 'Or sign in below with your Vigil username and password.'));
  box.hidden = false;
}

function viewMe() {
  page('Signed in', h('p', {}, 'Your role has no pages in this console. Ask an administrator if this is not right.'));
}

// ---------------------------------------------------------------------------
// Alerts queue

const FILTERS = ['status', 'category', 'severity', 'group', 'device', 'person', 'from', 'to'];

function dayToRFC3339(day, end) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return '';
  const d = new Date(`${day}T00:00:00`);
  if (end) d.setDate(d.getDate() + 1);
  return d.toISOString();
}

async function viewQueue(query, seq) {
  loading('alerts');
  const sort = query.get('sort') === 'time' ? 'time' : 'severity';
  const params = new URLSearchParams();
  for (const k of FILTERS) {
    const v = (query.get(k) || '').trim();
    if (!v) continue;
    if (k === 'from' || k === 'to') params.set(k, dayToRFC3339(v, k === 'to'));
    else params.set(k, v);
  }
  params.set('limit', '100');
  // The category filter offers the categories this viewer's alerts have.
  const [firstPage, catList] = await Promise.all([api('GET', `/alerts?${params}`),
    api('GET', '/alert-categories').catch(() => ({ categories: [] }))]);
  let data = firstPage;
  if (!isCurrent(seq)) return;
  let alerts = data.alerts || [];
  let next = data.next_cursor || '';

  const form = queueFilters(query, sort, catList.categories || []);
  const tableHolder = h('div', { id: 'queue' });
  const more = h('div', { class: 'more' });
  const summary = h('p', { class: 'muted', id: 'queue-summary' });

  const draw = () => {
    tableHolder.replaceChildren(queueTable(alerts, sort));
    const open = alerts.filter((a) => !CLOSED.has(a.status)).length;
    summary.textContent = `${alerts.length} alert${alerts.length === 1 ? '' : 's'} shown, ${open} open.`;
    more.replaceChildren();
    if (next) {
      const b = h('button', { type: 'button', class: 'secondary' }, 'Load more alerts');
      b.addEventListener('click', async () => {
        b.disabled = true;
        params.set('cursor', next);
        try {
          const d = await api('GET', `/alerts?${params}`);
          alerts = alerts.concat(d.alerts || []);
          next = d.next_cursor || '';
          draw();
          announce(`${(d.alerts || []).length} more alerts loaded.`);
        } catch (e) {
          announce(e.message, 'error');
          b.disabled = false;
        }
      });
      more.append(b);
    }
  };
  // On a tablet the open form filled the first screen (issue 10 item 7):
  // below 1100 px it starts folded, saying how many filters are on.
  const active = FILTERS.filter((k) => (query.get(k) || '').trim()).length + (sort === 'time' ? 1 : 0);
  const filters = h('details', { class: 'panel filters-panel', id: 'filters-panel' },
    h('summary', {}, h('h2', { id: 'filters-h' }, 'Filter and sort'),
      h('span', { class: 'hint', id: 'filters-count' }, active ? `${active} on` : 'none on')),
    form);
  filters.open = window.matchMedia('(min-width: 1100px)').matches;
  page('Alerts',
    filters,
    h('div', { class: 'toolbar' }, summary,
      // The log held concluded reviews only without saying so (issue 10
      // item 7): each link says what it holds.
      h('a', { class: 'button secondary', href: `${API}/incidents.csv`, download: 'incidents.csv', id: 'export-concluded' }, 'Export incident log: concluded reviews (CSV)'),
      h('a', { class: 'button secondary', href: `${API}/incidents.csv?include=open`, download: 'incidents-with-open.csv', id: 'export-with-open' }, 'Export with open alerts too (CSV)')),
    tableHolder, more);
  draw();
}

function queueFilters(query, sort, categories) {
  const cats = new Set(categories);
  if (query.get('category')) cats.add(query.get('category'));
  const controls = {
    status: select('status', [['', 'Any status'], ...Object.entries(STATUSES)], query.get('status')),
    severity: select('severity', [['', 'Any severity'], ...SEVERITIES.map((s) => [s, titleCase(s)])], query.get('severity')),
    category: select('category', [['', 'Any category'], ...[...cats].map((c) => [c, titleCase(c)])], query.get('category')),
    group: h('input', { type: 'text', name: 'group', value: query.get('group') || '' }),
    device: h('input', { type: 'text', name: 'device', value: query.get('device') || '' }),
    person: h('input', { type: 'text', name: 'person', value: query.get('person') || '' }),
    from: h('input', { type: 'date', name: 'from', value: query.get('from') || '' }),
    to: h('input', { type: 'date', name: 'to', value: query.get('to') || '' }),
    sort: select('sort', [['severity', 'Severity first'], ['time', 'Newest first']], sort),
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Alert filters' },
    field('Status', controls.status),
    field('Severity', controls.severity),
    field('Category', controls.category),
    field('Device group', controls.group),
    field('Device', controls.device),
    field('Person', controls.person),
    field('From date', controls.from),
    field('To date', controls.to),
    field('Sort by', controls.sort),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply filters'),
      h('a', { class: 'button secondary', href: '#/alerts' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, c] of Object.entries(controls)) {
      const v = c.value.trim();
      if (v && !(k === 'sort' && v === 'severity')) q.set(k, v);
    }
    const target = `#/alerts${q.toString() ? `?${q}` : ''}`;
    if (location.hash === target) route(); else location.hash = target;
  });
  return form;
}

function sortAlerts(alerts, sort) {
  const byTime = (a, b) => String(b.time).localeCompare(String(a.time)) || (b.seq || 0) - (a.seq || 0);
  const list = alerts.slice();
  if (sort === 'time') return list.sort(byTime);
  return list.sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || byTime(a, b));
}

function queueTable(alerts, sort) {
  if (!alerts.length) return h('p', { class: 'panel' }, 'No alerts match these filters.');
  const cols = ['Severity', 'Term', 'Context', 'Device', 'Person', 'Time', 'Status'];
  const tbody = h('tbody');
  let lastSev = null;
  const sorted = sortAlerts(alerts, sort);
  const counts = {};
  for (const a of sorted) counts[a.severity] = (counts[a.severity] || 0) + 1;
  for (const a of sorted) {
    if (sort === 'severity' && a.severity !== lastSev) {
      lastSev = a.severity;
      tbody.append(h('tr', { class: 'group-row' },
        h('th', { colspan: cols.length, scope: 'colgroup' }, `${titleCase(a.severity)} (${counts[a.severity]})`)));
    }
    const href = `#/alerts/${encodeURIComponent(a.id)}`;
    tbody.append(h('tr', { class: 'alert-row', dataset: { id: a.id } },
      h('td', { 'data-label': 'Severity' }, sevBadge(a.severity)),
      h('td', { 'data-label': 'Term' },
        h('a', { href, class: 'term' }, a.term || a.title || a.message || 'Alert'),
        a.illegal ? [' ', h('span', { class: 'badge illegal' }, 'Illegal: refer')] : null,
        a.category ? h('span', { class: 'hint' }, titleCase(a.category)) : null),
      h('td', { 'data-label': 'Context', class: 'context' }, a.context || a.title || a.message || ''),
      h('td', { 'data-label': 'Device' }, a.hostname ? h('span', { class: 'hostname', title: a.device_id }, a.hostname)
        : h('span', { class: 'mono', title: a.device_id }, shortId(a.device_id)),
        a.group ? h('span', { class: 'hint' }, a.group) : null),
      h('td', { 'data-label': 'Person' }, personLabel(a)),
      h('td', { 'data-label': 'Time' }, when(a.time)),
      h('td', { 'data-label': 'Status' }, statusBadge(a.status))));
  }
  return h('table', { class: 'responsive queue' },
    h('caption', { class: 'visually-hidden' }, sort === 'severity' ? 'Alerts grouped by severity, newest first in each group' : 'Alerts, newest first'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
}

// ---------------------------------------------------------------------------
// Alert page

async function viewAlert(id, seq) {
  loading('the alert');
  let a;
  try {
    a = await api('GET', `/alerts/${encodeURIComponent(id)}`);
  } catch (e) {
    if (!isCurrent(seq)) return;
    // The server answers 404 for an alert not routed to you, so as not
    // to say whether it exists; say why a person may not see it.
    if (e instanceof ApiError && e.status === 404) { notRouted(); return; }
    throw e;
  }
  if (!isCurrent(seq)) return;
  const head = h('div', { class: 'alert-head', id: 'alert-badges' });
  const triage = h('section', { class: 'panel', id: 'triage', 'aria-labelledby': 'triage-h' });
  const history = h('section', { class: 'panel', id: 'history', 'aria-labelledby': 'history-h' });
  const state = { a };
  // refresh redraws the badges, the form and the history (never the
  // evidence: a revealed screenshot stays as it is) from the state an
  // action returned, or from a new read.
  const refresh = async (msg, returned) => {
    const fresh = returned && returned.id ? returned : await api('GET', `/alerts/${encodeURIComponent(id)}`);
    if (!isCurrent(seq)) return;
    state.a = fresh;
    drawHead(head, fresh);
    drawTriage(triage, fresh, refresh);
    drawHistory(history, fresh);
    if (msg) announce(msg, 'ok');
  };
  drawHead(head, a);
  drawTriage(triage, a, refresh);
  drawHistory(history, a);
  const title = `Alert: ${a.term || a.title || titleCase(a.category) || 'alert'}`;
  page(title,
    h('p', {}, h('a', { href: '#/alerts' }, '← Back to the alerts queue')),
    head,
    h('div', { class: 'alert-layout' },
      h('div', {}, seenPanel(a), alertDetails(a)),
      h('div', {}, triage, history)));
}

function drawHead(el, a) {
  el.replaceChildren();
  append(el, [sevBadge(a.severity), statusBadge(a.status),
    a.illegal ? h('span', { class: 'badge illegal' }, 'Illegal category') : null,
    a.category ? h('span', { class: 'muted' }, `Category: ${titleCase(a.category)}`) : null]);
}

function highlighted(text, term) {
  const s = String(text || '');
  const i = term ? s.toLowerCase().indexOf(String(term).toLowerCase()) : -1;
  if (i < 0) return [s];
  return [s.slice(0, i), h('mark', {}, s.slice(i, i + term.length)), s.slice(i + term.length)];
}

function seenPanel(a) {
  return h('section', { class: 'panel', 'aria-labelledby': 'seen-h' },
    h('h2', { id: 'seen-h' }, 'What was seen'),
    h('blockquote', { class: 'context', id: 'alert-context' }, highlighted(a.context || a.title || a.message, a.term)),
    evidencePanel(a));
}

function alertDetails(a) {
  const d = a.device || {};
  const rows = [
    ['Term', h('span', { class: 'term' }, a.term || '—')],
    ['Time', when(a.time)],
    ['Device', [d.hostname ? `${d.hostname} ` : '', h('span', { class: 'mono' }, a.device_id || '—'),
      d.os ? h('span', { class: 'hint' }, [d.os, d.arch].filter(Boolean).join(' / ') + (d.agent_version ? ` · agent ${d.agent_version}` : '')) : null,
      d.last_seen ? h('span', { class: 'hint' }, 'Last seen ', when(d.last_seen)) : null]],
    ['Group', a.group || '—'],
    ['Person', personLabel(a)],
    ['Window title', a.title || '—'],
    ['Program', a.process || '—'],
    ['Finding', a.message || '—'],
    ['Routed to', Array.isArray(a.routed_to) ? a.routed_to.join(', ') || '—' : a.routed_to || '—'],
  ];
  return h('section', { class: 'panel', 'aria-labelledby': 'details-h' },
    h('h2', { id: 'details-h' }, 'Details'),
    h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

function illegalGuidance(text) {
  return h('div', { class: 'notice illegal', id: 'illegal-guidance' },
    h('h3', {}, 'Illegal category: preserve and refer'),
    text ? h('p', {}, text) : null,
    h('ul', {},
      h('li', {}, 'Do not view, copy, forward or investigate this material further.'),
      h('li', {}, 'The evidence is preserved, encrypted and hashed on the collector; nothing here can change it.'),
      h('li', {}, 'Preserve the device as it is. Refer to the police (or CEOP / IWF), the Safeguarding Hub and the LADO, as the school policy\'s incident flowchart requires (seed 002 Appendix 6).'),
      h('li', {}, 'Record the referral in the review form below (conclusion: Referred to police).')));
}

function evidencePanel(a) {
  const sec = h('div', { id: 'evidence', role: 'group', 'aria-labelledby': 'evidence-h' },
    h('h3', { id: 'evidence-h' }, 'Evidence'));
  if (a.illegal) {
    sec.append(illegalGuidance(a.guidance));
    return sec;
  }
  const items = Array.isArray(a.evidence) ? a.evidence : [];
  if (!items.length) {
    sec.append(h('p', { class: 'muted' }, 'No screenshot was captured for this alert.'));
    return sec;
  }
  if (session.role !== 'dsl') {
    // The server serves evidence to the DSL only; no control that would fail.
    sec.append(h('p', { class: 'muted' }, `${items.length} screenshot${items.length === 1 ? '' : 's'} held. Only the Designated Safeguarding Lead can reveal evidence; ask them if you need it for this review.`));
    return sec;
  }
  sec.append(h('p', { class: 'hint' },
    'Screenshots stay blurred and are not downloaded until you reveal them. Revealing asks for a reason; who, when and why are recorded in the access log.'));
  items.forEach((ev, i) => sec.append(evidenceItem(a, ev, i, items.length)));
  return sec;
}

function evidenceItem(a, ev, i, n) {
  const label = n > 1 ? `Screenshot ${i + 1} of ${n}` : 'Screenshot';
  const frame = h('div', { class: 'evidence-frame', dataset: { evidence: ev.id } },
    h('div', { class: 'evidence-placeholder', 'aria-hidden': 'true' }),
    h('div', { class: 'evidence-overlay' }, h('span', {}, `${label} hidden`)));
  const controls = h('div', { class: 'actions' });
  const wrap = h('figure', { class: 'evidence-item' }, frame,
    h('figcaption', { class: 'hint' }, `${label} · ${ev.media_type || 'image'}${ev.size ? ` · ${Math.round(ev.size / 1024)} KB` : ''}`),
    controls);

  const revealBtn = h('button', { type: 'button', class: 'reveal' }, 'Reveal evidence');
  controls.append(revealBtn);

  revealBtn.addEventListener('click', () => {
    const reason = h('textarea', { name: 'reason', required: true, rows: '2' });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'reveal-form', novalidate: true },
      field('Reason for viewing', reason, 'Required. Recorded in the access log with your name and the time.'),
      err,
      h('div', { class: 'actions' },
        h('button', { type: 'submit' }, 'Reveal and record'),
        h('button', { type: 'button', class: 'secondary', onclick: () => { controls.replaceChildren(revealBtn); revealBtn.focus(); } }, 'Cancel')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const why = reason.value.trim();
      if (!why) {
        err.textContent = 'Give a reason for viewing this evidence.';
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
        return;
      }
      reveal(a, ev, why, frame, controls, label);
    });
    controls.replaceChildren(form);
    reason.focus();
  });
  return wrap;
}

// reveal loads the image only now, with the reason in a POST body (never
// in the URL, where proxies and the history keep it); the server records
// the view before it answers.
async function reveal(a, ev, why, frame, controls, label) {
  const url = `${API}/evidence/${encodeURIComponent(a.id)}/${encodeURIComponent(ev.id)}`;
  controls.replaceChildren(h('p', { class: 'loading' }, 'Loading evidence…'));
  const fail = (msg, guidance) => {
    controls.replaceChildren(h('p', { class: 'form-error', role: 'alert' }, msg), guidance ? illegalGuidance(guidance) : null);
    announce(msg, 'error');
  };
  let res;
  try {
    res = await fetch(url, { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'image/*, application/json', 'X-CSRF-Token': session.csrf_token },
      body: JSON.stringify({ reason: why }) });
  } catch {
    fail('The collector could not be reached. Check the connection and try again.', '');
    return;
  }
  if (res.status === 401) { signedOut('Your session has ended. Please sign in again.'); return; }
  if (!res.ok) {
    // A refused view is not a view: nothing is shown, the reason is said.
    const body = await res.json().catch(() => ({}));
    let msg = body.error || 'The evidence could not be shown.';
    if (res.status === 403 && !body.error) msg = 'Viewing this evidence is not available for your role.';
    fail(msg, body.guidance || '');
    return;
  }
  const src = URL.createObjectURL(await res.blob());
  const img = h('img', { alt: `${label} from ${a.device?.hostname || a.device_id || 'the device'} at the time of the alert` });
  img.addEventListener('load', () => {
    frame.replaceChildren(img);
    const hide = h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false' }, 'Blur again');
    hide.addEventListener('click', () => {
      const blurred = img.classList.toggle('blurred');
      hide.textContent = blurred ? 'Unblur' : 'Blur again';
      hide.setAttribute('aria-pressed', String(blurred));
    });
    controls.replaceChildren(hide, h('span', { class: 'hint' }, 'Your view has been recorded in the access log.'));
    announce('Evidence revealed. Your view has been recorded in the access log.', 'ok');
  }, { once: true });
  img.addEventListener('error', () => {
    URL.revokeObjectURL(src);
    fail('The evidence could not be shown.', '');
  }, { once: true });
  img.src = src;
}

function drawTriage(el, a, refresh) {
  const r = a.review || {};
  const me = session.username;
  // What the server lets this viewer do now (triage.Allowed): nothing is
  // offered that it would refuse.
  const may = new Set(Array.isArray(r.actions) ? r.actions : []);
  const steps = a.status === 'false_positive' ? ['new', 'false_positive'] : ['new', 'in_review', 'concluded'];
  const cur = steps.indexOf(a.status);
  const stepList = h('ol', { class: 'steps', 'aria-label': 'Review progress' },
    steps.map((s, i) => h('li', { class: i < cur ? 'done' : '', 'aria-current': i === cur ? 'step' : null },
      STATUSES[s], i < cur ? h('span', { class: 'visually-hidden' }, ' (done)') : null)));

  const reviewer = (n, name, at) => h('div', { class: 'reviewer', id: `reviewer-${n}` },
    h('h4', {}, `${n === 1 ? 'First' : 'Second'} reviewing person`),
    name ? [h('p', {}, name), h('p', { class: 'hint' }, 'Signed ', when(at))] : h('p', { class: 'muted' }, 'Not signed yet'));

  const parts = [h('h2', { id: 'triage-h' }, 'Review form'), stepList];

  if (r.reason) parts.push(h('h3', {}, 'Reason for investigation'), h('p', { id: 'review-reason' }, r.reason));

  const act = async (body, btn, ok) => {
    if (btn) btn.disabled = true;
    try {
      const returned = await api('POST', `/alerts/${encodeURIComponent(a.id)}/actions`, body);
      await refresh(ok, returned);
      const h2 = $('#triage-h');
      if (h2) { h2.setAttribute('tabindex', '-1'); h2.focus({ preventScroll: true }); }
    } catch (e) {
      if (e.status === 401) return;
      const msg = e.status === 409 ? `Not possible now: ${e.message}` : e.status === 403 ? 'Not available for your role.' : e.message;
      announce(msg, 'error');
      if (btn) btn.disabled = false;
    }
  };

  if (a.status === 'new' && may.has('start_review')) {
    const reason = h('textarea', { name: 'reason', required: true, rows: '3' });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit' }, 'Start review');
    const form = h('form', { id: 'start-review', novalidate: true },
      field('Reason for investigation', reason, 'Why this alert needs review (seed 002 Appendix 5).'),
      err, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!reason.value.trim()) {
        err.textContent = 'Give the reason for investigation.';
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
        return;
      }
      act({ action: 'start_review', reason: reason.value.trim() }, btn, 'Review started.');
    });
    parts.push(form);
  }

  if (a.status !== 'new' && a.status !== 'false_positive') {
    parts.push(h('h3', {}, 'Reviewers'),
      h('div', { class: 'reviewers' }, reviewer(1, r.first_reviewer_name || r.first_reviewer, r.first_signed_at),
        reviewer(2, r.second_reviewer_name || r.second_reviewer, r.second_signed_at)));
  }

  if (a.status === 'in_review') {
    const signedByMe = (r.first_reviewer && r.first_reviewer === me) || (r.second_reviewer && r.second_reviewer === me);
    const eligible = Array.isArray(r.second_reviewers) ? r.second_reviewers : [];
    if (!r.second_reviewer && r.second_requested) {
      parts.push(h('p', { id: 'second-requested' }, r.second_requested === me
        ? 'The first reviewer has asked you to sign as second reviewer.'
        : `The first reviewer has asked ${r.second_requested_name || r.second_requested} to sign as second reviewer.`));
    }
    // Who may sign second (seed 002 §5.3, docs/console.md): the first
    // reviewer names one of them; those the alert is routed to may sign
    // without being named.
    if (!r.second_reviewer && r.first_reviewer && eligible.length) {
      parts.push(h('h3', {}, 'Who may sign as second reviewer'),
        h('ul', { id: 'second-reviewers' }, eligible.map((p) => h('li', {}, p.display_name || p.username, h('span', { class: 'muted' }, ` (${p.position})`)))));
    }
    if (may.has('request_second_reviewer') && eligible.length) {
      const pick = select('second-reviewer', [['', 'Choose the second reviewer'], ...eligible.map((p) => [p.username, `${p.display_name || p.username} (${p.position})`])], r.second_requested || '');
      const err = h('p', { class: 'form-error', role: 'alert' });
      const btn = h('button', { type: 'submit', class: 'secondary' }, 'Ask to sign');
      const form = h('form', { id: 'request-second', novalidate: true },
        field('Second reviewer', pick, 'They are shown this alert and can sign the form; nobody else outside its route is.'), err, h('div', { class: 'actions' }, btn));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        if (!pick.value) { err.textContent = 'Choose the second reviewer.'; pick.focus(); return; }
        const name = pick.options[pick.selectedIndex].textContent;
        act({ action: 'request_second_reviewer', reviewer: pick.value }, btn, `Asked ${name} to sign as second reviewer.`);
      });
      parts.push(form);
    }
    if (!r.second_reviewer && (may.has('sign') || signedByMe)) {
      const which = r.first_reviewer ? 'second' : 'first';
      const btn = h('button', { type: 'button', id: 'sign' }, `Sign as ${which} reviewer`);
      if (signedByMe) {
        btn.disabled = true;
        parts.push(h('div', { class: 'actions' }, btn),
          h('p', { class: 'hint' }, 'You have signed as the first reviewer. The second reviewer must be a different person.'));
      } else {
        btn.addEventListener('click', () => act({ action: 'sign' }, btn, `Signed as ${which} reviewer.`));
        parts.push(h('div', { class: 'actions' }, btn),
          h('p', { class: 'hint' }, `Signing records your name (${session.display_name || me}) and the time on the review form.`));
      }
    }

    const both = !!(r.first_reviewer && r.second_reviewer);
    const concl = select('conclusion', [['', 'Choose a conclusion'], ...CONCLUSIONS], '');
    concl.required = true;
    const other = h('input', { type: 'text', name: 'other' });
    const otherField = field('Other: describe the conclusion', other);
    otherField.hidden = true;
    concl.addEventListener('change', () => { otherField.hidden = concl.value !== 'other'; });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit', disabled: !both }, 'Conclude');
    const form = h('form', { id: 'conclude', novalidate: true },
      field('Conclusion', concl, both ? null : 'Available once two different people have signed.'),
      otherField, err, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!concl.value) { err.textContent = 'Choose a conclusion.'; concl.focus(); return; }
      if (concl.value === 'other' && !other.value.trim()) { err.textContent = 'Describe the other conclusion.'; other.focus(); return; }
      const body = { action: 'conclude', conclusion: concl.value };
      if (concl.value === 'other') body.other = other.value.trim();
      act(body, btn, `Concluded: ${CONCLUSION_LABEL[concl.value]}.`);
    });
    parts.push(form);
  }

  if (a.status === 'false_positive') {
    const fp = r.false_positive || {};
    const excl = fp.exclusion_status === 'approved' ? 'The exclusion it proposed is approved and applies until its expiry (see Exclusions).'
      : fp.exclusion_id ? 'The exclusion it proposed awaits a DSL\'s approval on the Exclusions page.' : '';
    parts.push(h('h3', {}, 'Marked false positive'),
      h('p', { id: 'false-positive-record' }, fp.reason || '—'),
      h('p', { class: 'hint' }, `By ${fp.by_name || fp.by || 'unknown'}, `, when(fp.at), '. The review has ended; notes can still be added.'),
      excl ? h('p', { class: 'hint', id: 'false-positive-exclusion' }, excl) : null);
  }

  if (a.status === 'concluded') {
    const c = r.conclusion;
    parts.push(h('h3', {}, 'Conclusion'),
      h('p', { id: 'conclusion' }, CONCLUSION_LABEL[c] || titleCase(c) || '—', r.conclusion_other ? `: ${r.conclusion_other}` : ''),
      h('div', { class: 'actions' },
        h('a', { class: 'button', id: 'export-pdf', href: `${API}/alerts/${encodeURIComponent(a.id)}/form.pdf`, download: `review-${a.id}.pdf` },
          'Export PDF')));
  }

  // Notes: append-only.
  const notes = Array.isArray(r.notes) ? r.notes : [];
  parts.push(h('h3', {}, 'Notes'),
    notes.length ? h('ul', { class: 'notes' }, notes.map((n) => h('li', {}, h('span', { class: 'when' }, when(n.time), ` · ${n.by}`), n.text)))
      : h('p', { class: 'muted' }, 'No notes yet.'));
  if (may.has('note')) {
    const text = h('textarea', { name: 'note', rows: '2' });
    const btn = h('button', { type: 'submit', class: 'secondary' }, 'Add note');
    const form = h('form', { id: 'add-note', novalidate: true }, field('New note', text, 'Notes are added to the record; nothing is overwritten.'), h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!text.value.trim()) { announce('Write the note first.', 'error'); text.focus(); return; }
      act({ action: 'note', text: text.value.trim() }, btn, 'Note added.');
    });
    parts.push(form);
  }

  if (may.has('false_positive')) {
    const fpBtn = h('button', { type: 'button', class: 'secondary', id: 'false-positive', 'aria-expanded': 'false' }, 'Mark false positive');
    const holder = h('div', {});
    fpBtn.addEventListener('click', () => {
      const open = fpBtn.getAttribute('aria-expanded') === 'true';
      fpBtn.setAttribute('aria-expanded', String(!open));
      if (open) { holder.replaceChildren(); return; }
      const reason = h('textarea', { name: 'fp-reason', required: true, rows: '2' });
      const err = h('p', { class: 'form-error', role: 'alert' });
      const btn = h('button', { type: 'submit', class: 'danger' }, 'Confirm false positive');
      const form = h('form', { novalidate: true },
        field('Why is this a false positive?', reason, 'This proposes an exclusion for the rule; it is applied only when the DSL approves it with a reason and an expiry.'),
        err, h('div', { class: 'actions' }, btn));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        if (!reason.value.trim()) { err.textContent = 'Give the reason.'; reason.focus(); return; }
        act({ action: 'false_positive', reason: reason.value.trim() }, btn, 'Marked as a false positive.');
      });
      holder.replaceChildren(form);
      reason.focus();
    });
    parts.push(h('h3', {}, 'False positive'), h('div', { class: 'actions' }, fpBtn), holder);
  }
  el.replaceChildren(...parts);
}

function drawHistory(el, a) {
  const hist = Array.isArray(a.history) ? a.history : [];
  el.replaceChildren(h('h2', { id: 'history-h' }, 'History'),
    h('p', { class: 'hint' }, 'Every change is appended here; nothing is overwritten.'),
    hist.length ? h('ol', { class: 'history' }, hist.map((e) => h('li', {},
      h('span', { class: 'when' }, when(e.time), e.by ? ` · ${e.by}` : ''),
      h('strong', {}, titleCase(e.action)), e.detail ? `: ${e.detail}` : '')))
      : h('p', { class: 'muted' }, 'No changes yet.'));
}

// ---------------------------------------------------------------------------
// Devices

function compliance(v) {
  if (v && typeof v === 'object') v = v.status ?? v.state ?? v.ok;
  if (v === true) return h('span', { class: 'badge pass' }, 'OK');
  if (v === false) return h('span', { class: 'badge fail' }, 'Failing');
  const s = String(v ?? '').toLowerCase();
  if (!s || s === 'unknown') return h('span', { class: 'badge unknown' }, 'Unknown');
  if (['ok', 'pass', 'compliant', 'good'].includes(s)) return h('span', { class: 'badge pass' }, 'OK');
  if (s === 'fail') return h('span', { class: 'badge fail' }, 'Failing');
  return h('span', { class: 'badge fail' }, titleCase(s));
}

// Coverage: the collector's judgement of a device's absence (clean stop,
// uninstall, crash loop, missing session helper, silence in expected
// hours). An open alarm's e-mail links to the device; acknowledging it here
// is what stops its escalation to the headteacher.
async function coverageOf(path) {
  try {
    return await api('GET', path);
  } catch (ex) {
    return null; // no coverage judged by this collector: the page works without it
  }
}

function coverageAckButton(r) {
  if (!r || !r.alarm || !r.alarm.open || r.alarm.acked_by) return null;
  return h('button', { type: 'button', class: 'secondary', dataset: { ackCoverage: r.device_id }, onclick: async () => {
    try {
      await api('POST', `/coverage/${encodeURIComponent(r.device_id)}/ack`);
      announce(`Coverage alarm for ${r.hostname || r.device_id} acknowledged.`, 'ok', true);
      route();
    } catch (ex) {
      announce(ex.message, 'error');
    }
  } }, 'Acknowledge', h('span', { class: 'visually-hidden' }, ` the coverage alarm for ${r.hostname || r.device_id}`));
}

function coverageText(r) {
  if (!r) return '—';
  const a = r.alarm || {};
  return [h('span', { class: r.problem ? 'badge fail' : 'badge pass' }, titleCase(String(r.state || 'unknown').replaceAll('_', ' '))),
    ' ', r.why || '',
    a.open ? h('span', { class: 'hint' }, a.acked_by ? `Alarm acknowledged by ${a.acked_by} ${ago(a.acked_at)}.` : `Alarm open since ${when(a.since)}${a.escalated ? ', escalated to the headteacher' : ''}.`) : null];
}

async function viewDevices(seq) {
  loading('devices');
  const [data, cov] = await Promise.all([api('GET', '/devices'), coverageOf('/coverage')]);
  if (!isCurrent(seq)) return;
  const alarms = (Array.isArray(cov) ? cov : []).filter((r) => r.alarm && r.alarm.open);
  const alarmPanel = alarms.length ? h('section', { class: 'panel', id: 'coverage-alarms', 'aria-labelledby': 'coverage-h' },
    h('h2', { id: 'coverage-h' }, `Coverage alarms (${alarms.length})`),
    h('ul', {}, alarms.map((r) => h('li', { dataset: { device: r.device_id } },
      h('a', { href: `#/devices/${encodeURIComponent(r.device_id)}` }, h('strong', {}, r.hostname || r.device_id)), ': ',
      coverageText(r), ' ', coverageAckButton(r))))) : null;
  const devices = Array.isArray(data) ? data : data.devices || [];
  devices.sort((a, b) => Number(!!b.silent) - Number(!!a.silent) || String(a.hostname || a.device_id).localeCompare(String(b.hostname || b.device_id)));
  const silent = devices.filter((d) => d.silent).length;
  const cols = ['Device', 'Group', 'Connection', 'Last seen', 'Agent', 'Rules', 'Antivirus', 'Bluetooth', 'Executables'];
  const table = devices.length ? h('table', { class: 'responsive devices' },
    h('caption', { class: 'visually-hidden' }, 'Devices, silent ones first'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, devices.map((d) => {
      const c = d.compliance || {};
      return h('tr', { class: d.silent ? 'silent' : '', dataset: { device: d.device_id } },
        h('td', { 'data-label': 'Device' }, h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}` }, h('strong', {}, d.hostname || 'Unknown host')),
          h('span', { class: 'hint mono' }, d.device_id), d.os ? h('span', { class: 'hint' }, d.os) : null),
        h('td', { 'data-label': 'Group' }, d.group || '—'),
        h('td', { 'data-label': 'Connection' }, d.revoked ? h('span', { class: 'badge offline' }, 'Revoked') : d.silent ? h('span', { class: 'badge silent' }, 'Silent')
          : d.connected ? h('span', { class: 'badge connected' }, 'Connected') : h('span', { class: 'badge offline' }, 'Offline')),
        h('td', { 'data-label': 'Last seen' }, when(d.last_seen), h('span', { class: 'hint' }, ago(d.last_seen))),
        h('td', { 'data-label': 'Agent' }, d.agent_version || '—'),
        h('td', { 'data-label': 'Rules' }, d.rules_hash ? h('span', { class: 'mono', title: d.rules_hash }, shortId(d.rules_hash)) : '—'),
        h('td', { 'data-label': 'Antivirus' }, compliance(c.antivirus)),
        h('td', { 'data-label': 'Bluetooth' }, compliance(c.bluetooth)),
        h('td', { 'data-label': 'Executables' }, compliance(c.executables)));
    }))) : h('p', { class: 'panel' }, 'No devices are enrolled yet.');
  page('Devices',
    h('p', { id: 'devices-summary' }, `${devices.length} device${devices.length === 1 ? '' : 's'}; `,
      silent ? h('strong', {}, `${silent} silent (no contact within the expected interval): check these first.`) : 'none silent.'),
    alarmPanel, table);
}

// One device: its record and timeline (the newest findings the server lets
// this role see; a technician gets no screen findings).
async function viewDevice(id, seq) {
  loading('the device');
  const [d, cov] = await Promise.all([api('GET', `/devices/${encodeURIComponent(id)}`), coverageOf(`/coverage/${encodeURIComponent(id)}`)]);
  if (!isCurrent(seq)) return;
  const c = d.compliance || {};
  const connection = d.revoked ? h('span', { class: 'badge offline' }, 'Revoked') : d.silent ? h('span', { class: 'badge silent' }, 'Silent')
    : d.connected ? h('span', { class: 'badge connected' }, 'Connected') : h('span', { class: 'badge offline' }, 'Offline');
  const rows = [
    ['Device ID', h('span', { class: 'mono' }, d.device_id)],
    ['Group', d.group || '—'],
    ['System', [d.os, d.arch].filter(Boolean).join(' / ') || '—'],
    ['Connection', connection],
    ['Coverage', h('span', { id: 'device-coverage' }, coverageText(cov), ' ', coverageAckButton(cov))],
    ['Last seen', [when(d.last_seen), h('span', { class: 'hint' }, ago(d.last_seen))]],
    ['Agent', d.agent_version || '—'],
    ['Rules', d.rules_hash ? h('span', { class: 'mono' }, d.rules_hash) : '—'],
    ['Antivirus', compliance(c.antivirus)],
    ['Bluetooth', compliance(c.bluetooth)],
    ['Executables', compliance(c.executables)],
  ];
  const timeline = d.timeline || [];
  const cols = ['Time', 'Check', 'Rule', 'Status', 'Severity', 'Message'];
  const table = timeline.length ? h('table', { class: 'responsive timeline' },
    h('caption', { class: 'visually-hidden' }, 'Findings, newest first'),
    h('thead', {}, h('tr', {}, cols.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, timeline.map((f) => h('tr', {},
      h('td', { 'data-label': 'Time' }, when(f.time)),
      h('td', { 'data-label': 'Check' }, f.check || '—'),
      h('td', { 'data-label': 'Rule' }, h('span', { class: 'mono' }, f.rule_id || '—')),
      h('td', { 'data-label': 'Status' }, f.status ? titleCase(f.status) : '—'),
      h('td', { 'data-label': 'Severity' }, sevBadge(f.severity)),
      h('td', { 'data-label': 'Message' }, f.message || '—',
        f.alert_id ? [' ', h('a', { href: `#/alerts/${encodeURIComponent(f.alert_id)}` }, 'Open alert')] : null))))) : h('p', { class: 'panel' }, 'No findings from this device yet.');
  page(d.hostname || 'Device',
    h('p', {}, h('a', { href: '#/devices' }, '← Back to the devices')),
    h('section', { class: 'panel', 'aria-labelledby': 'device-h' },
      h('h2', { id: 'device-h' }, 'Device'),
      h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    h('section', { 'aria-labelledby': 'timeline-h' },
      h('h2', { id: 'timeline-h' }, 'Timeline'),
      h('p', { class: 'hint' }, `The newest ${timeline.length} finding${timeline.length === 1 ? '' : 's'} you may see, newest first.`),
      table));
}

// ---------------------------------------------------------------------------
// Audits (headteacher and technician; only the headteacher signs off)

function auditScope(s) {
  if (!s) return '—';
  if (s.kind === 'all') return 'The whole fleet';
  return `${titleCase(s.kind)} ${s.value}`;
}

function progressText(p) {
  if (!p.queued) {
    return `${p.answered}/${p.total} answered` + (p.no_answer ? `, ${p.no_answer} without an answer (${p.not_reached} not reached)` : '');
  }
  return `${p.answered}/${p.total} answered, ${p.offline} offline: queued` +
    (p.queued > p.offline ? `, ${p.queued - p.offline} being asked` : '') +
    (p.no_answer ? `, ${p.no_answer} without an answer (${p.not_reached} not reached)` : '');
}

function progressBar(p) {
  const pct = p.total ? Math.round(((p.answered + p.no_answer) / p.total) * 100) : 0;
  return h('progress', { max: '100', value: String(pct), 'aria-label': 'Audit progress' }, `${pct}%`);
}

async function viewAudits(seq) {
  loading('audits');
  const [list, devs] = await Promise.all([api('GET', '/audits'), api('GET', '/devices')]);
  if (!isCurrent(seq)) return;
  const audits = Array.isArray(list) ? list : [];
  const devices = (Array.isArray(devs) ? devs : devs.devices || []).filter((d) => !d.revoked);
  const groups = [...new Set(devices.map((d) => d.group).filter(Boolean))].sort();

  const kind = select('scope', [['group', 'A group'], ['device', 'One device'], ['all', 'The whole fleet']], 'group');
  const group = select('group', groups.map((g) => [g, g]), groups[0] || '');
  const device = select('device', devices.map((d) => [d.device_id, `${d.hostname || 'Unknown host'} (${d.group || 'no group'})`]), devices[0]?.device_id || '');
  const groupField = field('Group', group);
  const deviceField = field('Device', device);
  const sync = () => { groupField.hidden = kind.value !== 'group'; deviceField.hidden = kind.value !== 'device'; };
  kind.addEventListener('change', sync);
  sync();
  const reason = h('textarea', { name: 'reason', rows: '2', required: true, maxlength: '2000' });
  const err = h('p', { class: 'form-error', role: 'alert' });
  const btn = h('button', { type: 'submit' }, 'Request audit');
  const form = h('form', { novalidate: true, id: 'audit-request' },
    field('Audit', kind), groupField, deviceField,
    field('Reason', reason, 'Recorded in the audit and the access log (for example: termly ICT audit, seed 000 §5.2).'),
    err, h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (!reason.value.trim()) {
      err.textContent = 'Give a reason for the audit.';
      return;
    }
    const body = { reason: reason.value.trim() };
    if (kind.value === 'all') body.all = true;
    else if (kind.value === 'group') body.group = group.value;
    else body.device = device.value;
    btn.disabled = true;
    try {
      const hd = await api('POST', '/audits', body);
      announce(`Audit ${hd.id} requested.`, 'ok', true);
      location.hash = `#/audits/${encodeURIComponent(hd.id)}`;
    } catch (ex) {
      err.textContent = ex.message;
      btn.disabled = false;
    }
  });

  const cols = ['Requested', 'Scope', 'Requested by', 'Reason', 'Devices'];
  const table = audits.length ? h('table', { class: 'responsive audits' },
    h('caption', { class: 'visually-hidden' }, 'Audits, newest first'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, audits.map((a) => h('tr', { dataset: { audit: a.id } },
      h('td', { 'data-label': 'Requested' }, h('a', { href: `#/audits/${encodeURIComponent(a.id)}` }, when(a.requested_at))),
      h('td', { 'data-label': 'Scope' }, auditScope(a.scope)),
      h('td', { 'data-label': 'Requested by' }, a.requested_by),
      h('td', { 'data-label': 'Reason' }, a.reason),
      h('td', { 'data-label': 'Devices' }, String(a.devices)))))) : h('p', { class: 'panel' }, 'No audits yet.');
  page('Audits',
    h('section', { class: 'panel', 'aria-labelledby': 'ar-h' }, h('h2', { id: 'ar-h' }, 'Request an audit'),
      h('p', { class: 'hint' }, 'Connected devices answer at once; offline devices are asked when they reconnect, until the audit expires (then "not reached").'),
      form),
    h('section', { 'aria-labelledby': 'al-h' }, h('h2', { id: 'al-h' }, 'Audits'), table));
}

function inventoryDetails(inv) {
  const hw = inv.hardware || {};
  const os = inv.os || {};
  const ag = inv.agent || {};
  const gib = (b) => `${(Number(b || 0) / 2 ** 30).toFixed(1)} GiB`;
  const admins = (inv.accounts || []).filter((a) => a.administrator).map((a) => a.name);
  const rows = [
    ['Hardware', [hw.manufacturer, hw.model].filter(Boolean).join(' ') || '—', hw.serial ? ` · serial ${hw.serial}` : ''],
    ['CPU and memory', `${hw.cpu_model || '—'} (${hw.cpu_cores || 0} cores), ${gib(hw.memory_bytes)}`],
    ['Disks', (hw.disks || []).map((d) => `${d.mountpoint} ${gib(d.free_bytes)} free of ${gib(d.total_bytes)}`).join('; ') || '—'],
    ['Network', (hw.interfaces || []).map((i) => `${i.name} ${i.mac || ''} ${(i.addresses || []).join(', ')}`.trim()).join('; ') || '—'],
    ['OS', [os.name, os.version, os.build && `build ${os.build}`, os.kernel && `kernel ${os.kernel}`, os.arch].filter(Boolean).join(' ') || '—'],
    ['Last boot', os.last_boot ? when(os.last_boot) : '—'],
    ['Accounts', `${(inv.accounts || []).length} local; administrators: ${admins.join(', ') || 'none'}`],
    ['Agent health', `version ${ag.version || '—'}, rules ${shortId(ag.rules_hash) || '—'}, spool ${ag.spool_depth || 0}, last selftest `,
      ag.last_selftest ? when(ag.last_selftest) : 'never'],
  ];
  for (const e of inv.errors || []) rows.push(['Not collected', `${e.part}: ${e.error}`]);
  const comp = inv.compliance || [];
  const sw = inv.software || [];
  return [
    h('dl', { class: 'details' }, rows.map(([k, ...v]) => [h('dt', {}, k), h('dd', {}, v)])),
    comp.length ? h('table', { class: 'responsive compliance' },
      h('caption', {}, 'Compliance'),
      h('thead', {}, h('tr', {}, ['Check', 'Rule', 'Subject', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, comp.map((c) => h('tr', {},
        h('td', { 'data-label': 'Check' }, c.check || '—'), h('td', { 'data-label': 'Rule' }, h('span', { class: 'mono' }, c.rule_id)),
        h('td', { 'data-label': 'Subject' }, c.key || '—'), h('td', { 'data-label': 'Status' }, compliance(c.status)))))) : null,
    h('details', { class: 'software' }, h('summary', {}, `Software (${sw.length}${inv.software_omitted ? ` + ${inv.software_omitted} beyond the cap` : ''})`),
      h('table', { class: 'responsive software' },
        h('thead', {}, h('tr', {}, ['Name', 'Version', 'Publisher', 'Installed'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, sw.map((s) => h('tr', {},
          h('td', { 'data-label': 'Name' }, s.name), h('td', { 'data-label': 'Version' }, s.version || '—'),
          h('td', { 'data-label': 'Publisher' }, s.publisher || '—'), h('td', { 'data-label': 'Installed' }, s.install_date || '—')))))),
  ];
}

// One audit: progress while it runs (polled), then the record. Progress is
// counts only; the record itself is read (and logged) once, and again when
// the progress changes.
async function viewAudit(id, seq) {
  loading('the audit');
  const rec = await api('GET', `/audits/${encodeURIComponent(id)}`);
  if (!isCurrent(seq)) return;
  const p = rec.progress;
  const signed = rec.signoffs || [];
  const progress = h('section', { class: 'panel', id: 'audit-progress', 'aria-labelledby': 'ap-h' },
    h('h2', { id: 'ap-h' }, 'Progress'),
    h('p', { id: 'audit-progress-text', role: 'status' }, progressText(p), p.done ? ' · complete' : ''),
    progressBar(p),
    h('p', { class: 'hint' }, 'Offline devices are asked when they reconnect until ', when(rec.expires_at), '.'));
  const summary = [
    ['Scope', auditScope(rec.scope)],
    ['Requested by', rec.requested_by],
    ['Reason', rec.reason],
    ['Requested', when(rec.requested_at)],
    ['Record hash', h('span', { class: 'mono', id: 'audit-hash' }, rec.hash)],
    ['Verification', rec.verified ? h('span', { class: 'badge pass', id: 'audit-verified' }, 'Verified')
      : h('span', { class: 'badge fail', id: 'audit-verified' }, `Does not verify: ${rec.verify_error}`)],
  ];
  const exports = h('div', { class: 'actions' },
    h('a', { class: 'button', id: 'audit-pdf', href: `${API}/audits/${encodeURIComponent(id)}/report.pdf`, download: `audit-${id}.pdf` }, 'Download PDF'),
    h('a', { class: 'button secondary', id: 'audit-csv', href: `${API}/audits/${encodeURIComponent(id)}/report.csv`, download: `audit-${id}.csv` }, 'Download CSV'));

  let signSection = h('section', { class: 'panel', id: 'audit-signoff', 'aria-labelledby': 'as-h' },
    h('h2', { id: 'as-h' }, 'Sign-off'),
    signed.length ? h('ul', {}, signed.map((s) => h('li', {}, `Signed off by ${s.by} on `, when(s.at), s.note ? `: ${s.note}` : '')))
      : h('p', { class: 'muted' }, 'Not signed off yet.'));
  if (session.role === 'headteacher') {
    const note = h('textarea', { name: 'note', rows: '2', maxlength: '2000' });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit' }, 'Sign off audit');
    const form = h('form', { novalidate: true }, field('Note', note, 'Optional. The sign-off is added to the hashed record under your name.'), err, h('div', { class: 'actions' }, btn));
    if (!rec.verified) btn.disabled = true;
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      btn.disabled = true;
      try {
        await api('POST', `/audits/${encodeURIComponent(id)}/sign`, { note: note.value.trim() });
        announce('Audit signed off.', 'ok', true);
        route();
      } catch (ex) {
        err.textContent = ex.message;
        btn.disabled = false;
      }
    });
    signSection.append(form);
  }

  const results = rec.results || [];
  const devices = h('section', { 'aria-labelledby': 'ad-h' }, h('h2', { id: 'ad-h' }, 'Devices'),
    results.map((r) => h('section', { class: 'panel audit-device', dataset: { device: r.device_id, status: r.status } },
      h('h3', {}, r.hostname || r.device_id, ' ', h('span', { class: 'hint mono' }, r.device_id), ' ',
        r.status === 'answered' ? h('span', { class: 'badge pass' }, 'Answered')
          : r.status === 'queued' ? h('span', { class: 'badge offline' }, 'Queued') : h('span', { class: 'badge fail' }, 'No answer')),
      r.inventory ? inventoryDetails(r.inventory)
        : r.no_answer ? h('p', {}, `${titleCase(r.no_answer.reason)}${r.no_answer.detail ? `: ${r.no_answer.detail}` : ''}`)
          : h('p', { class: 'muted' }, 'Not answered yet: offline devices are asked when they reconnect.'))));

  const d = rec.diff;
  const changes = h('section', { class: 'panel', 'aria-labelledby': 'ac-h' }, h('h2', { id: 'ac-h' }, 'Changes since the previous audit'),
    !d ? h('p', { class: 'muted' }, 'No earlier audit of this scope.') : [
      h('p', {}, 'Compared with the audit of ', when(d.previous_at), '.'),
      h('ul', {},
        (d.devices_new || []).map((x) => h('li', {}, `New device: ${x}`)),
        (d.devices_missing || []).map((x) => h('li', {}, `Missing device: ${x}`)),
        (d.devices || []).map((c) => [
          (c.software_added || []).map((s) => h('li', {}, `${c.device_id}: software added ${s}`)),
          (c.software_removed || []).map((s) => h('li', {}, `${c.device_id}: software removed ${s}`)),
          (c.compliance_changes || []).map((x) => h('li', {}, `${c.device_id}: ${x.rule_id} ${x.key || ''} ${x.was || 'not reported'} → ${x.now || 'not reported'}`)),
        ])),
    ]);

  page(`Audit of ${auditScope(rec.scope).toLowerCase()}`,
    h('p', {}, h('a', { href: '#/audits' }, '← Back to the audits')),
    progress,
    h('section', { class: 'panel', 'aria-labelledby': 'ah-h' }, h('h2', { id: 'ah-h' }, 'Record'),
      h('dl', { class: 'details' }, summary.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])), exports),
    signSection, devices, changes);

  // Watch progress while devices are still queued; re-read the record
  // when it moves, so answers appear without a reload.
  if (!p.done) {
    const last = `${p.answered}/${p.no_answer}`;
    const poll = async () => {
      if (!isCurrent(seq)) return;
      try {
        const np = await api('GET', `/audits/${encodeURIComponent(id)}/progress`);
        if (!isCurrent(seq)) return;
        if (`${np.answered}/${np.no_answer}` !== last) {
          keepStatus = true;
          route();
          return;
        }
        $('#audit-progress-text').textContent = progressText(np);
      } catch { /* shown on the next poll */ }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 2000);
  }
}

// ---------------------------------------------------------------------------
// Access log

async function viewAccessLog(seq) {
  loading('the access log');
  const data = await api('GET', '/access-log');
  if (!isCurrent(seq)) return;
  const entries = (Array.isArray(data) ? data : data.entries || []).slice()
    .sort((a, b) => String(b.time).localeCompare(String(a.time)));
  const cols = ['Time', 'Who', 'Action', 'Alert', 'Evidence', 'Reason'];
  page('Access log',
    h('p', {}, 'Every view of evidence or personal data, newest first. The log is append-only.'),
    entries.length ? h('table', { class: 'responsive access-log' },
      h('caption', { class: 'visually-hidden' }, 'Access log, newest first'),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) => h('tr', {},
        h('td', { 'data-label': 'Time' }, when(e.time)),
        h('td', { 'data-label': 'Who' }, e.who || '—'),
        h('td', { 'data-label': 'Action' }, titleCase(e.action)),
        h('td', { 'data-label': 'Alert' }, e.alert_id || e.device_id ? h('span', { class: 'mono' }, e.alert_id || e.device_id) : '—'),
        h('td', { 'data-label': 'Evidence' }, e.evidence_id ? h('span', { class: 'mono', title: e.evidence_id }, shortId(e.evidence_id)) : '—'),
        h('td', { 'data-label': 'Reason' }, [e.reason, e.detail].filter(Boolean).join(' — ') || '—'))))) : h('p', { class: 'panel' }, 'Nothing has been viewed yet.'));
}

// ---------------------------------------------------------------------------
// Trends (aggregates only: counts, no names, no devices)

function countTable(caption, rows, labelHead) {
  const max = Math.max(1, ...rows.map((r) => Number(r[1]) || 0));
  return h('table', { class: 'responsive trends compact' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, labelHead), h('th', { scope: 'col' }, 'Count'))),
    h('tbody', {}, rows.map(([label, n]) => {
      const bar = n > 0 ? h('span', { class: 'bar', 'aria-hidden': 'true' }) : null;
      if (bar) bar.style.width = `${Math.max(0.25, (n / max) * 12).toFixed(2)}rem`;
      return h('tr', {}, h('th', { scope: 'row', 'data-label': labelHead }, label),
        h('td', { 'data-label': 'Count' }, h('span', { class: 'bar-cell' }, bar, String(n))));
    })));
}

async function viewTrends(seq) {
  loading('trends');
  const data = await api('GET', '/trends');
  if (!isCurrent(seq)) return;
  // {weeks: [{week, start, counts: {category: n}, total}], categories: {…},
  //  status: {…}, outcomes: {…}, from}; by_category_week/by_outcome accepted too.
  let weeks = Array.isArray(data.weeks) ? data.weeks : [];
  if (!weeks.length && Array.isArray(data.by_category_week)) {
    const m = new Map();
    for (const r of data.by_category_week) {
      const w = m.get(r.week) || { week: r.week, counts: {}, total: 0 };
      w.counts[r.category] = (w.counts[r.category] || 0) + (r.count || 0);
      w.total += r.count || 0;
      m.set(r.week, w);
    }
    weeks = [...m.values()].sort((a, b) => String(a.week).localeCompare(String(b.week)));
  }
  const outcome = data.outcomes || data.by_outcome || {};
  const cats = [...new Set(weeks.flatMap((w) => Object.keys(w.counts || {})))].sort();
  const content = [h('p', {}, 'Counts only: alerts by category and week, and concluded reviews by outcome. No names, devices or content are shown here.',
    data.from ? ` Since ${data.from}.` : '',
    data.threshold ? ` So that no child can be identified, counts from 1 to ${data.threshold - 1} are shown as "fewer than ${data.threshold}", and counts that would let them be worked out as "withheld".` : '')];

  // Governors get small counts as words ("fewer than 5", "withheld"), as
  // in their termly report: shown as given, never as 0, never drawn.
  const count = (v) => (typeof v === 'string' ? v : Number(v) || 0);
  const any = weeks.some((w) => typeof w.total === 'string' || Number(w.total) > 0);
  if (any) {
    content.push(h('section', { class: 'panel', 'aria-labelledby': 'tw-h' }, h('h2', { id: 'tw-h' }, 'Alerts per week'),
      countTable('Alerts per week (all categories)', weeks.map((w) => [`${w.week}${w.start ? ` (from ${w.start})` : ''}`, count(w.total)]), 'Week')));
    const byCat = data.categories && typeof data.categories === 'object'
      ? Object.entries(data.categories)
      : cats.map((c) => [c, weeks.reduce((n, w) => n + (Number((w.counts || {})[c]) || 0), 0)]);
    content.push(h('section', { class: 'panel', 'aria-labelledby': 'tc-h' }, h('h2', { id: 'tc-h' }, 'Alerts by category'),
      countTable('Alerts by category', byCat.sort((a, b) => (Number(b[1]) || 0) - (Number(a[1]) || 0)).map(([c, n]) => [titleCase(c), count(n)]), 'Category')));
  } else {
    content.push(h('p', { class: 'panel' }, 'No alerts in the reporting period.'));
  }
  if (data.status && typeof data.status === 'object') {
    content.push(h('section', { class: 'panel', 'aria-labelledby': 'ts-h' }, h('h2', { id: 'ts-h' }, 'Review status'),
      countTable('Alerts by review status', Object.entries(data.status).map(([k, v]) => [STATUSES[k] || titleCase(k), count(v)]), 'Status')));
  }
  const outRows = Object.entries(outcome).map(([k, v]) => [CONCLUSION_LABEL[k] || titleCase(k), count(v)]);
  content.push(h('section', { class: 'panel', 'aria-labelledby': 'to-h' }, h('h2', { id: 'to-h' }, 'Outcomes'),
    outRows.length ? countTable('Concluded reviews by outcome', outRows, 'Outcome') : h('p', {}, 'No concluded reviews in the reporting period.')));
  page('Trends', content[0], h('div', { class: 'trend-grid' }, content.slice(1)));
}

// ---------------------------------------------------------------------------
// Exclusions (false positives proposed from alerts; the DSL approves each
// with a reason and an expiry, seed 002 §12.2)

async function viewExclusions(seq) {
  loading('exclusions');
  const data = await api('GET', '/exclusions');
  if (!isCurrent(seq)) return;
  const list = (Array.isArray(data) ? data : data.exclusions || []).slice()
    .sort((a, b) => Number(a.status !== 'pending') - Number(b.status !== 'pending') || String(b.proposed_at).localeCompare(String(a.proposed_at)));
  const items = list.map((x) => {
    const sec = h('section', { class: 'panel exclusion', 'aria-labelledby': `x-${x.id}` },
      h('h2', { id: `x-${x.id}` }, `“${x.term || x.rule_id}” `, h('span', { class: `badge ${x.status === 'approved' ? 'pass' : 'unknown'}` }, titleCase(x.status))),
      h('dl', { class: 'details' },
        h('dt', {}, 'Rule'), h('dd', {}, x.rule_id || '—', x.library ? ` (${x.library})` : ''),
        h('dt', {}, 'Category'), h('dd', {}, titleCase(x.category) || '—'),
        h('dt', {}, 'From alert'), h('dd', {}, x.alert_id ? h('a', { href: `#/alerts/${encodeURIComponent(x.alert_id)}` }, x.alert_id) : '—'),
        h('dt', {}, 'Proposed'), h('dd', {}, when(x.proposed_at), ` by ${x.proposed_by}: ${x.proposal_reason || ''}`),
        x.status === 'approved' ? [
          h('dt', {}, 'Approved'), h('dd', {}, when(x.approved_at), ` by ${x.approved_by}: ${x.approval_reason || ''}`),
          h('dt', {}, 'Expires'), h('dd', {}, when(x.expires_at))] : null));
    if (x.status === 'pending') {
      const reason = h('textarea', { name: 'reason', rows: '2', required: true });
      const expiry = h('input', { type: 'date', name: 'expires', required: true });
      const d = new Date(); d.setDate(d.getDate() + 30);
      expiry.value = d.toISOString().slice(0, 10);
      const err = h('p', { class: 'form-error', role: 'alert' });
      const btn = h('button', { type: 'submit' }, 'Approve exclusion');
      const form = h('form', { novalidate: true },
        field('Reason for approving', reason, 'Recorded with your name (seed 002 §12.2).'),
        field('Expires on', expiry, 'The exclusion stops applying after this date.'),
        err, h('div', { class: 'actions' }, btn));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        err.textContent = '';
        if (!reason.value.trim() || !expiry.value) { err.textContent = 'Give a reason and an expiry date.'; return; }
        btn.disabled = true;
        try {
          await api('POST', `/exclusions/${encodeURIComponent(x.id)}/approve`, { reason: reason.value.trim(), expires_at: dayToRFC3339(expiry.value, true) });
          announce('Exclusion approved.', 'ok', true);
          route();
        } catch (ex) {
          err.textContent = ex.message;
          btn.disabled = false;
        }
      });
      sec.append(form);
    }
    return sec;
  });
  page('Exclusions',
    h('p', {}, 'A false positive marked on an alert proposes an exclusion for that term. It applies only once a DSL approves it with a reason and an expiry.'),
    items.length ? items : h('p', { class: 'panel' }, 'No exclusions have been proposed.'));
}

// ---------------------------------------------------------------------------
// Terms added by the school (the DSL's own keywords: slang heard in school,
// a local group, a nickname used to bully). Each is checked like a term of
// the published libraries, goes to every device, and adding or removing it
// is recorded with who and why.

const TERM_FIELD_LABEL = { term: 'Term', category: 'Category', severity: 'Severity', rationale: 'Why it is listed', cases: 'Test cases' };

async function viewTerms(seq) {
  loading('terms');
  const [data, log] = await Promise.all([api('GET', '/terms'), api('GET', '/terms/decisions')]);
  if (!isCurrent(seq)) return;
  const terms = data.terms || [];
  const mySchool = (session && session.school) || '';
  const items = terms.map((t) => {
    // A trust-wide term is removed by whoever sets the trust's terms; a
    // school's DSL switches it off (or back on) for their own school.
    const own = !t.trust_wide || data.trust_wide;
    const off = (t.suppressed_in || []).includes(mySchool);
    const label = own ? 'Remove term' : off ? 'Switch back on in my school' : 'Switch off in my school';
    const path = own ? 'remove' : off ? 'restore' : 'suppress';
    const reason = h('input', { type: 'text', name: 'reason', required: true });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit', class: 'secondary' }, label);
    const form = h('form', { novalidate: true, class: `term-${path}` },
      field(own ? 'Reason for removing' : 'Reason', reason, 'Recorded with your name in the decision log.'), err, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      if (!reason.value.trim()) { err.textContent = 'Give a reason.'; return; }
      btn.disabled = true;
      try {
        await api('POST', `/terms/${encodeURIComponent(t.id)}/${path}`, { reason: reason.value.trim() });
        const done = { remove: 'removed', suppress: 'switched off in your school', restore: 'switched back on in your school' }[path];
        announce(`Term “${t.term}” ${done}. Devices follow when they get the new rules.`, 'ok', true);
        route();
      } catch (ex) {
        err.textContent = ex.message;
        btn.disabled = false;
      }
    });
    const scope = t.trust_wide ? 'Every school of the trust' : (t.school || mySchool || 'This school');
    return h('section', { class: 'panel term', 'aria-labelledby': `t-${t.id}` },
      h('h2', { id: `t-${t.id}` }, `“${t.term}” `, h('span', { class: `badge sev-${t.severity}` }, titleCase(t.severity)),
        t.trust_wide ? h('span', { class: 'badge' }, 'Trust-wide') : ''),
      h('dl', { class: 'details' },
        h('dt', {}, 'In force in'), h('dd', {}, scope),
        ...((t.suppressed_in || []).length ? [h('dt', {}, 'Switched off in'), h('dd', { class: 'term-suppressed' }, t.suppressed_in.join(', '))] : []),
        h('dt', {}, 'Category'), h('dd', {}, titleCase(t.category)),
        h('dt', {}, 'Why it is listed'), h('dd', {}, t.rationale),
        h('dt', {}, 'Added'), h('dd', {}, when(t.added_at), ` by ${t.added_by}`),
        h('dt', {}, 'Test cases'), h('dd', {}, h('pre', { class: 'cases' }, t.cases))),
      form);
  });

  const term = h('input', { type: 'text', name: 'term', required: true, autocomplete: 'off' });
  const category = select('category', (data.categories || []).map((c) => [c, titleCase(c)]), 'bullying');
  const severity = select('severity', (data.severities || []).map((s) => [s, titleCase(s)]), 'high');
  const rationale = h('input', { type: 'text', name: 'rationale', required: true });
  const cases = h('textarea', { name: 'cases', rows: '5', required: true, spellcheck: 'false' });
  cases.value = '+ \n- ';
  const err = h('div', { class: 'form-error', role: 'alert', id: 'term-error' });
  const btn = h('button', { type: 'submit' }, 'Add term');
  const controls = { term, category, severity, rationale, cases };
  // Offered to an account that sees every school of a trust.
  const trustWide = h('input', { type: 'checkbox', name: 'trust_wide', id: 'term-trust-wide' });
  const trustField = data.trust_wide && mySchool
    ? h('div', { class: 'field' }, h('label', { for: 'term-trust-wide' }, trustWide, ' In force in every school of the trust (a school may switch it off for itself)'))
    : '';
  const form = h('form', { novalidate: true, id: 'term-form' },
    field('Term', term, 'A word or phrase, as a keyword library line writes it; options such as "; except=word" are allowed.'),
    field('Category', category), field('Severity', severity),
    field('Why it is listed', rationale, 'Who uses it and what it means here. Recorded with your name.'),
    field('Test cases', cases, 'One per line: "+ text" must match, "- text" must not. At least one of each.'),
    trustField, err, h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.replaceChildren();
    for (const c of Object.values(controls)) c.removeAttribute('aria-invalid');
    btn.disabled = true;
    try {
      await api('POST', '/terms', { term: term.value.trim(), category: category.value, severity: severity.value,
        rationale: rationale.value.trim(), cases: cases.value, trust_wide: trustWide.checked });
      announce(`Term “${term.value.trim()}” added. Devices match it once they get the new rules.`, 'ok', true);
      route();
    } catch (ex) {
      const problems = ex.body.problems || [];
      if (!problems.length) err.textContent = ex.message;
      else {
        err.append(h('p', {}, 'The term was not added:'), h('ul', {}, problems.map((p) =>
          h('li', { class: 'term-problem' }, `${TERM_FIELD_LABEL[p.field] || p.field}${p.line ? `, line ${p.line}` : ''}: ${p.message}`))));
        const first = controls[problems[0].field];
        for (const p of problems) if (controls[p.field]) controls[p.field].setAttribute('aria-invalid', 'true');
        if (first) first.focus();
      }
      btn.disabled = false;
    }
  });

  const decisions = (log.decisions || []).slice().reverse();
  const table = decisions.length ? h('table', { class: 'responsive term-log' },
    h('caption', {}, 'Every term added, removed, switched off or back on, newest first'),
    h('thead', {}, h('tr', {}, ['When', 'Decision', 'Term', 'By', 'Why'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, decisions.map((d) => h('tr', {},
      h('td', { 'data-label': 'When' }, when(d.at)), h('td', { 'data-label': 'Decision' }, titleCase(d.action) + (d.school ? ` (${d.school})` : '')),
      h('td', { 'data-label': 'Term' }, `${d.term.term} (${titleCase(d.term.category)})`),
      h('td', { 'data-label': 'By' }, d.by), h('td', { 'data-label': 'Why' }, d.reason))))) : h('p', {}, 'No term has been added yet.');

  page('School terms',
    h('p', {}, 'Words the published keyword libraries do not know: slang heard in the school, a local group, a nickname used to bully. Each is checked like a library term, sent to every device group of the school (or of every school, for a trust-wide term), and recorded here with who added, removed or switched it off and why.'),
    items.length ? items : h('p', { class: 'panel' }, 'The school has added no terms.'),
    h('section', { class: 'panel', 'aria-labelledby': 'ta-h' }, h('h2', { id: 'ta-h' }, 'Add a term'), form),
    h('section', { class: 'panel', 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Decision log'), table));
}

// ---------------------------------------------------------------------------
// Users (admin)

async function viewUsers(seq) {
  loading('users');
  const data = await api('GET', '/users');
  if (!isCurrent(seq)) return;
  const users = Array.isArray(data) ? data : data.users || [];
  const result = h('div', { id: 'user-result' });
  const tableHolder = h('div');
  const act = async (u, what, btn) => {
    btn.disabled = true;
    try {
      const r = await api('POST', `/users/${encodeURIComponent(u.username)}/${what}`, what === 'reset' ? {} : undefined);
      if (what === 'reset') {
        // Shown once, here only: the person types it and must change it.
        result.replaceChildren(h('section', { class: 'notice ok', id: 'reset-result', 'aria-labelledby': 'rr-h' },
          h('h2', { id: 'rr-h' }, `Temporary password for ${u.username}`),
          h('p', {}, h('code', { class: 'mono', id: 'temporary-password' }, r.temporary_password)),
          h('p', {}, 'Give it to them in person or by phone. They must choose their own at the next sign-in; their open sessions have ended. It is not shown again.')));
        announce(`Password of ${u.username} reset.`, 'ok');
        // Redraw the table only: the temporary password stays on the page.
        const fresh = await api('GET', '/users');
        if (isCurrent(seq)) tableHolder.replaceChildren(usersTable(Array.isArray(fresh) ? fresh : [], act));
        return;
      }
      announce(what === 'disable' ? `Account ${u.username} disabled; its sessions have ended.` : `Account ${u.username} enabled.`, 'ok', true);
      route();
    } catch (ex) {
      announce(ex.message, 'error');
      btn.disabled = false;
    }
  };
  tableHolder.replaceChildren(usersTable(users, act));
  const username = h('input', { type: 'text', name: 'username', required: true, autocomplete: 'off', autocapitalize: 'none' });
  const display = h('input', { type: 'text', name: 'display_name' });
  const role = select('role', Object.entries(ROLE_LABELS), 'dsl');
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'off' });
  const chair = h('input', { type: 'checkbox', name: 'chair' });
  const chairField = h('div', { class: 'field check' }, chair, h('label', { for: chair.id = uid('chair') }, 'Chair of governors',
    h('span', { class: 'hint' }, 'Reviews alerts about the headteacher (seed 002 §5.3).')));
  chairField.hidden = true;
  role.addEventListener('change', () => { chairField.hidden = role.value !== 'governor'; if (chairField.hidden) chair.checked = false; });
  const password = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password', minlength: '10' });
  const mustChange = h('input', { type: 'checkbox', name: 'must_change_password', checked: true });
  const mustChangeField = h('div', { class: 'field check' }, mustChange, h('label', { for: mustChange.id = uid('mc') }, 'Ask for a new password at first sign-in',
    h('span', { class: 'hint' }, 'You typed this password, so the person should choose their own.')));
  const err = h('p', { class: 'form-error', role: 'alert' });
  const btn = h('button', { type: 'submit' }, 'Create account');
  const form = h('form', { novalidate: true },
    field('Username', username), field('Display name', display), field('Role', role), chairField,
    field('E-mail for notifications', email, 'Optional. Messages carry a link only, never alert content.'),
    field('Initial password', password, 'At least 10 characters, not the username.'), mustChangeField,
    err, h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (!username.value.trim() || password.value.length < 10) {
      err.textContent = 'Give a username and a password of at least 10 characters.';
      return;
    }
    btn.disabled = true;
    try {
      await api('POST', '/users', { username: username.value.trim(), display_name: display.value.trim(), role: role.value,
        password: password.value, email: email.value.trim(), chair: chair.checked, must_change_password: mustChange.checked });
      announce(`Account ${username.value.trim()} created.`, 'ok', true);
      route();
    } catch (ex) {
      err.textContent = ex.message;
      btn.disabled = false;
    }
  });
  page('Users',
    result,
    h('section', { class: 'panel', 'aria-labelledby': 'ul-h' }, h('h2', { id: 'ul-h' }, 'Accounts'), tableHolder),
    h('section', { class: 'panel', 'aria-labelledby': 'ua-h' }, h('h2', { id: 'ua-h' }, 'Add an account'), form));
}

// usersTable lists the accounts with their lifecycle buttons; act(user,
// 'disable'|'enable'|'reset', button) does the action.
function usersTable(users, act) {
  const cols = ['Username', 'Name', 'Role', 'Two-step sign-in', 'Last sign-in', 'State', 'Actions'];
  const stateOf = (u) => {
    if (u.disabled) return [h('span', { class: 'badge st-disabled' }, 'Disabled'), u.disabled_by ? h('span', { class: 'hint' }, `by ${u.disabled_by}`) : null];
    if (u.must_change_password) return h('span', { class: 'badge st-in_review' }, 'Must change password');
    return h('span', { class: 'badge st-concluded' }, 'Active');
  };
  return h('table', { class: 'responsive users' },
    h('caption', { class: 'visually-hidden' }, 'Console accounts'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, users.map((u) => {
      const self = session && u.username === session.username;
      const toggle = h('button', { type: 'button', class: 'secondary', disabled: self && !u.disabled,
        title: self && !u.disabled ? 'You cannot disable your own account' : null },
      u.disabled ? 'Enable' : 'Disable', h('span', { class: 'visually-hidden' }, ` ${u.username}`));
      toggle.addEventListener('click', () => {
        if (!u.disabled && !window.confirm(`Disable ${u.username}? Their sessions end at once and they cannot sign in until enabled.`)) return;
        act(u, u.disabled ? 'enable' : 'disable', toggle);
      });
      const reset = h('button', { type: 'button', class: 'secondary' }, 'Reset password', h('span', { class: 'visually-hidden' }, ` of ${u.username}`));
      reset.addEventListener('click', () => {
        if (!window.confirm(`Reset the password of ${u.username}? Their sessions end and they must choose a new one at the next sign-in.`)) return;
        act(u, 'reset', reset);
      });
      return h('tr', { dataset: { user: u.username } },
        h('td', { 'data-label': 'Username' }, u.username),
        h('td', { 'data-label': 'Name' }, u.display_name || '—'),
        h('td', { 'data-label': 'Role' }, ROLE_LABELS[u.role] || u.role, u.chair ? ' (chair)' : ''),
        h('td', { 'data-label': 'Two-step sign-in' }, u.totp ? 'On' : 'Off'),
        h('td', { 'data-label': 'Last sign-in', class: 'last-sign-in' }, u.last_sign_in ? when(u.last_sign_in) : 'Never'),
        h('td', { 'data-label': 'State', class: 'user-state' }, stateOf(u)),
        h('td', { 'data-label': 'Actions' }, h('div', { class: 'actions' }, toggle, reset)));
    })));
}

// ---------------------------------------------------------------------------
// Change password (everyone; the only page while a change is required)

function viewPassword() {
  const forced = !!session.must_change_password;
  const current = h('input', { type: 'password', name: 'current_password', required: true, autocomplete: 'current-password' });
  const next = h('input', { type: 'password', name: 'new_password', required: true, autocomplete: 'new-password', minlength: '10' });
  const again = h('input', { type: 'password', name: 'new_password_again', required: true, autocomplete: 'new-password' });
  const err = h('p', { class: 'form-error', id: 'password-error', role: 'alert' });
  const btn = h('button', { type: 'submit' }, 'Change password');
  const form = h('form', { class: 'panel', novalidate: true },
    field(forced ? 'Password you were given' : 'Current password', current),
    field('New password', next, 'At least 10 characters, not your username.'),
    field('New password again', again),
    err, h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (next.value.length < 10) { err.textContent = 'The new password needs at least 10 characters.'; next.focus(); return; }
    if (next.value !== again.value) { err.textContent = 'The two new passwords are not the same.'; again.focus(); return; }
    btn.disabled = true;
    try {
      session = Object.assign(session, await api('POST', '/me/password', { current_password: current.value, new_password: next.value }));
      session.must_change_password = false;
      announce('Password changed. Your other sessions have been signed out.', 'ok', true);
      location.hash = homeRoute();
    } catch (ex) {
      err.textContent = ex.message;
      btn.disabled = false;
    }
  });
  page('Change password',
    forced ? h('div', { class: 'notice', id: 'password-required' },
      h('p', {}, 'Your password was set by someone else. Choose your own before using the console.')) : null,
    form);
  current.focus();
}

// ---------------------------------------------------------------------------
// Deploy (technicians): per-group agent packages and their enrollment tokens

// downloadPackage POSTs the request and saves the answer as the file the
// server names (Content-Disposition); errors come back as JSON.
async function downloadPackage(body) {
  let res;
  try {
    res = await fetch(API + '/packages', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token }, body: JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'The collector could not be reached. Check the connection and try again.');
  }
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    if (res.status === 401) signedOut('Your session has ended. Please sign in again.');
    throw new ApiError(res.status, (data && data.error) || res.statusText || `HTTP ${res.status}`, data);
  }
  const m = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: m ? m[1] : 'vigil-agent-package' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return { name: m ? m[1] : 'package', token: res.headers.get('X-Vigil-Token-Id'), size: blob.size };
}

// uploadRelease sends an agent binary as the request body (it is not
// JSON: up to 256 MiB) for the collector to sign and store.
async function uploadRelease(file, version, os, arch) {
  const q = new URLSearchParams({ version, os, arch });
  let res;
  try {
    res = await fetch(`${API}/releases?${q}`, { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/octet-stream', Accept: 'application/json', 'X-CSRF-Token': session.csrf_token }, body: file });
  } catch (e) {
    throw new ApiError(0, 'The collector could not be reached. Check the connection and try again.');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    clearSuccess();
    if (res.status === 401) signedOut('Your session has ended. Please sign in again.');
    throw new ApiError(res.status, (data && data.error) || res.statusText || `HTTP ${res.status}`, data);
  }
  return data;
}

const RELEASE_STATES = { current: 'Running it', pending: 'To be offered', failed: 'Failed', not_targeted: 'Not in this share', no_rollout: 'No rollout' };

// releasePanels: the versions published, each group's rollout (roll out,
// roll back), the minimum and which devices run which version. null when
// the collector has no release service (the panels are left out).
function releasePanels(rel, status) {
  if (!rel) return [];
  const groups = Array.isArray(status) ? status : [];
  const versions = [...new Set((rel.releases || []).map((r) => r.version))];
  const submitting = async (btn, err, what, fn) => {
    err.textContent = '';
    btn.disabled = true;
    try {
      const msg = await fn();
      announce(msg, 'ok', true);
      route();
    } catch (ex) {
      err.textContent = ex.message;
      announce(`${what}: ${ex.message}`, 'error');
      btn.disabled = false;
    }
  };

  const builds = (rel.releases || []).length ? simpleTable('Published agent releases, newest first', ['Version', 'Platform', 'Size', 'SHA-256', 'Published'],
    rel.releases.map((r) => [r.version, `${r.os}/${r.arch}`, r.size >= 1048576 ? `${(r.size / 1048576).toFixed(1)} MiB` : `${Math.max(1, Math.ceil(r.size / 1024))} KiB`, h('span', { class: 'mono' }, String(r.sha256).slice(0, 16) + '…'), when(r.added_at)]))
    : h('p', {}, 'No agent release published yet.');

  let publish = null;
  if (rel.publish) {
    const file = h('input', { type: 'file', name: 'binary', required: true });
    const ver = h('input', { type: 'text', name: 'version', required: true, autocomplete: 'off', placeholder: '1.4.0' });
    const os = select('os', [['linux', 'Linux'], ['windows', 'Windows'], ['darwin', 'macOS']], 'linux');
    const arch = select('arch', [['amd64', 'amd64'], ['arm64', 'arm64']], 'amd64');
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit' }, 'Publish', h('span', { class: 'visually-hidden' }, ' the agent binary'));
    publish = h('form', { novalidate: true }, field('Agent binary', file, 'The vigil-agent build for one platform; the collector signs it with its release key.'),
      field('Version', ver, 'What `vigil-agent version` prints for this build.'), field('Operating system', os), field('Architecture', arch),
      err, h('div', { class: 'actions' }, btn));
    publish.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!file.files.length || !ver.value.trim()) { err.textContent = 'Choose the binary and give its version.'; return; }
      announce('Uploading and signing the release…');
      submitting(btn, err, 'The release was not published', async () => {
        const m = await uploadRelease(file.files[0], ver.value.trim(), os.value, arch.value);
        return `Release ${m.version} for ${m.os}/${m.arch} published and signed.`;
      });
    });
  }

  const groupIn = h('input', { type: 'text', name: 'group', required: true, pattern: '[a-z0-9_-]{1,64}', autocomplete: 'off', autocapitalize: 'none', placeholder: 'pilot' });
  const verSel = select('version', versions.map((v) => [v, v]), versions[0]);
  const pct = h('input', { type: 'number', name: 'percent', min: '1', max: '100', value: '100', inputmode: 'numeric' });
  const roErr = h('p', { class: 'form-error', role: 'alert' });
  const roBtn = h('button', { type: 'submit', disabled: !versions.length }, 'Roll out', h('span', { class: 'visually-hidden' }, ' the version to the group'));
  const rollout = h('form', { novalidate: true }, field('Device group', groupIn, 'Roll out to a pilot group first, then to the rest.'),
    field('Version', verSel), field('Share of the group (%)', pct, 'Raising it later only adds devices.'), roErr, h('div', { class: 'actions' }, roBtn));
  rollout.addEventListener('submit', (e) => {
    e.preventDefault();
    const g = groupIn.value.trim();
    if (!/^[a-z0-9_-]{1,64}$/.test(g)) { roErr.textContent = 'Give a device group of 1-64 of a-z, 0-9, - and _.'; return; }
    submitting(roBtn, roErr, 'The rollout was not started', async () => {
      const res = await api('POST', '/releases/rollout', { group: g, version: verSel.value, percent: Number(pct.value) || 100 });
      return `Group ${g} is rolling out ${res.rollout.version} (${res.rollout.percent}%).`;
    });
  });

  const roErrList = h('p', { class: 'form-error', role: 'alert' });
  const spread = (gs) => Object.entries(gs.versions || {}).sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v || 'unknown'}: ${n}`).join(', ') || 'no devices';
  const rollouts = groups.length ? h('table', { class: 'responsive' },
    h('caption', { class: 'visually-hidden' }, 'Rollout and versions run, by device group'),
    h('thead', {}, h('tr', {}, ['Group', 'Target', 'Since', 'Versions run', ''].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, groups.map((gs) => {
      const back = gs.rollout ? h('button', { type: 'button', class: 'secondary', onclick: (e) => {
        const to = gs.rollout.previous ? gs.rollout.previous.version : 'no rollout (devices keep what they run)';
        if (!window.confirm(`Roll group ${gs.group} back from ${gs.rollout.version} to ${to}?`)) return;
        submitting(e.currentTarget, roErrList, 'The rollback failed', async () => {
          const res = await api('POST', '/releases/rollback', { group: gs.group });
          return `Group ${gs.group} rolled back to ${res.rollout ? res.rollout.version : 'no rollout'}.`;
        });
      } }, 'Roll back', h('span', { class: 'visually-hidden' }, ` group ${gs.group}`)) : null;
      return h('tr', {},
        h('td', { 'data-label': 'Group' }, gs.group),
        h('td', { 'data-label': 'Target' }, gs.rollout ? `${gs.rollout.version}${gs.rollout.percent < 100 ? ` (${gs.rollout.percent}%)` : ''}` : 'None'),
        h('td', { 'data-label': 'Since' }, gs.rollout ? when(gs.rollout.started_at) : '—'),
        h('td', { 'data-label': 'Versions run' }, spread(gs)),
        h('td', {}, back));
    }))) : h('p', {}, 'No devices or rollouts yet.');

  const devices = groups.flatMap((gs) => (gs.devices || []).map((d) => [gs.group, d.hostname || d.device_id, d.version || 'unknown',
    (RELEASE_STATES[d.state] || titleCase(d.state)) + (d.failed ? ` (${d.failed.outcome.replace('_', ' ')}: ${d.failed.reason})` : ''), d.connected ? 'Yes' : 'No']));
  const deviceTable = devices.length ? simpleTable('Devices and the agent version they run', ['Group', 'Device', 'Version', 'State', 'Connected'], devices) : null;

  const minIn = h('input', { type: 'text', name: 'minimum', autocomplete: 'off', value: rel.minimum || '', placeholder: '1.4.0' });
  const minErr = h('p', { class: 'form-error', role: 'alert' });
  const minBtn = h('button', { type: 'submit', class: 'secondary' }, 'Set minimum', h('span', { class: 'visually-hidden' }, ' agent version'));
  const minimum = h('form', { novalidate: true }, field('Minimum version', minIn,
    'After a release fixes a security problem: no rollout or rollback may target an older version. Empty clears it.'), minErr, h('div', { class: 'actions' }, minBtn));
  minimum.addEventListener('submit', (e) => {
    e.preventDefault();
    submitting(minBtn, minErr, 'The minimum was not set', async () => {
      const res = await api('POST', '/releases/minimum', { version: minIn.value.trim() });
      return res.minimum ? `Minimum agent version set to ${res.minimum}.` : 'Minimum agent version cleared.';
    });
  });

  return [
    h('section', { class: 'panel', 'aria-labelledby': 'rl-h' }, h('h2', { id: 'rl-h' }, 'Agent releases'),
      h('p', {}, 'Agents install only releases signed with this collector\'s release key. Every change here is recorded in the access log.'), builds,
      h('h3', {}, 'Publish a release'), publish || h('p', {}, 'This collector does not hold the release signing key (it is kept offline), so releases are added with vigil-collector release add --key FILE.')),
    h('section', { class: 'panel', 'aria-labelledby': 'ro-h' }, h('h2', { id: 'ro-h' }, 'Rollouts by group'), rollouts, roErrList,
      h('h3', {}, 'Roll out a version'), versions.length ? rollout : h('p', {}, 'Publish a release first.'), deviceTable ? h('h3', {}, 'Devices') : null, deviceTable,
      h('h3', {}, 'Minimum version'), minimum),
  ];
}

async function viewDeploy(seq) {
  loading('deployment');
  // A collector without the release service answers 503; the page still
  // shows packages and tokens.
  const [info, toks, rel, relStatus] = await Promise.all([api('GET', '/deploy'), api('GET', '/tokens'),
    api('GET', '/releases').catch(() => null), api('GET', '/releases/status').catch(() => null)]);
  if (!isCurrent(seq)) return;
  const group = h('input', { type: 'text', name: 'group', required: true, pattern: '[a-z0-9_-]{1,64}', autocomplete: 'off', autocapitalize: 'none' });
  const format = select('format', (info.formats || ['deb', 'rpm', 'msi']).map((f) => [f, { deb: 'deb (Debian, Ubuntu)', rpm: 'rpm (Fedora, RHEL)', msi: 'MSI (Windows: Intune, GPO)' }[f] || f]), 'msi');
  const arch = select('arch', (info.arches || ['amd64', 'arm64']).map((a) => [a, a]), 'amd64');
  const addr = h('input', { type: 'text', name: 'collector_address', autocomplete: 'off', placeholder: info.default_collector || 'vigil.school.lan:7443',
    required: !info.default_collector });
  const err = h('p', { class: 'form-error', role: 'alert' });
  const btn = h('button', { type: 'submit' }, 'Download');
  const form = h('form', { novalidate: true },
    field('Device group', group, 'a-z, 0-9, - and _; devices enroll into this group.'),
    field('Format', format), field('Architecture', arch, 'MSIs are amd64 only (Windows on Arm runs them).'),
    field('Collector address', addr, info.default_collector ? `HOST:PORT devices reach; empty uses ${info.default_collector}.`
      : 'HOST:PORT devices reach (this collector was started without --agent-address).'),
    err, h('div', { class: 'actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (!/^[a-z0-9_-]{1,64}$/.test(group.value.trim())) {
      err.textContent = 'Give a device group of 1-64 of a-z, 0-9, - and _.';
      return;
    }
    btn.disabled = true;
    announce('Building the package…');
    try {
      const got = await downloadPackage({ group: group.value.trim(), format: format.value, arch: arch.value, collector_address: addr.value.trim() });
      announce(`Downloaded ${got.name} (${Math.round(got.size / 1024)} KiB) with a new token ${got.token}.`, 'ok', true);
      route();
    } catch (ex) {
      err.textContent = ex.message;
      announce(ex.message, 'error');
      btn.disabled = false;
    }
  });

  const list = (Array.isArray(toks) ? toks : []).slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  const cols = ['Token', 'Group', 'State', 'Uses left', 'Expires', ''];
  const table = list.length ? h('table', { class: 'responsive tokens' },
    h('caption', { class: 'visually-hidden' }, 'Enrollment tokens, newest first'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, list.map((t) => {
      const revoke = t.state === 'active' ? h('button', { type: 'button', class: 'secondary', onclick: async () => {
        const why = window.prompt(`Why revoke token ${t.id} (group ${t.group})? Devices already enrolled keep working.`);
        if (!why || !why.trim()) return;
        try {
          await api('POST', `/tokens/${encodeURIComponent(t.id)}/revoke`, { reason: why.trim() });
          announce(`Token ${t.id} revoked.`, 'ok', true);
          route();
        } catch (ex) {
          announce(ex.message, 'error');
        }
      } }, 'Revoke', h('span', { class: 'visually-hidden' }, ` token ${t.id}`)) : null;
      return h('tr', {},
        h('td', { 'data-label': 'Token' }, h('span', { class: 'mono' }, t.id)),
        h('td', { 'data-label': 'Group' }, t.group),
        h('td', { 'data-label': 'State' }, titleCase(t.state)),
        h('td', { 'data-label': 'Uses left' }, `${t.uses_left} of ${t.max_uses}`),
        h('td', { 'data-label': 'Expires' }, when(t.expires_at)),
        h('td', {}, revoke));
    }))) : h('p', {}, 'No enrollment tokens yet.');
  page('Deploy',
    h('section', { class: 'panel', 'aria-labelledby': 'dp-h' }, h('h2', { id: 'dp-h' }, 'Agent package for a group'),
      h('p', {}, 'Each download carries a new enrollment token for the group (2000 uses, one year) and the collector\'s CA pin; ',
        'install it silently (msiexec /i FILE /qn, dpkg -i, dnf install). Downloads are recorded in the access log.'), form),
    h('section', { class: 'panel', 'aria-labelledby': 'tk-h' }, h('h2', { id: 'tk-h' }, 'Enrollment tokens'),
      h('p', {}, 'Revoke the token of a package that went astray: no new device can enroll with it.'), table),
    releasePanels(rel, relStatus));
}

// ---------------------------------------------------------------------------
// Licences and inventory (technicians keep them; the headteacher reads)

function simpleTable(caption, cols, rows) {
  return h('table', { class: 'responsive' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((v, i) => h('td', { 'data-label': cols[i] }, v))))));
}

async function viewLicences(seq) {
  loading('licences');
  const [rep, inv] = await Promise.all([api('GET', '/licences/reconcile'), api('GET', '/inventory')]);
  if (!isCurrent(seq)) return;
  const canEdit = session && (session.role === 'technician' || session.role === 'admin');
  const prods = rep.products || [];
  const products = prods.length ? simpleTable('Licences by product', ['Product', 'Purchased', 'Valid', 'Installed', 'Over quota', 'Unused', 'Expired seats', 'Next expiry'],
    prods.map((p) => [p.product + (p.expired ? ' (expired)' : ''), String(p.purchased), String(p.valid), String(p.installed),
      p.over_quota ? h('strong', {}, String(p.over_quota)) : '0', String(p.unused), String(p.expired_seats), p.next_expiry || '–']))
    : h('p', {}, 'No licences in the register yet.');
  const un = rep.unlicensed || [];
  const unlicensed = un.length ? simpleTable('Installed with no licence record', ['Title', 'Publisher', 'Devices', 'As installed'],
    un.map((u) => [u.title, u.publisher || '', String(u.installed), (u.names || []).join('; ')]))
    : h('p', {}, 'Every application found has a licence record (or is ignored).');
  const items = Array.isArray(inv) ? inv : [];
  const inventory = simpleTable('ICT inventory', ['Device', 'Hostname', 'Group', 'OS', 'Last seen', 'Last audit', 'State'],
    items.map((d) => [h('span', { class: 'mono' }, d.device_id), d.hostname || '', d.group || '', d.os || '', when(d.last_seen),
      d.last_audit ? when(d.last_audit) : 'never',
      d.disposed ? `Disposed ${String(d.disposed.date).slice(0, 10)} (${d.disposed.method}, authorised by ${d.disposed.authorised_by}${d.disposed.licences_verified ? '' : '; licences not verified'})`
        : d.revoked ? 'Revoked' : 'Active']));
  let importForm = null;
  if (canEdit) {
    const file = h('input', { type: 'file', name: 'csv', accept: '.csv,text/csv', required: true });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const btn = h('button', { type: 'submit' }, 'Import');
    importForm = h('form', { novalidate: true }, field('Licence file (CSV)', file, 'Columns product, publisher, seats, expiry, reference. A file with any bad row imports nothing.'),
      err, h('div', { class: 'actions' }, btn));
    importForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      if (!file.files.length) { err.textContent = 'Choose a CSV file.'; return; }
      btn.disabled = true;
      try {
        const res = await api('POST', '/licences/import', { csv: await file.files[0].text() });
        announce(`Imported: ${res.added} added, ${res.updated} updated.`, 'ok', true);
        route();
      } catch (ex) {
        err.textContent = ex.message;
        announce('The licence file was not imported.', 'error');
        btn.disabled = false;
      }
    });
  }
  page('Licences', ...[
    h('section', { class: 'panel', 'aria-labelledby': 'lc-h' }, h('h2', { id: 'lc-h' }, 'Licences by product'),
      h('p', {}, `Against the latest audit of ${rep.devices} device(s). Installed counts devices; corrections with vigil-collector licences alias.`), products),
    h('section', { class: 'panel', 'aria-labelledby': 'ul-h' }, h('h2', { id: 'ul-h' }, 'Installed with no licence record'), unlicensed),
    importForm ? h('section', { class: 'panel', 'aria-labelledby': 'im-h' }, h('h2', { id: 'im-h' }, 'Import licences'), importForm) : null,
    h('section', { class: 'panel', 'aria-labelledby': 'iv-h' }, h('h2', { id: 'iv-h' }, 'ICT inventory'), inventory)].filter(Boolean));
}

// ---------------------------------------------------------------------------
// Start

async function boot() {
  $('#logout').addEventListener('click', async () => {
    try { await api('DELETE', '/session'); } catch { /* signed out either way */ }
    session = null;
    afterLogin = null;
    renderChrome();
    announce('Signed out.', 'ok', true);
    location.hash = '#/login';
  });
  $('#skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const h1 = $('#main h1');
    (h1 || main()).focus();
  });
  try {
    const me = await fetch(`${API}/me`, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (me.ok) session = await me.json();
  } catch { /* not signed in */ }
  window.addEventListener('hashchange', route);
  route();
}

boot();
