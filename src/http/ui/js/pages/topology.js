// Topology: a vhost's exchanges, queues and bindings drawn as a layered graph. Exchanges
// are placed in columns by how many exchange-to-exchange hops lead to them, each queue one
// column after its furthest source; a few barycentre sweeps order each column to keep
// edges from crossing.
import { get, seg } from '../api.js';
import { h, svg, replace } from '../dom.js';
import { exchangeHref, queueHref } from './exchanges.js';

const TYPE_COLOURS = { direct: '#5b7fb8', fanout: '#e0a458', topic: '#2f6f5e', headers: '#8a5fb3', 'x-delayed-message': '#b3402f' };
const NODE_W = 200;
const NODE_H = 36;
const COL_GAP = 150;
const ROW_GAP = 14;
const MARGIN = 20;
const MAX_QUEUES = 400;

export async function render(main, _params, ctx) {
  const vhosts = await get('/api/vhosts?columns=name');
  const select = h('select#topology-vhost', vhosts.map((v) => h('option', { value: v.name }, v.name)));
  select.value = ctx.vhost() || (vhosts.some((v) => v.name === '/') ? '/' : vhosts[0]?.name ?? '/');
  const showSystem = h('input', { type: 'checkbox' });
  const filter = h('input', { type: 'search', placeholder: 'Only names matching…' });
  const canvas = h('div.topology#topology');
  const note = h('p.muted');
  const legend = h(
    'div.legend-row',
    Object.entries(TYPE_COLOURS).map(([t, c]) => h('span', h('i', { style: `border-color:${c};background:${c}22` }), `${t} exchange`)),
    h('span', h('i', { style: 'border-color:#1f2a2e;background:#fff' }), 'queue (ready messages / consumers)'),
  );
  main.append(
    h('div.page-head', h('h1', 'Topology'), h('span.sub', 'exchanges, bindings and queues as a graph')),
    h('div.card', h('div.toolbar', h('label', 'Virtual host ', select), h('label.check', showSystem, 'Show unbound amq.* exchanges'), filter), legend, note, canvas),
  );
  const redraw = () => draw(select.value, showSystem.checked, filter.value, canvas, note, ctx).catch((err) => {
    replace(canvas, h('p.error', err.message));
  });
  select.addEventListener('change', redraw);
  showSystem.addEventListener('change', redraw);
  let t;
  filter.addEventListener('input', () => {
    clearTimeout(t);
    t = setTimeout(redraw, 250);
  });
  await redraw();
  const timer = setInterval(redraw, 10000);
  return () => clearInterval(timer);
}

async function draw(vhost, showSystem, filterText, canvas, note, ctx) {
  const v = seg(vhost);
  const [exchanges, queueList, bindings] = await Promise.all([
    get(`/api/exchanges/${v}?columns=name,type,internal`),
    get(`/api/queues/${v}?columns=name,messages_ready,consumers&page=1&page_size=500&sort=name`),
    get(`/api/bindings/${v}`),
  ]);
  const queues = queueList.items;
  let re = null;
  if (filterText.trim() !== '') {
    try {
      re = new RegExp(filterText, 'i');
    } catch {
      re = null;
    }
  }
  const edges = bindings.filter((b) => b.source !== '');
  const bound = new Set();
  for (const b of edges) {
    bound.add(`x:${b.source}`);
    bound.add(`${b.destination_type === 'queue' ? 'q' : 'x'}:${b.destination}`);
  }
  const nodes = new Map();
  for (const x of exchanges) {
    if (x.name === '') continue;
    if (x.name.startsWith('amq.') && !showSystem && !bound.has(`x:${x.name}`)) continue;
    nodes.set(`x:${x.name}`, { id: `x:${x.name}`, kind: 'exchange', name: x.name, type: x.type, ins: [], outs: [] });
  }
  let shownQueues = 0;
  for (const q of queues) {
    if (shownQueues >= MAX_QUEUES) break;
    nodes.set(`q:${q.name}`, { id: `q:${q.name}`, kind: 'queue', name: q.name, ready: q.messages_ready, consumers: q.consumers, ins: [], outs: [] });
    shownQueues++;
  }
  if (re) {
    // Keep matching nodes and their direct neighbours, so a filtered view still shows routes.
    const keep = new Set([...nodes.values()].filter((n) => re.test(n.name)).map((n) => n.id));
    for (const b of edges) {
      const s = `x:${b.source}`;
      const d = `${b.destination_type === 'queue' ? 'q' : 'x'}:${b.destination}`;
      if (keep.has(s) || keep.has(d)) {
        keep.add(s);
        keep.add(d);
      }
    }
    for (const id of [...nodes.keys()]) if (!keep.has(id)) nodes.delete(id);
  }
  // Parallel bindings between the same two nodes share one edge with all their keys.
  const edgeMap = new Map();
  for (const b of edges) {
    const s = nodes.get(`x:${b.source}`);
    const d = nodes.get(`${b.destination_type === 'queue' ? 'q' : 'x'}:${b.destination}`);
    if (!s || !d) continue;
    const key = `${s.id}->${d.id}`;
    let e = edgeMap.get(key);
    if (!e) {
      e = { from: s, to: d, keys: [] };
      edgeMap.set(key, e);
      s.outs.push(e);
      d.ins.push(e);
    }
    e.keys.push(b.routing_key === '' ? '∅' : b.routing_key);
  }
  // Exchange layers: longest chain of exchange-to-exchange bindings (bounded, so cycles end).
  const xs = [...nodes.values()].filter((n) => n.kind === 'exchange');
  for (const n of xs) n.layer = 0;
  for (let pass = 0; pass < xs.length; pass++) {
    let changed = false;
    for (const e of edgeMap.values()) {
      if (e.to.kind !== 'exchange') continue;
      if (e.to.layer < e.from.layer + 1 && e.from.layer + 1 < xs.length) {
        e.to.layer = e.from.layer + 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  // A queue sits one column after its furthest source, so edges stay short; queues bound
  // only through the default exchange go after the last exchange column.
  const lastX = Math.max(-1, ...xs.map((n) => n.layer));
  for (const n of nodes.values()) {
    if (n.kind !== 'queue') continue;
    n.layer = n.ins.length === 0 ? lastX + 1 : 1 + Math.max(...n.ins.map((e) => e.from.layer));
  }
  const columns = [];
  for (const n of nodes.values()) (columns[n.layer] ||= []).push(n);
  for (const col of columns) col?.sort((a, b) => a.name.localeCompare(b.name));
  const order = () => columns.forEach((col) => col?.forEach((n, i) => (n.pos = i)));
  order();
  const bary = (list) => (list.length ? list.reduce((a, n) => a + n.pos, 0) / list.length : Infinity);
  for (let sweep = 0; sweep < 4; sweep++) {
    for (let c = 1; c < columns.length; c++) {
      columns[c]?.sort((a, b) => bary(a.ins.map((e) => e.from)) - bary(b.ins.map((e) => e.from)) || a.name.localeCompare(b.name));
      order();
    }
    for (let c = columns.length - 2; c >= 0; c--) {
      columns[c]?.sort((a, b) => bary(a.outs.map((e) => e.to)) - bary(b.outs.map((e) => e.to)) || a.name.localeCompare(b.name));
      order();
    }
  }
  const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const height = MARGIN * 2 + tallest * (NODE_H + ROW_GAP);
  columns.forEach((col, c) => {
    if (!col) return;
    const offset = ((tallest - col.length) * (NODE_H + ROW_GAP)) / 2;
    col.forEach((n, i) => {
      n.x = MARGIN + c * (NODE_W + COL_GAP);
      n.y = MARGIN + offset + i * (NODE_H + ROW_GAP);
    });
  });
  const width = MARGIN * 2 + Math.max(1, columns.length) * (NODE_W + COL_GAP) - COL_GAP;
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-label': `topology of ${vhost}` });
  const edgeLayer = svg('g');
  const nodeLayer = svg('g');
  root.append(edgeLayer, nodeLayer);
  const labelled = edgeMap.size <= 80;
  for (const e of edgeMap.values()) {
    const x1 = e.from.x + NODE_W;
    const y1 = e.from.y + NODE_H / 2;
    const x2 = e.to.x;
    const y2 = e.to.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    const g = svg('g', { class: 'edge-group', 'data-from': e.from.id, 'data-to': e.to.id });
    g.append(svg('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }, svg('title', e.keys.join(', '))));
    if (labelled) {
      const text = e.keys.join(', ');
      g.append(svg('text', { class: 'edge-label', x: mx, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, text.length > 28 ? `${text.slice(0, 27)}…` : text));
    }
    edgeLayer.append(g);
  }
  root.prepend(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#b9b2a6' }))));
  for (const n of nodes.values()) {
    const colour = n.kind === 'exchange' ? TYPE_COLOURS[n.type] || '#6b7478' : '#1f2a2e';
    const label = n.name.length > 26 ? `${n.name.slice(0, 25)}…` : n.name;
    const meta = n.kind === 'exchange' ? n.type : `${n.ready} ready · ${n.consumers} consumers`;
    const g = svg(
      'g',
      { class: 'node', 'data-id': n.id, transform: `translate(${n.x},${n.y})`, tabindex: 0, role: 'link' },
      svg('title', `${n.kind} ${n.name}`),
      svg('rect', { width: NODE_W, height: NODE_H, rx: n.kind === 'exchange' ? 18 : 6, fill: n.kind === 'exchange' ? `${colour}22` : '#fff', stroke: colour }),
      svg('text', { x: 12, y: 15 }, label),
      svg('text', { x: 12, y: 29, class: 'meta' }, meta),
    );
    g.addEventListener('click', () => ctx.go(n.kind === 'exchange' ? exchangeHref(vhost, n.name) : queueHref(vhost, n.name)));
    g.addEventListener('mouseenter', () => highlight(root, n, true));
    g.addEventListener('mouseleave', () => highlight(root, n, false));
    nodeLayer.append(g);
  }
  const hidden = queueList.filtered_count - shownQueues;
  note.textContent = `${xs.length} exchanges, ${[...nodes.values()].filter((n) => n.kind === 'queue').length} queues, ${edgeMap.size} binding edges${hidden > 0 ? ` (${hidden} more queues not drawn; use the filter)` : ''}.`;
  replace(canvas, nodes.size === 0 ? h('p.muted', { style: 'padding:16px' }, 'Nothing to draw in this virtual host yet.') : root);
}

function highlight(root, n, on) {
  const linked = new Set([n.id]);
  for (const e of n.ins) linked.add(e.from.id);
  for (const e of n.outs) linked.add(e.to.id);
  for (const g of root.querySelectorAll('.node')) g.classList.toggle('dim', on && !linked.has(g.dataset.id));
  for (const g of root.querySelectorAll('.edge-group')) {
    const mine = g.dataset.from === n.id || g.dataset.to === n.id;
    g.classList.toggle('dim', on && !mine);
    g.querySelector('path').classList.toggle('hot', on && mine);
  }
}
