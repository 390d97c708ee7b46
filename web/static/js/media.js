// media.js — the stage's audio and video over WebRTC (docs/protocol.md §3.7a), without the DOM.
//
// A StageMedia holds, for one room: the subscription to the room's stage (one peer connection; the server
// makes every offer, this answers), the speakers on the stage and their tracks, their audio levels and the
// active speaker; and this member's own publishing (microphone, camera, screen: a second peer connection
// that this side offers), with the choice of devices. Descriptions are complete: every offer and answer is
// sent once ICE gathering is done (no trickle).
//
// Which track is which: the server gives each speaker's tracks a stream id (the speaker's identity) and a
// track id "<identity>:<publisher's track id>". A page that publishes names its tracks "mic", "camera" and
// "screen" in the offer it sends (labelTracks), so a viewer tells a screen from a camera by the track id in
// the server's offer (msidsByMid). Tracks from other publishers (OBS over WHIP) count as camera or mic.
//
// Quality: the camera is published in three simulcast layers (SIMULCAST); the server forwards each viewer
// the highest layer its cap and its loss allow. The viewer's cap per received video track is the member's
// choice (this.quality: high, medium, low), or in "auto" what the page's layout asks for each track (want:
// a small tile needs the low layer). Each change is sent as media.quality, once per track of the server's
// (the server starts every new track at high), paced so a relayout of many tiles is no flood.
//
// Events: "change", a CustomEvent whose detail.what is "state" (subscription state), "speakers" (tracks
// came or went), "levels" (levels, flowing media and the active speaker, a few times a second), "publish"
// (own tracks or publishing state), "devices", "error" (this.error changed), "muted" (a moderator's mutes),
// "quality" (this.quality changed).

/** Sources a member may publish, by role (docs/protocol.md §3.7a: interpreters send audio only). */
const PUBLISH = {
  speaker: ['mic', 'camera', 'screen'],
  moderator: ['mic', 'camera', 'screen'],
  interpreter: ['mic'],
};

/** publishable returns the sources a role may publish, in button order. */
export function publishable(role) {
  return PUBLISH[role] || [];
}

/** SOURCES are the publishing sources in the order they are offered. */
export const SOURCES = ['mic', 'camera', 'screen'];

const SAMPLE_EVERY = 300; // ms between stats samples (levels, flowing media)
const FLOW_GRACE = 2500; // ms a new track counts as flowing before its first bytes
const STALE_AFTER = 1500; // ms without new bytes after which a track no longer counts as flowing
const SPEAKING_LEVEL = 0.02; // audioLevel (0..1) above which someone is speaking
const ACTIVE_HOLD = 1200; // ms the active speaker stays highlighted after falling silent
const GATHER_TIMEOUT = 5000; // ms to wait for ICE gathering before sending what there is
const RETRY_MIN = 1000;
const RETRY_MAX = 15000;
/**
 * DISCONNECTED_FOR is how long a peer connection may stay disconnected before it is given up and made
 * anew: the server makes no ICE restarts, and takes a silent peer for gone 10 s after its last packet,
 * while the browser would wait ~30 s to call the connection failed (a media node that died, say).
 */
const DISCONNECTED_FOR = 6000;
/** CONNECTING_FOR is how long a new peer connection may take to connect before it is given up. */
const CONNECTING_FOR = 15000;

/**
 * watchDisconnected calls giveUp when pc has been disconnected for DISCONNECTED_FOR, or connecting for
 * CONNECTING_FOR (its media node went away right after answering, say).
 */
function watchDisconnected(pc, giveUp) {
  let timer = 0;
  const arm = () => {
    clearTimeout(timer);
    const st = pc.connectionState;
    const wait = st === 'disconnected' ? DISCONNECTED_FOR : st === 'new' || st === 'connecting' ? CONNECTING_FOR : 0;
    if (wait) timer = setTimeout(() => pc.connectionState === st && giveUp(), wait);
  };
  pc.addEventListener('connectionstatechange', arm);
  arm();
}

/** jitter spreads a retry delay over ±30 %, so that the clients of a node that died do not all come back at once. */
function jitter(ms) {
  return Math.round(ms * (0.7 + 0.6 * Math.random()));
}
const DEVICE_KEY = 'liveforum.device.';
const QUALITY_KEY = 'liveforum.quality';
const QUALITY_BURST = 8; // media.quality messages sent at once; the rest a second later (the flood limit)
const QUALITY_PAUSE = 1000; // ms

/**
 * SIMULCAST are the camera's layers (docs/protocol.md §3.7a), lowest first: 320×180, 640×360 and 1280×720
 * from a 720p camera. The browser leaves out layers that a small camera picture or a short bandwidth cannot
 * carry. The rids rise in the order the server guesses from them until it has measured the bitrates.
 */
const SIMULCAST = [
  { rid: '0', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: '1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: '2', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** QUALITIES are the viewer's choices: auto (each picture's size decides), or one cap for every track. */
export const QUALITIES = ['auto', 'high', 'medium', 'low'];

/** LAYERS are the caps media.quality takes, lowest first. */
const LAYERS = ['low', 'medium', 'high'];

/** gathered resolves when the peer connection has gathered every ICE candidate (or after a timeout). */
export function gathered(pc, ms = GATHER_TIMEOUT) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** sections splits an SDP into its session part and its media sections. */
function sections(sdp) {
  return String(sdp || '').split(/\r?\n(?=m=)/);
}

/**
 * msidsByMid reads an SDP's media sections: mid → {stream, track, ssrc} from its msid (a=msid, else
 * a=ssrc … msid:), for the sections that carry one; ssrc is the section's first a=ssrc ('' if none), which
 * tells a new track of the server's from an earlier one on a reused mid.
 */
export function msidsByMid(sdp) {
  const out = new Map();
  for (const sec of sections(sdp).slice(1)) {
    const mid = /^a=mid:(\S+)/m.exec(sec);
    const msid = /^a=msid:(\S+) (\S+)/m.exec(sec) || /^a=ssrc:\d+ msid:(\S+) (\S+)/m.exec(sec);
    const ssrc = /^a=ssrc:(\d+)/m.exec(sec);
    if (mid && msid) out.set(mid[1], { stream: msid[1], track: msid[2], ssrc: ssrc ? ssrc[1] : '' });
  }
  return out;
}

/**
 * labelTracks rewrites the track ids of an offer's msid lines (a=msid and a=ssrc … msid:) to a label per
 * mid ("mic", "camera", "screen"), so the server and the viewers know which track is which. The offer is
 * only rewritten on its way to the server; the browser keeps its own.
 */
export function labelTracks(sdp, labels) {
  const eol = String(sdp).includes('\r\n') ? '\r\n' : '\n';
  return sections(sdp).map((sec, i) => {
    if (i === 0) return sec;
    const mid = /^a=mid:(\S+)/m.exec(sec);
    const label = mid && labels.get(mid[1]);
    return label ? sec.replace(/(msid:\S+) \S+/g, `$1 ${label}`) : sec;
  }).join(eol);
}

/** sourceOf tells what a received track is from its kind and its track id ("<identity>:<label>"). */
export function sourceOf(kind, trackId) {
  if (kind === 'audio') return 'audio';
  return /:screen$/.test(String(trackId)) ? 'screen' : 'camera';
}

/** captureError turns a getUserMedia/getDisplayMedia failure into a reason the page explains. */
export function captureError(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return 'denied';
    case 'NotFoundError':
    case 'OverconstrainedError':
    case 'DevicesNotFoundError':
      return 'notFound';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'inUse';
    default:
      return 'failed';
  }
}

/** A speaker on the stage as this page receives it. */
class Speaker {
  constructor(identity) {
    this.identity = identity;
    this.audio = null; // MediaStreamTrack
    this.camera = null;
    this.screen = null;
    this.mids = { audio: '', camera: '', screen: '' };
    this.ids = { audio: '', camera: '', screen: '' }; // the server's track ids ("<identity>:camera"), for media.quality
    this.ssrcs = { audio: '', camera: '', screen: '' };
    this.level = 0; // the audio level (0..1) at the last sample
    this.flowing = { audio: false, camera: false, screen: false }; // bytes arrived lately
    this._seen = { audio: 0, camera: 0, screen: 0 }; // when the byte count last grew (performance.now)
    this._bytes = { audio: -1, camera: -1, screen: -1 };
  }
}

export class StageMedia extends EventTarget {
  /**
   * @param {object} [opts]
   * @param {typeof RTCPeerConnection} [opts.RTCPeerConnection]
   * @param {MediaDevices} [opts.mediaDevices]
   */
  constructor(opts = {}) {
    super();
    this.PC = opts.RTCPeerConnection || globalThis.RTCPeerConnection;
    this.md = opts.mediaDevices || globalThis.navigator?.mediaDevices || null;
    /** idle | connecting | connected | failed | unavailable (media off on the server) | unsupported (no WebRTC) */
    this.state = this.PC ? 'idle' : 'unsupported';
    this.client = null;
    this.room = '';
    this.self = ''; // this member's identity
    this.speakers = new Map(); // identity → Speaker, in order of arrival (this member's own included)
    this.names = new Map(); // identity → display name of the stage's publishers, as the server's last offer gave them
    this.active = ''; // identity of the active speaker, or ''
    this.local = { mic: null, camera: null, screen: null }; // own tracks
    this.localLevel = 0;
    this.busy = { mic: false, camera: false, screen: false }; // a capture in progress
    /** off | starting | live | failed */
    this.publishing = 'off';
    this.devices = { audioinput: [], videoinput: [] };
    this.chosen = { audioinput: loadChoice('audioinput'), videoinput: loadChoice('videoinput') };
    /** The last problem to tell the member: {source: mic|camera|screen|publish|mute|stage, reason}, or null. */
    this.error = null;
    this.muted = new Map(); // identity → {audio, video}: what this moderator asked the server
    /** The viewer's video quality: auto | high | medium | low (QUALITIES), kept in localStorage. */
    this.quality = loadQuality();
    this._wants = new Map(); // track id → low | medium | high: what the layout asks for in auto
    this._qualityTimer = 0;
    this._ice = [];
    this._gen = 0; // subscription generation: callbacks of an older one are ignored
    this._sub = null; // {pc, gen, chain, ready, answered}
    this._pub = null; // {pc, senders: Map source → RTCRtpSender}
    this._pubSeq = 0;
    this._pubChain = Promise.resolve();
    this._pubRetries = 0;
    this._retryTimer = 0;
    this._retryDelay = RETRY_MIN;
    this._sampleTimer = 0;
    this._activeAt = 0;
    this._listeners = null;
    if (this.md && this.md.addEventListener) this.md.addEventListener('devicechange', () => this.refreshDevices());
  }

  // --- the room ---

  /**
   * start subscribes to the room's stage through client (after a join, and again after every recovery: a
   * new connection has no media on the server) and publishes again whatever this member had on.
   * @param {import('./forum-client.js').ForumClient} client
   * @param {string} room
   * @param {{identity: string, role: string}|null} self
   */
  start(client, room, self) {
    if (this.client !== client) this._listen(client);
    this.client = client;
    this.room = room;
    this.self = (self && self.identity) || '';
    if (this.state === 'unsupported') return;
    const allowed = publishable(self && self.role);
    for (const s of SOURCES) {
      if (this.local[s] && !allowed.includes(s)) this._dropLocal(s);
    }
    this._subscribe();
    if (this.hasLocal()) this._republish();
    else this._setPublishing('off');
  }

  /** detach forgets the server side (the connection is being replaced); own tracks stay on. */
  detach() {
    this._gen++;
    clearTimeout(this._retryTimer);
    clearTimeout(this._pubRetryTimer);
    this._closeSub();
    this._closePub();
    this._listen(null);
    this.client = null;
    this.speakers.clear();
    this.active = '';
    this.muted.clear();
    if (this.state !== 'unsupported') this._setState('idle');
    if (this.hasLocal()) this._setPublishing('starting');
    this._emit('speakers');
  }

  /** stop ends everything: the server side and own tracks (the member left). */
  stop() {
    this.detach();
    for (const s of SOURCES) this._dropLocal(s);
    this.error = null;
    this._setPublishing('off');
    this._emit('publish');
  }

  _listen(client) {
    if (this._listeners) {
      const [c, onOffer, onNotice] = this._listeners;
      c.removeEventListener('media.offer', onOffer);
      c.removeEventListener('notice', onNotice);
      this._listeners = null;
    }
    if (!client) return;
    const onOffer = (e) => {
      if (e.detail.room !== this.room) return;
      this.names = new Map(Object.entries(e.detail.names || {}).filter(([, n]) => typeof n === 'string' && n));
      this._onOffer(e.detail.sdp, e.detail.subscription);
    };
    const onNotice = (e) => {
      // A subscription the server could not start after its reply: try again later.
      if (e.detail.room === this.room && this._sub && !this._sub.answered) this._subscriptionFailed();
    };
    client.addEventListener('media.offer', onOffer);
    client.addEventListener('notice', onNotice);
    this._listeners = [client, onOffer, onNotice];
  }

  // --- receiving the stage ---

  async _subscribe() {
    const gen = ++this._gen;
    clearTimeout(this._retryTimer);
    this._closeSub();
    this.speakers.clear();
    this._emit('speakers');
    let ready;
    // asked: what the server was asked for each of its video tracks in this subscription (by mediaKey; none
    // is high, where the server starts a track).
    const sub = { pc: null, gen, id: 0, chain: Promise.resolve(), ready: new Promise((r) => { ready = r; }), answered: false, asked: new Map() };
    this._sub = sub;
    this._setState('connecting');
    let cfg;
    try {
      cfg = await this.client.mediaSubscribe(this.room);
    } catch (err) {
      if (gen !== this._gen) return;
      this._sub = null;
      if (err.code === 'not_found') {
        this._setState('unavailable'); // media is off on this server
        return;
      }
      if (err.code === 'disconnected' || err.code === 'closed') {
        this._setState('idle'); // start() runs again after the recovery
        return;
      }
      this._subscriptionFailed();
      return;
    }
    if (gen !== this._gen) return;
    sub.id = cfg && cfg.subscription;
    this._ice = iceServers(cfg && cfg.ice_servers);
    const pc = new this.PC({ iceServers: this._ice, bundlePolicy: 'max-bundle' });
    sub.pc = pc;
    pc.addEventListener('connectionstatechange', () => {
      if (this._sub !== sub) return;
      const st = pc.connectionState;
      if (st === 'connected') {
        this._retryDelay = RETRY_MIN;
        this._setState('connected');
      } else if (st === 'failed') {
        this._subscriptionFailed();
      }
    });
    watchDisconnected(pc, () => this._sub === sub && this._subscriptionFailed());
    ready();
    this._sampleSoon();
  }

  _onOffer(sdp, subscription) {
    const sub = this._sub;
    if (!sub) return;
    // An offer can arrive before the reply's continuation runs (the same frame): wait for it, then drop the
    // offers of an earlier subscription.
    sub.chain = sub.chain.then(() => sub.ready).then(() => sub.id === subscription && this._answer(sub, sdp)).catch(() => {
      if (this._sub === sub) this._subscriptionFailed();
    });
  }

  async _answer(sub, sdp) {
    if (this._sub !== sub) return;
    const pc = sub.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    if (this._sub !== sub) return;
    await this.client.mediaAnswer(this.room, pc.localDescription.sdp);
    sub.answered = true;
    this._rebuild();
  }

  _subscriptionFailed() {
    this._closeSub();
    this.speakers.clear();
    this.active = '';
    this._emit('speakers');
    this._setState('failed');
    clearTimeout(this._retryTimer);
    const delay = this._retryDelay;
    this._retryDelay = Math.min(this._retryDelay * 2, RETRY_MAX);
    this._retryTimer = setTimeout(() => {
      if (this.client && this.client.state === 'connected') this._subscribe();
    }, jitter(delay));
  }

  _closeSub() {
    const sub = this._sub;
    this._sub = null;
    if (sub && sub.pc) sub.pc.close();
  }

  /** _rebuild derives the speakers from the subscription's transceivers and the server's last offer. */
  _rebuild() {
    const pc = this._sub && this._sub.pc;
    if (!pc) return;
    const msids = msidsByMid(pc.remoteDescription && pc.remoteDescription.sdp);
    const next = new Map();
    for (const tr of pc.getTransceivers()) {
      if (!tr.mid || tr.currentDirection === 'stopped') continue;
      if (tr.currentDirection !== 'recvonly' && tr.currentDirection !== 'sendrecv') continue;
      const m = msids.get(tr.mid);
      const track = tr.receiver && tr.receiver.track;
      if (!m || !track) continue;
      const source = sourceOf(track.kind, m.track);
      let sp = next.get(m.stream);
      if (!sp) {
        sp = this.speakers.get(m.stream) || new Speaker(m.stream);
        sp.audio = sp.camera = sp.screen = null;
        next.set(m.stream, sp);
      }
      if (sp[source]) continue; // one of each is shown
      sp.ids[source] = m.track;
      sp.ssrcs[source] = m.ssrc;
      if (sp.mids[source] !== tr.mid) { // a new track: give it time before judging whether it flows
        sp.mids[source] = tr.mid;
        sp._bytes[source] = -1;
        sp._seen[source] = performance.now() + FLOW_GRACE - STALE_AFTER;
        sp.flowing[source] = true;
        const muted = this.muted.get(m.stream); // the server forgets a mute when the speaker publishes anew
        if (muted) muted[source === 'audio' ? 'audio' : 'video'] = false;
      }
      sp[source] = track;
    }
    for (const sp of next.values()) {
      for (const s of ['audio', 'camera', 'screen']) if (!sp[s]) sp.mids[s] = sp.ids[s] = sp.ssrcs[s] = '';
    }
    // Keep the order of arrival: speakers already shown first, new ones after.
    const ordered = new Map();
    for (const id of this.speakers.keys()) if (next.has(id)) ordered.set(id, next.get(id));
    for (const [id, sp] of next) if (!ordered.has(id)) ordered.set(id, sp);
    for (const id of this.muted.keys()) if (!ordered.has(id)) this.muted.delete(id); // off the stage: the server forgot
    this.speakers = ordered;
    if (this.active && !ordered.has(this.active) && this.active !== this.self) this.active = '';
    this._emit('speakers');
    this._sendQualities();
  }

  /** others returns the speakers on stage except this member (whose own tracks the page shows from the source). */
  others() {
    return [...this.speakers.values()].filter((s) => s.identity !== this.self);
  }

  // --- the viewer's video quality (media.quality) ---

  /** setQuality sets the viewer's choice (auto, high, medium, low), keeps it, and tells the server. */
  setQuality(q) {
    if (!QUALITIES.includes(q) || q === this.quality) return;
    this.quality = q;
    try {
      localStorage.setItem(QUALITY_KEY, q);
    } catch { /* storage disabled */ }
    this._emit('quality');
    this._sendQualities();
  }

  /**
   * want tells what the layout asks for in auto: a Map (or object) track id → low | medium | high for every
   * video track it shows or hides; a track left out asks for high. Sent only where it changes what the
   * server was asked.
   */
  want(wants) {
    const next = new Map(wants instanceof Map ? wants : Object.entries(wants || {}));
    for (const [id, q] of next) if (!LAYERS.includes(q)) next.delete(id);
    this._wants = next;
    this._sendQualities();
  }

  /**
   * wanted is the cap for one received video track ('' for audio, which is never capped): the member's
   * choice, else the layout's; low for this member's own camera and screen, which the page shows from the
   * source, not from the server.
   */
  wanted(identity, source) {
    const sp = this.speakers.get(identity);
    if (!sp || source === 'audio' || !sp.ids[source]) return '';
    if (identity === this.self) return 'low';
    if (this.quality !== 'auto') return this.quality;
    return this._wants.get(sp.ids[source]) || 'high';
  }

  /**
   * qualities lists the received video tracks with the cap wanted and the one the server accepted:
   * {identity, source, track, mid, wanted, asked} (asked is '' until the server confirmed a cap; its
   * tracks start at high). For diagnostics and tests.
   */
  qualities() {
    const sub = this._sub;
    const out = [];
    for (const sp of this.speakers.values()) {
      for (const source of ['camera', 'screen']) {
        if (!sp.ids[source]) continue;
        const entry = sub && sub.asked.get(mediaKey(sp, source));
        out.push({
          identity: sp.identity, source, track: sp.ids[source], mid: sp.mids[source],
          wanted: this.wanted(sp.identity, source), asked: entry && entry.ok ? entry.q : '',
        });
      }
    }
    return out;
  }

  /**
   * _sendQualities sends media.quality for each received video track whose wanted cap differs from what
   * the server was asked (QUALITY_BURST at a time, the rest after QUALITY_PAUSE).
   */
  _sendQualities() {
    if (this._qualityTimer) return; // a paced round follows
    const sub = this._sub;
    const client = this.client;
    if (!sub || !sub.answered || !client || client.state !== 'connected') return;
    let sent = 0;
    for (const sp of this.speakers.values()) {
      for (const source of ['camera', 'screen']) {
        const q = this.wanted(sp.identity, source);
        if (!q) continue;
        const key = mediaKey(sp, source);
        const prev = sub.asked.get(key);
        if ((prev ? prev.q : 'high') === q) continue;
        if (sent >= QUALITY_BURST) {
          this._qualityTimer = setTimeout(() => {
            this._qualityTimer = 0;
            this._sendQualities();
          }, QUALITY_PAUSE);
          return;
        }
        sent++;
        const entry = { q, ok: false };
        sub.asked.set(key, entry);
        client.send('media.quality', this.room, { track: sp.ids[source], quality: q }).then(() => {
          entry.ok = true;
        }, () => {
          // Not found (the track went meanwhile), or the connection dropped (a new subscription asks
          // afresh): forget it, so the next change asks again.
          if (sub.asked.get(key) === entry) sub.asked.delete(key);
        });
      }
    }
  }

  // --- levels, flowing media, the active speaker ---

  _sampleSoon() {
    if (this._sampleTimer) return;
    this._sampleTimer = setTimeout(() => this._sample(), SAMPLE_EVERY);
  }

  async _sample() {
    this._sampleTimer = 0;
    const sub = this._sub && this._sub.pc;
    const pub = this._pub && this._pub.pc;
    if (!sub && !pub) return;
    const now = performance.now();
    try {
      if (sub) {
        const byMid = new Map();
        for (const sp of this.speakers.values()) {
          for (const s of ['audio', 'camera', 'screen']) if (sp.mids[s]) byMid.set(sp.mids[s], [sp, s]);
        }
        const report = await sub.getStats();
        const totals = new Map(); // mid → bytes over its inbound-rtp entries (a new SSRC on a reused mid adds one)
        report.forEach((st) => {
          if (st.type !== 'inbound-rtp') return;
          const hit = byMid.get(st.mid);
          if (!hit) return;
          totals.set(st.mid, (totals.get(st.mid) || 0) + (st.bytesReceived || 0));
          if (hit[1] === 'audio' && typeof st.audioLevel === 'number') hit[0].level = st.audioLevel;
        });
        for (const [mid, bytes] of totals) {
          const [sp, s] = byMid.get(mid);
          if (sp._bytes[s] >= 0 && bytes !== sp._bytes[s]) sp._seen[s] = now; // grew, or a new stream began
          sp._bytes[s] = bytes;
        }
        for (const sp of this.speakers.values()) {
          for (const s of ['audio', 'camera', 'screen']) sp.flowing[s] = !!sp.mids[s] && now - sp._seen[s] < STALE_AFTER;
          if (!sp.flowing.audio) sp.level = 0;
        }
      }
      this.localLevel = 0;
      if (pub && this.local.mic) {
        const report = await pub.getStats();
        report.forEach((st) => {
          if (st.type === 'media-source' && st.kind === 'audio' && typeof st.audioLevel === 'number') this.localLevel = st.audioLevel;
        });
      }
    } catch {
      // a peer connection closed under us: the next sample sees the new one
    }
    this._pickActive(now);
    this._emit('levels');
    if (this._sub || this._pub) this._sampleSoon();
  }

  _pickActive(now) {
    let best = '';
    let top = SPEAKING_LEVEL;
    for (const sp of this.speakers.values()) {
      if (sp.identity === this.self) continue;
      if (sp.flowing.audio && sp.level > top) {
        best = sp.identity;
        top = sp.level;
      }
    }
    if (this.publishing === 'live' && this.local.mic && this.localLevel > top && !this.selfMuted().audio) best = this.self;
    if (best) {
      this.active = best;
      this._activeAt = now;
    } else if (now - this._activeAt > ACTIVE_HOLD) {
      this.active = '';
    }
  }

  /**
   * selfMuted tells whether this member's own audio or video, live and sent, is not coming back from the
   * server (which forwards every publisher's tracks to everyone, this member included): the server drops
   * it, which is what a moderator's mute does.
   */
  selfMuted() {
    const me = this.speakers.get(this.self);
    const out = { audio: false, video: false };
    if (!me || this.publishing !== 'live') return out;
    out.audio = !!(this.local.mic && me.audio && !me.flowing.audio);
    out.video = !!(this.local.camera && me.camera && !me.flowing.camera);
    return out;
  }

  /** inboundStats lists the received tracks' inbound-rtp statistics, by speaker (diagnostics and tests). */
  async inboundStats() {
    const pc = this._sub && this._sub.pc;
    if (!pc) return [];
    const who = new Map();
    for (const sp of this.speakers.values()) {
      for (const s of ['audio', 'camera', 'screen']) if (sp.mids[s]) who.set(sp.mids[s], [sp.identity, s]);
    }
    const out = [];
    (await pc.getStats()).forEach((st) => {
      if (st.type !== 'inbound-rtp' || !who.has(st.mid)) return;
      const [identity, source] = who.get(st.mid);
      out.push({
        identity, source, kind: st.kind, mid: st.mid,
        bytesReceived: st.bytesReceived || 0, packetsReceived: st.packetsReceived || 0,
        framesDecoded: st.framesDecoded || 0, totalSamplesReceived: st.totalSamplesReceived || 0,
        audioLevel: st.audioLevel || 0, frameWidth: st.frameWidth || 0, frameHeight: st.frameHeight || 0,
      });
    });
    return out;
  }

  // --- publishing ---

  /** hasLocal reports whether any own source is on. */
  hasLocal() {
    return SOURCES.some((s) => this.local[s]);
  }

  /** stopSending turns every own source off and stops publishing (the role no longer allows it). */
  stopSending() {
    for (const s of SOURCES) this._dropLocal(s);
    this._emit('publish');
    return this._republish();
  }

  /** toggle turns a source (mic, camera, screen) on or off, going live or updating what is sent. */
  async toggle(source) {
    if (this.busy[source] || !SOURCES.includes(source)) return;
    if (this.local[source]) {
      this._dropLocal(source);
      this._emit('publish');
      await this._republish();
      return;
    }
    const track = await this._captureBusy(source);
    if (!track) return;
    this._setLocal(source, track);
    if (this.error && (this.error.source === source || this.error.source === 'publish')) this._setError(null);
    this._emit('publish');
    await this._republish();
  }

  /** _captureBusy captures a source, marked busy meanwhile; null (already told: 'publish' emitted) when it could not. */
  async _captureBusy(source) {
    this.busy[source] = true;
    this._emit('publish');
    let track = null;
    try {
      track = await this._capture(source);
    } finally {
      this.busy[source] = false;
    }
    if (!track) this._emit('publish');
    return track;
  }

  /** chooseDevice picks the device of a kind (audioinput, videoinput); '' is the browser's default. */
  async chooseDevice(kind, deviceId) {
    const source = kind === 'audioinput' ? 'mic' : kind === 'videoinput' ? 'camera' : '';
    if (!source) return;
    this.chosen[kind] = deviceId || '';
    saveChoice(kind, this.chosen[kind]);
    this._emit('devices');
    if (!this.local[source] || this.busy[source]) return;
    const track = await this._captureBusy(source);
    if (!track) return;
    const old = this.local[source];
    this._setLocal(source, track);
    if (old) old.stop();
    this._emit('publish');
    const sender = this._pub && this._pub.senders.get(source);
    if (sender) {
      try {
        await sender.replaceTrack(track); // same kind: no renegotiation
        return;
      } catch { /* fall back to publishing anew */ }
    }
    await this._republish();
  }

  /** refreshDevices lists the cameras and microphones (their names show once a permission is given). */
  async refreshDevices() {
    if (!this.md || !this.md.enumerateDevices) return;
    let list = [];
    try {
      list = await this.md.enumerateDevices();
    } catch {
      return;
    }
    const devices = { audioinput: [], videoinput: [] };
    for (const d of list) {
      if (devices[d.kind] && d.deviceId && d.deviceId !== 'default' && d.deviceId !== 'communications') {
        devices[d.kind].push({ id: d.deviceId, label: d.label || '' });
      }
    }
    this.devices = devices;
    this._emit('devices');
  }

  /** currentDevice returns the device id of an own source now on, or ''. */
  currentDevice(kind) {
    const track = this.local[kind === 'audioinput' ? 'mic' : 'camera'];
    if (!track || !track.getSettings) return '';
    return track.getSettings().deviceId || '';
  }

  async _capture(source) {
    const md = this.md;
    if (!md || !md.getUserMedia) {
      this._setError({ source, reason: globalThis.isSecureContext === false ? 'insecure' : 'unsupported' });
      return null;
    }
    const kind = source === 'mic' ? 'audioinput' : 'videoinput';
    const constraints = (id) => {
      if (source === 'mic') return { audio: { ...(id ? { deviceId: { exact: id } } : {}), echoCancellation: true, noiseSuppression: true } };
      return { video: { ...(id ? { deviceId: { exact: id } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } } };
    };
    try {
      if (source === 'screen') {
        if (!md.getDisplayMedia) {
          this._setError({ source, reason: 'unsupported' });
          return null;
        }
        const stream = await md.getDisplayMedia({ video: true, audio: false });
        return stream.getVideoTracks()[0] || null;
      }
      let stream;
      try {
        stream = await md.getUserMedia(constraints(this.chosen[kind]));
      } catch (err) {
        if (!this.chosen[kind] || captureError(err) !== 'notFound') throw err;
        this.chosen[kind] = ''; // the chosen device is gone: the default one
        saveChoice(kind, '');
        stream = await md.getUserMedia(constraints(''));
      }
      this.refreshDevices();
      return (source === 'mic' ? stream.getAudioTracks() : stream.getVideoTracks())[0] || null;
    } catch (err) {
      this._setError({ source, reason: captureError(err) });
      return null;
    }
  }

  _setLocal(source, track) {
    this.local[source] = track;
    track.addEventListener('ended', () => {
      // The device went away, or the browser's "stop sharing" was used.
      if (this.local[source] !== track) return;
      this.local[source] = null;
      this._emit('publish');
      this._republish();
    });
  }

  _dropLocal(source) {
    const track = this.local[source];
    this.local[source] = null;
    if (track) track.stop();
  }

  /** _republish publishes the own sources now on, anew (or stops publishing when none is). */
  _republish() {
    const seq = ++this._pubSeq;
    this._pubChain = this._pubChain.then(() => this._publishNow(seq)).catch(() => {});
    return this._pubChain;
  }

  async _publishNow(seq) {
    if (seq !== this._pubSeq) return; // a newer request follows
    clearTimeout(this._pubRetryTimer); // this is the try a pending retry would make
    const client = this.client;
    const room = this.room;
    const tracks = SOURCES.filter((s) => this.local[s]).map((s) => [s, this.local[s]]);
    if (!tracks.length) {
      const was = !!this._pub;
      this._closePub();
      this._setPublishing('off');
      if (was && client && client.state === 'connected') client.mediaUnpublish(room).catch(() => {});
      return;
    }
    if (!client || client.state !== 'connected' || this.state === 'unavailable') {
      this._setPublishing(this.state === 'unavailable' ? 'failed' : 'starting'); // start() publishes after the recovery
      return;
    }
    if (this.publishing !== 'live') this._setPublishing('starting');
    const pc = new this.PC({ iceServers: this._ice, bundlePolicy: 'max-bundle' });
    const stream = new MediaStream();
    const labels = [];
    for (const [source, track] of tracks) {
      const init = { direction: 'sendonly', streams: [stream] };
      if (source === 'camera') init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      const tr = pc.addTransceiver(track, init);
      labels.push([tr, source]);
    }
    let answer;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const offer = labelTracks(pc.localDescription.sdp, new Map(labels.map(([tr, s]) => [tr.mid, s])));
      answer = await client.mediaPublish(room, offer);
      if (seq !== this._pubSeq || this.client !== client) {
        pc.close();
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (err) {
      pc.close();
      if (seq !== this._pubSeq || this.client !== client) return;
      if (err && (err.code === 'disconnected' || err.code === 'closed')) {
        this._setPublishing('starting'); // start() publishes after the recovery
        return;
      }
      if (err && (err.code === 'unavailable' || err.code === 'timeout')) {
        // The room's media node is busy, or dead and not yet replaced: try again, as after a failed connection.
        this._publishFailed(true);
        return;
      }
      const reason = err && err.code === 'stage_full' ? 'stageFull' : err && err.code === 'forbidden' ? 'forbidden' : 'failed';
      this._setError({ source: 'publish', reason });
      this._setPublishing('failed');
      return;
    }
    const old = this._pub;
    this._pub = { pc, senders: new Map(labels.map(([tr, s]) => [s, tr.sender])) };
    if (old) old.pc.close(); // the server has replaced it already
    const onState = () => {
      if (!this._pub || this._pub.pc !== pc) return;
      const st = pc.connectionState;
      if (st === 'connected') {
        this._pubRetries = 0;
        clearTimeout(this._pubRetryTimer);
        if (this.error && this.error.source === 'publish') this._setError(null); // the retries succeeded
        this._setPublishing('live');
      } else if (st === 'failed') {
        this._publishFailed();
      }
    };
    pc.addEventListener('connectionstatechange', onState);
    watchDisconnected(pc, () => this._pub && this._pub.pc === pc && this._publishFailed());
    onState();
    this._sampleSoon();
  }

  /**
   * _publishFailed publishes again after a connection that failed or a refusal that will pass (unavailable,
   * timeout): after 1 s, then 2, 4… up to 15 s (each ±30 %), for as long as a source is on; the third
   * failure in a row is also shown as an error.
   */
  _publishFailed(refused) {
    // A refused republish (a source turned on or off) leaves the publication that is live as it is.
    const live = refused && this._pub && this._pub.pc.connectionState === 'connected';
    if (!live) {
      this._closePub();
      this._setPublishing('failed');
    }
    const n = ++this._pubRetries;
    if (n === 3 && !live) this._setError({ source: 'publish', reason: 'failed' });
    clearTimeout(this._pubRetryTimer);
    this._pubRetryTimer = setTimeout(() => {
      if (this.hasLocal()) this._republish();
    }, jitter(Math.min(RETRY_MIN * 2 ** (n - 1), RETRY_MAX)));
  }

  _closePub() {
    const pub = this._pub;
    this._pub = null;
    if (pub) pub.pc.close();
  }

  // --- moderation ---

  /** mute stops (or resumes) a speaker's audio or video for everyone, at the server (moderators). */
  async mute(identity, kind, muted) {
    if (!this.client) return;
    try {
      await this.client.mediaMute(this.room, identity, kind, muted);
    } catch (err) {
      if (err && err.code === 'not_found') return; // they stopped publishing meanwhile
      this._setError({ source: 'mute', reason: err && err.code === 'forbidden' ? 'forbidden' : 'failed' });
      return;
    }
    const m = this.muted.get(identity) || { audio: false, video: false };
    m[kind] = muted;
    this.muted.set(identity, m);
    this._emit('muted');
  }

  // --- state ---

  /** clearError forgets the last problem (the member dismissed it). */
  clearError() {
    this._setError(null);
  }

  _setError(err) {
    this.error = err;
    this._emit('error');
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state');
  }

  _setPublishing(p) {
    if (this.publishing === p) return;
    this.publishing = p;
    this._emit('publish');
  }

  _emit(what) {
    this.dispatchEvent(new CustomEvent('change', { detail: { what } }));
  }
}

/** iceServers turns the server's list ({urls, username?, credential?}) into RTCIceServer objects. */
function iceServers(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((s) => s && s.urls).map((s) => {
    const o = { urls: s.urls };
    if (s.username) o.username = s.username;
    if (s.credential) o.credential = s.credential;
    return o;
  });
}

/**
 * mediaKey names one of the server's tracks in a subscription: its id, mid and SSRC (a speaker who publishes
 * anew gets new tracks, which the server starts at high, under the same id and perhaps the same mid).
 */
function mediaKey(sp, source) {
  return `${sp.ids[source]} ${sp.mids[source]} ${sp.ssrcs[source]}`;
}

function loadQuality() {
  try {
    const q = localStorage.getItem(QUALITY_KEY);
    return QUALITIES.includes(q) ? q : 'auto';
  } catch {
    return 'auto';
  }
}

function loadChoice(kind) {
  try {
    return localStorage.getItem(DEVICE_KEY + kind) || '';
  } catch {
    return '';
  }
}

function saveChoice(kind, id) {
  try {
    if (id) localStorage.setItem(DEVICE_KEY + kind, id);
    else localStorage.removeItem(DEVICE_KEY + kind);
  } catch { /* storage disabled */ }
}
