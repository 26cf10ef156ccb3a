// airlock review page. Every element is built with createElement/textContent: nothing from a
// log (guest file names, URLs, argv, details) is ever parsed as HTML.
'use strict';

const DECISIONS = ['allow', 'deny', 'error', 'none'];
const PAGE = 200;
let AREAS = [];
const state = {
  id: null,
  sandbox: null,
  offset: 0,
  matched: 0,
  shown: 0,
  lastSeq: 0,
  source: null,
  timer: null,
  tab: 'timeline',
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else if (k === 'title') e.title = String(v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

async function api(path, opts) {
  const resp = await fetch(path, Object.assign({ credentials: 'same-origin' }, opts || {}));
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : resp.status + ' ' + resp.statusText;
    throw new Error(msg);
  }
  return body;
}

function status(text, bad) {
  const s = $('status');
  s.textContent = text || '';
  s.className = bad ? 'error' : 'muted';
}

function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function shortTime(ts) { return ts ? ts.replace('T', ' ').replace('Z', '') : ''; }

// ---- routing

function route() {
  const m = location.hash.match(/^#\/sb\/([A-Za-z0-9-]{1,64})(?:\/(timeline|changes|charts))?$/);
  stopTimers();
  if (m) {
    showDetail(m[1], m[2] || 'timeline');
  } else {
    showList();
  }
}

function stopTimers() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; }
  if (state.source) { state.source.close(); state.source = null; }
}

// ---- list

async function showList() {
  $('list-view').hidden = false;
  $('detail-view').hidden = true;
  state.id = null;
  await refreshList();
  state.timer = setInterval(refreshList, 2000);
}

async function refreshList() {
  let data;
  try { data = await api('/api/sandboxes'); } catch (e) { status(e.message, true); return; }
  status('');
  AREAS = data.areas;
  const body = $('sandboxes').tBodies[0];
  clear(body);
  $('empty').hidden = data.sandboxes.length > 0;
  for (const s of data.sandboxes) {
    const denied = Object.values(s.denials || {}).reduce((a, b) => a + b, 0);
    const tr = el('tr', { 'data-id': s.id, class: denied ? 'has-denials' : null },
      el('td', {}, el('a', { href: '#/sb/' + s.id }, s.id)),
      el('td', {}, el('span', { class: 'badge ' + (s.running ? 'running' : 'finished') }, s.running ? 'running' : 'finished'),
        s.overlay ? el('span', { class: 'badge review' }, 'changes to review') : null),
      el('td', {}, s.image || ''),
      el('td', { class: 'path' }, s.policy || ''),
      el('td', { class: 'path' }, s.shares || ''),
      el('td', {}, shortTime(s.started)),
      el('td', {}, shortTime(s.ended)),
      el('td', {}, s.exit === null || s.exit === undefined ? '' : String(s.exit)),
      el('td', { class: 'num', title: s.indexing ? 'indexing this large log' : null }, s.indexing ? '…' : String(s.fs_ops)),
      el('td', { class: 'num' }, s.indexing ? '…' : bytes(s.bytes_in) + ' / ' + bytes(s.bytes_out)),
      el('td', { class: 'num denials' }, s.indexing ? '…' : denied ? denialText(s.denials) : '0'));
    tr.addEventListener('click', (ev) => {
      if (ev.target.tagName !== 'A') location.hash = '#/sb/' + s.id;
    });
    body.append(tr);
  }
}

function denialText(d) {
  return Object.entries(d).map(([k, v]) => k + ' ' + v).join(', ');
}

// ---- detail

async function showDetail(id, tab) {
  $('list-view').hidden = true;
  $('detail-view').hidden = false;
  const fresh = state.id !== id;
  state.id = id;
  $('sb-title').textContent = id;
  selectTab(tab);
  await refreshSandbox();
  if (!AREAS.length) {
    try { AREAS = (await api('/api/sandboxes')).areas; } catch (e) { status(e.message, true); }
  }
  if (fresh || !$('f-area').querySelector('input')) buildFilters();
  refreshIntegrity();
  if (tab === 'timeline') await loadTimeline(null);
  if (tab === 'changes') await loadChanges();
  if (tab === 'charts') await loadCharts();
  state.timer = setInterval(async () => {
    const wasRunning = state.sandbox && state.sandbox.running;
    await refreshSandbox();
    if (wasRunning || (state.sandbox && state.sandbox.running)) refreshIntegrity();
  }, 3000);
}

function selectTab(tab) {
  state.tab = tab;
  for (const b of $('tabs').querySelectorAll('button')) {
    b.classList.toggle('active', b.dataset.tab === tab);
  }
  for (const t of ['timeline', 'changes', 'charts']) $('tab-' + t).hidden = t !== tab;
}

async function refreshSandbox() {
  let s;
  try { s = await api('/api/sandboxes/' + state.id); } catch (e) { status(e.message, true); return; }
  status('');
  state.sandbox = s;
  const st = $('sb-state');
  st.textContent = s.running ? 'running' : 'finished';
  st.className = 'badge ' + (s.running ? 'running' : 'finished');
  const facts = $('sb-facts');
  clear(facts);
  const denied = Object.values(s.denials || {}).reduce((a, b) => a + b, 0);
  const rows = [
    ['image', s.image], ['policy', s.policy], ['shares', s.shares], ['accelerator', s.accel],
    ['started', shortTime(s.started)], ['ended', shortTime(s.ended)], ['end', s.end],
    ['records', s.records], ['fs ops', s.fs_ops], ['network', s.net_requests + ' requests, ' + bytes(s.bytes_in) + ' in, ' + bytes(s.bytes_out) + ' out'],
    ['processes', s.processes], ['denials', denied ? denialText(s.denials) : '0'],
  ];
  for (const [k, v] of rows) {
    if (v === null || v === undefined || v === '') continue;
    facts.append(el('dt', {}, k), el('dd', { class: k === 'denials' && denied ? 'deny' : null }, String(v)));
  }
  $('apply').disabled = !s.overlay || s.running;
  $('discard').disabled = !s.overlay || s.running;
}

async function refreshIntegrity() {
  const badge = $('integrity');
  let v;
  try { v = await api('/api/sandboxes/' + state.id + '/verify'); } catch (e) {
    badge.textContent = 'cannot verify';
    badge.className = 'badge broken';
    $('integrity-detail').textContent = e.message;
    return;
  }
  badge.dataset.state = v.state;
  const running = state.sandbox && state.sandbox.running;
  if (v.state === 'verified') {
    badge.textContent = v.trusted ? 'verified' : 'verified (untrusted key)';
    badge.className = 'badge verified';
  } else if (v.state === 'unsealed') {
    badge.textContent = running ? 'intact, still being written' : 'intact, not sealed';
    badge.className = 'badge unsealed';
  } else {
    badge.textContent = 'BROKEN';
    badge.className = 'badge broken';
  }
  let text;
  if (v.state === 'broken') {
    text = 'The log was changed after it was written: ' + v.message;
  } else {
    text = 'Hash chain intact over ' + v.records + ' records';
    if (v.signed_to !== null && v.signed_to !== undefined) text += '; ' + v.checkpoints + ' signed checkpoints, up to seq ' + v.signed_to;
    if (v.signer) text += '; signed by ' + (v.trusted ? "this host's audit key " : 'key ') + v.signer.slice(0, 16) + '…';
    if (v.state === 'unsealed') text += running ? '; the end is signed when the sandbox stops' : '; the end is not signed (the run did not close its log)';
  }
  $('integrity-detail').textContent = text;
}

// ---- timeline

function buildFilters() {
  const area = $('f-area');
  const decision = $('f-decision');
  for (const fs of [area, decision]) {
    for (const l of Array.from(fs.querySelectorAll('label'))) l.remove();
  }
  for (const a of AREAS) {
    area.append(el('label', {}, el('input', { type: 'checkbox', name: 'area', value: a }), ' ' + a));
  }
  for (const d of DECISIONS) {
    decision.append(el('label', { class: 'dec-' + d }, el('input', { type: 'checkbox', name: 'decision', value: d }), ' ' + d));
  }
}

function filterParams() {
  const f = $('filters');
  const pick = (name) => Array.from(f.querySelectorAll('input[name=' + name + ']:checked')).map((i) => i.value);
  const p = new URLSearchParams();
  const areas = pick('area');
  const decisions = pick('decision');
  const source = f.querySelector('input[name=source]:checked');
  if (areas.length) p.set('area', areas.join(','));
  if (decisions.length) p.set('decision', decisions.join(','));
  if (source && source.value) p.set('source', source.value);
  return p;
}

async function loadTimeline(offset) {
  if (state.source) { state.source.close(); state.source = null; }
  const p = filterParams();
  p.set('limit', PAGE);
  if (offset === null) {
    // A running sandbox opens on its newest records.
    if (state.sandbox && state.sandbox.running) p.set('tail', 'true'); else p.set('offset', 0);
  } else {
    p.set('offset', Math.max(0, offset));
  }
  let data;
  try { data = await api('/api/sandboxes/' + state.id + '/records?' + p); } catch (e) { status(e.message, true); return; }
  state.offset = data.offset;
  state.matched = data.matched;
  const body = $('timeline').tBodies[0];
  clear(body);
  state.shown = 0;
  for (const r of data.records) appendRecord(r);
  updateRange();
  const all = await api('/api/sandboxes/' + state.id + '/records?limit=1&tail=true').catch(() => null);
  state.lastSeq = all && all.records.length && all.records[0].record ? all.records[0].record.seq : 0;
  follow();
}

function updateRange() {
  const from = state.matched ? state.offset + 1 : 0;
  $('range').textContent = from + '–' + (state.offset + state.shown) + ' of ' + state.matched;
  $('prev').disabled = state.offset === 0;
  $('first').disabled = state.offset === 0;
  const atEnd = state.offset + state.shown >= state.matched;
  $('next').disabled = atEnd;
  $('last').disabled = atEnd;
}

function follow() {
  const live = $('live').checked && state.sandbox && state.sandbox.running;
  $('live-state').textContent = live ? 'following new records' : '';
  if (!live) return;
  const p = filterParams();
  p.set('after', state.lastSeq);
  const es = new EventSource('/api/sandboxes/' + state.id + '/stream?' + p);
  state.source = es;
  es.addEventListener('record', (ev) => {
    let r;
    try { r = JSON.parse(ev.data); } catch (_) { return; }
    if (r.record && r.record.seq > state.lastSeq) state.lastSeq = r.record.seq;
    const atEnd = state.offset + state.shown >= state.matched;
    state.matched += 1;
    if (atEnd) {
      // A sliding window over the newest records: the oldest row leaves as a new one comes.
      if (state.shown >= PAGE) dropFirstRow();
      appendRecord(r, true);
    }
    updateRange();
  });
  es.addEventListener('end', async () => {
    es.close();
    state.source = null;
    $('live-state').textContent = 'the sandbox ended';
    await refreshSandbox();
    refreshIntegrity();
  });
  // The browser would reconnect with the old position and repeat records: stop instead.
  es.onerror = () => {
    es.close();
    if (state.source === es) state.source = null;
    $('live-state').textContent = 'live updates interrupted; reload to resume';
  };
}

function dropFirstRow() {
  const first = $('timeline').tBodies[0].querySelector('tr.rec');
  if (!first) return;
  const next = first.nextElementSibling;
  if (next && next.classList.contains('fields')) next.remove();
  first.remove();
  state.shown -= 1;
  state.offset += 1;
}

function what(rec) {
  if (rec.fs) {
    let s = rec.fs.op + ' ' + rec.fs.path;
    if (rec.fs.to) s += ' → ' + rec.fs.to;
    return s;
  }
  if (rec.net) {
    const n = rec.net;
    let s = '';
    if (n.method) s += n.method + ' ';
    s += (n.host || n.ip || '?') + (n.port ? ':' + n.port : '');
    if (n.path) s += ' ' + n.path;
    if (n.status) s += ' → ' + n.status;
    if (n.bytes_in || n.bytes_out) s += ' (' + bytes(n.bytes_in || 0) + ' in, ' + bytes(n.bytes_out || 0) + ' out)';
    return s;
  }
  if (rec.proc) {
    const p = rec.proc;
    let s = p.argv && p.argv.length ? p.argv.join(' ') : '';
    if (p.pid) s = 'pid ' + p.pid + ' ' + s;
    if (p.exit !== undefined) s += ' exit ' + p.exit;
    if (p.signal !== undefined) s += ' signal ' + p.signal;
    return s.trim();
  }
  const d = rec.detail || '';
  return d.length > 240 ? d.slice(0, 240) + '…' : d;
}

function appendRecord(row, live) {
  const body = $('timeline').tBodies[0];
  state.shown += 1;
  if (!row.record) {
    const tr = el('tr', { class: 'rec unreadable', 'data-line': row.line },
      el('td', {}, 'line ' + row.line), el('td', { colspan: 6 }, 'unreadable line: ' + (row.unreadable || '')));
    body.append(tr);
    return;
  }
  const r = row.record;
  const decision = r.decision || 'none';
  const rule = r.rule ? r.rule + (r.reason ? ' (' + r.reason + ')' : '') : (r.reason || '');
  const tr = el('tr', {
    class: 'rec dec-' + decision + (live ? ' fresh' : ''),
    'data-seq': r.seq, 'data-kind': r.kind, 'data-decision': decision, 'data-area': row.area,
  },
  el('td', { class: 'num' }, String(r.seq)),
  el('td', { class: 'time' }, shortTime(r.ts)),
  el('td', {}, r.source),
  el('td', {}, r.kind),
  el('td', {}, el('span', { class: 'decision dec-' + decision }, decision)),
  el('td', { class: 'what' }, what(r)),
  el('td', { class: 'rule' }, rule));
  tr.addEventListener('click', () => toggleFields(tr, r));
  body.append(tr);
}

function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? prefix + '.' + k : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

function toggleFields(tr, rec) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains('fields')) { next.remove(); return; }
  const dl = el('dl', { class: 'record-fields' });
  for (const [k, v] of flatten(rec, '', [])) dl.append(el('dt', {}, k), el('dd', {}, v));
  tr.after(el('tr', { class: 'fields' }, el('td', { colspan: 7 }, dl)));
}

// ---- changes

async function loadChanges() {
  let data;
  try { data = await api('/api/sandboxes/' + state.id + '/changes'); } catch (e) { status(e.message, true); return; }
  const box = $('changes');
  clear(box);
  if (!data.overlay) {
    box.append(el('p', { class: 'muted', id: 'no-overlay' }, 'This sandbox has no overlay copy to review: its shares were read-only or written directly, or its changes were applied or discarded already.'));
  }
  for (const share of data.shares) {
    box.append(el('h2', {}, share.guest + ' ← ' + share.host + ' (' + share.changes.length + ' changes)'));
    const list = el('ul', { class: 'change-list' });
    for (const c of share.changes) {
      const item = el('li', { class: 'change ' + c.kind, 'data-path': c.path, 'data-kind': c.kind },
        el('span', { class: 'mark' }, c.kind === 'added' ? 'A' : c.kind === 'deleted' ? 'D' : 'M'),
        el('span', { class: 'path' }, c.path),
        c.entry !== 'file' ? el('span', { class: 'tag' }, c.entry) : null,
        c.binary ? el('span', { class: 'tag binary' }, 'binary') : null);
      if (c.diff) {
        const pre = el('pre', { class: 'diff' });
        for (const line of c.diff.replace(/\n$/, '').split('\n')) {
          const cls = line.startsWith('+++') || line.startsWith('---') ? 'file' : line.startsWith('@@') ? 'hunk' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
          pre.append(el('span', { class: cls }, line), '\n');
        }
        item.append(pre);
      }
      list.append(item);
    }
    box.append(list);
  }
  const refused = $('refused');
  clear(refused);
  for (const r of data.refused) {
    refused.append(el('li', { 'data-seq': r.seq }, el('span', { class: 'path' }, r.path), ' ', el('span', { class: 'muted' }, r.kind + ' · ' + (r.rule || '') + (r.reason ? ' (' + r.reason + ')' : ''))));
  }
  if (!data.refused.length) refused.append(el('li', { class: 'muted' }, 'none'));
  $('apply').disabled = !data.overlay || data.running;
  $('discard').disabled = !data.overlay || data.running;
}

async function act(what) {
  const out = $('action-result');
  out.textContent = (what === 'apply' ? 'applying' : 'discarding') + '…';
  out.className = 'muted';
  try {
    const r = await api('/api/sandboxes/' + state.id + '/' + what, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}',
    });
    if (what === 'apply') {
      const o = r.outcome;
      let text = 'Applied ' + o.applied.length + ' path(s) to the workspace.';
      if (o.conflicts.length) text += ' Conflicts (left alone): ' + o.conflicts.map((c) => c[0] + ' (' + c[1] + ')').join(', ') + '.';
      if (o.denied.length) text += ' Refused by the policy: ' + o.denied.map((d) => d[0] + ' (' + d[1] + ')').join(', ') + '.';
      out.textContent = text;
      out.className = r.complete ? 'ok' : 'error';
    } else {
      out.textContent = 'Discarded: the workspace was left as it was.';
      out.className = 'ok';
    }
  } catch (e) {
    out.textContent = e.message;
    out.className = 'error';
  }
  await loadChanges();
  await refreshSandbox();
}

// ---- charts (SVG built element by element)

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function lineChart(box, points, unit) {
  clear(box);
  if (points.length < 2) { box.append(el('p', { class: 'muted' }, 'not enough samples (taken each second while the sandbox runs)')); return; }
  const W = 720, H = 160, L = 48, B = 20;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), ymax = Math.max(1, ...ys) * 1.1;
  const sx = (x) => L + (W - L - 8) * (x - x0) / Math.max(1, x1 - x0);
  const sy = (y) => H - B - (H - B - 8) * y / ymax;
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'line-chart', role: 'img' });
  s.append(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
  s.append(svg('line', { x1: L, y1: 8, x2: L, y2: H - B, class: 'axis' }));
  s.append(svg('text', { x: L - 4, y: 14, 'text-anchor': 'end', class: 'label' }, ymax.toFixed(0)));
  s.append(svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end', class: 'label' }, '0'));
  s.append(svg('text', { x: W - 4, y: H - 4, 'text-anchor': 'end', class: 'label' }, ((x1 - x0) / 1000).toFixed(0) + ' s'));
  s.append(svg('polyline', { points: points.map((p) => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' '), class: 'series' }));
  s.append(svg('title', {}, unit));
  box.append(s);
}

function minutesChart(box, areas, rows) {
  clear(box);
  if (!rows.length) { box.append(el('p', { class: 'muted' }, 'no records')); return; }
  const W = 720, H = 180, L = 48, B = 20;
  const totals = rows.map((r) => r[1].reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const bw = Math.max(2, (W - L - 8) / rows.length - 2);
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + (H + 24), class: 'bar-chart', role: 'img' });
  s.append(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
  s.append(svg('text', { x: L - 4, y: 14, 'text-anchor': 'end', class: 'label' }, String(max)));
  rows.forEach((r, i) => {
    let y = H - B;
    r[1].forEach((count, a) => {
      if (!count) return;
      const h = (H - B - 8) * count / max;
      y -= h;
      const rect = svg('rect', { x: L + i * (bw + 2), y: y, width: bw, height: h, class: 'area-' + areas[a] });
      rect.append(svg('title', {}, new Date(r[0]).toISOString().slice(11, 16) + ' ' + areas[a] + ': ' + count));
      s.append(rect);
    });
  });
  let lx = L;
  areas.forEach((a, i) => {
    if (!rows.some((r) => r[1][i])) return;
    s.append(svg('rect', { x: lx, y: H + 8, width: 10, height: 10, class: 'area-' + a }));
    s.append(svg('text', { x: lx + 14, y: H + 17, class: 'label' }, a));
    lx += 20 + a.length * 7;
  });
  box.append(s);
}

function hostsChart(box, hosts) {
  clear(box);
  if (!hosts.length) { box.append(el('p', { class: 'muted' }, 'no network traffic')); return; }
  const max = Math.max(1, ...hosts.map((h) => h.traffic.bytes_in + h.traffic.bytes_out));
  const table = el('table', { class: 'hosts' });
  for (const h of hosts) {
    const t = h.traffic;
    const bar = el('div', { class: 'bar' });
    bar.style.width = (100 * (t.bytes_in + t.bytes_out) / max).toFixed(1) + '%';
    table.append(el('tr', { 'data-host': h.host, class: t.denied ? 'has-denials' : null },
      el('td', { class: 'path' }, h.host || '(unknown)'),
      el('td', { class: 'barcell' }, bar),
      el('td', { class: 'num' }, bytes(t.bytes_in) + ' in, ' + bytes(t.bytes_out) + ' out'),
      el('td', { class: 'num' }, t.requests + ' req' + (t.denied ? ', ' + t.denied + ' denied' : ''))));
  }
  box.append(table);
}

async function loadCharts() {
  let c;
  try { c = await api('/api/sandboxes/' + state.id + '/charts'); } catch (e) { status(e.message, true); return; }
  lineChart($('chart-cpu'), c.usage.map((u) => [u[0], u[1]]), 'CPU %');
  lineChart($('chart-mem'), c.usage.map((u) => [u[0], u[2]]), 'MiB');
  minutesChart($('chart-minutes'), c.areas, c.minutes);
  hostsChart($('chart-hosts'), c.hosts);
}

// ---- wiring

document.addEventListener('DOMContentLoaded', () => {
  // The token is in a cookie now; keep it out of the address bar and history.
  if (location.search.includes('token=')) history.replaceState(null, '', location.pathname + location.hash);
  $('filters').addEventListener('change', () => loadTimeline(null));
  $('first').addEventListener('click', () => loadTimeline(0));
  $('prev').addEventListener('click', () => loadTimeline(state.offset - PAGE));
  $('next').addEventListener('click', () => loadTimeline(state.offset + PAGE));
  $('last').addEventListener('click', () => loadTimeline(Math.max(0, state.matched - PAGE)));
  $('live').addEventListener('change', () => { if (state.source) { state.source.close(); state.source = null; } follow(); });
  $('apply').addEventListener('click', () => act('apply'));
  $('discard').addEventListener('click', () => act('discard'));
  for (const b of $('tabs').querySelectorAll('button')) {
    b.addEventListener('click', () => { location.hash = '#/sb/' + state.id + '/' + b.dataset.tab; });
  }
  window.addEventListener('hashchange', route);
  route();
});
