// The member's mini-app: a reference client of the member API in plain JavaScript, with no
// dependencies. It signs in (Telegram launch data, or the development sign-in of the embedded
// default), calls /graphql with the member token, keeps the balance live over /graphql/ws
// (graphql-transport-ws) and verifies every wheel spin in the browser. Every action that posts
// carries an idempotency key made when the member acts and reused on retry, so a double tap or
// a flaky network never pays twice.
'use strict';

const TOKEN_KEY = 'loyalty-member-token';
const PARAMS = new URLSearchParams(location.search);
const PROGRAM = PARAMS.get('program') || 'demo';
const HISTORY_PAGE = 10;
const RETRIES = 3;
const COLORS = ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#8b5cf6', '#14b8a6', '#ec4899'];

// The demo shop: the object ids are the demo program's (`loyalty-server demo` records views,
// reads and shares of `sku-001`… and `news-001`…), so the per-object rules pay once each.
const PRODUCTS = [
  { id: 'sku-001', name: 'Iced coffee', price: '3.50' },
  { id: 'sku-002', name: 'Green tea latte', price: '4.20' },
  { id: 'sku-003', name: 'Butter croissant', price: '2.80' },
  { id: 'sku-004', name: 'Travel mug', price: '12.00' },
];
const NEWS = [
  { id: 'news-001', title: 'New autumn menu' },
  { id: 'news-002', title: 'Weekend double points' },
  { id: 'news-003', title: 'Our beans, from farm to cup' },
];

const ME_QUERY = `query Me($first: Int) {
  program { name currency }
  me {
    id displayName balance qualificationBalance loginStreak version referralCode referralLink freeSpins
    tier { id name minQualification }
    nextTier { id name minQualification }
    expiringSoon { points at }
    transactions(first: $first) { edges { cursor node { id amount kind account source purpose createdAt } } pageInfo { hasNextPage endCursor } }
  }
}`;
const HISTORY_QUERY = `query History($first: Int, $after: String) {
  me { transactions(first: $first, after: $after) { edges { cursor node { id amount kind account source purpose createdAt } } pageInfo { hasNextPage endCursor } } }
}`;
const OPPORTUNITIES_QUERY = `{ earnOpportunities { ruleId name action source points percent perObject limit { count period } remaining claimed } }`;
const WHEELS_QUERY = `{ wheels { id name spinCost dailySpinLimit totalWeight spinsLeftToday commitment
  segments { id position label weight probability available prize { kind points } } } }`;
const GIFTS_QUERY = `{ gifts { id name description cost stock perMemberLimit inStock } }`;
const VOUCHERS_QUERY = `{ myVouchers(first: 10) { edges { node { id code value currency points status expiresAt } } } }`;
const BOARD_QUERY = `query Board($period: LeaderboardPeriod) {
  leaderboard(period: $period, first: 10) { period entries { rank points member { id displayName } } me { rank points } }
}`;
const REGISTER = `mutation Register($input: RegisterInput) { register(input: $input) { created member { id } } }`;
const RECORD_ACTION = `mutation Act($input: RecordActionInput!) {
  recordAction(input: $input) { awarded points spins balance reason detail rules { name points } }
}`;
const SPIN = `mutation Spin($wheelId: ID!, $clientSeed: String!, $key: String!) {
  spinWheel(wheelId: $wheelId, clientSeed: $clientSeed, idempotencyKey: $key) {
    spinId cost paidWith balance voucherCode nextCommitment
    segment { id label prize { kind points } }
    proof { serverSeed serverSeedHash clientSeed nonce drawSegmentIds drawWeights }
  }
}`;
const REDEEM_GIFT = `mutation Redeem($giftId: ID!, $key: String!) {
  redeemGift(giftId: $giftId, idempotencyKey: $key) { balance redemption { id status gift { name } } }
}`;
const REDEEM_DISCOUNT = `mutation Discount($points: Decimal!, $key: String!) {
  redeemDiscount(points: $points, idempotencyKey: $key) { balance voucher { code value currency } }
}`;
const BALANCE_SUBSCRIPTION = `subscription { balanceChanged { version account balance delta snapshot
  transaction { id kind source purpose } } }`;

const state = {
  token: null,
  me: null,
  version: null,
  historyCursor: null,
  // History rows the member asked for (pages loaded × page size): a refresh shows as many.
  historyRows: HISTORY_PAGE,
  // Every history request takes a number; an answer older than the last request is dropped,
  // so a refresh and a "load more" never interleave their rows.
  historySeq: 0,
  wheel: null,
  rotation: 0,
  period: 'ALL_TIME',
  socket: null,
  generation: 0,
  // One entry per user action in flight: its idempotency key and its promise.
  inflight: new Map(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function formatPoints(value) {
  const text = String(value);
  const negative = text.startsWith('-');
  const [units, cents] = text.replace('-', '').split('.');
  const grouped = units.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const shown = cents && cents !== '00' ? `${grouped}.${cents}` : grouped;
  return negative ? `−${shown}` : shown;
}

function signed(value) {
  const text = String(value);
  return text.startsWith('-') ? formatPoints(text) : `+${formatPoints(text)}`;
}

function label(key) {
  return String(key || '').replace(/_/g, ' ');
}

function randomHex(bytes) {
  const buffer = new Uint8Array(bytes);
  crypto.getRandomValues(buffer);
  return Array.from(buffer, (b) => b.toString(16).padStart(2, '0')).join('');
}

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : randomHex(16);
}

class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

// Worth sending again with the same key: the request may or may not have arrived.
function retryable(err) {
  return err instanceof ApiError && ['NETWORK', 'CONFLICT', 'RATE_LIMITED', 'INTERNAL'].includes(err.code);
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
    throw new ApiError(`unexpected answer (HTTP ${response.status})`, response.status >= 500 ? 'INTERNAL' : 'VALIDATION');
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const code = (first.extensions && first.extensions.code) || 'INTERNAL';
    if (code === 'UNAUTHENTICATED') expired();
    throw new ApiError(first.message, code);
  }
  return body.data;
}

// A user action that posts. `id` names what the member did (one button, one object); while it
// is in flight a second tap joins it instead of posting again. The key is made once, here, and
// every retry of a request that may have arrived sends the same key.
function act(id, run) {
  const running = state.inflight.get(id);
  if (running) return running.promise;
  const entry = { key: newKey() };
  entry.promise = (async () => {
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          return await run(entry.key);
        } catch (err) {
          if (!retryable(err) || attempt + 1 >= RETRIES) throw err;
          await new Promise((resolve) => setTimeout(resolve, 300 * 2 ** attempt));
        }
      }
    } finally {
      state.inflight.delete(id);
    }
  })();
  state.inflight.set(id, entry);
  return entry.promise;
}

// A button that runs an action: disabled while it runs, so a second tap is not even a click;
// the in-flight map in `act` covers anything that gets through anyway.
function bindAction(button, run) {
  button.addEventListener('click', async () => {
    if (button.disabled) return;
    button.disabled = true;
    try {
      await run();
    } catch (err) {
      toast(`${err.code || 'ERROR'}: ${err.message}`, { kind: 'error' });
    } finally {
      button.disabled = false;
    }
  });
}

function toast(text, data = {}) {
  const item = el('li', Object.fromEntries(Object.entries(data).map(([k, v]) => [`data-${k}`, v])), text);
  const list = $('awards');
  list.append(item);
  while (list.children.length > 4) list.firstElementChild.remove();
  setTimeout(() => item.remove(), 5000);
}

// ---------- sign-in ----------

// Telegram puts the launch data in `Telegram.WebApp.initData` when its script runs and in the
// address's fragment (`tgWebAppData`) always; the page loads no third-party script, so it reads
// either.
function telegramInitData() {
  const webApp = window.Telegram && window.Telegram.WebApp;
  if (webApp && webApp.initData) return webApp.initData;
  const fragment = new URLSearchParams(location.hash.slice(1));
  return fragment.get('tgWebAppData') || '';
}

function insideTelegram() {
  return Boolean(telegramInitData());
}

function showSignin(message) {
  document.body.dataset.state = 'signed-out';
  $('signin').hidden = false;
  $('app').hidden = true;
  $('signin-error').hidden = !message;
  $('signin-error').textContent = message || '';
}

function expired() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.generation += 1;
  if (state.socket) state.socket.close(1000);
  showSignin('Your session ended: sign in again.');
  trySignIn();
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const first = (answer.errors && answer.errors[0]) || {};
    throw new ApiError(first.message || `HTTP ${response.status}`, (first.extensions && first.extensions.code) || 'INTERNAL');
  }
  return answer;
}

async function telegramSignIn() {
  try {
    const answer = await postJson('/auth/telegram', { initData: telegramInitData(), program: PROGRAM });
    await signedIn(answer.token);
  } catch (err) {
    showSignin(`Telegram sign-in failed: ${err.message}`);
  }
}

async function devSignIn() {
  try {
    const answer = await postJson('/app/dev-login');
    await signedIn(answer.token);
  } catch (err) {
    showSignin(`Development sign-in failed: ${err.message}`);
  }
}

async function trySignIn() {
  if (insideTelegram()) {
    $('signin-hint').textContent = 'Signing in with Telegram…';
    await telegramSignIn();
    return;
  }
  // The development sign-in exists only in the embedded default, for loopback callers.
  try {
    const probe = await fetch('/app/dev-login');
    if (probe.ok) {
      $('signin-hint').textContent = 'Embedded default: sign in as the demo program\'s demo member.';
      $('dev-login').hidden = false;
    }
  } catch (err) {
    // No development sign-in: the hint stays.
  }
}

async function signedIn(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.generation += 1;
  try {
    let data = await gql(ME_QUERY, { first: HISTORY_PAGE });
    if (!data.me) {
      // First visit: join and register (idempotent on the token's subject), with the inviter's
      // code from `?ref=` or Telegram's `start_param=ref_…` when there is one.
      const input = { displayName: 'Demo Member' };
      const code = PARAMS.get('ref') || startParamReferral();
      if (code) input.referralCode = code;
      await act('register', () => gql(REGISTER, { input }));
      data = await gql(ME_QUERY, { first: HISTORY_PAGE });
    }
    $('signin').hidden = true;
    $('app').hidden = false;
    renderMe(data, true);
    await Promise.all([loadOpportunities(), loadWheel(), loadGifts(), loadVouchers(), loadBoard()]);
    connectLive(state.generation);
    document.body.dataset.state = 'ready';
  } catch (err) {
    if (err.code !== 'UNAUTHENTICATED') showSignin(`Cannot load your account: ${err.message}`);
  }
}

function startParamReferral() {
  const param = new URLSearchParams(telegramInitData()).get('start_param');
  return param && param.startsWith('ref_') ? param : null;
}

// Telegram's client events, sent as its own script would (the page loads none): to the native
// web view's proxy on phones and desktop, to the parent frame on Telegram Web.
function telegramEvent(type, data) {
  const webApp = window.Telegram && window.Telegram.WebApp;
  if (type === 'web_app_ready' && webApp && webApp.ready) return webApp.ready();
  if (type === 'web_app_open_tg_link' && webApp && webApp.openTelegramLink) {
    return webApp.openTelegramLink(`https://t.me${data.path_full}`);
  }
  const payload = JSON.stringify(data || {});
  if (window.TelegramWebviewProxy && window.TelegramWebviewProxy.postEvent) {
    window.TelegramWebviewProxy.postEvent(type, payload);
  } else if (window.parent !== window) {
    window.parent.postMessage(JSON.stringify({ eventType: type, eventData: data || {} }), 'https://web.telegram.org');
  } else if (type === 'web_app_open_tg_link') {
    window.open(`https://t.me${data.path_full}`, '_blank', 'noopener');
  }
  return undefined;
}

// ---------- the member ----------

function setBalance(balance) {
  const node = $('balance');
  if (node.dataset.value === String(balance)) return;
  node.dataset.value = String(balance);
  node.textContent = formatPoints(balance);
  node.classList.add('bump');
  setTimeout(() => node.classList.remove('bump'), 250);
}

function renderMe(data, withHistory) {
  const me = data.me;
  state.me = me;
  state.version = me.version;
  $('program-name').textContent = data.program ? data.program.name : 'Rewards';
  setBalance(me.balance);
  $('streak').textContent = String(me.loginStreak);
  $('tier-name').textContent = me.tier ? me.tier.name : 'No tier yet';
  $('tier-name').dataset.tier = me.tier ? me.tier.id : '';
  $('qualification').textContent = formatPoints(me.qualificationBalance);
  const next = me.nextTier;
  if (next) {
    const from = me.tier ? Number(me.tier.minQualification) : 0;
    const to = Number(next.minQualification);
    const done = Math.max(0, Math.min(1, (Number(me.qualificationBalance) - from) / Math.max(to - from, 0.01)));
    $('tier-bar').style.width = `${Math.round(done * 100)}%`;
    const missing = (Math.max(0, to - Number(me.qualificationBalance))).toFixed(2);
    $('tier-next').textContent = `${formatPoints(missing)} more qualification points to ${next.name}`;
    $('tier-next').dataset.missing = missing;
  } else {
    $('tier-bar').style.width = me.tier ? '100%' : '0';
    $('tier-next').textContent = me.tier ? 'Top tier reached' : '';
  }
  const expiring = me.expiringSoon;
  $('expiring').hidden = !expiring;
  if (expiring) {
    $('expiring').textContent = `${formatPoints(expiring.points)} points expire on ${new Date(expiring.at).toLocaleDateString()}`;
    $('expiring').dataset.points = expiring.points;
  }
  $('referral-code').textContent = me.referralCode;
  $('referral-link').textContent = referralLink();
  if (withHistory) renderHistory(me.transactions, true);
}

function referralLink() {
  const me = state.me;
  if (me.referralLink) return me.referralLink;
  return `${location.origin}/app?program=${encodeURIComponent(PROGRAM)}&ref=${encodeURIComponent(me.referralCode)}`;
}

// A refresh keeps as many history rows as the member has loaded (newest first).
async function refreshMe() {
  const seq = ++state.historySeq;
  const data = await gql(ME_QUERY, { first: Math.min(100, state.historyRows) });
  if (data.me) renderMe(data, seq === state.historySeq);
}

function renderHistory(connection, replace) {
  const list = $('history');
  if (replace) list.replaceChildren();
  for (const { node } of connection.edges) {
    const what = node.source || node.purpose || node.kind.toLowerCase();
    const account = node.account === 'POINTS' ? '' : ` (${node.account.toLowerCase()})`;
    list.append(el('li', { 'data-transaction': node.id },
      el('span', {}, `${label(what)}${account}`, el('br'), el('span', { class: 'muted small' }, new Date(node.createdAt).toLocaleString())),
      el('span', { class: String(node.amount).startsWith('-') ? 'minus' : 'plus' }, signed(node.amount))));
  }
  state.historyCursor = connection.pageInfo.endCursor;
  $('history-more').hidden = !connection.pageInfo.hasNextPage;
}

async function loadMoreHistory() {
  const seq = ++state.historySeq;
  const data = await gql(HISTORY_QUERY, { first: HISTORY_PAGE, after: state.historyCursor });
  if (seq !== state.historySeq) return;
  renderHistory(data.me.transactions, false);
  state.historyRows = $('history').children.length;
}

// ---------- earning ----------

async function loadOpportunities() {
  const data = await gql(OPPORTUNITIES_QUERY);
  const list = $('opportunities');
  list.replaceChildren();
  for (const o of data.earnOpportunities) {
    if (['join', 'registration', 'referral_friend', 'referral_inviter'].includes(o.action)) continue;
    const pays = o.points ? `${formatPoints(o.points)} points` : o.percent ? `${o.percent}% back` : '';
    let left = '';
    if (o.claimed) left = 'claimed';
    else if (o.limit && o.remaining !== null) left = `${o.remaining} of ${o.limit.count} left ${o.limit.period === 'DAY' ? 'today' : `this ${o.limit.period.toLowerCase()}`}`;
    list.append(el('li', { 'data-action': o.action, 'data-remaining': o.remaining === null ? '' : o.remaining },
      el('span', {}, o.name, el('br'), el('span', { class: 'muted small' }, left)),
      el('span', { class: 'strong' }, pays)));
    if (o.action === 'daily_login') {
      $('checkin').dataset.points = o.points || '';
      $('checkin').textContent = o.claimed ? 'Checked in today' : `Check in · +${formatPoints(o.points || '0')}`;
    }
  }
}

function describeAward(result) {
  if (result.awarded) {
    const spins = result.spins ? ` and ${result.spins} free spin(s)` : '';
    return `${signed(result.points)} points${spins}`;
  }
  const reasons = {
    ALREADY_CLAIMED: 'already rewarded',
    LIMIT_REACHED: 'limit reached for now',
    NO_RULE: 'no reward for this',
    RULE_INACTIVE: 'not rewarded right now',
  };
  return reasons[result.reason] || label(result.reason).toLowerCase();
}

// Records an action and shows what it paid, on `target` and as a toast.
async function record(action, objectId, target) {
  const id = `${action}:${objectId || ''}`;
  const result = await act(id, (key) => gql(RECORD_ACTION, {
    input: { action, objectId, idempotencyKey: key },
  }).then((data) => data.recordAction));
  setBalance(result.balance);
  const text = describeAward(result);
  if (target) {
    target.textContent = text;
    target.className = result.awarded ? 'award' : 'award none';
    target.dataset.awarded = String(result.awarded);
    target.dataset.points = result.points;
    target.dataset.count = String(Number(target.dataset.count || '0') + 1);
  }
  toast(`${label(action)}${objectId ? ` ${objectId}` : ''}: ${text}`,
    { action, object: objectId || '', awarded: String(result.awarded), points: result.points });
  loadOpportunities().catch(() => {});
  return result;
}

async function checkIn() {
  const result = await record('daily_login', null, $('checkin-result'));
  if (result.awarded) await refreshMe();
}

function renderShop() {
  const products = $('products');
  for (const p of PRODUCTS) {
    const award = el('span', { class: 'award', 'data-object': p.id });
    const view = el('button', { type: 'button', 'data-view': p.id }, 'View');
    const share = el('button', { type: 'button', 'data-share': p.id }, 'Share');
    bindAction(view, () => record('product_view', p.id, award));
    bindAction(share, () => shareProduct(p, award));
    products.append(el('li', {},
      el('span', {}, p.name, el('br'), el('span', { class: 'muted small' }, `$${p.price} `), award),
      el('span', { class: 'actions' }, view, share)));
  }
  const news = $('news');
  for (const n of NEWS) {
    const award = el('span', { class: 'award', 'data-object': n.id });
    const read = el('button', { type: 'button', 'data-read': n.id }, 'Read');
    bindAction(read, () => record('news_read', n.id, award));
    news.append(el('li', {}, el('span', {}, n.title, el('br'), award), el('span', { class: 'actions' }, read)));
  }
}

async function shareProduct(product, award) {
  const url = `${location.origin}/app?program=${encodeURIComponent(PROGRAM)}`;
  await share(`${product.name} at ${$('program-name').textContent}`, url);
  return record('product_share', product.id, award);
}

// ---------- sharing ----------

async function share(text, url) {
  if (insideTelegram()) {
    telegramEvent('web_app_open_tg_link', {
      path_full: `/share/url?url=${encodeURIComponent(url)}&text=${encodeURIComponent(text)}`,
    });
    return 'telegram';
  }
  if (navigator.share) {
    try {
      await navigator.share({ text, url });
      return 'shared';
    } catch (err) {
      // Cancelled, or not allowed here: fall back to copying.
    }
  }
  try {
    await navigator.clipboard.writeText(`${text} ${url}`);
    return 'copied';
  } catch (err) {
    return 'shown';
  }
}

async function shareReferral() {
  const how = await share('Join me and get welcome points', referralLink());
  $('share-result').textContent = { telegram: 'Opened Telegram', shared: 'Shared', copied: 'Link copied', shown: 'Copy the link above' }[how];
}

// ---------- the lucky wheel ----------

async function loadWheel() {
  const data = await gql(WHEELS_QUERY);
  const wheel = data.wheels[0] || null;
  state.wheel = wheel;
  $('wheel-card').hidden = !wheel;
  if (!wheel) return;
  $('wheel-name').textContent = wheel.name;
  $('wheel-meta').textContent = `${formatPoints(wheel.spinCost)} points a spin · ${wheel.spinsLeftToday === null ? 'no daily limit' : `${wheel.spinsLeftToday} of ${wheel.dailySpinLimit} spins left today`}`;
  $('wheel-commitment').textContent = wheel.commitment || '—';
  $('wheel-commitment').dataset.commitment = wheel.commitment || '';
  $('wheel-spin').disabled = wheel.spinsLeftToday === 0;
  const odds = $('wheel-odds');
  odds.replaceChildren();
  for (const s of wheel.segments) {
    odds.append(el('tr', { 'data-segment': s.id, 'data-probability': s.probability },
      el('td', {}, s.label), el('td', { class: 'right' }, `${(Number(s.probability) * 100).toFixed(2)}%`)));
  }
  drawWheel(wheel);
}

// Equal slices in position order (the odds are in the table, not in the slice sizes).
function drawWheel(wheel) {
  const svgNs = 'http://www.w3.org/2000/svg';
  const svg = $('wheel-svg');
  svg.replaceChildren();
  const n = wheel.segments.length;
  wheel.segments.forEach((segment, i) => {
    const a0 = (i / n) * 2 * Math.PI - Math.PI / 2;
    const a1 = ((i + 1) / n) * 2 * Math.PI - Math.PI / 2;
    const path = document.createElementNS(svgNs, 'path');
    const p = (a) => `${(95 * Math.cos(a)).toFixed(2)} ${(95 * Math.sin(a)).toFixed(2)}`;
    path.setAttribute('d', `M0 0 L${p(a0)} A95 95 0 0 1 ${p(a1)} Z`);
    path.setAttribute('fill', segment.available ? COLORS[i % COLORS.length] : '#cbd2e1');
    svg.append(path);
    const mid = (a0 + a1) / 2;
    const text = document.createElementNS(svgNs, 'text');
    text.setAttribute('x', (58 * Math.cos(mid)).toFixed(2));
    text.setAttribute('y', (58 * Math.sin(mid)).toFixed(2));
    text.setAttribute('text-anchor', 'middle');
    text.setAttribute('dominant-baseline', 'middle');
    text.setAttribute('transform', `rotate(${((mid * 180) / Math.PI + 90).toFixed(1)} ${(58 * Math.cos(mid)).toFixed(2)} ${(58 * Math.sin(mid)).toFixed(2)})`);
    text.textContent = segment.label.length > 14 ? `${segment.label.slice(0, 13)}…` : segment.label;
    svg.append(text);
  });
}

// Turns the wheel so the winning slice stops under the pointer (top), after a few full turns.
function animateTo(segmentId) {
  const svg = $('wheel-svg');
  const segments = state.wheel.segments;
  const index = Math.max(0, segments.findIndex((s) => s.id === segmentId));
  const slice = 360 / segments.length;
  const target = 360 - (index + 0.5) * slice;
  const current = ((state.rotation % 360) + 360) % 360;
  state.rotation += 5 * 360 + ((target - current + 360) % 360);
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve();
    };
    svg.addEventListener('transitionend', finish, { once: true });
    // Browsers skip the transition event when nothing is painted (a hidden tab): stop anyway.
    setTimeout(finish, 2600);
    svg.style.transform = `rotate(${state.rotation}deg)`;
  });
}

function hexBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function toHex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

// The server's pure draw (domain/src/spending/wheel/draw.rs), recomputed: HMAC-SHA256 keyed by
// the server seed over "clientSeed:nonce" (then ":1", ":2"… when every word is rejected), four
// big-endian u64 words each, the first one below 2^64 − (2^64 mod W) taken mod W, and the
// first segment whose running weight exceeds it.
async function recomputeDraw(proof) {
  const key = await crypto.subtle.importKey('raw', hexBytes(proof.serverSeed), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const weights = proof.drawWeights.map((w) => BigInt(w));
  const total = weights.reduce((a, b) => a + b, 0n);
  if (total === 0n) return null;
  const two64 = 1n << 64n;
  const limit = two64 - (two64 % total);
  for (let round = 0; round < 64; round += 1) {
    const message = round === 0 ? `${proof.clientSeed}:${proof.nonce}` : `${proof.clientSeed}:${proof.nonce}:${round}`;
    const digest = new DataView(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(message)));
    for (let word = 0; word < 4; word += 1) {
      const value = digest.getBigUint64(word * 8, false);
      if (value < limit) {
        const r = value % total;
        let cumulative = 0n;
        for (let i = 0; i < weights.length; i += 1) {
          cumulative += weights[i];
          if (r < cumulative) return proof.drawSegmentIds[i];
        }
        return null;
      }
    }
  }
  return null;
}

async function verifySpin(commitment, spin) {
  const hash = toHex(await crypto.subtle.digest('SHA-256', hexBytes(spin.proof.serverSeed)));
  const winner = await recomputeDraw(spin.proof);
  return { seedMatches: hash === commitment, drawMatches: winner === spin.segment.id };
}

async function spin() {
  const wheel = state.wheel;
  // The commitment the member saw before spinning is what the revealed seed must hash to.
  const commitment = wheel.commitment;
  const clientSeed = randomHex(8);
  $('wheel-proof').hidden = true;
  $('wheel-result').textContent = 'Spinning…';
  const result = await act(`spin:${wheel.id}`, (key) => gql(SPIN, { wheelId: wheel.id, clientSeed, key }).then((d) => d.spinWheel));
  setBalance(result.balance);
  const [check] = await Promise.all([verifySpin(commitment, result), animateTo(result.segment.id)]);
  const prize = result.segment.prize;
  let text = `You won: ${result.segment.label}`;
  if (prize.kind === 'NOTHING') text = `${result.segment.label} — no prize this time`;
  if (result.voucherCode) text += ` (voucher ${result.voucherCode})`;
  $('wheel-result').textContent = text;
  $('wheel-result').dataset.segment = result.segment.id;
  $('wheel-result').dataset.spin = result.spinId;
  const ok = check.seedMatches && check.drawMatches;
  const mark = $('wheel-verified');
  mark.dataset.verified = String(ok);
  mark.textContent = ok
    ? '✓ verified: the revealed seed matches the commitment and recomputes this result'
    : `✗ NOT verified (${check.seedMatches ? '' : 'seed does not match the commitment; '}${check.drawMatches ? '' : 'the draw does not recompute'})`;
  $('proof-seed').textContent = result.proof.serverSeed;
  $('proof-nonce').textContent = String(result.proof.nonce);
  $('proof-client').textContent = result.proof.clientSeed;
  $('wheel-proof').hidden = false;
  toast(text, { action: 'spin', spin: result.spinId });
  await Promise.all([loadWheel(), loadVouchers(), loadGifts()]);
}

// ---------- gifts and vouchers ----------

async function loadGifts() {
  const data = await gql(GIFTS_QUERY);
  const list = $('gifts');
  list.replaceChildren();
  for (const g of data.gifts) {
    const stock = g.stock === null ? 'unlimited' : `${g.stock} left`;
    const button = el('button', { type: 'button', 'data-redeem': g.id, disabled: !g.inStock }, `${formatPoints(g.cost)} pts`);
    bindAction(button, () => redeemGift(g));
    list.append(el('li', { 'data-gift': g.id, 'data-stock': g.stock === null ? '' : g.stock },
      el('span', {}, g.name, el('br'), el('span', { class: 'muted small' }, `${stock}${g.perMemberLimit ? ` · max ${g.perMemberLimit} each` : ''}`)),
      el('span', { class: 'actions' }, button)));
  }
}

async function redeemGift(gift) {
  try {
    const result = await act(`gift:${gift.id}`, (key) => gql(REDEEM_GIFT, { giftId: gift.id, key }).then((d) => d.redeemGift));
    setBalance(result.balance);
    $('gift-result').textContent = `Redeemed ${result.redemption.gift.name} (${label(result.redemption.status).toLowerCase()})`;
    $('gift-result').dataset.redemption = result.redemption.id;
  } catch (err) {
    $('gift-result').textContent = `${gift.name}: ${err.code === 'INSUFFICIENT_POINTS' ? 'not enough points' : err.message}`;
  }
  await loadGifts();
}

async function loadVouchers() {
  const data = await gql(VOUCHERS_QUERY);
  const list = $('vouchers');
  list.replaceChildren();
  for (const { node: v } of data.myVouchers.edges) {
    list.append(el('li', { 'data-voucher': v.id },
      el('span', {}, el('span', { class: 'mono strong' }, v.code), el('br'),
        el('span', { class: 'muted small' }, `${v.value} ${v.currency} off · ${label(v.status).toLowerCase()} · until ${new Date(v.expiresAt).toLocaleDateString()}`)),
      el('span', { class: 'muted small' }, `${formatPoints(v.points)} pts`)));
  }
}

async function buyVoucher() {
  const points = $('voucher-points').value;
  try {
    const result = await act('voucher', (key) => gql(REDEEM_DISCOUNT, { points, key }).then((d) => d.redeemDiscount));
    setBalance(result.balance);
    $('voucher-result').textContent = `Voucher ${result.voucher.code}: ${result.voucher.value} ${result.voucher.currency} off`;
  } catch (err) {
    $('voucher-result').textContent = err.code === 'INSUFFICIENT_POINTS' ? 'Not enough points' : err.message;
  }
  await loadVouchers();
}

// ---------- leaderboard ----------

async function loadBoard() {
  const data = await gql(BOARD_QUERY, { period: state.period });
  const board = data.leaderboard;
  const list = $('board');
  list.replaceChildren();
  for (const e of board.entries) {
    const mine = state.me && e.member.id === state.me.id;
    list.append(el('li', { class: mine ? 'me' : null, 'data-rank': e.rank },
      el('span', {}, `${e.rank}. ${e.member.displayName || `Member #${e.member.id}`}`),
      el('span', { class: 'strong' }, formatPoints(e.points))));
  }
  if (!board.entries.length) list.append(el('li', { class: 'muted' }, 'Nobody has earned points in this period yet.'));
  const me = board.me;
  $('my-rank').textContent = me && me.rank ? `You: #${me.rank} with ${formatPoints(me.points)} points` : 'You are not ranked in this period yet.';
  $('my-rank').dataset.rank = me && me.rank ? me.rank : '';
  for (const button of document.querySelectorAll('[data-period]')) {
    button.setAttribute('aria-pressed', String(button.dataset.period === state.period));
  }
}

// ---------- live balance: a small graphql-transport-ws client ----------

function setLive(on, text) {
  const pill = $('live-status');
  pill.dataset.live = on ? 'on' : 'off';
  pill.textContent = text;
}

function connectLive(generation, attempt = 0) {
  if (generation !== state.generation || !state.token) return;
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  let socket;
  try {
    socket = new WebSocket(`${scheme}${location.host}/graphql/ws`, 'graphql-transport-ws');
  } catch (err) {
    reconnect(generation, attempt);
    return;
  }
  state.socket = socket;
  setLive(false, 'connecting…');
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
        socket.send(JSON.stringify({ id: 'balance', type: 'subscribe', payload: { query: BALANCE_SUBSCRIPTION } }));
        setLive(true, 'live');
        break;
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'next': {
        const payload = message.payload || {};
        if (payload.data && payload.data.balanceChanged) onBalanceEvent(payload.data.balanceChanged);
        break;
      }
      case 'error':
      case 'complete':
        socket.close(1000);
        break;
      default:
        break;
    }
  };
  socket.onclose = (event) => {
    if (state.socket === socket) state.socket = null;
    if (event.code === 4403) {
      expired();
      return;
    }
    reconnect(generation, acknowledged ? 0 : attempt);
  };
}

// 1 s, 2 s, 4 s … up to 30 s between attempts; the first event after reconnecting is a snapshot,
// whose version tells whether anything was missed meanwhile.
function reconnect(generation, attempt) {
  if (generation !== state.generation) return;
  setLive(false, 'reconnecting…');
  setTimeout(() => connectLive(generation, attempt + 1), Math.min(30, 2 ** attempt) * 1000);
}

// The version contract: each posting is +1. An event more than one ahead means some were
// missed (or the snapshot is newer than what the page shows): re-read `me`.
function onBalanceEvent(event) {
  const known = state.version;
  if (event.snapshot) {
    if (known === null || event.version !== known) refreshAll();
    return;
  }
  if (known !== null && event.version <= known) return;
  if (known !== null && event.version > known + 1) {
    refreshAll();
    return;
  }
  state.version = event.version;
  if (event.account === 'POINTS') {
    setBalance(event.balance);
    const tx = event.transaction || {};
    if (tx.source === 'purchase' || tx.kind === 'ADJUST' || tx.kind === 'EXPIRE') {
      toast(`${label(tx.source || tx.purpose || tx.kind)}: ${signed(event.delta)} points`, { live: 'true' });
    }
  }
  scheduleHistoryRefresh();
}

let refreshTimer = null;
function scheduleHistoryRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshAll(), 400);
}

async function refreshAll() {
  try {
    await refreshMe();
    await loadOpportunities();
  } catch (err) {
    // The next event or reconnection tries again.
  }
}

// ---------- wiring ----------

function selectTab(name) {
  for (const button of document.querySelectorAll('[data-tab]')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll('[data-panel]')) {
    panel.hidden = panel.dataset.panel !== name;
  }
  if (name === 'more') loadBoard().catch(() => {});
}

function start() {
  if (insideTelegram()) telegramEvent('web_app_ready');
  renderShop();
  for (const button of document.querySelectorAll('[data-tab]')) {
    button.addEventListener('click', () => selectTab(button.dataset.tab));
  }
  for (const button of document.querySelectorAll('[data-period]')) {
    button.addEventListener('click', () => {
      state.period = button.dataset.period;
      loadBoard().catch((err) => toast(err.message));
    });
  }
  bindAction($('checkin'), checkIn);
  $('wheel-spin').addEventListener('click', async () => {
    const button = $('wheel-spin');
    if (button.disabled) return;
    button.disabled = true;
    try {
      await spin();
    } catch (err) {
      $('wheel-result').textContent = err.code === 'INSUFFICIENT_POINTS' ? 'Not enough points to spin' : `${err.code}: ${err.message}`;
      await loadWheel().catch(() => {});
    } finally {
      button.disabled = Boolean(state.wheel && state.wheel.spinsLeftToday === 0);
    }
  });
  $('voucher-buy').addEventListener('click', async () => {
    $('voucher-buy').disabled = true;
    try {
      await buyVoucher();
    } finally {
      $('voucher-buy').disabled = false;
    }
  });
  $('history-more').addEventListener('click', () => loadMoreHistory().catch((err) => toast(err.message)));
  $('share').addEventListener('click', () => shareReferral());
  $('dev-login').addEventListener('click', () => devSignIn());

  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && !insideTelegram()) {
    signedIn(token);
  } else {
    showSignin();
    trySignIn();
  }
}

document.addEventListener('DOMContentLoaded', start);
