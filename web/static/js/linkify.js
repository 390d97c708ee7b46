// linkify.js — chat text to DOM nodes: text nodes, and <a> elements for http(s) URLs only. Never HTML.
// "javascript:", "data:" and every other scheme stay plain text.

// A candidate starts with http:// or https:// or www. and runs to the next space or angle bracket/quote.
const CANDIDATE = /\b(?:https?:\/\/|www\.)[^\s<>"'`]+/giu;
// Punctuation that usually ends a sentence rather than a URL.
const TRAILING = /[.,;:!?…»"'’”)\]}]+$/u;

/**
 * safeURL returns the absolute href for a piece of text if it is an http(s) URL, else null.
 * @param {string} text
 */
export function safeURL(text) {
  const s = /^www\./i.test(text) ? 'https://' + text : text;
  let u;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (!u.hostname) return null;
  return u.href;
}

/**
 * linkify returns the nodes for a chat text: text nodes for everything, except http(s) URLs, which
 * become links that open in a new tab without giving it a handle on this page.
 * @param {string} text
 * @returns {Node[]}
 */
export function linkify(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(CANDIDATE)) {
    let url = m[0];
    // Keep a closing bracket that closes one opened inside the URL (Wikipedia-style links).
    let trail = url.match(TRAILING);
    while (trail) {
      const cut = trail[0];
      let keep = 0;
      if (cut.startsWith(')') && count(url, '(') > count(url.slice(0, url.length - cut.length), ')')) keep = 1;
      const drop = cut.length - keep;
      if (drop <= 0) break;
      url = url.slice(0, url.length - drop);
      trail = keep ? null : url.match(TRAILING);
    }
    const href = safeURL(url);
    if (!href) continue;
    const start = m.index;
    if (start > last) nodes.push(document.createTextNode(text.slice(last, start)));
    const a = document.createElement('a');
    a.href = href;
    a.textContent = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow ugc';
    nodes.push(a);
    last = start + url.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function count(s, ch) {
  let n = 0;
  for (const c of s) if (c === ch) n++;
  return n;
}
