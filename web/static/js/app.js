// app.js — the room page (/r/{room}): it reads the room from the path and an invite token from the
// fragment (#invite=…, removed from the address at once), shows the join screen or resumes the session of
// this tab, joins, and wires the client, the store and the panels together. Errors from the server are
// shown in the reader's language.

import { ForumClient, closeReconnect, jitter, randomNonce } from './forum-client.js';
import { RoomStore } from './store.js';
import * as i18n from './i18n.js';
import { t } from './i18n.js';
import { byTestId } from './dom.js';
import { createJoin, remembered } from './join.js';
import { createChat } from './chat.js';
import { createPeople } from './people.js';
import { createStage } from './stage.js';
import { createPublish } from './publish.js';
import { StageMedia } from './media.js';
import { createConnection } from './connection.js';
import { createMenu } from './menu.js';

const ROOM_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const SESSION_PREFIX = 'liveforum.session.';

/**
 * UIError carries the catalog key of what to tell the reader (so the message follows a language change),
 * and the protocol code behind it.
 */
class UIError extends Error {
  constructor(key, code) {
    super(key ? t(key) : '');
    this.key = key;
    this.code = code;
  }
}

const app = {
  room: '',
  invite: '',
  title: '',
  dev: false,
  client: null,
  leaving: false,
  recovering: false,
  missed: 0,
  wake: null,
};

const store = new RoomStore();
const media = new StageMedia();
let ui; // the panels, once the page is set up

// --- storage of this tab's session token, per room ---

function savedSession() {
  try {
    return sessionStorage.getItem(SESSION_PREFIX + app.room) || '';
  } catch {
    return '';
  }
}

function saveSession(token) {
  try {
    if (token) sessionStorage.setItem(SESSION_PREFIX + app.room, token);
    else sessionStorage.removeItem(SESSION_PREFIX + app.room);
  } catch { /* storage disabled: a reload asks for the name again */ }
}

// --- errors in the reader's language ---

/** errorKey returns the catalog key for a protocol error code; during a join, some codes say more. */
function errorKey(code, { invite = false } = {}) {
  if (code === 'forbidden' && invite) return 'error.forbiddenInvite';
  if (code === 'bad_request') return 'error.badName';
  const key = `error.${code}`;
  return i18n.has(key) ? key : 'error.internal';
}

// --- views ---

function show(view) {
  for (const id of ['loading-view', 'join-view', 'ended-view', 'forum-view']) {
    document.getElementById(id).hidden = id !== view;
  }
  document.body.dataset.view = view.replace('-view', '');
  ui.menu.showLeave(view === 'forum-view');
}

function setTitle(title) {
  app.title = title || '';
  const shown = app.title || app.room;
  byTestId('room-title').textContent = shown;
  document.title = t('room.pageTitleNamed', { room: shown });
}

function showJoin(error = '') {
  stopClient();
  media.stop();
  ui.conn.set('closed');
  ui.conn.quiet();
  show('join-view');
  ui.join.show({ room: app.room, title: app.title, invite: !!app.invite, error });
}

/** ended shows why the reader is out of the forum: kind is a close code or a word (left, gone, …). */
function ended(kind) {
  stopClient();
  media.stop();
  ui.conn.set('closed');
  ui.conn.quiet();
  const known = { 4004: 'removed', 4005: 'replaced', 4006: 'roomClosed', 4009: 'expired', not_found: 'roomClosed' };
  const k = known[kind] || (['left', 'badRoom'].includes(kind) ? kind : 'refused');
  const view = document.getElementById('ended-view');
  view.querySelector('.ended-title').textContent = t(`ended.${k}.title`);
  view.querySelector('.ended-text').textContent = t(`ended.${k}.text`);
  view.dataset.reason = k;
  view.querySelector('.ended-rejoin').hidden = k === 'badRoom' || k === 'roomClosed';
  show('ended-view');
  view.querySelector('.ended-title').focus?.();
}

// --- the connection ---

function stopClient() {
  const c = app.client;
  app.client = null;
  media.detach();
  if (c) {
    c.close();
    ui.conn.set('closed');
  }
  if (app.wake) app.wake();
}

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      app.wake = null;
      resolve();
    }
    app.wake = done;
  });
}

/**
 * enter connects with creds ({token, name, lang} or {session}) and joins the room. With retry, an
 * unreachable server is tried again with backoff (a page resuming its session); without, it is an error
 * (someone waiting on the join button). It rejects with a UIError.
 */
async function enter(creds, { retry = false } = {}) {
  stopClient();
  app.leaving = false;
  const client = new ForumClient({
    token: creds.session || creds.token,
    name: creds.session ? '' : creds.name,
    lang: creds.session ? '' : creds.lang,
  });
  app.client = client;
  wire(client);
  ui.conn.set('connecting');
  let backoff = client.opts.minBackoff;
  for (;;) {
    try {
      await client.connect();
      break;
    } catch (err) {
      if (app.client !== client) throw new UIError('', 'stopped');
      const network = err.code === 'disconnected' || err.code === 'timeout';
      const final = err.closeCode && !closeReconnect(err.closeCode);
      if (!network || final || !retry) {
        stopClient();
        if (network && !final) throw new UIError('error.unreachable', 'unreachable');
        throw new UIError(errorKey(err.code === 'disconnected' ? 'unauthorized' : err.code, { invite: !!creds.token }), err.code);
      }
      const delay = jitter(backoff);
      backoff = Math.min(backoff * 2, client.opts.maxBackoff);
      ui.conn.set(navigator.onLine === false ? 'offline' : 'connecting');
      ui.conn.say('banner.unreachable', {}, 'warn', { retry: true, at: Date.now() + delay });
      await sleep(delay);
      if (app.client !== client) throw new UIError('', 'stopped');
    }
  }
  let reply;
  try {
    reply = await client.join(app.room);
  } catch (err) {
    if (app.client === client) stopClient();
    throw new UIError(errorKey(err.code, { invite: !!creds.token }), err.code);
  }
  if (app.client !== client) throw new UIError('', 'stopped');
  app.recovering = false;
  ui.conn.set('connected');
  ui.conn.quiet();
  store.load(reply);
  setTitle(reply.room && reply.room.title);
  const wasInForum = document.body.dataset.view === 'forum';
  show('forum-view');
  if (!wasInForum) ui.chat.focus();
  media.start(client, app.room, store.self);
  flushOutbox();
}

/** wire routes a client's events to the store and the panels (only while it is the page's client). */
function wire(client) {
  const mine = (fn) => (e) => {
    if (app.client === client) fn(e.detail);
  };
  client.addEventListener('session', mine((d) => saveSession(d.token)));
  client.addEventListener('state', mine((d) => {
    if (d.state === 'reconnecting') {
      if (!app.recovering) {
        app.recovering = true;
        app.missed = 0;
      }
      const offline = navigator.onLine === false;
      ui.conn.set(offline ? 'offline' : 'reconnecting');
      if (d.dialing) ui.conn.say(offline ? 'banner.offline' : 'banner.reconnectingNow', {}, 'warn', { retry: false });
      else ui.conn.say(offline ? 'banner.offline' : 'banner.reconnecting', { attempt: d.attempt }, 'warn', { retry: true, at: Date.now() + d.delay });
    } else if (d.state === 'connected' && app.recovering) {
      // The socket is back; the room is not recovered yet: "connected" waits for rejoined or reset.
      ui.conn.say('banner.catchingUp', {}, 'warn');
    } else if (d.state === 'connected' || d.state === 'connecting') {
      ui.conn.set(d.state);
    }
    ui.stage.render();
  }));
  client.addEventListener('event', mine((d) => {
    if (d.room !== app.room) return;
    if (app.recovering && d.data.kind === 'chat') app.missed++;
    store.apply(d.offset, d.data);
  }));
  client.addEventListener('rejoined', mine((d) => {
    if (d.room !== app.room) return;
    store.recovered(d.reply);
    app.recovering = false;
    ui.conn.set('connected');
    media.start(client, app.room, store.self); // the new connection has no media on the server yet
    ui.conn.say(app.missed ? 'banner.recovered' : 'banner.recoveredNone', { count: app.missed }, 'ok', { for: 5000 });
    flushOutbox();
  }));
  client.addEventListener('reset', mine((d) => {
    if (d.room !== app.room) return;
    app.recovering = false;
    ui.conn.set('connected');
    store.load(d.reply);
    setTitle(d.reply.room && d.reply.room.title);
    media.start(client, app.room, store.self);
    ui.conn.say('banner.reset', {}, 'info', { for: 10000 });
    flushOutbox();
  }));
  client.addEventListener('left', mine((d) => {
    if (d.room !== app.room) return;
    ended(d.code || d.reason);
  }));
  client.addEventListener('closed', mine((d) => {
    if (app.leaving) return;
    if (d.error && !d.error.closeCode) {
      // The server no longer accepts this tab's session (it expired, or the server restarted with other
      // keys). A guest, or the holder of an invitation still in memory, simply joins again.
      saveSession('');
      const creds = freshCreds();
      if (!creds) {
        showJoin({ key: 'error.sessionEnded' });
        return;
      }
      enter(creds, { retry: true })
        .then(() => ui.conn.say('banner.renewed', {}, 'info', { for: 10000 }))
        .catch((err) => {
          if (err.code !== 'stopped') showJoin(err);
        });
      return;
    }
    ended(d.code);
  }));
}

/** freshCreds returns credentials to join again when the session is refused: the invitation, or a guest's name. */
function freshCreds() {
  const self = store.self || {};
  const lang = self.lang || remembered().lang || i18n.lang();
  const name = self.name || remembered().name;
  if (!name) return null;
  if (app.invite) return { token: app.invite, name, lang };
  if (self.role === 'guest') return { name, lang };
  return null;
}

// --- sending, and messages waiting for a connection ---

async function send(text) {
  const client = app.client;
  if (!client) throw new UIError('error.closed', 'closed');
  const nonce = randomNonce();
  store.queue(nonce, text, 'sending');
  await deliver(client, nonce, text);
}

async function deliver(client, nonce, text, { retryRateLimited = false } = {}) {
  try {
    await client.chat(app.room, text, nonce);
    // The message's own event settles it; should it never come, do not leave it pending for ever.
    setTimeout(() => store.unqueue(nonce), 10000);
  } catch (err) {
    // Disconnected, or no answer (the server may have it): sent again once the room is recovered, unless
    // the recovery shows it arrived (its nonce).
    if ((err.code === 'disconnected' || err.code === 'timeout') && app.client === client) {
      store.setOutbox(nonce, 'waiting');
      return;
    }
    // The room's log is unreachable for now (Redis down): keep it waiting and try again, unless by then
    // its event has arrived (a reply lost with Redis, the message logged after all).
    if (err.code === 'unavailable' && app.client === client) {
      store.setOutbox(nonce, 'retrying');
      setTimeout(flushOutbox, 2000);
      return;
    }
    if (err.code === 'rate_limited' && retryRateLimited && app.client === client) {
      store.setOutbox(nonce, 'waiting'); // a burst of waiting messages: the rest go at the chat rate, in order
      setTimeout(flushOutbox, 1100);
      return;
    }
    store.unqueue(nonce);
    throw new UIError(errorKey(err.code), err.code);
  }
}

/** flushOutbox sends the messages that waited for the connection, unless the recovery showed them. */
function flushOutbox() {
  const client = app.client;
  if (!client) return;
  for (const o of [...store.outbox]) {
    if (o.state !== 'waiting' && o.state !== 'retrying') continue;
    if (store.seen(o.nonce)) {
      store.unqueue(o.nonce);
      continue;
    }
    store.setOutbox(o.nonce, 'sending');
    deliver(client, o.nonce, o.text, { retryRateLimited: true }).catch((err) => ui.chat.showError(err));
  }
}

async function leave() {
  const client = app.client;
  if (!client) return;
  app.leaving = true;
  try {
    await Promise.race([client.leave(app.room), new Promise((r) => setTimeout(r, 2000))]);
  } catch { /* closing with 1000 below leaves too */ }
  ended('left');
}

// --- the page ---

function readRoom() {
  const m = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (!m) return '';
  let name = '';
  try {
    name = decodeURIComponent(m[1]);
  } catch {
    return '';
  }
  return ROOM_NAME.test(name) ? name : '';
}

/** readInvite takes the invite token from #invite=… and removes it from the address bar and history. */
function readInvite() {
  const hash = location.hash.replace(/^#/, '');
  if (!hash) return '';
  const token = new URLSearchParams(hash).get('invite') || '';
  history.replaceState(history.state, '', location.pathname + location.search);
  return token;
}

async function fetchJSON(url) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const r = await fetch(url, { signal: ctl.signal, credentials: 'same-origin' });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

function setupTabs() {
  const forum = document.getElementById('forum-view');
  const tabs = [...forum.querySelectorAll('.tab')];
  const select = (panel) => {
    forum.dataset.panel = panel;
    for (const b of tabs) b.setAttribute('aria-pressed', String(b.dataset.panel === panel));
  };
  for (const b of tabs) b.addEventListener('click', () => select(b.dataset.panel));
  select('chat');
  return (count) => {
    forum.querySelector('.tab-count').textContent = i18n.formatNumber(count);
  };
}

async function main() {
  await i18n.setLanguage(i18n.preferred());
  app.room = readRoom();
  app.invite = readInvite();

  const tabCount = setupTabs();
  ui = {
    conn: createConnection({
      retry: () => {
        if (app.wake) app.wake();
        if (app.client) app.client.retryNow();
      },
    }),
    menu: createMenu(document.querySelector('.menu'), { leave }),
    join: createJoin(document.getElementById('join-view'), async (who) => {
      const creds = app.invite ? { token: app.invite, name: who.name, lang: who.lang } : { name: who.name, lang: who.lang };
      try {
        await enter(creds);
      } catch (err) {
        if (app.invite && ['unauthorized', 'token_expired'].includes(err.code)) {
          app.invite = ''; // a dead invitation: the next try is as a guest
          ui.join.show({ room: app.room, title: app.title, invite: false, error: err });
          return;
        }
        throw err;
      }
    }),
    chat: createChat(document.getElementById('panel-chat'), store, send),
    stage: null,
  };
  ui.stage = createStage(document.getElementById('panel-stage'), store, () => ui.conn.state, media);
  createPublish(document.querySelector('.publish'), store, media);
  createPeople(document.getElementById('panel-people'), store, tabCount);
  i18n.onChange(() => {
    ui.menu.sync();
    setTitle(app.title);
    if (document.body.dataset.view === 'ended') {
      const reason = document.getElementById('ended-view').dataset.reason;
      const view = document.getElementById('ended-view');
      view.querySelector('.ended-title').textContent = t(`ended.${reason}.title`);
      view.querySelector('.ended-text').textContent = t(`ended.${reason}.text`);
    }
  });

  document.querySelector('.ended-rejoin').addEventListener('click', () => resume());
  window.addEventListener('offline', () => {
    if (ui.conn.state !== 'connected' && ui.conn.state !== 'closed') ui.conn.set('offline');
  });
  window.addEventListener('online', () => {
    if (app.wake) app.wake();
    if (app.client) app.client.retryNow();
  });

  if (!app.room) {
    setTitle('');
    ended('badRoom');
    return;
  }
  setTitle('');

  const [config, rooms] = await Promise.all([fetchJSON('/config.json'), fetchJSON('/rooms.json')]);
  app.dev = !!(config && config.dev);
  const listed = rooms && Array.isArray(rooms.rooms) ? rooms.rooms.find((r) => r.name === app.room) : null;
  if (listed && listed.title) setTitle(listed.title);
  document.querySelector('.join-dev').hidden = !app.dev;

  if (app.invite) saveSession(''); // a new invitation replaces this tab's earlier session
  await resume();
}

/** resume enters with what the tab has: its session, or an invite and a remembered name; else asks. */
async function resume() {
  const session = savedSession();
  const who = remembered();
  let creds = null;
  if (session) creds = { session };
  else if (app.invite && who.name) creds = { token: app.invite, name: who.name, lang: who.lang || i18n.lang() };
  if (!creds) {
    showJoin();
    return;
  }
  show('loading-view');
  try {
    await enter(creds, { retry: !!session });
  } catch (err) {
    if (err.code === 'stopped') return;
    if (!session && ['unauthorized', 'token_expired'].includes(err.code)) app.invite = ''; // a dead invitation
    if (session && ['unauthorized', 'token_expired', 'bad_request'].includes(err.code)) {
      saveSession('');
      showJoin({ key: 'error.sessionEnded' });
      return;
    }
    showJoin(err);
  }
}

// Tests and other pages can reach the live objects (nothing secret: the page has them anyway).
globalThis.liveforum = {
  get client() {
    return app.client;
  },
  store,
  media,
  i18n,
};

main();
