// stage.js — the stage panel: the forum's title, languages and status; the speakers who are live, a tile
// each (video, or their initials when they send no video; their audio plays through the same element),
// the active speaker highlighted; a shared screen shown large; a moderator's mute buttons on each tile.
// When no one is live it lists the members with the role speaker. The media itself is media.js's; the
// controls for going live are publish.js's.
//
// Video quality: a menu in the stage's header (shown while someone else's video arrives) chooses Auto, High,
// Medium or Low for every received video. In Auto each picture asks for the simulcast layer its size on
// the screen needs (layerFor): measured when a picture is resized (ResizeObserver), when the layout
// changes (tiles come and go, a screen is shown large) and when the tab is hidden or shown, a moment after
// a change; media.js tells the server only what changed.

import { h, initials, hue, icon } from './dom.js';
import { t, languageName, onChange } from './i18n.js';
import { QUALITIES } from './media.js';

/** Picture heights in device pixels up to which the low and the medium layer are enough (else high). */
const LOW_MAX = 240;
const MEDIUM_MAX = 480;
const MEASURE_DELAY = 250; // ms after a resize or layout change before the layer wishes are measured

/**
 * layerFor returns the layer a video element needs: low, medium or high by the height, in device pixels, of
 * the picture it shows (object-fit cover fills the element, so a wide element needs more than its height;
 * contain fits inside it); low when it is not shown (no size: display none, a hidden panel) or the tab is
 * hidden.
 * @param {HTMLVideoElement} video
 */
export function layerFor(video) {
  if (document.visibilityState === 'hidden') return 'low';
  const w = video.clientWidth;
  const ht = video.clientHeight;
  if (!w || !ht) return 'low';
  const ratio = video.videoWidth && video.videoHeight ? video.videoHeight / video.videoWidth : 9 / 16;
  const fit = getComputedStyle(video).objectFit;
  const picture = fit === 'contain' || fit === 'scale-down' ? Math.min(ht, w * ratio) : fit === 'cover' ? Math.max(ht, w * ratio) : ht;
  const px = picture * (window.devicePixelRatio || 1);
  return px <= LOW_MAX ? 'low' : px <= MEDIUM_MAX ? 'medium' : 'high';
}

/** qualityIcon draws the quality menu's icon: a screen with rising bars (hidden from assistive technology). */
function qualityIcon() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'icon icon-quality');
  for (const d of ['M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 'M8 21h8', 'M7 13v-2', 'M12 13V8', 'M17 13v-4']) {
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

/**
 * createStage wires the stage found in root.
 * @param {HTMLElement} root the stage section
 * @param {import('./store.js').RoomStore} store
 * @param {() => string} connState returns the connection state (connected, reconnecting, …)
 * @param {import('./media.js').StageMedia} media
 */
export function createStage(root, store, connState, media) {
  const title = root.querySelector('.stage-title');
  const name = root.querySelector('.stage-room');
  const langs = root.querySelector('.stage-languages');
  const status = root.querySelector('.stage-status');
  const grid = root.querySelector('.stage-grid');
  const empty = root.querySelector('.stage-empty');
  const emptyText = root.querySelector('.stage-no-speakers');
  const speakers = root.querySelector('.stage-speakers');
  const note = root.querySelector('.stage-note');
  const screen = root.querySelector('.stage-screen');
  const screenVideo = root.querySelector('.stage-screen-video');
  const screenCaption = root.querySelector('.stage-screen-caption');
  const play = root.querySelector('.stage-play');
  const stageTab = document.getElementById('tab-stage');
  play.querySelector('.stage-play-icon').replaceWith(icon('sound'));

  const tiles = new Map(); // identity → {li, video, key, …}
  let screenKey = '';
  const blocked = new Set(); // videos whose play() the browser refused (no user gesture yet)

  // --- the video quality menu ---
  const qualityValue = h('span', { class: 'stage-quality-value' });
  const qualityName = h('span', { class: 'stage-quality-name' });
  const qualityToggle = h('summary', { class: 'stage-quality-toggle', 'data-testid': 'stage-quality-toggle' },
    qualityIcon(), qualityName, qualityValue);
  const qualityLegend = h('legend', { class: 'stage-quality-legend' });
  const qualityOptions = QUALITIES.map((q) => {
    // Named by its name alone; the hint is its description.
    const input = h('input', {
      type: 'radio', name: 'stage-quality', value: q, 'data-testid': 'stage-quality-option',
      'aria-labelledby': `stage-quality-${q}`, 'aria-describedby': `stage-quality-${q}-hint`,
    });
    input.addEventListener('change', () => {
      if (input.checked) media.setQuality(q);
    });
    const label = h('label', { class: 'stage-quality-option', dataset: { quality: q } }, input,
      h('span', { class: 'stage-quality-option-text' },
        h('span', { class: 'stage-quality-option-name', id: `stage-quality-${q}` }),
        h('span', { class: 'stage-quality-option-hint', id: `stage-quality-${q}-hint` })));
    return { q, input, label };
  });
  const quality = h('details', { class: 'stage-quality', 'data-testid': 'stage-quality', hidden: true },
    qualityToggle, h('fieldset', { class: 'stage-quality-body' }, qualityLegend, ...qualityOptions.map((o) => o.label)));
  root.querySelector('.stage-head').append(quality);

  function closeQuality(focus) {
    if (!quality.open) return;
    quality.open = false;
    if (focus) qualityToggle.focus();
  }
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && quality.open) closeQuality(quality.contains(document.activeElement));
  });
  document.addEventListener('click', (e) => {
    if (quality.open && !quality.contains(e.target)) closeQuality(false);
  });

  function renderQuality() {
    const shown = media.others().some((sp) => sp.camera || sp.screen); // someone else's video arrives
    if (!shown) closeQuality(false);
    quality.hidden = !shown;
    quality.dataset.quality = media.quality;
    qualityName.textContent = t('stage.quality.short');
    qualityValue.textContent = t(`stage.quality.${media.quality}`);
    qualityToggle.setAttribute('aria-label', t('stage.quality.summary', { quality: t(`stage.quality.${media.quality}`) }));
    qualityLegend.textContent = t('stage.quality.label');
    for (const o of qualityOptions) {
      o.input.checked = o.q === media.quality;
      o.label.querySelector('.stage-quality-option-name').textContent = t(`stage.quality.${o.q}`);
      o.label.querySelector('.stage-quality-option-hint').textContent = t(`stage.quality.${o.q}Hint`);
    }
  }

  // --- Auto: each picture asks for the layer its size needs ---
  let measureTimer = 0;
  const resized = typeof ResizeObserver === 'function' ? new ResizeObserver(() => measureSoon()) : null;

  /**
   * measureSoon measures the layer wishes a moment after a change, once for the changes of that moment
   * (resizes come in bursts; a busy forum re-renders often, which must not put the measure off forever).
   */
  function measureSoon() {
    if (!measureTimer) measureTimer = setTimeout(measure, MEASURE_DELAY);
  }

  /** measure tells media.js the layer each received video needs; a screen not shown large needs low. */
  function measure() {
    measureTimer = 0;
    const wants = new Map();
    for (const [id, tile] of tiles) {
      const sp = !tile.self && media.speakers.get(id);
      if (sp && sp.ids.camera) wants.set(sp.ids.camera, layerFor(tile.video));
    }
    const shownScreen = !screen.hidden && screen.dataset.self !== 'true' ? screen.dataset.identity : '';
    for (const sp of media.others()) {
      if (sp.ids.screen) wants.set(sp.ids.screen, sp.identity === shownScreen ? layerFor(screenVideo) : 'low');
    }
    media.want(wants);
  }

  if (resized) resized.observe(screenVideo);
  document.addEventListener('visibilitychange', measureSoon);
  window.addEventListener('resize', measureSoon); // a zoom changes devicePixelRatio

  /** memberName is a member's name; a publisher who is not a member (a WHIP encoder) has the name the server gave. */
  function memberName(identity) {
    const m = store.members.get(identity) || (store.self && store.self.identity === identity ? store.self : null);
    return (m && m.name) || media.names.get(identity) || t('chat.unknown');
  }

  function isModerator() {
    return !!store.self && store.self.role === 'moderator';
  }

  /** startPlaying plays a video; a refusal for want of a user gesture shows the "turn on the sound" button. */
  function startPlaying(video) {
    const p = video.play();
    if (!p || !p.catch) return;
    p.then(() => {
      blocked.delete(video);
      play.hidden = blocked.size === 0;
    }).catch((err) => {
      if (err && err.name === 'NotAllowedError') {
        blocked.add(video);
        play.hidden = false;
      }
    });
  }

  play.addEventListener('click', () => {
    for (const v of [...blocked]) startPlaying(v);
    blocked.clear();
    play.hidden = true;
  });

  function setSource(video, tracks, muted) {
    video.muted = muted;
    const list = tracks.filter(Boolean);
    if (!list.length) {
      blocked.delete(video);
      video.srcObject = null;
      return;
    }
    video.srcObject = new MediaStream(list);
    startPlaying(video);
  }

  function modButton(identity, kind) {
    const b = h('button', {
      type: 'button',
      class: 'tile-mod-button',
      'data-testid': kind === 'audio' ? 'tile-mute-audio' : 'tile-mute-video',
      'aria-pressed': 'false',
    }, icon(kind === 'audio' ? 'mic' : 'camera', { slash: true }), h('span', { class: 'tile-mod-label' }));
    b.addEventListener('click', () => {
      const muted = b.getAttribute('aria-pressed') !== 'true';
      b.disabled = true;
      media.mute(identity, kind, muted).finally(() => {
        b.disabled = false;
      });
    });
    return b;
  }

  function makeTile(identity, self) {
    const video = h('video', { class: 'tile-video', 'data-testid': 'tile-video', playsinline: true, autoplay: true });
    const avatar = h('span', { class: 'avatar avatar-xl', 'aria-hidden': 'true' });
    const tileName = h('span', { class: 'tile-name', 'data-testid': 'tile-name' });
    const you = self ? h('span', { class: 'tile-you' }) : null;
    const mutedMark = h('span', { class: 'tile-muted', 'data-testid': 'tile-muted' }, icon('mic', { slash: true }), h('span', { class: 'tile-muted-label' }));
    const li = h('li', {
      class: `tile hue-${hue(identity) % 8}`,
      'data-testid': 'stage-tile',
      dataset: { identity, self: String(self), active: 'false', video: 'off', audio: 'none' },
    },
    video,
    h('div', { class: 'tile-placeholder' }, avatar),
    h('div', { class: 'tile-bar' }, mutedMark, tileName, you));
    const tile = { li, video, avatar, tileName, you, mutedMark, key: null, self, mod: null };
    if (!self) {
      const mod = h('div', { class: 'tile-mod' }, modButton(identity, 'audio'), modButton(identity, 'video'));
      li.append(mod);
      tile.mod = mod;
    }
    return tile;
  }

  /** liveList returns who has a tile: this member first when sending, then the others in order of arrival. */
  function liveList() {
    const out = [];
    const selfId = media.self || (store.self && store.self.identity) || '';
    if (selfId && media.hasLocal()) {
      out.push({ identity: selfId, self: true });
    }
    for (const sp of media.others()) {
      if (sp.audio || sp.camera || sp.screen) out.push({ identity: sp.identity, self: false, sp }); // a screen alone too
    }
    return out;
  }

  function renderTiles() {
    const list = liveList();
    const keep = new Set(list.map((x) => x.identity));
    for (const [id, tile] of tiles) {
      if (!keep.has(id)) {
        setSource(tile.video, [], true);
        if (resized) resized.unobserve(tile.video);
        tile.li.remove();
        tiles.delete(id);
      }
    }
    let prev = null;
    for (const item of list) {
      let tile = tiles.get(item.identity);
      if (tile && tile.self !== item.self) {
        if (resized) resized.unobserve(tile.video);
        tile.li.remove();
        tiles.delete(item.identity);
        tile = null;
      }
      if (!tile) {
        tile = makeTile(item.identity, item.self);
        tiles.set(item.identity, tile);
        if (resized && !item.self) resized.observe(tile.video);
      }
      // Media: own camera from its source (muted: no echo of oneself), others' camera and audio from the stage.
      const tracks = item.self ? [media.local.camera] : [item.sp.camera, item.sp.audio];
      const key = tracks.map((tr) => (tr ? tr.id : '-')).join('|') + (item.self ? '' : `|${item.sp.mids.camera}|${item.sp.mids.audio}`);
      if (tile.key !== key) {
        tile.key = key;
        setSource(tile.video, tracks, item.self);
      }
      tile.video.classList.toggle('mirror', item.self);
      const nm = memberName(item.identity);
      tile.tileName.textContent = nm;
      tile.tileName.title = nm;
      tile.avatar.textContent = initials(nm);
      tile.video.setAttribute('aria-label', nm);
      if (tile.you) tile.you.textContent = t('people.you');
      tile.mutedMark.querySelector('.tile-muted-label').textContent = t('stage.audioOff');
      if (tile.mod) {
        tile.mod.hidden = !isModerator();
        for (const b of tile.mod.querySelectorAll('button')) {
          const audio = b.dataset.testid === 'tile-mute-audio';
          const action = t(audio ? 'stage.mod.muteAudio' : 'stage.mod.muteVideo');
          b.querySelector('.tile-mod-label').textContent = action;
          b.setAttribute('aria-label', t('stage.mod.label', { action, name: nm }));
          b.title = t(audio ? 'stage.mod.muteAudioHint' : 'stage.mod.muteVideoHint', { name: nm });
        }
      }
      // In order, moving only what is out of place (moving a playing video would restart it).
      const want = prev ? prev.nextSibling : grid.firstChild;
      if (want !== tile.li) grid.insertBefore(tile.li, want);
      prev = tile.li;
    }
    grid.hidden = list.length === 0;
    grid.dataset.count = String(list.length);
  }

  /** pickScreen returns the screen to show large: the active speaker's, else the first shared. */
  function pickScreen() {
    const shared = media.others().filter((sp) => sp.screen).map((sp) => ({ identity: sp.identity, track: sp.screen, self: false }));
    if (media.local.screen) shared.push({ identity: media.self, track: media.local.screen, self: true });
    return shared.find((s) => s.identity === media.active) || shared[0] || null;
  }

  function renderScreen() {
    const s = pickScreen();
    const key = s ? `${s.identity}|${s.track.id}` : '';
    if (key !== screenKey) {
      screenKey = key;
      setSource(screenVideo, s ? [s.track] : [], true);
      measureSoon(); // another screen large: the others' need less
    }
    screen.hidden = !s;
    root.dataset.screen = s ? 'true' : 'false';
    if (s) {
      screen.dataset.identity = s.identity;
      screen.dataset.self = String(s.self);
      screenCaption.textContent = s.self ? t('stage.screenOwn') : t('stage.screenOf', { name: memberName(s.identity) });
    } else {
      delete screen.dataset.identity;
    }
  }

  /** update refreshes what changes between renders: who speaks, whose media flows, the moderator's mutes. */
  function update() {
    const mutedSelf = media.selfMuted();
    for (const [id, tile] of tiles) {
      let video;
      let audio;
      if (tile.self) {
        video = media.local.camera && !mutedSelf.video ? 'on' : 'off';
        audio = !media.local.mic ? 'none' : mutedSelf.audio ? 'off' : 'on';
      } else {
        const sp = media.speakers.get(id);
        video = sp && sp.camera && sp.flowing.camera ? 'on' : 'off';
        audio = !sp || !sp.audio ? 'none' : sp.flowing.audio ? 'on' : 'off';
      }
      const d = tile.li.dataset;
      if (tile.self && d.state !== media.publishing) d.state = media.publishing;
      if (d.video !== video) d.video = video;
      if (d.audio !== audio) d.audio = audio;
      const active = String(media.active === id && audio === 'on');
      if (d.active !== active) d.active = active;
      if (tile.mod) {
        const m = media.muted.get(id) || { audio: false, video: false };
        const sp = media.speakers.get(id);
        for (const b of tile.mod.querySelectorAll('button')) {
          const audio = b.dataset.testid === 'tile-mute-audio';
          const pressed = String(audio ? m.audio : m.video);
          if (b.getAttribute('aria-pressed') !== pressed) b.setAttribute('aria-pressed', pressed);
          b.hidden = !sp || !(audio ? sp.audio : sp.camera || sp.screen); // nothing of that kind to stop
        }
      }
    }
  }

  function renderNote() {
    const st = media.state;
    const key = { connecting: 'stage.note.connecting', failed: 'stage.note.failed', unavailable: 'stage.note.unavailable', unsupported: 'stage.note.unsupported' }[st];
    // "connecting" is only worth saying when there is nothing else to look at.
    const show = key && (st !== 'connecting' || tiles.size === 0);
    note.hidden = !show;
    note.textContent = show ? t(key) : '';
    root.dataset.media = st;
  }

  function renderHeader() {
    const room = store.room || {};
    title.textContent = room.title || room.name || '';
    name.textContent = room.title && room.name ? '/r/' + room.name : '';
    name.hidden = !name.textContent;
    langs.replaceChildren(...(room.languages || []).map((l) => h('li', { class: 'chip', lang: l, text: languageName(l) })));
    langs.hidden = !langs.children.length;

    const state = connState();
    if (state !== 'connected') {
      status.textContent = t(`stage.status.${state === 'closed' ? 'closed' : 'waiting'}`);
    } else {
      status.textContent = t('stage.status.live', { count: store.memberCount });
    }
    status.dataset.state = state;
  }

  function renderEmpty() {
    const list = store.speakers();
    speakers.replaceChildren(...list.map((m) => h('li', { class: `speaker hue-${hue(m.identity) % 8}` },
      h('span', { class: 'avatar avatar-lg', 'aria-hidden': 'true', text: initials(m.name) }),
      h('span', { class: 'speaker-name', text: m.name, title: m.name }))));
    speakers.hidden = list.length === 0;
    root.querySelector('.stage-subtitle').hidden = list.length === 0;
    const live = tiles.size > 0 || !screen.hidden;
    empty.hidden = live;
    emptyText.textContent = t(media.state === 'unavailable' || media.state === 'unsupported' ? 'stage.noSpeakers' : 'stage.empty');
    root.dataset.live = String(live);
    if (stageTab) stageTab.dataset.live = String(live);
  }

  function render() {
    renderHeader();
    renderTiles();
    renderScreen();
    update();
    renderNote();
    renderEmpty();
    renderQuality();
    measureSoon();
  }

  store.addEventListener('change', (e) => {
    const w = e.detail.what;
    if (w === 'members' || w === 'reset' || w === 'room') render();
  });
  media.addEventListener('change', (e) => {
    const w = e.detail.what;
    if (w === 'levels' || w === 'muted') {
      update();
      if (w === 'levels' && media.others().some((sp) => sp.screen)) renderScreen(); // the screen follows the active speaker
      return;
    }
    if (w === 'speakers' || w === 'publish' || w === 'state') render();
    if (w === 'quality') renderQuality();
  });
  onChange(render);
  render();
  return { render };
}
