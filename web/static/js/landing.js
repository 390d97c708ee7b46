// landing.js — the landing page: what this server is, the forums it lists (/rooms.json) with how many
// people are in each, and a form that goes to a forum by its link or its name.

import * as i18n from './i18n.js';
import { t } from './i18n.js';
import { h, byTestId } from './dom.js';

const ROOM_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const REFRESH = 20000; // ms between refreshes of the list

let rooms = null; // last list, or null before the first answer
let failed = false;
let version = '';

/**
 * target returns where the form's input leads: a path on this server (/r/name, with an invitation's
 * fragment kept), an http(s) address elsewhere, or null when it is neither a link nor a forum name.
 */
export function target(input, origin = location.origin) {
  const s = input.trim();
  if (!s) return null;
  if (ROOM_NAME.test(s) && !s.includes('/')) return '/r/' + s;
  let u;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:/i.test(s) || s.startsWith('/') ? s : 'https://' + s, origin);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  const m = u.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (u.origin === origin || s.startsWith('/')) {
    if (!m) return null;
    let name;
    try {
      name = decodeURIComponent(m[1]);
    } catch {
      return null;
    }
    return ROOM_NAME.test(name) ? '/r/' + name + u.hash : null;
  }
  return m ? u.href : null;
}

function renderRooms() {
  const list = byTestId('room-list');
  const status = document.querySelector('.rooms-status');
  if (rooms === null) {
    status.textContent = t(failed ? 'landing.roomsFailed' : 'landing.loadingRooms');
    status.hidden = false;
    list.replaceChildren();
    return;
  }
  status.hidden = rooms.length > 0;
  status.textContent = t('landing.noRooms');
  list.replaceChildren(...rooms.map((r) => {
    const langs = (r.languages || []).map((l) => h('li', { class: 'chip', lang: l, text: i18n.languageName(l) }));
    return h('li', { class: 'room-item', 'data-testid': 'room', dataset: { room: r.name } },
      h('a', { class: 'room-link', href: '/r/' + r.name },
        h('span', { class: 'room-name', text: r.title || r.name }),
        r.title ? h('span', { class: 'room-slug muted', text: '/r/' + r.name }) : null),
      h('p', { class: 'room-meta' },
        h('span', { class: 'room-count', text: t('landing.people', { count: r.members || 0 }) }),
        h('span', { class: 'room-guests', text: t(r.guests ? 'landing.guestsWelcome' : 'landing.inviteOnly') })),
      langs.length ? h('ul', { class: 'chips', 'aria-label': t('stage.languages') }, langs) : null);
  }));
}

function renderVersion() {
  document.querySelector('.version').textContent = version ? t('landing.version', { version }) : '';
}

async function loadRooms() {
  try {
    const r = await fetch('/rooms.json', { credentials: 'same-origin' });
    if (!r.ok) throw new Error(String(r.status));
    const body = await r.json();
    rooms = Array.isArray(body.rooms) ? body.rooms : [];
    rooms.sort((a, b) => (b.members || 0) - (a.members || 0) || String(a.title || a.name).localeCompare(String(b.title || b.name)));
    failed = false;
  } catch {
    failed = rooms === null;
  }
  renderRooms();
}

async function main() {
  await i18n.setLanguage(i18n.preferred());
  const select = byTestId('ui-language');
  i18n.fillLanguageSelect(select, i18n.lang());
  const change = () => {
    if (select.value !== i18n.lang()) i18n.setLanguage(select.value, { save: true });
  };
  select.addEventListener('change', change);
  select.addEventListener('input', change);
  i18n.onChange(() => {
    select.value = i18n.lang();
    renderRooms();
    renderVersion();
  });

  const form = byTestId('landing-join-form');
  const input = byTestId('landing-room-input');
  const error = form.querySelector('.landing-error');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const to = target(input.value);
    if (!to) {
      error.textContent = t(input.value.trim() ? 'landing.badRoom' : 'landing.emptyRoom');
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    location.assign(to);
  });
  input.addEventListener('input', () => {
    error.hidden = true;
    input.removeAttribute('aria-invalid');
  });

  renderRooms();
  const [config] = await Promise.all([
    fetch('/config.json').then((r) => (r.ok ? r.json() : {})).catch(() => ({})),
    loadRooms(),
  ]);
  byTestId('landing-dev').hidden = !config.dev;
  version = config.version ? String(config.version) : '';
  renderVersion();
  setInterval(() => {
    if (!document.hidden) loadRooms();
  }, REFRESH);
}

main();
