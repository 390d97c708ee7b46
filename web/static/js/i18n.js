// i18n.js — the seven UI languages: catalogs from /static/i18n/<lang>.json, t(key, params) with plurals
// (Intl.PluralRules), numbers and dates in the reader's locale, and the language choice (saved in
// localStorage, else the browser's preferences, else English).
//
// A catalog is a flat object of keys to strings; a plural entry is an object of CLDR categories
// ({"one": "…", "other": "…"}, Russian adds "few" and "many") chosen by params.count. "{name}" in a string
// is replaced by params.name. English fills in any key a catalog lacks.

/** The UI languages, each with its name in itself. */
export const LANGUAGES = [
  { tag: 'en', name: 'English' },
  { tag: 'pt-BR', name: 'Português (Brasil)' },
  { tag: 'es', name: 'Español' },
  { tag: 'fr', name: 'Français' },
  { tag: 'de', name: 'Deutsch' },
  { tag: 'ru', name: 'Русский' },
  { tag: 'tr', name: 'Türkçe' },
];

const STORAGE_KEY = 'liveforum.lang';
const FALLBACK = 'en';

let current = FALLBACK;
let catalog = {};
let fallback = {};
let plurals = new Intl.PluralRules(FALLBACK);
const listeners = new Set();
const cache = new Map();

/** lang returns the current UI language tag. */
export function lang() {
  return current;
}

/**
 * match returns the UI language that best fits a list of BCP 47 tags (in order of preference): an exact
 * match first, then the same primary language (pt-PT → pt-BR, es-MX → es), else English.
 */
export function match(prefs) {
  const tags = LANGUAGES.map((l) => l.tag);
  for (const p of prefs || []) {
    if (!p) continue;
    const exact = tags.find((t) => t.toLowerCase() === String(p).toLowerCase());
    if (exact) return exact;
    const primary = String(p).split('-')[0].toLowerCase();
    const same = tags.find((t) => t.split('-')[0].toLowerCase() === primary);
    if (same) return same;
  }
  return FALLBACK;
}

/** preferred returns the saved language, else the browser's best match. */
export function preferred() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch { /* storage disabled */ }
  if (saved && LANGUAGES.some((l) => l.tag === saved)) return saved;
  return match(navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]);
}

async function fetchCatalog(tag) {
  if (cache.has(tag)) return cache.get(tag);
  const p = fetch(`/static/i18n/${tag}.json`, { credentials: 'same-origin' }).then((r) => {
    if (!r.ok) throw new Error(`i18n: catalog ${tag}: HTTP ${r.status}`);
    return r.json();
  });
  cache.set(tag, p);
  try {
    return await p;
  } catch (err) {
    cache.delete(tag);
    throw err;
  }
}

/**
 * setLanguage loads a language's catalog and makes it current: it sets <html lang dir>, translates the
 * document's data-i18n elements and tells the listeners. save keeps the choice for next time.
 */
export async function setLanguage(tag, { save = false } = {}) {
  if (!LANGUAGES.some((l) => l.tag === tag)) tag = FALLBACK;
  if (save) {
    // Saved before the catalog arrives, so that a page left at once still remembers the choice.
    try {
      localStorage.setItem(STORAGE_KEY, tag);
    } catch { /* storage disabled */ }
  }
  const [cat, fb] = await Promise.all([
    fetchCatalog(tag).catch(() => ({})),
    fetchCatalog(FALLBACK).catch(() => ({})),
  ]);
  current = tag;
  catalog = cat;
  fallback = fb;
  plurals = new Intl.PluralRules(tag);
  document.documentElement.lang = tag;
  document.documentElement.dir = 'ltr';
  translate(document);
  for (const fn of listeners) fn(tag);
}

/** onChange calls fn(tag) after every language change; it returns a function that stops it. */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * t returns the string for key in the current language. params.count picks the plural form and is
 * formatted as a number; other {placeholders} are replaced as given.
 */
export function t(key, params = {}) {
  let s = lookup(catalog, key, params);
  if (s === undefined) s = lookup(fallback, key, params);
  if (s === undefined) return key;
  return s.replace(/\{(\w+)\}/g, (m, name) => {
    if (!(name in params)) return m;
    const v = params[name];
    return typeof v === 'number' ? formatNumber(v) : String(v);
  });
}

function lookup(cat, key, params) {
  const v = cat[key];
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') {
    const n = typeof params.count === 'number' ? params.count : 0;
    const form = plurals.select(n);
    return v[form] ?? v.other;
  }
  return undefined;
}

/** has reports whether a key exists in the current catalog or in English. */
export function has(key) {
  return key in catalog || key in fallback;
}

/** formatNumber formats a number in the current language. */
export function formatNumber(n) {
  return new Intl.NumberFormat(current).format(n);
}

/**
 * formatTime formats a unix-ms timestamp for a chat line: the time of day if it is today, else the date
 * and time, in the current language.
 */
export function formatTime(ms, now = Date.now()) {
  const d = new Date(ms);
  const today = new Date(now);
  const sameDay = d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  const opts = sameDay ? { hour: 'numeric', minute: '2-digit' } : { dateStyle: 'short', timeStyle: 'short' };
  return new Intl.DateTimeFormat(current, opts).format(d);
}

/** formatFullDate formats a unix-ms timestamp in full (for a tooltip). */
export function formatFullDate(ms) {
  return new Intl.DateTimeFormat(current, { dateStyle: 'full', timeStyle: 'medium' }).format(new Date(ms));
}

/** languageName returns a language's name in itself (the 7 UI languages), else in the UI language. */
export function languageName(tag) {
  const ui = LANGUAGES.find((l) => l.tag.toLowerCase() === String(tag).toLowerCase());
  if (ui) return ui.name;
  try {
    return new Intl.DisplayNames([current], { type: 'language' }).of(tag) || tag;
  } catch {
    return tag;
  }
}

/**
 * translate fills the static strings of a subtree: data-i18n="key" sets textContent, and
 * data-i18n-attr="attr:key attr2:key2" sets attributes (placeholder, aria-label, title).
 */
export function translate(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(/\s+/)) {
      const i = pair.indexOf(':');
      if (i > 0) el.setAttribute(pair.slice(0, i), t(pair.slice(i + 1)));
    }
  }
}

/** fillLanguageSelect puts the seven languages into a <select>, each option tagged with its own lang. */
export function fillLanguageSelect(select, value) {
  select.replaceChildren();
  for (const l of LANGUAGES) {
    const o = document.createElement('option');
    o.value = l.tag;
    o.lang = l.tag;
    o.textContent = l.name;
    select.append(o);
  }
  select.value = value;
}
