// join.js — the join screen: a display name and the language the reader reads, both remembered in
// localStorage for next time. With an invite link it says so; the role comes from the invitation.

import { byTestId } from './dom.js';
import { t, fillLanguageSelect, lang as uiLang, onChange } from './i18n.js';

const NAME_KEY = 'liveforum.name';
const READ_KEY = 'liveforum.readLang';
const MAX_NAME = 64;

/** remembered returns the name and reading language saved last time ({name: "", lang: ""} if none). */
export function remembered() {
  try {
    return { name: localStorage.getItem(NAME_KEY) || '', lang: localStorage.getItem(READ_KEY) || '' };
  } catch {
    return { name: '', lang: '' };
  }
}

/** remember saves the name and reading language for next time. */
export function remember(name, lang) {
  try {
    localStorage.setItem(NAME_KEY, name);
    localStorage.setItem(READ_KEY, lang);
  } catch { /* storage disabled: the reader types them again */ }
}

/** cleanName trims and collapses spaces as the server does, so the length check matches its own. */
export function cleanName(s) {
  return String(s).replace(/[\p{Cc}\p{Cf}]/gu, '').replace(/\s+/gu, ' ').trim();
}

/**
 * createJoin wires the join screen found in root.
 * @param {HTMLElement} root
 * @param {(who: {name: string, lang: string}) => Promise<void>} onJoin joins; rejects with an Error whose
 *   key (a catalog key) or message says what went wrong
 */
export function createJoin(root, onJoin) {
  const form = root.querySelector('form');
  const name = byTestId('join-name', root);
  const language = byTestId('join-language', root);
  const submit = byTestId('join-submit', root);
  const intro = root.querySelector('.join-intro');
  const error = root.querySelector('.join-error');
  let context = { room: '', title: '', invite: false };

  fillLanguageSelect(language, remembered().lang || uiLang());
  name.maxLength = MAX_NAME;

  function renderIntro() {
    const room = context.title || context.room;
    intro.textContent = context.invite ? t('join.introInvite', { room }) : t('join.intro', { room });
  }

  let errorKey = '';

  // setError shows an error: a catalog key ({key}, which follows language changes) or a text.
  function setError(msg) {
    errorKey = (msg && msg.key) || '';
    const text = errorKey ? t(errorKey) : (typeof msg === 'string' ? msg : (msg && msg.message) || '');
    error.textContent = text;
    error.hidden = !text;
    name.setAttribute('aria-invalid', text && context.nameError ? 'true' : 'false');
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const who = { name: cleanName(name.value), lang: language.value };
    context.nameError = false;
    if (!who.name || [...who.name].length > MAX_NAME) {
      context.nameError = true;
      setError({ key: 'join.nameRequired' });
      name.focus();
      return;
    }
    setError('');
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      remember(who.name, who.lang);
      await onJoin(who);
    } catch (err) {
      setError(err);
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });

  // The reading language follows the UI language until the reader picks one.
  let picked = !!remembered().lang;
  language.addEventListener('change', () => {
    picked = true;
  });
  onChange((tag) => {
    if (!picked) language.value = tag;
    renderIntro();
    if (errorKey) error.textContent = t(errorKey);
  });

  return {
    /** show shows the screen for a room; error, if given, is shown at once. */
    show({ room, title = '', invite = false, error: msg = '' }) {
      context = { room, title, invite, nameError: false };
      const r = remembered();
      if (!name.value) name.value = r.name;
      language.value = r.lang || uiLang();
      if (!language.value) language.value = 'en';
      renderIntro();
      setError(msg);
      root.hidden = false;
      (name.value ? submit : name).focus();
    },
    setTitle(title) {
      context.title = title;
      renderIntro();
    },
    hide() {
      root.hidden = true;
    },
  };
}
