// people.js — the people panel: members grouped by role (moderators, speakers, interpreters, participants,
// guests, bots), live as they come and go, with counts. Changes are redrawn together on the next task (a
// timer, not requestAnimationFrame, which does not run in a hidden tab), so a busy room's joins do not
// redraw the list for every one.

import { h, byTestId, initials, hue } from './dom.js';
import { t, languageName, onChange } from './i18n.js';
import { ROLES } from './store.js';

/**
 * createPeople wires the people panel found in root.
 * @param {HTMLElement} root the panel
 * @param {import('./store.js').RoomStore} store
 * @param {(count: number) => void} [onCount] told the member count after each redraw (for tabs)
 */
export function createPeople(root, store, onCount = () => {}) {
  const list = byTestId('people-list', root);
  const count = root.querySelector('.people-count');
  let frame = 0;

  function person(m) {
    const self = store.isSelf(m.identity);
    const name = h('span', { class: 'person-name', 'data-testid': 'person-name', text: m.name, title: m.name });
    const li = h('li', {
      class: `person hue-${hue(m.identity) % 8}${self ? ' self' : ''}`,
      'data-testid': 'person',
      dataset: { identity: m.identity, role: m.role || '' },
    },
    h('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(m.name) }),
    name);
    if (self) li.append(h('span', { class: 'person-you', text: t('people.you') }));
    if (m.lang) {
      li.append(h('span', { class: 'person-lang', lang: m.lang, title: languageName(m.lang), text: m.lang }));
    }
    return li;
  }

  function render() {
    clearTimeout(frame);
    frame = 0;
    const groups = store.groups();
    const sections = [];
    for (const role of ROLES) {
      const members = groups.get(role);
      if (!members.length) continue;
      const id = `people-${role}`;
      sections.push(h('section', { class: 'role-group', 'aria-labelledby': id, dataset: { role } },
        h('h3', { id, class: 'role-title', text: t(`people.group.${role}`, { count: members.length }) }),
        h('ul', { class: 'person-list' }, members.map(person))));
    }
    if (!store.presence) {
      sections.push(h('p', { class: 'muted', text: t('people.hidden') }));
    }
    list.replaceChildren(...sections);
    count.textContent = t('people.count', { count: store.memberCount });
    onCount(store.memberCount);
  }

  function schedule() {
    if (!frame) frame = setTimeout(render, 0);
  }

  store.addEventListener('change', (e) => {
    if (e.detail.what === 'members' || e.detail.what === 'reset') schedule();
  });
  onChange(render);
  render();
}
