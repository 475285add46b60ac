// Draws steps as a DAG from their `dependsOn`: a layered layout (each step one column right
// of its deepest dependency, rows ordered by their dependencies' rows), as an SVG image.

import { s } from './util.js';

const W = 150;
const H = 46;
const GAP_X = 56;
const GAP_Y = 18;
const PAD = 8;

/** Column of every step: 0 for roots, else 1 + the deepest dependency's column. */
export function layers(steps) {
  const byName = new Map(steps.map((st) => [st.name, st]));
  const depth = new Map();
  const visiting = new Set();
  const visit = (name) => {
    if (depth.has(name)) return depth.get(name);
    if (visiting.has(name)) return 0; // a cycle cannot be stored; be safe anyway
    visiting.add(name);
    const deps = ((byName.get(name) || {}).dependsOn || []).filter((d) => byName.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map(visit)) : 0;
    visiting.delete(name);
    depth.set(name, d);
    return d;
  };
  steps.forEach((st) => visit(st.name));
  return depth;
}

/** Positions: `{name: {x, y}}` and the drawing's size. */
export function layout(steps) {
  const depth = layers(steps);
  const columns = [];
  for (const st of steps) {
    const d = depth.get(st.name);
    (columns[d] = columns[d] || []).push(st);
  }
  const row = new Map();
  columns.forEach((col, ci) => {
    if (ci > 0) {
      // Barycentre of the dependencies' rows keeps edges short and uncrossed in common shapes.
      const key = (st) => {
        const rows = (st.dependsOn || []).filter((d) => row.has(d)).map((d) => row.get(d));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
      };
      col.sort((a, b) => key(a) - key(b));
    }
    col.forEach((st, i) => row.set(st.name, i));
  });
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const pos = {};
  columns.forEach((col, ci) => {
    const offset = ((rows - col.length) * (H + GAP_Y)) / 2;
    col.forEach((st, i) => {
      pos[st.name] = { x: PAD + ci * (W + GAP_X), y: PAD + offset + i * (H + GAP_Y) };
    });
  });
  return {
    pos,
    width: PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X,
    height: PAD * 2 + rows * H + (rows - 1) * GAP_Y,
  };
}

/**
 * The SVG of `steps` ({name, dependsOn}). `info(step)` may return `{status, detail}` to
 * colour a node and add a second line; `onPick(name)` is called when a node is clicked
 * (keyboard users pick steps from the table beside it).
 */
export function drawDag(steps, { info = () => ({}), onPick = null, label = 'Step graph' } = {}) {
  const { pos, width, height } = layout(steps);
  const svg = s('svg', {
    class: 'dag',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': `${label}: ${steps.map((st) => st.name).join(', ')}`,
  });
  svg.append(s('defs', {}, s('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
  for (const st of steps) {
    for (const dep of st.dependsOn || []) {
      const a = pos[dep];
      const b = pos[st.name];
      if (!a || !b) continue;
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x;
      const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      svg.append(s('path', {
        class: 'edge', d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
        'marker-end': 'url(#arrow)',
      }));
    }
  }
  for (const st of steps) {
    const p = pos[st.name];
    const { status, detail } = info(st) || {};
    const g = s('g', {
      class: `node${status ? ` st-${status}` : ''}${onPick ? ' pickable' : ''}`,
      transform: `translate(${p.x} ${p.y})`,
      'data-step': st.name,
    });
    g.append(
      s('rect', { width: W, height: H, rx: 6, ry: 6 }),
      s('text', { x: 10, y: 19, class: 'name' }, truncate(st.name, 18)),
      s('text', { x: 10, y: 36, class: 'detail' }, truncate(detail || status || '', 22)),
    );
    if (onPick) g.addEventListener('click', () => onPick(st.name));
    svg.append(g);
  }
  return svg;
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
