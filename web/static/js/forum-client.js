// forum-client.js — a client of the liveforum websocket protocol (docs/protocol.md), usable without the UI.
//
// It mirrors the Go package client/: it authenticates (access token, invite token + name + lang, or a guest
// name + lang), joins rooms, sends chat, answers pings, and when the connection drops it reconnects with
// exponential backoff and full jitter, authenticates with the session token the server gave it, and joins
// every room again from its tracked position {epoch, offset}, so that each event is delivered exactly once
// and in order. When the history is gone (recovered: false) it says so with a "reset" event.
//
// Events (EventTarget; each a CustomEvent whose detail is described here):
//   "state"    {state, attempt, delay, code, reason}  state: connecting | connected | reconnecting | closed
//   "session"  {token}                                 a session token to present on a later page load
//   "event"    {room, offset, data}                    a room event (data: the parsed payload, with data.kind)
//   "reset"    {room, reply}                           the room's history is gone: rebuild it from reply
//   "rejoined" {room, reply}                           a room was recovered after a reconnect (after its events)
//   "left"     {room, code, reason}                    out of a room: removed (4004), replaced (4005), room
//                                                      closed (4006), or a rejoin refused (code 0, reason = error code)
//   "closed"   {code, reason, error}                   the client ended for good (final close code, refused
//                                                      credentials, or close()); it will not reconnect
//   "media.offer" {room, sdp, names, subscription}            the server's offer for the room's stage (after
//                                                      mediaSubscribe): answer it with mediaAnswer. subscription
//                                                      says which mediaSubscribe it follows (the number in that
//                                                      call's reply): an offer of an earlier one is stale
//   "notice"   {room, code, message}                   an error the server sent without a request id (e.g. a
//                                                      media subscription that failed after its reply)

/** Close codes after which the client does not reconnect (protocol.CloseReconnect). */
const FINAL_CLOSE = new Set([1000, 1009, 4000, 4001, 4004, 4005, 4006, 4009]);

/** closeReconnect reports whether a client should reconnect after the server closed with code. */
export function closeReconnect(code) {
  return !FINAL_CLOSE.has(code);
}

/** The close code the server uses for flooding: come back only after a pause. */
export const CLOSE_RATE_LIMITED = 4003;

/** A close code of our own (3000–3999 is for applications) for connections this client gives up on. */
const CLOSE_DROPPED = 3000;

/** ForumError is an error answer from the server ({code, message}) or the end of a connection. */
export class ForumError extends Error {
  /**
   * @param {string} code protocol error code ("not_found", …), "disconnected", "closed" or "timeout"
   * @param {string} message
   * @param {number} [closeCode] the websocket close code, when the connection was closed
   */
  constructor(code, message, closeCode = 0) {
    super(message || code);
    this.name = 'ForumError';
    this.code = code;
    this.closeCode = closeCode;
  }
}

/** wsURL returns the websocket endpoint of the server that served this page. */
export function wsURL(loc = globalThis.location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
}

/** randomNonce returns a nonce for chat messages (works outside secure contexts, unlike randomUUID). */
export function randomNonce() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** jitter returns a random delay in (0, bound] ms: "full jitter". */
export function jitter(bound) {
  return Math.floor(Math.random() * bound) + 1;
}

export class ForumClient extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} [opts.url] websocket URL (default: this page's server)
   * @param {string} [opts.token] access or invite token; empty: a guest
   * @param {string} [opts.name] guest or invitee display name
   * @param {string} [opts.lang] guest or invitee reading language (BCP 47)
   * @param {string} [opts.session] a session token from an earlier connection, presented instead of the above
   * @param {boolean} [opts.reconnect=true] reconnect and recover after a drop
   * @param {number} [opts.minBackoff=100] ms
   * @param {number} [opts.maxBackoff=5000] ms
   * @param {number} [opts.authTimeout=10000] ms to wait for the auth reply
   * @param {number} [opts.requestTimeout=15000] ms to wait for the answer to a request
   * @param {typeof WebSocket} [opts.WebSocket] WebSocket constructor (tests)
   */
  constructor(opts = {}) {
    super();
    this.opts = {
      url: opts.url || wsURL(),
      token: opts.token || '',
      name: opts.name || '',
      lang: opts.lang || '',
      reconnect: opts.reconnect !== false,
      minBackoff: opts.minBackoff || 100,
      maxBackoff: opts.maxBackoff || 5000,
      authTimeout: opts.authTimeout || 10000,
      requestTimeout: opts.requestTimeout || 15000,
      WebSocket: opts.WebSocket || globalThis.WebSocket,
    };
    this.session = opts.session || '';
    this.state = 'idle';
    this.member = null; // who the server says we are
    this.authReply = null;
    this.reconnects = 0;
    this._ws = null;
    this._nextID = 1; // 1 is the auth request's
    this._pending = new Map(); // id -> {resolve, reject, join, timer}
    this._rooms = new Map(); // room -> {epoch, offset, presence}
    this._mediaSubs = new Map(); // room -> number of media.subscribe replies so far (tags media.offer)
    this._closed = false;
    this._backoff = this.opts.minBackoff;
    this._retryTimer = 0;
    this._retryWake = null;
    this._watchdog = 0;
    this._pingEvery = 25;
  }

  /**
   * connect dials and authenticates once; it resolves with the auth reply ({member, room, token?, ping_every,
   * server}) and rejects with a ForumError: a request error code ("unauthorized", "bad_request", …), or
   * "disconnected" (network, HTTP refusal, or a close, with closeCode). Call it once; the client reconnects
   * by itself afterwards.
   */
  async connect() {
    this._setState('connecting');
    try {
      await this._dial();
    } catch (err) {
      if (!this._closed && this.state === 'connecting') this._setState('idle');
      throw err;
    }
    return this.authReply;
  }

  /** position returns the tracked position {epoch, offset} in a joined room, or null. */
  position(room) {
    const r = this._rooms.get(room);
    return r ? { epoch: r.epoch, offset: r.offset } : null;
  }

  /** rooms returns the names of the joined rooms. */
  rooms() {
    return [...this._rooms.keys()];
  }

  /**
   * join joins a room and resolves with the reply ({room, self, epoch, offset, recovered, members?,
   * member_count, events}). On a fresh join the reply's events are the recent history: the caller shows
   * them; live events follow as "event".
   * @param {string} room
   * @param {{presence?: boolean, since?: {epoch: string, offset: number}}} [o]
   */
  async join(room, o = {}) {
    const data = {};
    if (o.since) data.since = o.since;
    if (o.presence === false) data.presence = false;
    const reply = await this._request('join', room, data, room);
    const r = this._rooms.get(room);
    if (r) r.presence = o.presence;
    return reply;
  }

  /** leave leaves a room; the room is forgotten even if the request fails. */
  async leave(room) {
    try {
      return await this._request('leave', room, null);
    } finally {
      this._rooms.delete(room);
    }
  }

  /** chat sends a message and resolves with its offset in the room's log. */
  async chat(room, text, nonce = '') {
    const data = { text };
    if (nonce) data.nonce = nonce;
    const reply = await this._request('chat', room, data);
    return reply.offset;
  }

  /** remove asks the server to remove a member from a room (moderators). */
  remove(room, identity, reason = '') {
    const data = { identity };
    if (reason) data.reason = reason;
    return this._request('remove', room, data);
  }

  // --- media signalling (docs/protocol.md §3.7a); the peer connections are the caller's ---

  /**
   * mediaSubscribe asks for the room's stage; it resolves with {ice_servers, subscription}, then
   * "media.offer"s follow, each tagged with that subscription number.
   */
  mediaSubscribe(room) {
    return this._request('media.subscribe', room, null);
  }

  /** mediaAnswer answers the last "media.offer" of the room. */
  mediaAnswer(room, sdp) {
    return this._request('media.answer', room, { sdp });
  }

  /** mediaUnsubscribe ends the room's stage subscription. */
  mediaUnsubscribe(room) {
    return this._request('media.unsubscribe', room, null);
  }

  /** mediaPublish sends an offer of the tracks to publish and resolves with the server's answer (an SDP string). */
  async mediaPublish(room, sdp) {
    const reply = await this._request('media.publish', room, { sdp });
    return reply.sdp;
  }

  /** mediaUnpublish ends the member's publishing in the room. */
  mediaUnpublish(room) {
    return this._request('media.unpublish', room, null);
  }

  /** mediaMute stops (muted) or resumes a publisher's audio or video at the server (moderators). */
  mediaMute(room, identity, kind, muted) {
    return this._request('media.mute', room, { identity, kind, muted });
  }

  /** send sends a request of any type and resolves with its reply's data. */
  send(type, room, data) {
    return this._request(type, room, data);
  }

  /** close ends the client: it closes the connection normally (which leaves every room at once). */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._retryTimer);
    this._stopWatchdog();
    const ws = this._ws;
    this._ws = null;
    this._failPending('closed');
    if (this._dialing) { // a connection being made: its onclose rejects the dial
      try { this._dialing.close(1000); } catch { /* not open yet */ }
    }
    if (ws) {
      this._detach(ws);
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this._setState('closed', { code: 1000 });
    this._emit('closed', { code: 1000, reason: 'closed by the client', error: null });
  }

  /**
   * drop abandons the connection as a failing network would (the server keeps us for its leave grace); with
   * reconnect on, the client then reconnects and recovers. For tests and for a dead connection.
   */
  drop() {
    const ws = this._ws;
    if (!ws || this._closed) return;
    this._detach(ws);
    try { ws.close(CLOSE_DROPPED, 'dropped'); } catch { /* already closing */ }
    this._lost(ws, 1006, 'dropped');
  }

  /** retryNow cuts short the wait before the next reconnection attempt (the network is back). */
  retryNow() {
    if (this._retryWake) this._retryWake();
  }

  // --- connection ---

  _dial() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this.opts.WebSocket(this.opts.url);
      } catch (err) {
        reject(new ForumError('disconnected', String(err)));
        return;
      }
      let settled = false;
      this._dialing = ws;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        if (this._dialing === ws) this._dialing = null;
        clearTimeout(timer);
        this._detach(ws);
        try { ws.close(CLOSE_DROPPED); } catch { /* not open */ }
        reject(err);
      };
      const timer = setTimeout(() => fail(new ForumError('timeout', 'no answer to auth in time')), this.opts.authTimeout);
      ws.onopen = () => {
        const data = this.session
          ? { token: this.session }
          : { token: this.opts.token || undefined, name: this.opts.name || undefined, lang: this.opts.lang || undefined };
        ws.send(JSON.stringify({ type: 'auth', id: 1, data }));
      };
      ws.onerror = () => { /* onclose follows with the code */ };
      ws.onclose = (e) => fail(new ForumError('disconnected', e.reason || 'connection closed', e.code));
      ws.onmessage = (e) => {
        const msgs = split(e.data);
        for (let i = 0; i < msgs.length; i++) {
          const m = msgs[i];
          if (m.type === 'ping') {
            this._write(ws, { type: 'pong' });
            continue;
          }
          if (m.id !== 1 || (m.type !== 'reply' && m.type !== 'error')) continue;
          if (m.type === 'error') {
            const d = m.data || {};
            fail(new ForumError(d.code || 'internal', d.message));
            return;
          }
          settled = true;
          clearTimeout(timer);
          if (this._dialing === ws) this._dialing = null;
          if (this._closed) { // close() ran while this connection was being made (as client.go's connect)
            this._detach(ws);
            try { ws.close(1000); } catch { /* closing */ }
            reject(new ForumError('closed', 'the client is closed'));
            return;
          }
          const reply = m.data || {};
          this.authReply = reply;
          this.member = reply.member || null;
          this._pingEvery = reply.ping_every > 0 ? reply.ping_every : 25;
          if (reply.token) {
            this.session = reply.token;
            this._emit('session', { token: reply.token });
          }
          this._attach(ws);
          resolve(reply);
          for (const rest of msgs.slice(i + 1)) this._dispatch(ws, rest);
          return;
        }
      };
    });
  }

  _attach(ws) {
    this._ws = ws;
    ws.onmessage = (e) => {
      this._kickWatchdog();
      for (const m of split(e.data)) this._dispatch(ws, m);
    };
    ws.onclose = (e) => this._lost(ws, e.code, e.reason);
    ws.onerror = () => {};
    this._kickWatchdog();
    this._setState('connected');
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  // The server pings every ping_every seconds: silence for longer than that plus 15 s means the connection
  // is dead even if the browser has not noticed (as the Go client's read deadline).
  _kickWatchdog() {
    clearTimeout(this._watchdog);
    this._watchdog = setTimeout(() => this.drop(), (this._pingEvery + 15) * 1000);
  }

  _stopWatchdog() {
    clearTimeout(this._watchdog);
    this._watchdog = 0;
  }

  /** _lost handles the end of an established connection: reconnect, or end for good. */
  _lost(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._stopWatchdog();
    this._failPending('disconnected');
    if (this._closed) return;
    if (!this.opts.reconnect || !closeReconnect(code)) {
      this._finish(code, reason, null);
      return;
    }
    this._reconnect(code === CLOSE_RATE_LIMITED ? this.opts.maxBackoff / 2 : 0, code, reason);
  }

  async _reconnect(pause, code, reason) {
    let attempt = 0;
    for (;;) {
      attempt++;
      const delay = pause + jitter(this._backoff); // after a flood close (4003), every wait is paused
      this._setState('reconnecting', { attempt, delay, code, reason });
      await this._sleep(delay);
      if (this._closed) return;
      this._backoff = Math.min(this._backoff * 2, this.opts.maxBackoff);
      this._setState('reconnecting', { attempt, delay: 0, code, reason, dialing: true });
      try {
        await this._dial();
        break;
      } catch (err) {
        if (this._closed) return;
        if (err.code !== 'disconnected' && err.code !== 'timeout') {
          this._finish(0, err.message, err); // the server refused the credentials
          return;
        }
        if (err.closeCode && !closeReconnect(err.closeCode)) {
          this._finish(err.closeCode, err.message, err);
          return;
        }
        code = err.closeCode || code;
      }
    }
    this.reconnects++;
    if (await this._rejoin()) this._backoff = this.opts.minBackoff; // else a broker outage: keep backing off
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(this._retryTimer);
        this._retryWake = null;
        resolve();
      };
      this._retryWake = wake;
      this._retryTimer = setTimeout(wake, ms);
    });
  }

  /**
   * _rejoin joins rooms again from their positions (all of them after a reconnect); the read loop delivers
   * the missed events. It resolves false when it gave up for now and dropped the connection to retry.
   */
  async _rejoin(list = [...this._rooms]) {
    for (const [room, st] of list) {
      const since = { epoch: st.epoch, offset: st.offset };
      const data = { since };
      if (st.presence === false) data.presence = false;
      try {
        const reply = await this._request('join', room, data, room);
        if (reply.recovered) this._emit('rejoined', { room, reply });
      } catch (err) {
        if (!(err instanceof ForumError) || err.code === 'disconnected' || err.code === 'closed') {
          return false; // disconnected again: the next reconnect retries
        }
        if (err.code === 'already_joined') continue; // another rejoin got there first
        if (['unavailable', 'internal', 'timeout'].includes(err.code)) {
          this.drop(); // the server cannot now (a node stopping, its broker away): retry the whole recovery
          return false;
        }
        this._rooms.delete(room); // the server refused: the room is gone for this client
        this._emit('left', { room, code: 0, reason: err.code });
      }
    }
    return true;
  }

  _finish(code, reason, error) {
    this._closed = true;
    clearTimeout(this._retryTimer);
    this._stopWatchdog();
    this._setState('closed', { code, reason });
    this._emit('closed', { code, reason, error });
  }

  // --- requests ---

  _request(type, room, data, join = '') {
    return new Promise((resolve, reject) => {
      const ws = this._ws;
      if (this._closed) {
        reject(new ForumError('closed', 'the client is closed'));
        return;
      }
      if (!ws || ws.readyState !== 1) {
        reject(new ForumError('disconnected', 'not connected'));
        return;
      }
      const id = ++this._nextID;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ForumError('timeout', `no answer to ${type} in time`));
      }, this.opts.requestTimeout);
      this._pending.set(id, { resolve, reject, join, timer, type, room });
      const msg = { type, id };
      if (room) msg.room = room;
      if (data) msg.data = data;
      if (!this._write(ws, msg)) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new ForumError('disconnected', 'send failed'));
      }
    });
  }

  _write(ws, msg) {
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  _failPending(code) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ForumError(code, 'the connection ended before the answer'));
      this._pending.delete(id);
    }
  }

  _dispatch(ws, m) {
    switch (m.type) {
      case 'event': {
        const r = this._rooms.get(m.room);
        const offset = Number(m.offset) || 0;
        if (!r || offset <= r.offset) return; // not joined, or a duplicate
        r.offset = offset;
        this._emit('event', { room: m.room, offset, data: m.data || {} });
        return;
      }
      case 'left': {
        const st = this._rooms.get(m.room);
        if (!st) return;
        const d = m.data || {};
        if (this.opts.reconnect && d.code && closeReconnect(d.code)) {
          this._rejoin([[m.room, st]]); // out for a reason that passes (the room's log restarted): join again
          return;
        }
        this._rooms.delete(m.room);
        this._emit('left', { room: m.room, code: d.code || 0, reason: d.reason || '' });
        return;
      }
      case 'ping':
        this._write(ws, { type: 'pong' });
        return;
      case 'media.offer': {
        const d = m.data || {};
        if (typeof d.sdp === 'string' && this._rooms.has(m.room)) {
          const names = d.names && typeof d.names === 'object' ? d.names : {};
          this._emit('media.offer', { room: m.room, sdp: d.sdp, names, subscription: this._mediaSubs.get(m.room) || 0 });
        }
        return;
      }
      case 'reply':
      case 'error': {
        const p = this._pending.get(m.id);
        if (!p) {
          if (m.type === 'error' && !m.id) {
            const d = m.data || {};
            this._emit('notice', { room: m.room || '', code: d.code || 'internal', message: d.message || '' });
          }
          return;
        }
        this._pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.type === 'error') {
          const d = m.data || {};
          p.reject(new ForumError(d.code || 'internal', d.message));
          return;
        }
        let data = m.data || {};
        if (p.join) this._joined(p.join, data);
        if (p.type === 'media.subscribe') {
          // Counted as it arrives, before the offers behind it in the same frame are dispatched.
          const n = (this._mediaSubs.get(p.room) || 0) + 1;
          this._mediaSubs.set(p.room, n);
          data = { ...data, subscription: n };
        }
        p.resolve(data);
        return;
      }
      default:
        // unknown server message types are ignored
    }
  }

  /**
   * _joined records a join reply: on a fresh join the position is the reply's; on a rejoin the missed events
   * (those not seen yet) are delivered, or a reset if the history is gone.
   */
  _joined(room, reply) {
    const events = Array.isArray(reply.events) ? reply.events : [];
    let r = this._rooms.get(room);
    const rejoin = !!r;
    if (!r) {
      r = { epoch: '', offset: 0, presence: undefined };
      this._rooms.set(room, r);
    }
    const missed = [];
    if (rejoin && reply.recovered) {
      for (const ev of events) {
        if (ev.offset > r.offset) missed.push(ev);
      }
    }
    const last = events.length ? events[events.length - 1].offset : 0;
    const before = r.offset;
    let next = Math.max(Number(reply.offset) || 0, last);
    if (rejoin && reply.recovered && r.epoch === reply.epoch) next = Math.max(next, before); // a lagging node must not make us take events twice
    r.epoch = reply.epoch || '';
    r.offset = next;
    if (rejoin && !reply.recovered) {
      this._emit('reset', { room, reply });
      return;
    }
    for (const ev of missed) {
      if (ev.offset > before) this._emit('event', { room, offset: ev.offset, data: ev.data || {} });
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit('state', { state, ...detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** split parses a server frame: one or more JSON messages separated by "\n". Bad pieces are skipped. */
function split(frame) {
  if (typeof frame !== 'string') return [];
  const out = [];
  for (const piece of frame.split('\n')) {
    if (!piece) continue;
    try {
      const m = JSON.parse(piece);
      if (m && typeof m === 'object' && typeof m.type === 'string') out.push(m);
    } catch {
      // a malformed piece: the Go client would drop the connection; a browser page carries on
    }
  }
  return out;
}
