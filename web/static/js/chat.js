// chat.js — the chat panel: history and live messages from the store, own messages marked, times in the
// reader's locale, auto-scroll that stops when the reader scrolls up (with a "new messages" button), an
// aria-live region that announces new messages, and the message box (Enter sends, Shift+Enter is a new
// line). Message text is put in text nodes; only http(s) URLs become links (linkify.js).

import { h, byTestId, hue } from './dom.js';
import { linkify } from './linkify.js';
import { t, formatTime, formatFullDate, onChange } from './i18n.js';
import { MAX_MESSAGES } from './store.js';

const NEAR_BOTTOM = 48; // px: closer than this to the end counts as "at the end"
const MAX_CHARS = 2000; // the server's default -max-chat-chars
const ANNOUNCE_MAX = 3; // messages announced at once; more are summed up

/**
 * createChat wires the chat panel found in root.
 * @param {HTMLElement} root the panel
 * @param {import('./store.js').RoomStore} store
 * @param {(text: string) => Promise<void>} send sends a message; rejects with an Error whose key (a catalog
 *   key) or message says what went wrong
 */
export function createChat(root, store, send) {
  const scroller = root.querySelector('.chat-scroll');
  const list = byTestId('chat-list', root);
  const outbox = root.querySelector('.chat-outbox');
  const empty = root.querySelector('.chat-empty');
  const jump = byTestId('new-messages', root);
  const live = root.querySelector('.chat-live');
  const form = root.querySelector('form');
  const input = byTestId('chat-input', root);
  const sendBtn = byTestId('chat-send', root);
  const error = root.querySelector('.chat-error');
  const counter = root.querySelector('.chat-counter');

  let stuck = true; // following the end of the conversation
  let unread = 0;
  let announceQueue = [];
  let announceTimer = 0;
  let busy = false;
  let errorKey = ''; // the error shown under the box, as a catalog key

  input.maxLength = MAX_CHARS;

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM;
  }

  function scrollToEnd() {
    scroller.scrollTop = scroller.scrollHeight;
    stuck = true;
    unread = 0;
    renderJump();
  }

  function renderJump() {
    jump.hidden = unread === 0;
    jump.textContent = t('chat.newMessages', { count: unread });
  }

  scroller.addEventListener('scroll', () => {
    stuck = atBottom();
    if (stuck && unread) {
      unread = 0;
      renderJump();
    }
  }, { passive: true });

  jump.addEventListener('click', () => {
    scrollToEnd();
    input.focus({ preventScroll: true });
  });

  function messageNode(msg) {
    if (msg.kind !== 'chat') return noticeNode(msg);
    const from = msg.from || {};
    const author = h('span', { class: 'msg-author', 'data-testid': 'chat-author', text: from.name || t('chat.unknown'), title: from.name || '' });
    const head = h('div', { class: 'msg-head' }, author);
    if (msg.own) head.append(h('span', { class: 'badge badge-you', text: t('chat.you') }));
    if (from.role && from.role !== 'participant' && from.role !== 'guest') {
      head.append(h('span', { class: `badge badge-${roleClass(from.role)}`, text: t(`role.${roleClass(from.role)}`) }));
    }
    if (msg.time) {
      head.append(h('time', {
        class: 'msg-time',
        datetime: new Date(msg.time).toISOString(),
        title: formatFullDate(msg.time),
        text: formatTime(msg.time),
      }));
    }
    const text = h('p', { class: 'msg-text', 'data-testid': 'chat-text', dir: 'auto' }, ...linkify(msg.text));
    return h('li', {
      class: `msg hue-${hue(from.identity) % 8}${msg.own ? ' own' : ''}`,
      'data-testid': 'chat-message',
      dataset: { offset: String(msg.offset), identity: from.identity || '', own: msg.own ? 'true' : 'false' },
    }, head, text);
  }

  function noticeNode(msg) {
    let text = '';
    if (msg.kind === 'removed') {
      const name = (msg.member && msg.member.name) || t('chat.unknown');
      text = msg.by && msg.by.name ? t('chat.removedBy', { name, by: msg.by.name }) : t('chat.removed', { name });
      if (msg.reason) text += ' ' + t('chat.reason', { reason: msg.reason });
    }
    return h('li', { class: 'notice', 'data-testid': 'chat-notice', dataset: { offset: String(msg.offset) } }, text);
  }

  function renderAll() {
    const keep = stuck;
    const top = scroller.scrollTop;
    list.replaceChildren(...store.messages.map(messageNode));
    renderOutbox();
    renderEmpty();
    if (keep) scrollToEnd();
    else scroller.scrollTop = top;
  }

  function renderEmpty() {
    empty.hidden = store.messages.length > 0 || store.outbox.length > 0;
  }

  function renderOutbox() {
    outbox.replaceChildren(...store.outbox.map((o) => h('li', {
      class: 'msg own pending',
      'data-testid': 'chat-pending',
      dataset: { state: o.state },
    },
    h('div', { class: 'msg-head' },
      h('span', { class: 'msg-author', text: (store.self && store.self.name) || '' }),
      h('span', { class: 'badge badge-pending', text: t({ waiting: 'chat.waiting', retrying: 'chat.retrying' }[o.state] ?? 'chat.sending') })),
    h('p', { class: 'msg-text', dir: 'auto' }, o.text))));
  }

  function insert(nodes) {
    for (const node of nodes) {
      const off = Number(node.dataset.offset);
      let before = null;
      const last = list.lastElementChild;
      if (last && Number(last.dataset.offset) > off) {
        for (const el of list.children) {
          if (Number(el.dataset.offset) > off) {
            before = el;
            break;
          }
        }
      }
      list.insertBefore(node, before);
    }
    while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  }

  function added(msgs) {
    const follow = stuck || atBottom();
    insert(msgs.map(messageNode));
    renderEmpty();
    const mine = msgs.some((m) => m.own);
    if (follow || mine) {
      scrollToEnd();
    } else {
      unread += msgs.filter((m) => m.kind === 'chat').length;
      renderJump();
    }
    announce(msgs.filter((m) => m.kind === 'chat' && !m.own));
  }

  // Screen readers hear new messages from others, a few at a time, politely.
  function announce(msgs) {
    if (!msgs.length) return;
    announceQueue.push(...msgs);
    if (announceTimer) return;
    announceTimer = setTimeout(() => {
      const q = announceQueue;
      announceQueue = [];
      announceTimer = 0;
      const lines = q.slice(-ANNOUNCE_MAX).map((m) => t('chat.announce', { name: m.from.name, text: m.text }));
      if (q.length > ANNOUNCE_MAX) lines.unshift(t('chat.newMessages', { count: q.length }));
      live.textContent = lines.join('\n');
    }, 400);
  }

  store.addEventListener('change', (e) => {
    const d = e.detail;
    if (d.what === 'reset') {
      stuck = true;
      unread = 0;
      renderAll();
      renderJump();
    } else if (d.what === 'messages') {
      added(d.added);
    } else if (d.what === 'outbox') {
      renderOutbox();
      renderEmpty();
      if (stuck) scrollToEnd();
    }
  });

  onChange(() => {
    renderAll();
    renderJump();
    renderCounter();
    if (errorKey) error.textContent = t(errorKey);
  });

  // --- the message box ---

  function renderCounter() {
    const left = MAX_CHARS - input.value.length;
    counter.hidden = left > 200;
    counter.textContent = t('chat.charsLeft', { count: left });
  }

  // showError shows an error under the box: a catalog key ({key}, which follows language changes) or a text.
  function showError(msg) {
    errorKey = (msg && msg.key) || '';
    const text = errorKey ? t(errorKey) : (typeof msg === 'string' ? msg : (msg && msg.message) || '');
    error.textContent = text;
    error.hidden = !text;
  }

  async function submit() {
    const text = input.value.trim();
    if (!text || busy) return;
    showError('');
    busy = true;
    sendBtn.disabled = true;
    input.value = '';
    renderCounter();
    try {
      await send(text);
    } catch (err) {
      if (!input.value) input.value = text; // give the text back to fix or send again
      renderCounter();
      showError(err);
    } finally {
      busy = false;
      sendBtn.disabled = false;
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
    input.focus();
  });

  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });

  input.addEventListener('input', () => {
    renderCounter();
    if (!error.hidden) showError('');
  });

  renderAll();
  renderJump();
  renderCounter();

  return {
    focus() {
      input.focus();
    },
    showError,
    scrollToEnd,
  };
}

function roleClass(role) {
  return ['moderator', 'speaker', 'interpreter', 'participant', 'guest', 'bot'].includes(role) ? role : 'participant';
}
