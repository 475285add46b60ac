// `/ui/runs`: runs newest first, filtered by status and workflow (kept in the address, so a
// filtered list can be linked), paged with Relay cursors (`after`).

import { gql } from '../api.js';
import { h, mount, errorBox, link, fmtTime, fmtSeconds, between, statusBadge, shortId } from '../util.js';

const STATUSES = ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'];
const PAGE = 25;
const MAX_PAGE = 100;

const QUERY = `query($first: Int, $after: String, $w: ID, $s: RunStatus) {
  runs(first: $first, after: $after, workflowId: $w, status: $s) {
    pageInfo { hasNextPage endCursor }
    edges { node { id status trigger version percent createdAt startedAt finishedAt workflow { id name } } }
  }
}`;

const WORKFLOWS = '{ workflows(first: 100, includeArchived: true) { edges { node { id name } } } }';

export function render(main, _params, ctx) {
  const status = ctx.query.get('status') || '';
  const workflow = ctx.query.get('workflow') || '';
  // `?first=` sets the page size (the api allows at most 100).
  const first = Math.min(MAX_PAGE, Math.max(1, Number(ctx.query.get('first')) || PAGE));
  let after = null;
  let alive = true;

  const body = h('tbody');
  const note = h('div', { 'aria-live': 'polite' });
  const more = h('button', { type: 'button', hidden: true, 'data-testid': 'runs-more' }, 'Load more');
  const statusSel = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((st) => h('option', { value: st, selected: st === status }, st)));
  const wfSel = h('select', { id: 'f-workflow', name: 'workflow' }, h('option', { value: '' }, 'Any workflow'));
  const apply = () => {
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (wfSel.value) q.set('workflow', wfSel.value);
    if (first !== PAGE) q.set('first', String(first));
    const qs = q.toString();
    ctx.navigate(`/ui/runs${qs ? `?${qs}` : ''}`);
  };
  statusSel.addEventListener('change', apply);
  wfSel.addEventListener('change', apply);

  async function load() {
    more.disabled = true;
    try {
      const data = await gql(QUERY, { first, after, w: workflow || null, s: status || null });
      if (!alive) return;
      for (const { node: r } of data.runs.edges) {
        body.append(h('tr', { 'data-run': r.id },
          h('td', {}, link(`/ui/runs/${r.id}`, h('code', {}, shortId(r.id)))),
          h('td', {}, link(`/ui/workflows/${r.workflow.id}`, r.workflow.name), ` v${r.version}`),
          h('td', {}, statusBadge(r.status)),
          h('td', {}, `${Math.round(r.percent)} %`),
          h('td', {}, r.trigger),
          h('td', {}, fmtTime(r.createdAt)),
          h('td', {}, fmtSeconds(between(r.startedAt, r.finishedAt)))));
      }
      if (!body.children.length) note.replaceChildren(h('p', { class: 'muted' }, 'No runs match.'));
      after = data.runs.pageInfo.endCursor;
      more.hidden = !data.runs.pageInfo.hasNextPage;
    } catch (e) {
      if (alive) mount(note, errorBox(e));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', load);

  gql(WORKFLOWS).then((data) => {
    if (!alive) return;
    for (const { node } of data.workflows.edges) {
      wfSel.append(h('option', { value: node.id, selected: node.id === workflow }, node.name));
    }
  }, () => { /* the list still works without the workflow names */ });

  mount(main,
    h('h1', {}, 'Runs'),
    h('form', { class: 'filters', 'aria-label': 'Filter runs', onsubmit: (e) => { e.preventDefault(); apply(); } },
      h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), statusSel),
      h('div', { class: 'field' }, h('label', { for: 'f-workflow' }, 'Workflow'), wfSel)),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'sr-only' }, 'Runs, newest first'),
      h('thead', {}, h('tr', {}, ['Run', 'Workflow', 'Status', 'Done', 'Trigger', 'Created', 'Duration'].map((t) => h('th', { scope: 'col' }, t)))),
      body)),
    note, more);
  load();
  return () => {
    alive = false;
  };
}
