// `/ui/runs/<id>`: the run's DAG with each task's status, attempt and duration kept live over
// the `runProgress` subscription (resumed with `afterSeq` when the connection drops), percent,
// ETA, each step's log, and Cancel / Retry-from-failed for those whose role allows them.

import { gql } from '../api.js';
import { followRun } from '../ws.js';
import { drawDag } from '../dag.js';
import { h, mount, errorBox, link, fmtTime, fmtSeconds, between, statusBadge, shortId, canOperate, debounce } from '../util.js';
import { RunState, RUN_QUERY, isActive } from './run_state.js';

const CANCEL = 'mutation($id: ID!) { cancelRun(id: $id) { id status lastSeq } }';
const RETRY = 'mutation($id: ID!) { retryRun(id: $id, fromFailedStep: true) { id status lastSeq } }';
const RETRYABLE = new Set(['FAILED', 'CANCELLED', 'TIMED_OUT']);

export function render(main, [id], ctx) {
  const opened = performance.now();
  let alive = true;
  let state = null;
  let sub = null;
  let selected = null;
  let ticker = null;
  let poller = null;
  const rows = new Map();

  // Action errors stay until the next action; loading errors until the next good load.
  const note = h('div', { 'aria-live': 'polite', class: 'note' });
  const loadNote = h('div', { 'aria-live': 'polite', class: 'note' });
  mount(main, h('h1', {}, `Run ${shortId(id)}`), note, loadNote);

  // Built once and updated in place, so that focus and selection survive live updates.
  const statusEl = h('span', { 'data-testid': 'run-status', class: 'badge' });
  const percentEl = h('span', { 'data-testid': 'run-percent' });
  const bar = h('progress', { max: 100, value: 0, 'aria-label': 'Percent done' });
  const etaEl = h('span', { 'data-testid': 'run-eta' });
  const elapsedEl = h('span');
  const liveEl = h('span', { 'data-testid': 'live-state', class: 'live', 'data-events': '0' }, 'connecting');
  const cancelBtn = h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel-run', hidden: true }, 'Cancel run');
  const retryBtn = h('button', { type: 'button', class: 'primary', 'data-testid': 'retry-run', hidden: true }, 'Retry from failed step');
  const dagSlot = h('div', { class: 'dag-wrap' });
  const tbody = h('tbody');
  const logTitle = h('h2', { id: 'log-title' }, 'Log');
  const logEl = h('pre', { 'data-testid': 'step-log', class: 'log', role: 'log', tabindex: '0', 'aria-labelledby': 'log-title' });
  const errorEl = h('p', { class: 'run-error' });

  const refetch = debounce(() => load(false), 250);

  function pickDefault() {
    const ts = state.run.tasks;
    const pick = ts.find((t) => t.status === 'FAILED') || ts.find((t) => t.status === 'RUNNING')
      || [...ts].reverse().find((t) => t.logTail) || ts[0];
    return pick ? pick.name : null;
  }

  function select(name) {
    selected = name;
    update();
  }

  function row(t) {
    let r = rows.get(t.name);
    if (!r) {
      const btn = h('button', { type: 'button', class: 'link', 'aria-controls': 'log-panel' }, t.name);
      btn.addEventListener('click', () => select(t.name));
      r = {
        tr: h('tr', { 'data-testid': `task-${t.name}` }),
        btn,
        status: h('td'),
        attempt: h('td'),
        duration: h('td'),
        exit: h('td'),
      };
      r.tr.append(h('th', { scope: 'row' }, btn), r.status, r.attempt, r.duration, r.exit);
      rows.set(t.name, r);
      tbody.append(r.tr);
    }
    return r;
  }

  function taskDetail(t) {
    const d = between(t.startedAt, t.finishedAt);
    const pct = t.status === 'RUNNING' && t.progressPercent !== null && t.progressPercent !== undefined
      ? ` ${Math.round(t.progressPercent)}%` : '';
    return `${t.status}${t.attempt > 1 ? ` #${t.attempt}` : ''}${d === null ? '' : ` ${fmtSeconds(d)}`}${pct}`;
  }

  function update() {
    if (!state || !alive) return;
    const run = state.run;
    statusEl.textContent = run.status;
    statusEl.className = `badge st-${run.status}`;
    statusEl.dataset.status = run.status;
    percentEl.textContent = `${Math.round(run.percent)}%`;
    percentEl.dataset.value = String(run.percent);
    bar.value = run.percent;
    etaEl.textContent = isActive(run.status) && run.etaSeconds !== null && run.etaSeconds !== undefined
      ? fmtSeconds(run.etaSeconds) : '—';
    elapsedEl.textContent = fmtSeconds(between(run.startedAt, run.finishedAt));
    errorEl.textContent = run.error || '';
    const operate = canOperate(ctx.me);
    cancelBtn.hidden = !(operate && isActive(run.status));
    retryBtn.hidden = !(operate && RETRYABLE.has(run.status));
    if (!selected) selected = pickDefault();
    for (const t of run.tasks) {
      const r = row(t);
      r.tr.dataset.status = t.status;
      r.tr.classList.toggle('selected', t.name === selected);
      r.btn.setAttribute('aria-pressed', t.name === selected ? 'true' : 'false');
      mount(r.status, statusBadge(t.status));
      r.attempt.textContent = String(t.attempt);
      r.duration.textContent = fmtSeconds(between(t.startedAt, t.finishedAt));
      r.exit.textContent = t.exitCode === null || t.exitCode === undefined ? '—' : String(t.exitCode);
    }
    mount(dagSlot, drawDag(run.tasks, {
      info: (t) => ({ status: t.status, detail: taskDetail(t) }),
      onPick: select,
      label: 'Steps of this run',
    }));
    const t = selected && state.task(selected);
    logTitle.textContent = t ? `Log of ${t.name}` : 'Log';
    const text = t ? (t.log || t.logTail || '') : '';
    if (logEl.textContent !== text) logEl.textContent = text || (t && t.error ? '' : '(no output yet)');
    if (t && t.error && !text) logEl.textContent = t.error;
  }

  function follow() {
    if (sub) sub.close();
    sub = followRun(id, state.seq, {
      event(ev) {
        if (!alive) return;
        if (state.events === 0) liveEl.dataset.firstEventMs = String(Math.round(performance.now() - opened));
        state.apply(ev);
        const st = sub.stats();
        Object.assign(liveEl.dataset, {
          events: String(state.events), lastSeq: String(ev.seq), reconnects: String(st.reconnects), gaps: String(st.gaps),
        });
        update();
        refetch();
      },
      state(s) {
        liveEl.textContent = s;
        liveEl.dataset.state = s;
        if (s === 'live' && !liveEl.dataset.liveMs) liveEl.dataset.liveMs = String(Math.round(performance.now() - opened));
        if (s === 'done') load(false);
      },
      error(e) {
        mount(note, errorBox(e));
      },
    });
  }

  async function load(first) {
    try {
      const data = await gql(RUN_QUERY, { id });
      if (!alive) return;
      if (!data.run) {
        mount(loadNote, errorBox({ code: 'NOT_FOUND', message: 'run not found' }));
        return;
      }
      loadNote.replaceChildren();
      if (first) {
        state = new RunState(data.run);
        draw();
        if (isActive(data.run.status)) follow();
        else liveEl.textContent = 'finished';
      } else {
        state.adopt(data.run);
      }
      update();
    } catch (e) {
      if (alive) mount(loadNote, errorBox(e));
    }
  }

  async function act(btn, mutation, field) {
    btn.disabled = true;
    note.replaceChildren();
    try {
      const data = await gql(mutation, { id });
      const r = data[field];
      if (r.id !== id) {
        ctx.navigate(`/ui/runs/${r.id}`);
        return;
      }
      if (field === 'retryRun' || !sub) follow();
      refetch();
    } catch (e) {
      mount(note, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  }
  cancelBtn.addEventListener('click', () => act(cancelBtn, CANCEL, 'cancelRun'));
  retryBtn.addEventListener('click', () => act(retryBtn, RETRY, 'retryRun'));

  function draw() {
    const run = state.run;
    mount(main,
      h('h1', {}, 'Run ', h('code', {}, shortId(run.id)), ' of ', link(`/ui/workflows/${run.workflow.id}`, run.workflow.name)),
      h('section', { class: 'card summary', 'aria-label': 'Run status' },
        h('dl', { class: 'facts' },
          h('dt', {}, 'Status'), h('dd', {}, statusEl),
          h('dt', {}, 'Done'), h('dd', {}, bar, ' ', percentEl),
          h('dt', {}, 'ETA'), h('dd', {}, etaEl),
          h('dt', {}, 'Elapsed'), h('dd', {}, elapsedEl),
          h('dt', {}, 'Version'), h('dd', {}, `v${run.version} · ${run.trigger}`),
          h('dt', {}, 'Created'), h('dd', {}, fmtTime(run.createdAt)),
          h('dt', {}, 'Updates'), h('dd', {}, liveEl)),
        errorEl,
        h('div', { class: 'actions' }, cancelBtn, retryBtn)),
      note, loadNote,
      h('section', { class: 'card', 'aria-labelledby': 'steps-title' },
        h('h2', { id: 'steps-title' }, 'Steps'),
        dagSlot,
        h('div', { class: 'table-wrap' }, h('table', {},
          h('caption', { class: 'sr-only' }, 'Steps with status, attempt, duration and exit code'),
          h('thead', {}, h('tr', {}, ['Step', 'Status', 'Attempt', 'Duration', 'Exit'].map((x) => h('th', { scope: 'col' }, x)))),
          tbody))),
      h('section', { class: 'card', id: 'log-panel', 'aria-labelledby': 'log-title' }, logTitle, logEl));
  }

  load(true);
  // Durations tick while the run is active; the log tail is re-read every few seconds.
  ticker = setInterval(() => state && isActive(state.run.status) && update(), 1000);
  poller = setInterval(() => state && isActive(state.run.status) && load(false), 3000);
  return () => {
    alive = false;
    clearInterval(ticker);
    clearInterval(poller);
    refetch.cancel();
    if (sub) sub.close();
  };
}
