// The console's entry point: session bootstrap, the header, and client-side routing with the
// history API (`/ui/login`, `/ui/workflows[/<id>]`, `/ui/runs[/<id>]`, `/ui/monitoring`).

import { gql, restore, signOut, signedIn, onSessionEnd } from './api.js';
import { h, mount, errorBox } from './util.js';
import * as login from './views/login.js';
import * as workflows from './views/workflows.js';
import * as workflow from './views/workflow.js';
import * as runs from './views/runs.js';
import * as run from './views/run.js';
import * as monitoring from './views/monitoring.js';

const ROUTES = [
  [/^\/ui\/login\/?$/, login, 'Sign in', false],
  [/^\/ui\/workflows\/?$/, workflows, 'Workflows', true],
  [/^\/ui\/workflows\/([^/]+)\/?$/, workflow, 'Workflow', true],
  [/^\/ui\/runs\/?$/, runs, 'Runs', true],
  [/^\/ui\/runs\/([^/]+)\/?$/, run, 'Run', true],
  [/^\/ui\/monitoring\/?$/, monitoring, 'Monitoring', true],
];

const NAV = [['/ui/workflows', 'Workflows'], ['/ui/runs', 'Runs'], ['/ui/monitoring', 'Monitoring']];

const main = document.getElementById('main');
const ctx = { me: null, config: { sso: false }, navigate };
let cleanup = null;

function navigate(path, { replace = false } = {}) {
  if (replace) window.history.replaceState({}, '', path);
  else window.history.pushState({}, '', path);
  route();
}

/** The signed-in user with roles (`me`), or null when signed out. */
async function loadMe() {
  const data = await gql('{ me { id email name roles } }');
  return data.me;
}

function renderHeader() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!ctx.me) {
    mount(nav);
    mount(who);
    return;
  }
  const here = window.location.pathname;
  mount(nav, h('ul', {}, NAV.map(([href, text]) => h('li', {},
    h('a', { href, 'data-link': true, 'aria-current': here.startsWith(href) ? 'page' : null }, text)))),
  h('a', { href: '/graphql', class: 'graphiql' }, 'GraphiQL'));
  mount(who,
    h('span', { class: 'email', title: ctx.me.roles.join(', ') }, ctx.me.email),
    h('button', { type: 'button', 'data-testid': 'sign-out', onclick: doSignOut }, 'Sign out'));
}

async function doSignOut() {
  try {
    await signOut();
  } catch {
    // The cookie is cleared by the server when it can be; locally the session is gone anyway.
  }
  ctx.me = null;
  navigate('/ui/login', { replace: true });
}

onSessionEnd(() => {
  ctx.me = null;
  const next = encodeURIComponent(window.location.pathname + window.location.search);
  navigate(`/ui/login?next=${next}`, { replace: true });
});

async function route() {
  if (cleanup) {
    try { cleanup(); } catch { /* a view's teardown must not stop navigation */ }
    cleanup = null;
  }
  let path = window.location.pathname;
  if (path === '/ui/' || path === '/ui') {
    path = signedIn() ? '/ui/runs' : '/ui/login';
    window.history.replaceState({}, '', path);
  }
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) {
    renderHeader();
    mount(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '/ui/runs', 'data-link': true }, 'Runs')));
    return;
  }
  const [re, view, title, needsSession] = found;
  if (needsSession && !signedIn()) {
    const next = encodeURIComponent(path + window.location.search);
    window.history.replaceState({}, '', `/ui/login?next=${next}`);
    return route();
  }
  if (needsSession && !ctx.me) {
    try {
      ctx.me = await loadMe();
    } catch (e) {
      mount(main, h('h1', {}, title), errorBox(e));
      return;
    }
  }
  document.title = `${title} · TMS`;
  renderHeader();
  mount(main);
  const params = path.match(re).slice(1).map(decodeURIComponent);
  const query = new URLSearchParams(window.location.search);
  const result = view.render(main, params, { ...ctx, query, onSignedIn });
  cleanup = typeof result === 'function' ? result : null;
  main.focus({ preventScroll: true });
}

async function onSignedIn(next) {
  ctx.me = null;
  const target = next && next.startsWith('/ui/') && !next.startsWith('/ui/login') ? next : '/ui/runs';
  navigate(target, { replace: true });
}

// Links marked `data-link` (and the header's) are routed here, without a page load.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => route());

async function start() {
  try {
    const resp = await fetch('/ui/config.json', { credentials: 'same-origin' });
    ctx.config = await resp.json();
  } catch {
    ctx.config = { sso: false };
  }
  try {
    await restore();
  } catch (e) {
    mount(main, h('h1', {}, 'TMS'), errorBox(e));
    return;
  }
  route();
}

start();
