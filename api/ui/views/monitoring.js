// `/ui/monitoring`: the four monitoring queries (monitors and admins), refreshed every 10 s.

import { gql } from '../api.js';
import { h, mount, errorBox, fmtTime, fmtSeconds, statusBadge } from '../util.js';

const WINDOWS = [[3600, 'last hour'], [86400, 'last 24 hours'], [604800, 'last 7 days']];

const QUERIES = {
  health: '{ systemHealth { status components { name status latencyMs detail } } }',
  queue: '{ queueStats { pending running retrying dead oldestPendingAgeSeconds } }',
  workers: '{ workers { name version startedAt lastHeartbeatAt busySlots totalSlots stale } }',
  stats: `query($w: Int!) { runStats(windowSeconds: $w) { windowSeconds total succeeded failed
    cancelled timedOut running p50DurationSeconds p95DurationSeconds failureRate cacheHitRatio } }`,
};

function table(caption, head, rows) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows)));
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

const pct = (x) => `${(x * 100).toFixed(1)}%`;

const VIEWS = {
  health: ({ systemHealth: s }) => [
    h('p', {}, 'Overall: ', statusBadge(s.status)),
    table('Components', ['Component', 'Status', 'Latency', 'Detail'], s.components.map((c) => h('tr', {},
      h('th', { scope: 'row' }, c.name), h('td', {}, statusBadge(c.status)),
      h('td', {}, `${c.latencyMs} ms`), h('td', { class: 'wrap' }, c.detail || '')))),
  ],
  queue: ({ queueStats: q }) => [facts([
    ['Pending', q.pending], ['Running', q.running], ['Retrying', q.retrying], ['Dead', q.dead],
    ['Oldest pending', fmtSeconds(q.oldestPendingAgeSeconds)]])],
  workers: ({ workers }) => [workers.length
    ? table('Workers', ['Worker', 'Version', 'Slots busy', 'Last heartbeat', 'Started'], workers.map((w) => h('tr', {},
      h('th', { scope: 'row' }, w.name, w.stale ? h('span', { class: 'badge st-FAILED' }, 'stale') : null),
      h('td', {}, w.version), h('td', {}, `${w.busySlots} / ${w.totalSlots}`),
      h('td', {}, fmtTime(w.lastHeartbeatAt)), h('td', {}, fmtTime(w.startedAt)))))
    : h('p', { class: 'muted' }, 'No worker has announced itself.')],
  stats: ({ runStats: r }) => [facts([
    ['Runs', r.total], ['Succeeded', r.succeeded], ['Failed', r.failed], ['Cancelled', r.cancelled],
    ['Timed out', r.timedOut], ['Running', r.running],
    ['Duration p50', fmtSeconds(r.p50DurationSeconds)], ['Duration p95', fmtSeconds(r.p95DurationSeconds)],
    ['Failure rate', pct(r.failureRate)], ['Cache hits', pct(r.cacheHitRatio)]])],
};

export function render(main, _params, ctx) {
  let alive = true;
  const win = Number(ctx.query.get('window')) || 3600;
  const slots = {};
  const section = (key, title) => {
    slots[key] = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
    return h('section', { class: 'card', 'aria-labelledby': `mon-${key}` },
      h('h2', { id: `mon-${key}` }, title), slots[key]);
  };
  const picker = h('select', { id: 'mon-window' },
    WINDOWS.map(([w, label]) => h('option', { value: w, selected: w === win }, label)));
  picker.addEventListener('change', () => ctx.navigate(`/ui/monitoring?window=${picker.value}`));
  mount(main,
    h('h1', {}, 'Monitoring'),
    h('div', { class: 'grid' },
      section('health', 'System health'),
      section('queue', 'Queue'),
      section('workers', 'Workers'),
      h('div', {}, section('stats', 'Runs'),
        h('div', { class: 'field' }, h('label', { for: 'mon-window' }, 'Window'), picker))));

  async function refresh() {
    await Promise.all(Object.entries(QUERIES).map(async ([key, q]) => {
      try {
        const data = await gql(q, key === 'stats' ? { w: win } : {});
        if (alive) mount(slots[key], VIEWS[key](data));
      } catch (e) {
        if (alive) mount(slots[key], errorBox(e));
      }
    }));
  }
  refresh();
  const timer = setInterval(refresh, 10000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
