// `/ui/workflows`: every workflow by name, with its schedule and current version.

import { gql } from '../api.js';
import { h, mount, errorBox, link, fmtTime } from '../util.js';

const QUERY = `query($after: String, $archived: Boolean!) {
  workflows(first: 50, after: $after, includeArchived: $archived) {
    pageInfo { hasNextPage endCursor }
    edges { node { id name description currentVersion archived updatedAt
      schedule { cron timezone enabled nextFireAt } } }
  }
}`;

export function render(main, _params, ctx) {
  const archived = ctx.query.get('archived') === '1';
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const status = h('div', { 'aria-live': 'polite' });
  let after = null;
  let alive = true;

  async function load() {
    more.disabled = true;
    try {
      const data = await gql(QUERY, { after, archived });
      if (!alive) return;
      const conn = data.workflows;
      for (const { node: w } of conn.edges) {
        body.append(h('tr', {},
          h('td', {}, link(`/ui/workflows/${w.id}`, w.name), w.archived ? h('span', { class: 'badge' }, 'archived') : null),
          h('td', { class: 'wrap' }, w.description || ''),
          h('td', {}, `v${w.currentVersion}`),
          h('td', {}, w.schedule
            ? `${w.schedule.cron} (${w.schedule.timezone})${w.schedule.enabled ? '' : ' — off'}`
            : '—'),
          h('td', {}, fmtTime(w.updatedAt))));
      }
      if (!body.children.length) status.replaceChildren(h('p', { class: 'muted' }, 'No workflows yet.'));
      after = conn.pageInfo.endCursor;
      more.hidden = !conn.pageInfo.hasNextPage;
    } catch (e) {
      if (alive) status.replaceChildren(errorBox(e));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', load);

  mount(main,
    h('h1', {}, 'Workflows'),
    h('p', {}, archived
      ? link('/ui/workflows', 'Hide archived workflows')
      : link('/ui/workflows?archived=1', 'Show archived workflows')),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'sr-only' }, 'Workflows'),
      h('thead', {}, h('tr', {}, ['Name', 'Description', 'Version', 'Schedule', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
      body)),
    status, more);
  load();
  return () => {
    alive = false;
  };
}
