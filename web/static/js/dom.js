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

const SVG = 'http://www.w3.org/2000/svg';

/** Line icons (24×24, drawn with currentColor): each a list of path data. */
const ICONS = {
  mic: ['M12 3a3 3 0 0 1 3 3v5a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3', 'M8 21h8'],
  camera: ['M4 7h10a2 2 0 0 1 2 2v6a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V9a2 2 0 0 1 2-2z', 'M16 11l6-4v10l-6-4'],
  screen: ['M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 'M8 21h8', 'M12 17v4'],
  devices: ['M4 6h10', 'M18 6h2', 'M4 12h4', 'M12 12h8', 'M4 18h12', 'M20 18h0', 'M16 4v4', 'M10 10v4', 'M18 16v4'],
  sound: ['M4 9h4l5-4v14l-5-4H4z', 'M16 9a4 4 0 0 1 0 6', 'M19 6a8 8 0 0 1 0 12'],
};

/**
 * icon returns an inline SVG icon, hidden from assistive technology (the control it sits in has a name).
 * With slash, a diagonal line (class icon-slash) crosses it out, for a source that is off.
 */
export function icon(name, { slash = false } = {}) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon icon-${name}`);
  for (const d of ICONS[name] || []) {
    const p = document.createElementNS(SVG, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  if (slash) {
    const p = document.createElementNS(SVG, 'path');
    p.setAttribute('d', 'M3 3l18 18');
    p.setAttribute('class', 'icon-slash');
    svg.append(p);
  }
  return svg;
}
