// The Customer Loyalty Report page. Plain JavaScript, no dependencies: it calls /graphql with
// the admin token and draws its charts as SVG. Every number it shows carries data-key (which
// figure: its path in the API answer) and data-metric (the exact string the API returned), so
// a test can compare the page with the API.
'use strict';

const TOKEN_KEY = 'loyalty-admin-token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#8b5cf6', '#14b8a6',
  '#ec4899', '#84cc16', '#f97316', '#64748b', '#06b6d4', '#a855f7', '#eab308'];
const SERIES = [
  { key: 'issued', label: 'Issued', color: '#4f46e5' },
  { key: 'used', label: 'Used', color: '#f59e0b' },
  { key: 'expired', label: 'Expired', color: '#94a3b8' },
];
const MEMBER = '#4f46e5';
const NON_MEMBER = '#f59e0b';
const HALF = 480; // the drawing width of a chart in a half-width card
const REFERRAL_ROWS = 50;
const TICKER_ROWS = 20;

// The sections the period and its comparison both have (two types, so no shared fragment).
const SECTIONS = `acquisition { newMembers withPurchase withoutPurchase }
    coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare }
    averageDiscount { total fromPoints fromPrizes vouchers rate }
    averageOrderValues { members nonMembers everyone }
    purchasers purchaseRate`;
const REPORT_QUERY = `query Report($from: Date!, $to: Date!, $granularity: Granularity,
                                   $compareFrom: Date, $compareTo: Date) {
  loyaltyReport(from: $from, to: $to, granularity: $granularity,
                compareFrom: $compareFrom, compareTo: $compareTo) {
    asOf from to granularity timezone currency
    pointsIssued { total count bySource { source label points count share } }
    pointsUsed { total count byPurpose { purpose label points count share } }
    pointsExpired outstandingBalance redemptionRate
    members { total new active }
    revenue averageOrderValue
    ${SECTIONS}
    activityByMonth { month memberOrders revenue lastPurchaseMembers }
    membershipDuration { label minMonths maxMonths members orders revenue averagePurchase revenuePerMember }
    campaigns { ruleId name source pointsIssued awards membersReached budgetTotal budgetSpent budgetRemaining deleted }
    series { bucketStart issued used expired newMembers newMembersWithPurchase memberOrders memberRevenue
             nonMemberOrders nonMemberRevenue discount }
    comparison {
      from to pointsIssued { total } pointsUsed { total } pointsExpired outstandingBalance
      redemptionRate members { total new active } revenue averageOrderValue
      ${SECTIONS}
    }
  }
}`;
const REFERRALS_QUERY = `query Referrals($from: DateTime!, $to: DateTime!, $first: Int) {
  referralReport(from: $from, to: $to, first: $first) {
    edges { node { member { id displayName } totalReferrals pendingReferrals clicks } }
    funnel { clicks registrations rewarded }
  }
}`;
const PROGRAM_QUERY = '{ program { externalId name timezone currency } }';
const ACTIVITY_SUBSCRIPTION = `subscription { activity {
  member { id displayName } version account balance delta
  transaction { id amount kind source purpose createdAt } } }`;

const state = {
  token: null,
  program: null,
  preset: '30',
  coverage: 'revenue',
  live: null,
  generation: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// A number as the page shows it, tagged with what it is and the API's exact string.
function metric(key, raw, shown, tag = 'span', attrs = {}) {
  return el(tag, { ...attrs, 'data-key': key, 'data-metric': String(raw) }, shown);
}

// ---------- formatting (exact: decimal strings are regrouped, never parsed into floats) -------

function groupDigits(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function formatDecimal(value) {
  const text = String(value);
  const negative = text.startsWith('-');
  const [int, frac] = (negative ? text.slice(1) : text).split('.');
  return (negative ? '−' : '') + groupDigits(int) + (frac !== undefined ? '.' + frac : '');
}

function formatInt(value) {
  return groupDigits(String(value));
}

// "0.3750" → "37.50%" by moving the decimal point (the API gives 4 fraction digits).
function formatShare(value) {
  const text = String(value);
  const match = /^(-?)(\d+)\.(\d{4})$/.exec(text);
  if (!match) return text;
  const whole = String(Number(match[2] + match[3].slice(0, 2)));
  return `${match[1]}${whole}.${match[3].slice(2)}%`;
}

function signed(value) {
  const text = String(value);
  return text.startsWith('-') ? formatDecimal(text) : '+' + formatDecimal(text);
}

// ---------- dates in the program's timezone ----------

function partsIn(date, timeZone) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(date);
  const out = {};
  for (const part of parts) if (part.type !== 'literal') out[part.type] = Number(part.value);
  return out;
}

function todayIn(timeZone) {
  const p = partsIn(new Date(), timeZone);
  return isoDate(Date.UTC(p.year, p.month - 1, p.day));
}

function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function parseDate(text) {
  const [y, m, d] = text.split('-').map(Number);
  return Date.UTC(y, m - 1, d);
}

function addDays(text, days) {
  return isoDate(parseDate(text) + days * 86400000);
}

// The instant of local midnight starting `text` in `timeZone` (DST-safe: corrected twice).
function localMidnight(text, timeZone) {
  const guess = parseDate(text);
  const offset = (at) => {
    const p = partsIn(new Date(at), timeZone);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(at / 1000) * 1000;
  };
  let at = guess - offset(guess);
  at = guess - offset(at);
  return new Date(at).toISOString();
}

function formatBucket(text, granularity) {
  const date = new Date(parseDate(text));
  if (granularity === 'MONTH') {
    return date.toLocaleDateString('en-US', { month: 'short', year: 'numeric', timeZone: 'UTC' });
  }
  return date.toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

function formatInstant(text, timeZone) {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return date.toLocaleString('en-GB', { timeZone, dateStyle: 'medium', timeStyle: 'medium' });
}

// ---------- API ----------

class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

async function gql(query, variables) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${state.token}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message})`, 'NETWORK');
  }
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new ApiError(`unexpected answer (HTTP ${response.status})`, 'INTERNAL');
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const code = (first.extensions && first.extensions.code) || 'INTERNAL';
    throw new ApiError(first.message, code);
  }
  return body.data;
}

// ---------- sign-in ----------

function readHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = params.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete('token');
  }
  const query = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (query ? '#' + query : ''));
  return params;
}

function writeHash(from, to, granularity) {
  const params = new URLSearchParams({ from, to, granularity });
  history.replaceState(null, '', `${location.pathname}${location.search}#${params}`);
}

function showSignin(message) {
  document.body.dataset.state = message ? 'error' : 'signed-out';
  $('signin').hidden = false;
  $('dashboard').hidden = true;
  $('session').hidden = true;
  const error = $('signin-error');
  error.hidden = !message;
  error.textContent = message || '';
}

async function signIn(token, params) {
  state.token = token.trim();
  state.generation += 1;
  let program;
  try {
    program = (await gql(PROGRAM_QUERY, {})).program;
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    const why = err.code === 'UNAUTHENTICATED' ? 'That token was refused' : 'Sign-in failed';
    showSignin(`${why}: ${err.message} (${err.code})`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  state.program = program;
  $('program-name').textContent = program.name;
  $('program-meta').textContent = `${program.externalId} · ${program.timezone} · ${program.currency}`;
  $('signin').hidden = true;
  $('dashboard').hidden = false;
  $('session').hidden = false;

  const from = params && params.get('from');
  const to = params && params.get('to');
  if (from && to) {
    state.preset = 'custom';
    $('from').value = from;
    $('to').value = to;
  } else {
    applyPreset(state.preset, false);
  }
  const granularity = params && params.get('granularity');
  if (granularity) $('granularity').value = granularity;
  markPreset();
  connectLive(state.generation);
  await loadReport();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.generation += 1;
  if (state.live) state.live.close();
  state.live = null;
  $('ticker').replaceChildren();
  $('ticker-empty').hidden = false;
  $('program-name').textContent = 'Customer Loyalty Report';
  history.replaceState(null, '', location.pathname);
  showSignin(null);
}

async function devLogin() {
  try {
    const response = await fetch('/admin/dev-login', { method: 'POST' });
    const body = await response.json();
    if (!response.ok) {
      const message = body.errors && body.errors[0] ? body.errors[0].message : `HTTP ${response.status}`;
      showSignin(`Development login failed: ${message}`);
      return;
    }
    await signIn(body.token, null);
  } catch (err) {
    showSignin(`Development login failed: ${err.message}`);
  }
}

async function probeDevLogin() {
  try {
    const response = await fetch('/admin/dev-login');
    $('dev-login').hidden = !response.ok;
  } catch (err) {
    $('dev-login').hidden = true;
  }
}

// ---------- the period ----------

function applyPreset(preset, reload = true) {
  state.preset = preset;
  const today = todayIn(state.program.timezone);
  if (preset === 'month') {
    $('from').value = today.slice(0, 8) + '01';
    $('to').value = today;
  } else if (preset !== 'custom') {
    $('from').value = addDays(today, 1 - Number(preset));
    $('to').value = today;
  }
  markPreset();
  if (preset === 'custom') $('from').focus();
  else if (reload) loadReport();
}

function markPreset() {
  for (const button of document.querySelectorAll('[data-preset]')) {
    button.setAttribute('aria-pressed', String(button.dataset.preset === state.preset));
  }
}

// ---------- loading ----------

async function loadReport() {
  const generation = state.generation;
  const from = $('from').value;
  const to = $('to').value;
  const granularity = $('granularity').value;
  const banner = $('report-error');
  if (!from || !to || to < from) {
    banner.textContent = 'Choose a period whose end is on or after its start.';
    banner.hidden = false;
    return;
  }
  writeHash(from, to, granularity);
  document.body.dataset.state = 'loading';
  banner.hidden = true;
  const tz = state.program.timezone;
  // Compared with the period of the same length just before it.
  const days = Math.round((parseDate(to) - parseDate(from)) / 86400000) + 1;
  const compareTo = addDays(from, -1);
  const compareFrom = addDays(from, -days);
  const report = gql(REPORT_QUERY, { from, to, granularity, compareFrom, compareTo });
  const referrals = gql(REFERRALS_QUERY, {
    from: localMidnight(from, tz),
    to: localMidnight(addDays(to, 1), tz),
    first: REFERRAL_ROWS,
  });
  const [reportResult, referralResult] = await Promise.allSettled([report, referrals]);
  if (generation !== state.generation) return;
  const problems = [];
  if (reportResult.status === 'fulfilled') {
    renderReport(reportResult.value.loyaltyReport);
  } else {
    problems.push(`Report: ${reportResult.reason.message} (${reportResult.reason.code})`);
  }
  if (referralResult.status === 'fulfilled') {
    renderReferrals(referralResult.value.referralReport);
  } else {
    problems.push(`Referrals: ${referralResult.reason.message} (${referralResult.reason.code})`);
  }
  if (problems.length) {
    banner.textContent = problems.join(' · ');
    banner.hidden = false;
    document.body.dataset.state = 'error';
    const codes = [reportResult, referralResult]
      .filter((r) => r.status === 'rejected')
      .map((r) => r.reason.code);
    if (codes.includes('UNAUTHENTICATED') || codes.includes('FORBIDDEN')) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      state.generation += 1;
      if (state.live) state.live.close();
      showSignin(codes.includes('FORBIDDEN')
        ? 'That token is not an admin token of this program (FORBIDDEN); sign in with an admin token.'
        : 'Your token is no longer accepted (UNAUTHENTICATED); sign in again.');
    }
  } else {
    document.body.dataset.state = 'ready';
  }
}

// ---------- rendering ----------

function renderReport(report) {
  $('asof').replaceChildren(
    'As of ',
    metric('asOf', report.asOf, formatInstant(report.asOf, report.timezone), 'time'),
    ` · ${report.timezone}`,
  );
  renderKpis(report);
  renderDonut($('issued-chart'), report.pointsIssued, 'bySource', 'source', 'pointsIssued', 'issued');
  renderDonut($('used-chart'), report.pointsUsed, 'byPurpose', 'purpose', 'pointsUsed', 'used');
  renderSeries(report);
  renderAcquisition(report);
  renderCoverage(report);
  renderDiscount(report);
  renderOrderValues(report);
  renderActivity(report);
  renderDuration(report);
  renderCampaigns(report);
}

// The comparison period's value of `key` (a path like "members.new"), shown beside the card.
function comparisonLine(comparison, key, current, format) {
  if (!comparison) return null;
  const before = key.split('.').reduce((value, part) => (value == null ? value : value[part]), comparison);
  if (before === undefined || before === null) return null;
  const now = Number(current);
  const then = Number(before);
  const trend = now > then ? 'up' : now < then ? 'down' : 'flat';
  const arrow = { up: '▲', down: '▼', flat: '●' }[trend];
  return el('div', { class: `cmp ${trend}`, title: `${comparison.from} – ${comparison.to}` },
    `${arrow} vs `, metric(`comparison.${key}`, before, format(before)), ' before');
}

function kpi(label, key, raw, shown, sub, accent, comparison, format) {
  return el('div', { class: accent ? 'kpi accent' : 'kpi' },
    el('div', { class: 'label' }, label),
    metric(key, raw, shown, 'div', { class: 'value' }),
    sub ? el('div', { class: 'sub' }, ...sub) : null,
    comparisonLine(comparison, key, raw, format || formatDecimal));
}

function renderKpis(r) {
  const currency = r.currency;
  const c = r.comparison;
  $('compare').replaceChildren(...(c
    ? ['Compared with ', metric('comparison.from', c.from, c.from), ' – ', metric('comparison.to', c.to, c.to)]
    : []));
  $('kpis').replaceChildren(
    kpi('Points issued', 'pointsIssued.total', r.pointsIssued.total, formatDecimal(r.pointsIssued.total),
      [metric('pointsIssued.count', r.pointsIssued.count, formatInt(r.pointsIssued.count)), ' postings'], true, c),
    kpi('Points used', 'pointsUsed.total', r.pointsUsed.total, formatDecimal(r.pointsUsed.total),
      [metric('pointsUsed.count', r.pointsUsed.count, formatInt(r.pointsUsed.count)), ' postings'], true, c),
    kpi('Points expired', 'pointsExpired', r.pointsExpired, formatDecimal(r.pointsExpired), ['in the period'], false, c),
    kpi('Outstanding balance', 'outstandingBalance', r.outstandingBalance, formatDecimal(r.outstandingBalance),
      ['all members, at the end of ', metric('to', r.to, r.to)], false, c),
    kpi('Redemption rate', 'redemptionRate', r.redemptionRate, formatShare(r.redemptionRate), ['used ÷ issued'],
      false, c, formatShare),
    kpi('Members', 'members.total', r.members.total, formatInt(r.members.total), ['joined by the end'], false, c, formatInt),
    kpi('New members', 'members.new', r.members.new, formatInt(r.members.new), ['joined in the period'], false, c, formatInt),
    kpi('Active members', 'members.active', r.members.active, formatInt(r.members.active),
      ['with a posting in the period'], false, c, formatInt),
    kpi('Revenue', 'revenue', r.revenue, formatDecimal(r.revenue), [currency, ', refunds subtracted'], false, c),
    kpi('Average order', 'averageOrderValue', r.averageOrderValue, formatDecimal(r.averageOrderValue), [currency], false, c),
    kpi('Purchase rate', 'purchaseRate', r.purchaseRate, formatShare(r.purchaseRate),
      [metric('purchasers', r.purchasers, formatInt(r.purchasers)), ' members with an order ÷ all members'],
      false, c, formatShare),
  );
}

function renderDonut(target, figure, listName, keyName, prefix, what) {
  const rows = figure[listName];
  const size = 42;
  const center = size / 2;
  const radius = 15.915494; // circumference 100: a share in percent is a dash length
  const chart = svg('svg', { viewBox: `0 0 ${size} ${size}`, class: 'donut', role: 'img',
    'aria-label': `Points ${what} by ${keyName}` });
  chart.append(svg('circle', { cx: center, cy: center, r: radius, fill: 'none', stroke: '#eef1f6', 'stroke-width': 6 }));
  let start = 0;
  rows.forEach((row, index) => {
    const percent = Number(row.share) * 100;
    if (percent <= 0) return;
    const arc = svg('circle', {
      cx: center, cy: center, r: radius, fill: 'none', stroke: PALETTE[index % PALETTE.length],
      'stroke-width': 6, 'stroke-dasharray': `${percent} ${100 - percent}`,
      'stroke-dashoffset': 25 - start,
    });
    arc.append(svg('title', { text: `${row.label}: ${row.points} (${formatShare(row.share)})` }));
    chart.append(arc);
    start += percent;
  });
  chart.append(svg('text', { x: center, y: center + 0.5, 'text-anchor': 'middle', class: 'total', text: formatDecimal(figure.total) }));
  chart.append(svg('text', { x: center, y: center + 5, 'text-anchor': 'middle', class: 'caption',
    text: Number(figure.count) === 0 ? `nothing ${what}` : `points ${what}` }));

  const legend = el('table', { class: 'legend' });
  const body = el('tbody');
  rows.forEach((row, index) => {
    const zero = Number(row.count) === 0 && Number(row.points) === 0;
    const key = `${prefix}.${listName}.${row[keyName]}`;
    body.append(el('tr', { class: zero ? 'zero' : null, 'data-row': row[keyName] },
      el('td', {}, el('span', { class: 'swatch', 'data-color': index }), row.label),
      el('td', { class: 'num' }, metric(`${key}.points`, row.points, formatDecimal(row.points))),
      el('td', { class: 'num muted' }, metric(`${key}.count`, row.count, formatInt(row.count)), '×'),
      el('td', { class: 'num' }, metric(`${key}.share`, row.share, formatShare(row.share)))));
  });
  legend.append(body);
  target.replaceChildren(chart, legend);
  // Swatch colours through the CSSOM (allowed by the page's CSP, unlike style attributes).
  for (const swatch of legend.querySelectorAll('.swatch')) {
    swatch.style.background = PALETTE[Number(swatch.dataset.color) % PALETTE.length];
  }
}

function niceMax(value) {
  if (value <= 0) return 10;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function renderSeries(report) {
  const buckets = report.series;
  const width = 760;
  const height = 250;
  const pad = { left: 56, right: 28, top: 12, bottom: 30 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...buckets.flatMap((b) => SERIES.map((s) => Number(b[s.key])))));
  const x = (i) => pad.left + (buckets.length <= 1 ? plotW / 2 : (plotW * i) / (buckets.length - 1));
  const y = (v) => pad.top + plotH - (plotH * Number(v)) / max;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Points issued, used and expired per bucket' });
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    chart.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: 'grid-line' }));
    chart.append(svg('text', { x: pad.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'axis',
      text: formatInt(Math.round(value)) }));
  }
  const every = Math.max(1, Math.ceil(buckets.length / 10));
  buckets.forEach((bucket, i) => {
    if (i % every === 0 || i === buckets.length - 1) {
      chart.append(svg('text', { x: x(i), y: height - 8, 'text-anchor': 'middle', class: 'axis',
        text: formatBucket(bucket.bucketStart, report.granularity) }));
    }
  });
  for (const series of SERIES) {
    const points = buckets.map((b, i) => `${x(i).toFixed(1)},${y(b[series.key]).toFixed(1)}`);
    if (!points.length) continue;
    if (series.key === 'issued') {
      chart.append(svg('path', { class: 'area', fill: series.color,
        d: `M${x(0)},${y(0)} L${points.join(' L')} L${x(buckets.length - 1)},${y(0)} Z` }));
    }
    chart.append(svg('polyline', { class: 'line', stroke: series.color, points: points.join(' '),
      'stroke-dasharray': series.key === 'expired' ? '4 4' : 'none' }));
    buckets.forEach((b, i) => {
      const dot = svg('circle', { cx: x(i), cy: y(b[series.key]), r: buckets.length > 40 ? 1.5 : 3, fill: series.color });
      dot.append(svg('title', { text: `${b.bucketStart} · ${series.label}: ${b[series.key]}` }));
      chart.append(dot);
    });
  }
  const legend = el('div', { class: 'series-legend' });
  for (const series of SERIES) {
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = series.color;
    legend.append(el('span', {}, swatch, series.label));
  }
  $('series-chart').replaceChildren(chart, legend);
  $('series-caption').textContent = `per ${report.granularity.toLowerCase()} · ${buckets.length} buckets`;

  const table = el('table', { class: 'data' });
  table.append(el('thead', {}, el('tr', {}, el('th', {}, 'From'),
    ...['Issued', 'Used', 'Expired'].map((h) => el('th', { class: 'num' }, h)))));
  const body = el('tbody');
  for (const b of buckets) {
    const key = `series.${b.bucketStart}`;
    body.append(el('tr', {},
      el('td', {}, b.bucketStart),
      el('td', { class: 'num' }, metric(`${key}.issued`, b.issued, formatDecimal(b.issued))),
      el('td', { class: 'num' }, metric(`${key}.used`, b.used, formatDecimal(b.used))),
      el('td', { class: 'num' }, metric(`${key}.expired`, b.expired, formatDecimal(b.expired)))));
  }
  table.append(body);
  $('series-table').replaceChildren(table);
}

// ---------- the sections: acquisition, coverage, discount, order values, months, duration,
// campaigns ----------

// A figure inside a section card, with the comparison period's value below it (when given).
function stat(label, key, raw, format, comparison, sub) {
  return el('div', { class: 'stat' },
    el('div', { class: 'label' }, label),
    metric(key, raw, format(raw), 'div', { class: 'value' }),
    sub ? el('div', { class: 'sub' }, ...sub) : null,
    comparisonLine(comparison, key, raw, format));
}

function stats(...items) {
  return el('div', { class: 'stats' }, ...items);
}

function legendOf(stacks) {
  const legend = el('div', { class: 'series-legend' });
  for (const stack of stacks) {
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = stack.color;
    legend.append(el('span', {}, swatch, stack.label));
  }
  return legend;
}

// Vertical bars, stacked: `rows` are { label, title, values } with one value per stack (decimal
// strings or numbers; heights only, the exact figures are in the tables). Negative values draw
// nothing. `width` is the drawing's own: 760 across the page, 480 in a half-width card; `whole`:
// the values are counts, so the axis steps are whole numbers too.
function barChart(rows, stacks, ariaLabel, { height = 200, width = 760, whole = false } = {}) {
  const pad = { left: 56, right: 12, top: 10, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const totals = rows.map((row) => row.values.reduce((sum, v) => sum + Math.max(0, Number(v)), 0));
  const top = Math.max(0, ...totals);
  const max = whole ? Math.max(4, Math.ceil(top / 4) * 4) : niceMax(top);
  const y = (v) => pad.top + plotH - (plotH * v) / max;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'bars', role: 'img', 'aria-label': ariaLabel });
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    chart.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: 'grid-line' }));
    chart.append(svg('text', { x: pad.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'axis',
      text: formatInt(Math.round(value)) }));
  }
  const slot = plotW / Math.max(1, rows.length);
  const barW = Math.max(1.5, Math.min(56, slot * 0.7));
  const every = Math.max(1, Math.ceil(rows.length / (width / 76)));
  rows.forEach((row, i) => {
    const left = pad.left + slot * i + (slot - barW) / 2;
    let base = 0;
    row.values.forEach((raw, s) => {
      const value = Math.max(0, Number(raw));
      if (value > 0) {
        const bar = svg('rect', { x: left.toFixed(1), y: y(base + value).toFixed(1), width: barW.toFixed(1),
          height: (y(base) - y(base + value)).toFixed(1), fill: stacks[s].color, rx: 1.5 });
        bar.append(svg('title', { text: `${row.title || row.label} · ${stacks[s].label}: ${raw}` }));
        chart.append(bar);
      }
      base += value;
    });
    if (i % every === 0 || i === rows.length - 1) {
      chart.append(svg('text', { x: (left + barW / 2).toFixed(1), y: height - 8, 'text-anchor': 'middle',
        class: 'axis', text: row.label }));
    }
  });
  return el('div', { class: 'series' }, chart, legendOf(stacks));
}

// A table of figures inside a "Show the numbers" fold: `columns` are [heading, cell(row)].
function numbersTable(rows, columns, open) {
  const table = el('table', { class: 'data' });
  table.append(el('thead', {}, el('tr', {},
    ...columns.map(([heading], i) => el('th', { class: i === 0 ? null : 'num' }, heading)))));
  const body = el('tbody');
  for (const row of rows) {
    body.append(el('tr', {}, ...columns.map(([, cell], i) => el('td', { class: i === 0 ? null : 'num' }, cell(row)))));
  }
  table.append(body);
  if (open) return table;
  return el('details', { class: 'series-data' }, el('summary', {}, 'Show the numbers'), table);
}

function bucketLabel(report, bucket) {
  return formatBucket(bucket.bucketStart, report.granularity);
}

function renderAcquisition(r) {
  const a = r.acquisition;
  const c = r.comparison;
  const stacks = [
    { label: 'With a purchase', color: '#10b981' },
    { label: 'Without a purchase', color: '#cbd5e1' },
  ];
  const rows = r.series.map((b) => ({
    label: bucketLabel(r, b),
    title: b.bucketStart,
    values: [b.newMembersWithPurchase, Number(b.newMembers) - Number(b.newMembersWithPurchase)],
  }));
  $('acquisition').replaceChildren(
    stats(
      stat('New members', 'acquisition.newMembers', a.newMembers, formatInt, c, ['joined in the period']),
      stat('With a purchase', 'acquisition.withPurchase', a.withPurchase, formatInt, c, ['ordered by its end']),
      stat('Without a purchase', 'acquisition.withoutPurchase', a.withoutPurchase, formatInt, c, ['no order yet'])),
    barChart(rows, stacks, 'New members per bucket, with and without a purchase',
      { width: HALF, whole: true }),
    numbersTable(r.series, [
      ['From', (b) => b.bucketStart],
      ['New members', (b) => metric(`series.${b.bucketStart}.newMembers`, b.newMembers, formatInt(b.newMembers))],
      ['With a purchase', (b) => metric(`series.${b.bucketStart}.newMembersWithPurchase`, b.newMembersWithPurchase,
        formatInt(b.newMembersWithPurchase))],
    ]));
}

// Members' against non-members' orders or revenue: both views are drawn, the toggle shows one.
function renderCoverage(r) {
  const cov = r.coverage;
  const c = r.comparison;
  const currency = r.currency;
  const views = {
    revenue: {
      share: ['Members\' share of revenue', 'coverage.revenueShare', cov.revenueShare],
      member: ['Members', 'coverage.memberRevenue', cov.memberRevenue, [currency, ', refunds subtracted']],
      other: ['Non-members', 'coverage.nonMemberRevenue', cov.nonMemberRevenue, [currency, ', refunds subtracted']],
      format: formatDecimal,
      series: ['memberRevenue', 'nonMemberRevenue'],
    },
    orders: {
      share: ['Members\' share of orders', 'coverage.orderShare', cov.orderShare],
      member: ['Members', 'coverage.memberOrders', cov.memberOrders, ['orders']],
      other: ['Non-members', 'coverage.nonMemberOrders', cov.nonMemberOrders, ['orders']],
      format: formatInt,
      series: ['memberOrders', 'nonMemberOrders'],
    },
  };
  for (const [name, view] of Object.entries(views)) {
    const [memberField, otherField] = view.series;
    const stacks = [{ label: 'Members', color: MEMBER }, { label: 'Non-members', color: NON_MEMBER }];
    const rows = r.series.map((b) => ({ label: bucketLabel(r, b), title: b.bucketStart,
      values: [b[memberField], b[otherField]] }));
    $(`coverage-${name}`).replaceChildren(
      stats(
        stat(view.share[0], view.share[1], view.share[2], formatShare, c, ['of all ' + name]),
        stat(view.member[0], view.member[1], view.member[2], view.format, c, view.member[3]),
        stat(view.other[0], view.other[1], view.other[2], view.format, c, view.other[3])),
      barChart(rows, stacks, `${name} of members and non-members per bucket`,
        { width: HALF, whole: name === 'orders' }),
      numbersTable(r.series, [
        ['From', (b) => b.bucketStart],
        ['Members', (b) => metric(`series.${b.bucketStart}.${memberField}`, b[memberField], view.format(b[memberField]))],
        ['Non-members', (b) => metric(`series.${b.bucketStart}.${otherField}`, b[otherField], view.format(b[otherField]))],
      ]));
  }
  showCoverage(state.coverage);
}

function showCoverage(view) {
  state.coverage = view;
  for (const button of document.querySelectorAll('[data-coverage]')) {
    button.setAttribute('aria-pressed', String(button.dataset.coverage === view));
  }
  $('coverage-revenue').hidden = view !== 'revenue';
  $('coverage-orders').hidden = view !== 'orders';
}

function renderDiscount(r) {
  const d = r.averageDiscount;
  const c = r.comparison;
  const rows = r.series.map((b) => ({ label: bucketLabel(r, b), title: b.bucketStart, values: [b.discount] }));
  $('discount').replaceChildren(
    stats(
      stat('Discount rate', 'averageDiscount.rate', d.rate, formatShare, c, ['of members\' revenue']),
      stat('Discounts granted', 'averageDiscount.total', d.total, formatDecimal, c,
        [r.currency, ' · ', metric('averageDiscount.vouchers', d.vouchers, formatInt(d.vouchers)), ' vouchers used']),
      stat('From points', 'averageDiscount.fromPoints', d.fromPoints, formatDecimal, c, ['vouchers bought with points']),
      stat('From prizes', 'averageDiscount.fromPrizes', d.fromPrizes, formatDecimal, c, ['vouchers won on the wheel'])),
    barChart(rows, [{ label: `Discount (${r.currency})`, color: '#ec4899' }], 'Discounts granted per bucket',
      { width: HALF }),
    numbersTable(r.series, [
      ['From', (b) => b.bucketStart],
      ['Discount', (b) => metric(`series.${b.bucketStart}.discount`, b.discount, formatDecimal(b.discount))],
    ]));
}

function renderOrderValues(r) {
  const v = r.averageOrderValues;
  const c = r.comparison;
  const groups = [
    ['Members', 'members', MEMBER],
    ['Non-members', 'nonMembers', NON_MEMBER],
    ['Everyone', 'everyone', '#10b981'],
  ];
  // Horizontal bars, one per group, to the scale of the largest.
  const max = niceMax(Math.max(0, ...groups.map(([, field]) => Number(v[field]))));
  const chart = svg('svg', { viewBox: '0 0 400 96', class: 'hbars', role: 'img', 'aria-label': 'Average order value by group' });
  groups.forEach(([label, field, color], i) => {
    const y = 6 + i * 30;
    chart.append(svg('text', { x: 0, y: y + 14, class: 'axis', text: label }));
    chart.append(svg('rect', { x: 90, y, width: 300, height: 20, rx: 3, class: 'track' }));
    const width = (300 * Math.max(0, Number(v[field]))) / max;
    if (width > 0) {
      const bar = svg('rect', { x: 90, y, width: width.toFixed(1), height: 20, rx: 3, fill: color });
      bar.append(svg('title', { text: `${label}: ${v[field]} ${r.currency}` }));
      chart.append(bar);
    }
  });
  $('order-values').replaceChildren(
    stats(...groups.map(([label, field]) =>
      stat(label, `averageOrderValues.${field}`, v[field], formatDecimal, c, [r.currency]))),
    el('div', { class: 'series' }, chart));
}

// "Feb 2026", or "Feb 2026 (from Feb 15)" for a first month that starts inside it.
function monthLabel(month) {
  const name = formatBucket(month, 'MONTH');
  return month.endsWith('-01') ? name : `${name} (from ${formatBucket(month, 'DAY')})`;
}

function renderActivity(r) {
  const months = r.activityByMonth;
  const rows = (field) => months.map((m) => ({ label: formatBucket(m.month, 'MONTH'), title: m.month, values: [m[field]] }));
  $('activity').replaceChildren(
    el('div', { class: 'grid two' },
      el('div', {}, el('h3', {}, `Members' revenue (${r.currency})`),
        barChart(rows('revenue'), [{ label: 'Revenue', color: MEMBER }], 'Members\' revenue per month', { width: HALF })),
      el('div', {}, el('h3', {}, 'Members whose last purchase fell in the month'),
        barChart(rows('lastPurchaseMembers'), [{ label: 'Last purchase', color: '#0ea5e9' }],
          'Members by the month of their last purchase', { width: HALF, whole: true }))),
    numbersTable(months, [
      ['Month', (m) => monthLabel(m.month)],
      ['Orders', (m) => metric(`activityByMonth.${m.month}.memberOrders`, m.memberOrders, formatInt(m.memberOrders))],
      [`Revenue (${r.currency})`, (m) => metric(`activityByMonth.${m.month}.revenue`, m.revenue, formatDecimal(m.revenue))],
      ['Last purchase in the month', (m) => metric(`activityByMonth.${m.month}.lastPurchaseMembers`,
        m.lastPurchaseMembers, formatInt(m.lastPurchaseMembers))],
    ], true));
}

function renderDuration(r) {
  const buckets = r.membershipDuration;
  const rows = buckets.map((b) => ({ label: b.label, values: [b.members] }));
  const key = (b, field) => `membershipDuration.${b.minMonths}.${field}`;
  $('duration').replaceChildren(
    barChart(rows, [{ label: 'Members', color: '#8b5cf6' }], 'Members by membership duration',
      { height: 180, whole: true }),
    numbersTable(buckets, [
      ['In the program', (b) => b.label],
      ['Members', (b) => metric(key(b, 'members'), b.members, formatInt(b.members))],
      ['Orders', (b) => metric(key(b, 'orders'), b.orders, formatInt(b.orders))],
      [`Revenue (${r.currency})`, (b) => metric(key(b, 'revenue'), b.revenue, formatDecimal(b.revenue))],
      ['Average purchase', (b) => metric(key(b, 'averagePurchase'), b.averagePurchase, formatDecimal(b.averagePurchase))],
      ['Revenue per member', (b) => metric(key(b, 'revenuePerMember'), b.revenuePerMember,
        formatDecimal(b.revenuePerMember))],
    ], true));
}

function renderCampaigns(r) {
  const campaigns = r.campaigns;
  if (!campaigns.length) {
    $('campaigns').replaceChildren(el('div', { class: 'empty-state', 'data-empty': 'campaigns' },
      'No campaigns in this program'));
    return;
  }
  const key = (c, field) => `campaigns.${c.ruleId}.${field}`;
  const budget = (c, field) => (c[field] === null || c[field] === undefined
    ? el('span', { class: 'muted' }, '—')
    : metric(key(c, field), c[field], formatDecimal(c[field])));
  $('campaigns').replaceChildren(numbersTable(campaigns, [
    ['Campaign', (c) => el('span', {}, c.name, ' ', el('code', {}, c.source),
      c.deleted ? el('span', { class: 'pill down' }, 'deleted') : null)],
    ['Points issued', (c) => metric(key(c, 'pointsIssued'), c.pointsIssued, formatDecimal(c.pointsIssued))],
    ['Awards', (c) => metric(key(c, 'awards'), c.awards, formatInt(c.awards))],
    ['Members reached', (c) => metric(key(c, 'membersReached'), c.membersReached, formatInt(c.membersReached))],
    ['Budget spent', (c) => metric(key(c, 'budgetSpent'), c.budgetSpent, formatDecimal(c.budgetSpent))],
    ['Budget remaining', (c) => budget(c, 'budgetRemaining')],
    ['Budget', (c) => budget(c, 'budgetTotal')],
  ], true));
}

function renderReferrals(report) {
  const funnel = report.funnel;
  $('funnel').replaceChildren(
    metric('referralReport.funnel.clicks', funnel.clicks, formatInt(funnel.clicks)), ' clicks → ',
    metric('referralReport.funnel.registrations', funnel.registrations, formatInt(funnel.registrations)), ' registrations → ',
    metric('referralReport.funnel.rewarded', funnel.rewarded, formatInt(funnel.rewarded)), ' rewarded');
  const rows = report.edges.map((edge) => edge.node);
  if (!rows.length) {
    const icon = svg('svg', { viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.5 },
      svg('path', { d: 'M4 7h16v11a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2z' }),
      svg('path', { d: 'M4 7l2-3h12l2 3M9 12h6' }));
    $('referrals').replaceChildren(el('div', { class: 'empty-state', 'data-empty': 'referrals' }, icon,
      'No referrals in this period'));
    return;
  }
  const table = el('table', { class: 'data' });
  table.append(el('thead', {}, el('tr', {}, el('th', {}, 'Customer'),
    el('th', { class: 'num' }, 'Total referrals'), el('th', { class: 'num' }, 'Pending'),
    el('th', { class: 'num' }, 'Clicks'))));
  const body = el('tbody');
  for (const row of rows) {
    const key = `referralReport.${row.member.id}`;
    body.append(el('tr', { 'data-member': row.member.id },
      el('td', {}, row.member.displayName || `Member #${row.member.id}`),
      el('td', { class: 'num' }, metric(`${key}.totalReferrals`, row.totalReferrals, formatInt(row.totalReferrals))),
      el('td', { class: 'num' }, metric(`${key}.pendingReferrals`, row.pendingReferrals, formatInt(row.pendingReferrals))),
      el('td', { class: 'num' }, metric(`${key}.clicks`, row.clicks, formatInt(row.clicks)))));
  }
  table.append(body);
  $('referrals').replaceChildren(table);
}

// ---------- live activity: a small graphql-transport-ws client ----------

function setLive(text, kind) {
  const pill = $('live-status');
  pill.textContent = text;
  pill.className = `pill ${kind || ''}`;
}

function connectLive(generation, attempt = 0) {
  if (generation !== state.generation || !state.token) return;
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  let socket;
  try {
    socket = new WebSocket(`${scheme}${location.host}/graphql/ws`, 'graphql-transport-ws');
  } catch (err) {
    liveDown(generation, attempt);
    return;
  }
  state.live = socket;
  setLive('connecting…');
  let acknowledged = false;
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${state.token}` } }));
  };
  socket.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    switch (message.type) {
      case 'connection_ack':
        acknowledged = true;
        attempt = 0;
        socket.send(JSON.stringify({ id: 'activity', type: 'subscribe', payload: { query: ACTIVITY_SUBSCRIPTION } }));
        setLive('live', 'live');
        break;
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong', payload: message.payload }));
        break;
      case 'next': {
        const payload = message.payload || {};
        if (payload.errors && payload.errors.length) {
          setLive('live feed unavailable', 'down');
          socket.close(1000);
        } else if (payload.data && payload.data.activity) {
          addActivity(payload.data.activity);
        }
        break;
      }
      case 'error':
      case 'complete':
        setLive('live feed unavailable', 'down');
        socket.close(1000);
        break;
      default:
        break;
    }
  };
  socket.onclose = () => {
    if (state.live === socket) state.live = null;
    liveDown(generation, acknowledged ? 0 : attempt);
  };
}

// Fails soft: says so, and tries again later (15 s, 30 s, then every minute).
function liveDown(generation, attempt) {
  if (generation !== state.generation) return;
  setLive('live feed unavailable', 'down');
  const delay = Math.min(60, 15 * 2 ** attempt) * 1000;
  setTimeout(() => connectLive(generation, attempt + 1), delay);
}

function addActivity(event) {
  // Qualification credits mirror points postings; the ticker shows spendable points only.
  if (event.account && event.account !== 'POINTS') return;
  const tx = event.transaction || {};
  const what = tx.source || tx.purpose || (tx.kind || '').toLowerCase();
  const label = what.replace(/_/g, ' ');
  const delta = String(event.delta);
  const time = tx.createdAt ? new Date(tx.createdAt).toLocaleTimeString('en-GB', { timeZone: state.program.timezone }) : '';
  const item = el('li', { 'data-transaction': tx.id },
    el('time', { datetime: tx.createdAt || '' }, time),
    el('span', {}, el('strong', {}, event.member.displayName || `Member #${event.member.id}`), ` · ${label}`),
    metric(`activity.${tx.id}.delta`, delta, signed(delta), 'span',
      { class: `delta ${delta.startsWith('-') ? 'minus' : 'plus'}` }));
  const list = $('ticker');
  list.prepend(item);
  while (list.children.length > TICKER_ROWS) list.lastElementChild.remove();
  $('ticker-empty').hidden = true;
}

// ---------- wiring ----------

function start() {
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) {
      showSignin('Paste an admin token first.');
      return;
    }
    $('token-input').value = '';
    signIn(token, null);
  });
  $('dev-login').addEventListener('click', devLogin);
  $('sign-out').addEventListener('click', signOut);
  for (const button of document.querySelectorAll('[data-preset]')) {
    button.addEventListener('click', () => applyPreset(button.dataset.preset));
  }
  $('range-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.preset = 'custom';
    markPreset();
    loadReport();
  });
  $('granularity').addEventListener('change', () => loadReport());
  for (const button of document.querySelectorAll('[data-coverage]')) {
    button.addEventListener('click', () => showCoverage(button.dataset.coverage));
  }

  probeDevLogin();
  const params = readHash();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token, params);
  else showSignin(null);
}

start();
