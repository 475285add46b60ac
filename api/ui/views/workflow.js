// `/ui/workflows/<id>`: a workflow's versions, its steps drawn as a DAG, the schedule toggle,
// and (for operators) a button that starts a run.

import { gql } from '../api.js';
import { drawDag } from '../dag.js';
import { h, mount, errorBox, link, fmtTime, canOperate, canMaintain } from '../util.js';

const QUERY = `query($id: ID!) {
  workflow(id: $id) {
    id name description currentVersion archived legacyId createdAt updatedAt
    schedule { cron timezone enabled nextFireAt }
    versions { version createdAt steps { name image run command dependsOn timeoutSeconds retries cache } }
  }
}`;

const TOGGLE = `mutation($w: ID!, $on: Boolean!) {
  setScheduleEnabled(workflowId: $w, enabled: $on) { id schedule { cron timezone enabled nextFireAt } }
}`;

const TRIGGER = 'mutation($w: ID!) { triggerRun(workflowId: $w) { id } }';

export function render(main, [id], ctx) {
  let alive = true;
  const status = h('div', { 'aria-live': 'polite' });
  mount(main, h('h1', {}, 'Workflow'), status);

  function scheduleSection(wf) {
    const box = h('section', { 'aria-labelledby': 'sched-title', class: 'card' },
      h('h2', { id: 'sched-title' }, 'Schedule'));
    if (!wf.schedule) {
      box.append(h('p', { class: 'muted' }, 'No schedule: runs start only when triggered.'));
      return box;
    }
    const msg = h('div', { 'aria-live': 'polite' });
    const sch = wf.schedule;
    const toggle = h('button', {
      type: 'button',
      class: 'toggle',
      'aria-pressed': sch.enabled ? 'true' : 'false',
      'data-testid': 'schedule-toggle',
      disabled: !canMaintain(ctx.me) || wf.archived,
    }, sch.enabled ? 'Schedule on' : 'Schedule off');
    toggle.addEventListener('click', async () => {
      toggle.disabled = true;
      try {
        const data = await gql(TOGGLE, { w: wf.id, on: !wf.schedule.enabled });
        wf.schedule = data.setScheduleEnabled.schedule;
        const next = scheduleSection(wf);
        box.replaceWith(next);
        const again = next.querySelector('.toggle');
        if (again) again.focus();
      } catch (e) {
        mount(msg, errorBox(e));
        toggle.disabled = false;
      }
    });
    box.append(
      h('dl', { class: 'facts' },
        h('dt', {}, 'Cron'), h('dd', {}, h('code', {}, sch.cron)),
        h('dt', {}, 'Time zone'), h('dd', {}, sch.timezone),
        h('dt', {}, 'Next tick'), h('dd', {}, sch.enabled ? fmtTime(sch.nextFireAt) : '—')),
      toggle, msg);
    return box;
  }

  function versionView(v) {
    const rows = v.steps.map((st) => h('tr', {},
      h('th', { scope: 'row' }, st.name),
      h('td', {}, h('code', {}, st.image)),
      h('td', { class: 'wrap' }, h('code', {}, st.run || (st.command || []).join(' '))),
      h('td', {}, (st.dependsOn || []).join(', ') || '—'),
      h('td', {}, st.cache ? 'yes' : 'no')));
    return h('div', {},
      h('div', { class: 'dag-wrap' }, drawDag(v.steps, { label: `Steps of version ${v.version}` })),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('caption', {}, `Steps of version ${v.version}`),
        h('thead', {}, h('tr', {}, ['Step', 'Image', 'Runs', 'Depends on', 'Cache'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))));
  }

  function draw(wf) {
    const versions = [...wf.versions].sort((a, b) => b.version - a.version);
    const slot = h('div');
    const picker = h('select', { id: 'version-pick' },
      versions.map((v) => h('option', { value: v.version, selected: v.version === wf.currentVersion },
        `v${v.version}${v.version === wf.currentVersion ? ' (current)' : ''} — ${fmtTime(v.createdAt)}`)));
    const show = () => {
      const v = versions.find((x) => String(x.version) === picker.value) || versions[0];
      if (v) mount(slot, versionView(v));
    };
    picker.addEventListener('change', show);
    const actions = h('div', { class: 'actions' },
      link(`/ui/runs?workflow=${encodeURIComponent(wf.id)}`, 'Runs of this workflow'));
    const msg = h('div', { 'aria-live': 'polite' });
    if (canOperate(ctx.me) && !wf.archived) {
      const trigger = h('button', { type: 'button', class: 'primary', 'data-testid': 'trigger-run' }, 'Start a run');
      trigger.addEventListener('click', async () => {
        trigger.disabled = true;
        try {
          const data = await gql(TRIGGER, { w: wf.id });
          ctx.navigate(`/ui/runs/${data.triggerRun.id}`);
        } catch (e) {
          mount(msg, errorBox(e));
          trigger.disabled = false;
        }
      });
      actions.prepend(trigger);
    }
    mount(main,
      h('h1', {}, wf.name, wf.archived ? h('span', { class: 'badge' }, 'archived') : null),
      wf.description ? h('p', {}, wf.description) : null,
      actions, msg,
      scheduleSection(wf),
      h('section', { 'aria-labelledby': 'ver-title', class: 'card' },
        h('h2', { id: 'ver-title' }, 'Versions'),
        h('div', { class: 'field' }, h('label', { for: 'version-pick' }, 'Version'), picker),
        slot));
    show();
  }

  gql(QUERY, { id }).then((data) => {
    if (!alive) return;
    if (!data.workflow) {
      mount(status, errorBox({ code: 'NOT_FOUND', message: 'workflow not found' }));
      return;
    }
    draw(data.workflow);
  }, (e) => alive && mount(status, errorBox(e)));
  return () => {
    alive = false;
  };
}
