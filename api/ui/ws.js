// A graphql-transport-ws client for one `runProgress` subscription that survives dropped
// connections: it reconnects with backoff and resubscribes with `afterSeq` = the last event
// it delivered, so no event is missed or delivered twice.

import { accessToken, refresh, sessionLost, errorOf } from './api.js';

const PROGRESS = `subscription($r: ID!, $a: Int) {
  runProgress(runId: $r, afterSeq: $a) {
    seq runId kind status step percent etaSeconds stepPercent message at
  }
}`;

/** Close codes after which a new access token is needed (session ended / bad token). */
const AUTH_CLOSES = new Set([4401, 4403]);

/**
 * Follows run `runId` from after event `afterSeq`. Handlers: `event(ev)`, `state(s)` with
 * s in 'connecting' | 'live' | 'reconnecting' | 'done', `error(ApiError)`.
 * Returns `{ close() }`.
 */
export function followRun(runId, afterSeq, handlers) {
  let lastSeq = afterSeq;
  let ws = null;
  let stopped = false;
  let failures = 0;
  let timer = null;
  // Reconnections so far, and events that did not follow the previous one (never expected).
  const stats = { reconnects: 0, gaps: 0 };
  let acked = false;
  const { event = () => {}, state = () => {}, error = () => {} } = handlers;

  const send = (msg) => ws && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(msg));

  function connect() {
    if (stopped) return;
    state(failures ? 'reconnecting' : 'connecting');
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    ws = new WebSocket(`${scheme}://${window.location.host}/graphql`, 'graphql-transport-ws');
    ws.onopen = () => send({
      type: 'connection_init',
      payload: { Authorization: `Bearer ${accessToken()}` },
    });
    ws.onmessage = (m) => onMessage(m.data);
    ws.onclose = (e) => onClose(e.code);
  }

  function onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.type === 'connection_ack') {
      if (acked) stats.reconnects += 1;
      acked = true;
      failures = 0;
      const variables = lastSeq === null || lastSeq === undefined
        ? { r: runId } : { r: runId, a: lastSeq };
      send({ id: '1', type: 'subscribe', payload: { query: PROGRESS, variables } });
      state('live');
    } else if (msg.type === 'next' && msg.id === '1') {
      const payload = msg.payload || {};
      if (payload.errors && payload.errors.length) {
        const err = errorOf(payload.errors[0]);
        // A slow consumer was dropped: resume from the last event delivered.
        if (err.code === 'SLOW_CONSUMER') return;
        error(err);
        return;
      }
      const ev = payload.data && payload.data.runProgress;
      if (!ev) return;
      const known = lastSeq !== null && lastSeq !== undefined;
      if (ev.kind !== 'SNAPSHOT' && known && ev.seq <= lastSeq) return;
      if (ev.kind !== 'SNAPSHOT' && known && ev.seq !== lastSeq + 1) stats.gaps += 1;
      lastSeq = ev.seq;
      event(ev);
    } else if (msg.type === 'error' && msg.id === '1') {
      error(errorOf((msg.payload || [])[0]));
      stopped = true;
      ws.close(1000);
    } else if (msg.type === 'complete' && msg.id === '1') {
      stopped = true;
      state('done');
      ws.close(1000);
    } else if (msg.type === 'ping') {
      send({ type: 'pong' });
    }
  }

  function onClose(code) {
    ws = null;
    if (stopped) return;
    failures += 1;
    state('reconnecting');
    const delay = Math.min(5000, 200 * 2 ** Math.min(failures, 5));
    if (AUTH_CLOSES.has(code)) {
      refresh().then(() => {
        timer = setTimeout(connect, 0);
      }).catch((e) => {
        if (e.code === 'UNAUTHENTICATED') {
          stopped = true;
          sessionLost();
        } else {
          timer = setTimeout(connect, delay);
        }
      });
    } else {
      timer = setTimeout(connect, delay);
    }
  }

  connect();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close(1000);
    },
    /** Drops the connection as a network failure would (it then resumes with afterSeq). */
    drop() {
      if (ws) ws.close(4000, 'dropped');
    },
    lastSeq: () => lastSeq,
    stats: () => ({ ...stats }),
  };
}
