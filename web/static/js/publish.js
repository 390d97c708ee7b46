// publish.js — the controls for going live, under the stage, for members whose role may publish (speakers
// and moderators: microphone, camera, screen; interpreters: microphone): a toggle button per source
// (aria-pressed), device pickers, the "you are live" state and what went wrong (a permission denied, no
// device, the stage full), in the reader's language.

import { byTestId, icon } from './dom.js';
import { t, has, onChange } from './i18n.js';
import { publishable, SOURCES } from './media.js';

/**
 * createPublish wires the publishing controls found in root.
 * @param {HTMLElement} root the .publish element
 * @param {import('./store.js').RoomStore} store
 * @param {import('./media.js').StageMedia} media
 */
export function createPublish(root, store, media) {
  const liveTitle = root.querySelector('.publish-live-title');
  const liveText = root.querySelector('.publish-live-text');
  const error = root.querySelector('.publish-error');
  const errorText = root.querySelector('.publish-error-text');
  const devices = root.querySelector('.publish-devices');
  const buttons = Object.fromEntries(SOURCES.map((s) => [s, byTestId(`publish-${s}`, root)]));
  const selects = [...root.querySelectorAll('select[data-kind]')];

  for (const s of SOURCES) {
    buttons[s].prepend(icon(s, { slash: true }));
    buttons[s].addEventListener('click', () => media.toggle(s));
  }
  root.querySelector('summary').prepend(icon('devices'));
  devices.addEventListener('toggle', () => {
    if (devices.open) media.refreshDevices();
  });
  for (const sel of selects) {
    sel.addEventListener('change', () => media.chooseDevice(sel.dataset.kind, sel.value));
  }
  root.querySelector('.publish-error-close').addEventListener('click', () => media.clearError());

  function allowed() {
    if (media.state === 'unsupported' || media.state === 'unavailable') return [];
    return publishable(store.self && store.self.role);
  }

  function renderDevices() {
    const sources = allowed();
    for (const sel of selects) {
      const kind = sel.dataset.kind;
      const field = sel.closest('.device-field');
      field.hidden = !sources.includes(kind === 'audioinput' ? 'mic' : 'camera');
      const list = media.devices[kind] || [];
      const opts = [{ id: '', label: t('publish.default') }].concat(list.map((d, i) => ({
        id: d.id,
        label: d.label || t(kind === 'audioinput' ? 'publish.micN' : 'publish.cameraN', { n: i + 1 }),
      })));
      const value = media.chosen[kind] || '';
      sel.replaceChildren(...opts.map((o) => {
        const opt = document.createElement('option');
        opt.value = o.id;
        opt.textContent = o.label;
        return opt;
      }));
      sel.value = opts.some((o) => o.id === value) ? value : '';
    }
  }

  function stateText() {
    const p = media.publishing;
    const muted = media.selfMuted();
    const audioOnly = !allowed().includes('camera');
    if (p === 'live') {
      const see = !!(media.local.camera || media.local.screen);
      const micStopped = media.local.mic && muted.audio;
      const cameraStopped = media.local.camera && muted.video;
      if (micStopped && cameraStopped) return ['publish.state.live', 'publish.hint.mutedBoth'];
      if (micStopped) return ['publish.state.live', 'publish.hint.muted'];
      if (cameraStopped) return ['publish.state.live', 'publish.hint.cameraStopped'];
      if (see && media.local.mic) return ['publish.state.live', 'publish.hint.seeHear'];
      if (see) return ['publish.state.live', 'publish.hint.see'];
      return ['publish.state.live', 'publish.hint.hear'];
    }
    if (p === 'starting') return ['publish.state.starting', ''];
    if (p === 'failed') return ['publish.state.off', 'publish.hint.failed'];
    return ['publish.state.off', audioOnly ? 'publish.hint.offAudio' : 'publish.hint.off'];
  }

  function errorKey(err) {
    if (err.reason === 'insecure' || err.reason === 'unsupported') return `publish.error.${err.reason}`;
    const key = `publish.error.${err.source}.${err.reason}`;
    return has(key) ? key : 'publish.error.publish.failed';
  }

  function render() {
    const sources = allowed();
    root.hidden = sources.length === 0;
    if (root.hidden) return;
    root.dataset.state = media.publishing;
    const muted = media.selfMuted();
    root.dataset.muted = String(muted.audio);
    root.dataset.mutedVideo = String(muted.video);
    for (const s of SOURCES) {
      const b = buttons[s];
      b.hidden = !sources.includes(s);
      b.setAttribute('aria-pressed', String(!!media.local[s]));
      b.disabled = media.busy[s];
      b.dataset.busy = String(media.busy[s]);
    }
    const [titleKey, textKey] = stateText();
    liveTitle.textContent = t(titleKey);
    liveText.textContent = textKey ? t(textKey) : '';
    if (media.error && media.error.source !== 'stage') {
      error.hidden = false;
      error.dataset.source = media.error.source;
      error.dataset.reason = media.error.reason;
      errorText.textContent = t(errorKey(media.error));
    } else {
      error.hidden = true;
      delete error.dataset.source;
      delete error.dataset.reason;
    }
    renderDevices();
  }

  let shown = false;
  function renderAndStop() {
    render();
    // Own sources stop when the role no longer allows them (a speaker made a participant).
    if (!root.hidden || !media.hasLocal() || media.state === 'unavailable') return;
    media.stopSending();
  }

  store.addEventListener('change', (e) => {
    const w = e.detail.what;
    if (w === 'members' || w === 'reset') renderAndStop();
  });
  media.addEventListener('change', (e) => {
    const w = e.detail.what;
    if (w === 'levels') {
      // Only the "a moderator may have stopped your microphone / camera" lines depend on the flow of
      // one's own media.
      const muted = media.selfMuted();
      if (root.dataset.muted !== String(muted.audio) || root.dataset.mutedVideo !== String(muted.video)) render();
      return;
    }
    render();
    if (!shown && !root.hidden) {
      shown = true;
      media.refreshDevices();
    }
  });
  onChange(render);
  render();
  return { render };
}
