// DOM helpers and formatting shared by the views. No inline styles anywhere: the console's
// Content-Security-Policy refuses them, so everything visual is a class in style.css.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, props, children) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style') throw new Error('inline styles are refused by the CSP');
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h('button', {class: 'x', onclick: f}, 'Label')`. */
export function h(tag, props, ...children) {
  return apply(document.createElement(tag), props, children);
}

/** An SVG element. */
export function s(tag, props, ...children) {
  return apply(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  return apply(el, {}, children);
}

/** A GraphQL (or session) error, shown with its stable `extensions.code`. */
export function errorBox(err) {
  const code = err?.code || 'INTERNAL';
  const box = h('div', { class: 'error', role: 'alert' },
    h('strong', { class: 'code' }, code), ' ', err?.message || String(err));
  const retry = err?.extensions?.retryAfterSeconds;
  if (retry) box.append(` (retry in ${retry} s)`);
  return box;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function fmtSeconds(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return '—';
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Seconds between two timestamps (the second defaults to now), or null. */
export function between(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return (end - new Date(startIso)) / 1000;
}

export function statusBadge(status, extra = {}) {
  return h('span', { class: `badge st-${status}`, ...extra }, status || '—');
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

/** A link handled by the app's router (no page load). */
export function link(href, ...children) {
  return h('a', { href, 'data-link': true }, ...children);
}

export function debounce(fn, ms) {
  let t = null;
  const wrapped = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(t);
  return wrapped;
}

/** Whether the signed-in user may operate runs (trigger, cancel, retry). */
export function canOperate(me) {
  return Boolean(me && me.roles && (me.roles.includes('ADMIN') || me.roles.includes('OPERATOR')));
}

/** Whether the signed-in user may change workflows (and their schedules). */
export function canMaintain(me) {
  return Boolean(me && me.roles && (me.roles.includes('ADMIN') || me.roles.includes('MAINTAINER')));
}
