// stage.js — the stage area. Until the media issue puts video here it shows what is true now: the forum's
// title, the room's languages, who has the floor (members with the role speaker) and a status line. It is
// not a fake player.

import { h, initials, hue } from './dom.js';
import { t, languageName, onChange } from './i18n.js';

/**
 * createStage wires the stage found in root.
 * @param {HTMLElement} root the stage section
 * @param {import('./store.js').RoomStore} store
 * @param {() => string} connState returns the connection state (connected, reconnecting, …)
 */
export function createStage(root, store, connState) {
  const title = root.querySelector('.stage-title');
  const name = root.querySelector('.stage-room');
  const langs = root.querySelector('.stage-languages');
  const status = root.querySelector('.stage-status');
  const speakers = root.querySelector('.stage-speakers');
  const none = root.querySelector('.stage-no-speakers');

  function render() {
    const room = store.room || {};
    title.textContent = room.title || room.name || '';
    name.textContent = room.title && room.name ? '/r/' + room.name : '';
    name.hidden = !name.textContent;
    langs.replaceChildren(...(room.languages || []).map((l) => h('li', { class: 'chip', lang: l, text: languageName(l) })));
    langs.hidden = !langs.children.length;

    const list = store.speakers();
    speakers.replaceChildren(...list.map((m) => h('li', { class: `speaker hue-${hue(m.identity) % 8}` },
      h('span', { class: 'avatar avatar-lg', 'aria-hidden': 'true', text: initials(m.name) }),
      h('span', { class: 'speaker-name', text: m.name, title: m.name }))));
    speakers.hidden = list.length === 0;
    none.hidden = list.length > 0;

    const state = connState();
    if (state !== 'connected') {
      status.textContent = t(`stage.status.${state === 'closed' ? 'closed' : 'waiting'}`);
    } else {
      status.textContent = t('stage.status.live', { count: store.memberCount });
    }
    status.dataset.state = state;
  }

  store.addEventListener('change', (e) => {
    const w = e.detail.what;
    if (w === 'members' || w === 'reset' || w === 'room') render();
  });
  onChange(render);
  render();
  return { render };
}
