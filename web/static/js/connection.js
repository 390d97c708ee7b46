// connection.js — the connection indicator (data-state: connecting, connected, reconnecting, offline,
// closed) and the banner that tells the reader what is happening while the page reconnects and recovers.

import { byTestId } from './dom.js';
import { t, onChange } from './i18n.js';

const BANNER_AFTER_RECOVERY = 5000; // ms the "back, up to date" message stays

/**
 * createConnection wires the indicator and the banner.
 * @param {{retry: () => void}} actions retry: try to reconnect now
 */
export function createConnection(actions) {
  const status = byTestId('connection-status');
  const label = status.querySelector('.status-label');
  const banner = byTestId('connection-banner');
  const text = banner.querySelector('.banner-text');
  const retry = banner.querySelector('.banner-retry');

  let state = 'connecting';
  let message = null; // {key, params, tone}
  let hideTimer = 0;
  let tick = 0;
  let retryAt = 0;

  retry.addEventListener('click', () => actions.retry());

  function render() {
    status.dataset.state = state;
    label.textContent = t(`status.${state}`);
    status.title = t(`status.${state}`);
    if (!message) {
      banner.hidden = true;
      banner.dataset.state = 'none';
      text.textContent = '';
      retry.hidden = true;
      return;
    }
    const params = { ...message.params };
    if (retryAt) params.seconds = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
    banner.hidden = false;
    banner.dataset.state = message.tone;
    text.textContent = t(message.key, params);
    retry.hidden = !message.retry;
  }

  function say(key, params = {}, tone = 'info', { retry: canRetry = false, for: ms = 0, at = 0 } = {}) {
    clearTimeout(hideTimer);
    clearInterval(tick);
    tick = 0;
    retryAt = at;
    message = { key, params, tone, retry: canRetry };
    if (ms) hideTimer = setTimeout(() => { message = null; render(); }, ms);
    if (at) tick = setInterval(render, 1000);
    render();
  }

  function quiet() {
    clearTimeout(hideTimer);
    clearInterval(tick);
    tick = 0;
    retryAt = 0;
    message = null;
    render();
  }

  onChange(render);
  render();

  return {
    get state() {
      return state;
    },
    /** set changes the indicator's state. */
    set(s) {
      state = s;
      render();
    },
    say,
    quiet,
  };
}
