// menu.js — the room page's menu: the UI language and "leave". On wide screens its contents sit in the top
// bar; on narrow ones the menu button opens them. Escape or a click elsewhere closes it.

import { byTestId } from './dom.js';
import { fillLanguageSelect, lang, setLanguage } from './i18n.js';

/**
 * createMenu wires the menu.
 * @param {HTMLElement} root the <nav class="menu">
 * @param {{leave: () => void}} actions
 */
export function createMenu(root, actions) {
  const button = byTestId('menu', root);
  const panel = root.querySelector('.menu-panel');
  const select = byTestId('ui-language', root);
  const leave = byTestId('leave', root);

  fillLanguageSelect(select, lang());

  function setOpen(open) {
    root.classList.toggle('open', open);
    button.setAttribute('aria-expanded', String(open));
  }

  button.addEventListener('click', () => {
    const open = !root.classList.contains('open');
    setOpen(open);
    if (open) select.focus();
  });

  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && root.classList.contains('open')) {
      setOpen(false);
      button.focus();
    }
  });

  document.addEventListener('click', (e) => {
    if (root.classList.contains('open') && !root.contains(e.target)) setOpen(false);
  });

  const change = () => {
    if (select.value !== lang()) setLanguage(select.value, { save: true });
  };
  select.addEventListener('change', change);
  select.addEventListener('input', change);

  leave.addEventListener('click', () => {
    setOpen(false);
    actions.leave();
  });

  return {
    /** showLeave shows or hides the leave button (only in the forum). */
    showLeave(on) {
      leave.hidden = !on;
    },
    /** sync shows the current language (after it changed elsewhere). */
    sync() {
      select.value = lang();
    },
    panel,
  };
}
