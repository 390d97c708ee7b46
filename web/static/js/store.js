// store.js — folds one room's join reply and events into what the screen shows: the room, who I am, the
// members by identity, the chat messages by offset (sorted, each once), and notices (removals).
//
// It knows nothing of the DOM or the websocket. Panels listen for "change" (a CustomEvent whose detail says
// what changed: {what: "reset"} when everything must be drawn again, {what: "messages", added: [msg…]},
// {what: "members"}, {what: "room"}, {what: "outbox"}).

/** Roles in the order the people panel groups them. */
export const ROLES = ['moderator', 'speaker', 'interpreter', 'participant', 'guest', 'bot'];

/** Messages kept in memory and on screen; older ones are dropped. */
export const MAX_MESSAGES = 1000;

export class RoomStore extends EventTarget {
  constructor() {
    super();
    this.clear();
  }

  /** clear forgets everything. */
  clear() {
    this.room = null; // {name, title, languages, guests, max_members, created}
    this.self = null; // {identity, name, role, lang}
    this.members = new Map(); // identity -> member
    this.presence = true;
    this.memberCount = 0;
    this.messages = []; // sorted by offset: {offset, time, from, text, nonce, own, kind}
    this.byOffset = new Map();
    this.nonces = new Set(); // nonces of chat messages seen (to recognise our own after a reconnect)
    this.outbox = []; // our messages not yet accepted: {nonce, text, state: "sending"|"waiting"}
    this.joined = false;
  }

  /**
   * load takes a fresh join reply (or a reset: the history is gone) as the whole state of the room: the
   * room, the members and the recent history.
   */
  load(reply) {
    const outbox = this.outbox;
    this.clear();
    this.outbox = outbox;
    this.joined = true;
    this.room = reply.room || null;
    this.self = reply.self || null;
    this.presence = Array.isArray(reply.members);
    this._setMembers(reply);
    for (const ev of reply.events || []) this._add(ev.offset, ev.data || {});
    this._trim();
    this._emit({ what: 'reset' });
  }

  /**
   * recovered takes a recovery reply after its missed events went through apply: the members and count it
   * carries are the state as of its offset.
   */
  recovered(reply) {
    if (reply.room) this.room = reply.room;
    if (reply.self) this.self = reply.self;
    this._setMembers(reply);
    this._emit({ what: 'members' });
    this._emit({ what: 'room' });
  }

  /** apply folds one live (or recovered) event. Events at offsets already seen are ignored. */
  apply(offset, data) {
    if (this.byOffset.has(offset)) return;
    switch (data.kind) {
      case 'chat': {
        const msg = this._add(offset, data);
        if (!msg) return;
        this._settleOutbox(msg.nonce);
        this._trim();
        this._emit({ what: 'messages', added: [msg] });
        return;
      }
      case 'member.joined':
        if (data.member && data.member.identity) {
          const had = this.members.has(data.member.identity);
          this.members.set(data.member.identity, data.member);
          if (!had) this.memberCount++;
          if (this.self && data.member.identity === this.self.identity) this.self = data.member;
          this._emit({ what: 'members', joined: data.member });
        }
        return;
      case 'member.left':
      case 'member.removed': {
        const m = data.member;
        if (m && m.identity) {
          const had = this.members.delete(m.identity);
          if (had || !this.presence) this.memberCount = Math.max(0, this.memberCount - 1);
          this._emit({ what: 'members', left: m });
        }
        if (data.kind === 'member.removed') {
          const notice = { offset, time: data.time || 0, kind: 'removed', member: m || null, by: data.by || null, reason: data.reason || '' };
          this._insert(notice);
          this._trim();
          this._emit({ what: 'messages', added: [notice] });
        }
        return;
      }
      case 'room.updated':
        if (data.room) {
          this.room = data.room;
          this._emit({ what: 'room' });
        }
        return;
      default:
        // kinds this version does not know are ignored (the client still advanced its position)
    }
  }

  /** queue adds one of our messages to the outbox while the server has not accepted it. */
  queue(nonce, text, state = 'sending') {
    const item = { nonce, text, state };
    this.outbox.push(item);
    this._emit({ what: 'outbox' });
    return item;
  }

  /** setOutbox changes the state of a queued message ("sending", "waiting"). */
  setOutbox(nonce, state) {
    const item = this.outbox.find((o) => o.nonce === nonce);
    if (item && item.state !== state) {
      item.state = state;
      this._emit({ what: 'outbox' });
    }
  }

  /** unqueue removes a message from the outbox (accepted, or refused and given back to the writer). */
  unqueue(nonce) {
    const n = this.outbox.length;
    this.outbox = this.outbox.filter((o) => o.nonce !== nonce);
    if (this.outbox.length !== n) this._emit({ what: 'outbox' });
  }

  /** seen reports whether a chat message with this nonce is in the room's history. */
  seen(nonce) {
    return this.nonces.has(nonce);
  }

  /** speakers returns the members with the role speaker, by name. */
  speakers() {
    return [...this.members.values()].filter((m) => m.role === 'speaker').sort(byName);
  }

  /** groups returns the members grouped by role, in ROLES order (unknown roles with participants). */
  groups() {
    const g = new Map(ROLES.map((r) => [r, []]));
    for (const m of this.members.values()) {
      (g.get(m.role) || g.get('participant')).push(m);
    }
    for (const list of g.values()) list.sort(byName);
    return g;
  }

  isSelf(identity) {
    return !!this.self && this.self.identity === identity;
  }

  _setMembers(reply) {
    if (Array.isArray(reply.members)) {
      this.members = new Map();
      for (const m of reply.members) if (m && m.identity) this.members.set(m.identity, m);
    }
    this.memberCount = typeof reply.member_count === 'number' ? reply.member_count : this.members.size;
  }

  _add(offset, data) {
    if (data.kind !== 'chat' || this.byOffset.has(offset)) return null;
    const from = data.from || { identity: '', name: '', role: '' };
    const msg = {
      offset,
      kind: 'chat',
      time: data.time || 0,
      from,
      text: typeof data.text === 'string' ? data.text : '',
      nonce: data.nonce || '',
      own: this.isSelf(from.identity),
    };
    if (msg.nonce) this.nonces.add(msg.nonce);
    this._insert(msg);
    return msg;
  }

  _insert(msg) {
    this.byOffset.set(msg.offset, msg);
    const list = this.messages;
    if (!list.length || list[list.length - 1].offset < msg.offset) {
      list.push(msg);
      return;
    }
    let i = list.length - 1;
    while (i >= 0 && list[i].offset > msg.offset) i--;
    list.splice(i + 1, 0, msg);
  }

  _trim() {
    const extra = this.messages.length - MAX_MESSAGES;
    if (extra > 0) {
      for (const m of this.messages.splice(0, extra)) {
        this.byOffset.delete(m.offset);
        if (m.nonce) this.nonces.delete(m.nonce);
      }
    }
  }

  _settleOutbox(nonce) {
    if (!nonce) return;
    const n = this.outbox.length;
    this.outbox = this.outbox.filter((o) => o.nonce !== nonce);
    if (this.outbox.length !== n) this._emit({ what: 'outbox' });
  }

  _emit(detail) {
    this.dispatchEvent(new CustomEvent('change', { detail }));
  }
}

function byName(a, b) {
  return String(a.name).localeCompare(String(b.name));
}
