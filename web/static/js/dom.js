// dom.js — building DOM safely: elements from createElement, text from text nodes. Nothing here parses
// HTML, so nothing that came over the wire can become markup.

/**
 * h creates an element. attrs: "class", "text" (textContent), "dataset" (an object), "on<event>"
 * (a listener function), anything else as an attribute (false/null/undefined leave it out). Children are
 * nodes or strings (text nodes).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

/** byTestId finds one element by its data-testid. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** initials returns up to two letters of a name, for an avatar. */
export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/u).filter(Boolean);
  const first = [...(parts[0] || '?')][0] || '?';
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] : '';
  return (first + last).toLocaleUpperCase();
}

/** hue returns a stable colour hue (0–359) for an identity, so each person keeps a colour. */
export function hue(identity) {
  let x = 0;
  for (const ch of String(identity)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}
