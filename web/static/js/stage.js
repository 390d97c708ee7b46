// stage.js — the stage panel: the forum's title, languages and status; the speakers who are live, a tile
// each (video, or their initials when they send no video; their audio plays through the same element),
// the active speaker highlighted; a shared screen shown large; a moderator's mute buttons on each tile.
// When no one is live it lists the members with the role speaker. The media itself is media.js's; the
// controls for going live are publish.js's.

import { h, initials, hue, icon } from './dom.js';
import { t, languageName, onChange } from './i18n.js';

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

  function memberName(identity) {
    const m = store.members.get(identity) || (store.self && store.self.identity === identity ? store.self : null);
    return (m && m.name) || t('chat.unknown');
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
        tile.li.remove();
        tiles.delete(id);
      }
    }
    let prev = null;
    for (const item of list) {
      let tile = tiles.get(item.identity);
      if (tile && tile.self !== item.self) {
        tile.li.remove();
        tiles.delete(item.identity);
        tile = null;
      }
      if (!tile) {
        tile = makeTile(item.identity, item.self);
        tiles.set(item.identity, tile);
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
  });
  onChange(render);
  render();
  return { render };
}
