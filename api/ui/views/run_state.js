// The run page's model: the run as last queried, with live events applied on top.

const TASK_STATUSES = new Set(['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CACHED', 'SKIPPED', 'CANCELLED']);
const ACTIVE = new Set(['QUEUED', 'RUNNING']);

export const RUN_QUERY = `query($id: ID!) {
  run(id: $id) {
    id status version trigger createdAt startedAt finishedAt percent etaSeconds error lastSeq
    cancelRequestedAt workflow { id name }
    tasks { name status attempt dependsOn startedAt finishedAt exitCode cached logTail progressPercent error }
  }
}`;

export function isActive(status) {
  return ACTIVE.has(status);
}

export class RunState {
  constructor(run) {
    this.run = run;
    this.seq = run.lastSeq;
    this.events = 0;
  }

  task(name) {
    return this.run.tasks.find((t) => t.name === name);
  }

  /** Takes a fresh query result unless live events already went past it. */
  adopt(run) {
    if (run.lastSeq < this.seq) return false;
    this.run = run;
    this.seq = run.lastSeq;
    return true;
  }

  /** Applies one `runProgress` event; true when something visible changed. */
  apply(ev) {
    this.events += 1;
    const run = this.run;
    if (ev.seq > this.seq) this.seq = ev.seq;
    run.percent = ev.percent;
    run.etaSeconds = ev.etaSeconds;
    if (ev.kind === 'RUN' || ev.kind === 'SNAPSHOT') {
      if (ev.status) run.status = ev.status;
      if (ev.status === 'RUNNING' && !run.startedAt) run.startedAt = ev.at;
      if (ev.status && !isActive(ev.status)) {
        run.finishedAt = run.finishedAt || ev.at;
        run.etaSeconds = null;
      } else {
        run.finishedAt = null;
      }
      return true;
    }
    const t = ev.step && this.task(ev.step);
    if (!t) return true;
    if (ev.kind === 'PROGRESS') {
      if (ev.stepPercent !== null && ev.stepPercent !== undefined) t.progressPercent = ev.stepPercent;
      return true;
    }
    if (ev.kind === 'TASK' && TASK_STATUSES.has(ev.status)) {
      if (ev.status === 'RUNNING' && t.status !== 'RUNNING') {
        t.attempt += 1;
        t.startedAt = ev.at;
        t.finishedAt = null;
        t.progressPercent = null;
      } else if (ev.status !== 'RUNNING' && ev.status !== 'PENDING') {
        t.finishedAt = ev.at;
      }
      t.status = ev.status;
    }
    return true;
  }
}
