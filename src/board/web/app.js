/* app.js — kiln board's page: the runs table, metric charts, run comparison and run details.
 * No framework and no dependency: the DOM and SVG directly.
 *
 * Data flow (the API is in docs/monitoring.md):
 *   - /api/runs?since=GEN every 5 s: the server answers only the runs that changed since GEN
 *     (and the keys of removed ones); a different "board" id means the server restarted, and the
 *     page asks for everything again.
 *   - /api/runs/EXP/RUN/metrics?after=NEXT&rev=REV every 2 s for each selected run that is still
 *     running: only the points logged since come back ("reset" when the server had to start
 *     over, e.g. a resumed run logged earlier steps again).
 * Everything from the server reaches the page as text (textContent, setAttribute), never as HTML.
 *
 * Charts: one per metric name; runs are colors (kept per run while it is selected), splits are
 * line styles (train solid, validation dashed, test dotted). Each curve is an SVG path with
 * data-run, data-metric and data-split attributes. Hovering shows the values nearest the cursor.
 * Runs with stages (points that carry "stage"): a dotted line where each later stage starts
 * (x axis step or epoch), and the stage of each point in the tooltip.
 */
'use strict';

const RUNS_EVERY_MS = 5000;
const METRICS_EVERY_MS = 2000;
const MAX_ROWS = 300;          // rows drawn at once; the filter narrows the rest
const DEFAULT_SELECTED = 5;    // newest runs selected when the URL names none
const PC_MAX_AXES = 8;         // parallel coordinates: params shown besides the metric
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
                 '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#ad494a'];
const SPLITS = ['train', 'validation', 'test'];
const SPLIT_DASH = {train: null, validation: '7 4', test: '2 3'};
const SVGNS = 'http://www.w3.org/2000/svg';

const S = {
  board: null,        // the server's id: changes when it restarts
  gen: 0,             // gen of the last /api/runs answer
  runsDir: '',
  skew: 0,            // server clock - this clock, seconds
  runs: new Map(),    // key -> run (from /api/runs)
  paramKeys: {},      // experiment folder -> params shown in the table
  selected: [],       // keys, in the order they were selected
  color: new Map(),   // key -> color, while selected
  metrics: new Map(), // key -> {rev, next, status, series: Map("name|split" -> series), busy}
  details: new Map(), // key -> {stamp, data}
  cards: new Map(),   // metric name -> chart element
  sort: {col: 'start_time', dir: -1},
  filter: [], filterText: '',
  xaxis: 'step', smooth: 0, logAll: false, logY: new Set(), metricFilter: '',
  tab: 'curves', detailsKey: null, compareAll: false, pcMetric: null,
  study: null,        // the study shown in the Studies tab
  started: false,
};

/* ---- small helpers ---- */

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids) if (kid != null) e.append(kid);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, {cache: 'no-store'});
  const j = await r.json().catch(() => ({error: `${url}: the answer is not JSON`}));
  if (!r.ok) throw new Error(j.error || `${url}: HTTP ${r.status}`);
  return j;
}

function splitKey(key) {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

function runURL(key) {
  const [e, r] = splitKey(key);
  return `/api/runs/${encodeURIComponent(e)}/${encodeURIComponent(r)}`;
}

function isNum(v) { return typeof v === 'number' && isFinite(v); }

function fmt(v) {
  if (v == null) return '';
  if (typeof v !== 'number') return String(v);
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2).replace(/\.?0+e/, 'e');
  if (Number.isInteger(v)) return String(v);
  return String(+v.toPrecision(4));
}

function fmtDuration(sec) {
  if (!(sec >= 0)) return '';
  if (sec < 1) return '< 1 s'; // run.json's times are to the second
  if (sec < 60) return `${sec < 10 ? sec.toFixed(1) : Math.round(sec)} s`;
  const m = Math.floor(sec / 60), h = Math.floor(m / 60);
  if (h) return `${h} h ${String(m % 60).padStart(2, '0')} m`;
  return `${m} m ${String(Math.floor(sec % 60)).padStart(2, '0')} s`;
}

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
         `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fmtBytes(n) {
  if (!(n >= 0)) return '';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) n /= 1024, i++;
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

function serverNow() { return Date.now() / 1000 + S.skew; }

function duration(r) {
  const t0 = Date.parse(r.start_time) / 1000;
  const t1 = r.end_time ? Date.parse(r.end_time) / 1000
           : r.status === 'running' ? serverNow()
           : r.last_update ? Date.parse(r.last_update) / 1000 : NaN;
  return t1 - t0;
}

/* A param's short name for headers: its last part, or the last two when that is ambiguous. */
function shortNames(keys) {
  const last = (k) => k.split('.').pop();
  const count = new Map();
  for (const k of keys) count.set(last(k), (count.get(last(k)) || 0) + 1);
  const out = new Map();
  for (const k of keys) {
    const parts = k.split('.');
    out.set(k, count.get(last(k)) > 1 && parts.length > 1 ? parts.slice(-2).join('.') : last(k));
  }
  return out;
}

function setLive(ok, why) {
  const l = $('#live');
  l.className = 'live ' + (ok ? 'on' : 'off');
  l.title = ok ? 'connected; refreshes every few seconds' : `cannot reach the board: ${why}`;
  $('#updated').textContent = ok ? `updated ${new Date().toLocaleTimeString()}` : 'offline';
}

/* ---- the runs ---- */

async function refreshRuns() {
  let j;
  try {
    j = await getJSON(`/api/runs?since=${S.gen}`);
  } catch (e) {
    setLive(false, e.message);
    return;
  }
  if (S.board && j.board !== S.board && !j.full) { // the server restarted: start over
    S.board = null, S.gen = 0;
    return refreshRuns();
  }
  setLive(true);
  S.board = j.board, S.gen = j.gen, S.runsDir = j.runs_dir, S.paramKeys = j.param_keys;
  S.skew = j.now - Date.now() / 1000;
  if (j.full) S.runs.clear();
  for (const r of j.runs) S.runs.set(r.key, r);
  for (const k of j.removed) S.runs.delete(k);
  $('#runs-dir').textContent = S.runsDir;
  for (const k of S.selected.slice()) if (!S.runs.has(k)) unselect(k);
  for (const k of S.selected) { // a run that runs again (resumed) is followed again
    const m = S.metrics.get(k), r = S.runs.get(k);
    if (m && r && r.status === 'running') m.status = 'running';
  }
  if (!S.started) {
    S.started = true;
    restoreFromHash();
  }
  renderTable();
  if (j.full || j.runs.length || j.removed.length) {
    if (S.tab === 'compare') renderCompare();
    drawLegend();
  }
}

function restoreFromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const sel = (h.get('sel') || '').split(',').filter((k) => S.runs.has(k));
  if (sel.length) {
    sel.forEach(select);
  } else {
    [...S.runs.values()]
      .sort((a, b) => String(b.start_time).localeCompare(String(a.start_time)))
      .slice(0, DEFAULT_SELECTED).forEach((r) => select(r.key));
  }
  if (h.get('filter')) {
    $('#filter').value = h.get('filter');
    setFilter(h.get('filter'));
  }
  const run = h.get('run');
  if (run && S.runs.has(run)) S.detailsKey = run;
  if (h.get('study')) S.study = h.get('study');
  const tab = h.get('tab');
  if (tab === 'compare' || tab === 'details' || tab === 'studies') setTab(tab);
}

function saveHash() {
  const h = new URLSearchParams();
  if (S.selected.length) h.set('sel', S.selected.join(','));
  if (S.tab !== 'curves') h.set('tab', S.tab);
  if (S.detailsKey) h.set('run', S.detailsKey);
  if (S.filterText) h.set('filter', S.filterText);
  if (S.study && S.tab === 'studies') h.set('study', S.study);
  history.replaceState(null, '', '#' + h.toString());
}

function select(key) {
  if (S.selected.includes(key)) return;
  S.selected.push(key);
  const used = new Set(S.color.values());
  S.color.set(key, PALETTE.find((c) => !used.has(c)) || PALETTE[S.selected.length % PALETTE.length]);
}

function unselect(key) {
  S.selected = S.selected.filter((k) => k !== key);
  S.color.delete(key);
}

function toggle(key) {
  if (S.selected.includes(key)) unselect(key); else select(key);
  selectionChanged();
}

function selectionChanged() {
  saveHash();
  renderTable();
  drawLegend();
  scheduleDraw();
  pollMetrics();
  if (S.tab === 'compare') renderCompare();
}

/* ---- filter ---- */

/* Terms, all of which must hold: plain words match anywhere (experiment, run, status, params);
 * NAME OP VALUE compares a final metric, a param (full key or its last part) or a column. */
function setFilter(text) {
  S.filterText = text.trim();
  S.filter = S.filterText.split(/\s+/).filter(Boolean).map((tok) => {
    const m = /^([^<>=!~]+)(>=|<=|!=|=|>|<|~)(.*)$/.exec(tok);
    return m ? {field: m[1], op: m[2], value: m[3]} : {text: tok.toLowerCase()};
  });
}

function fieldOf(r, f) {
  if (r.final && f in r.final) return r.final[f];
  if (r.best && f.startsWith('best.') && f.slice(5) in r.best) return r.best[f.slice(5)];
  if (['status', 'experiment', 'run', 'name', 'host', 'steps', 'epochs', 'key'].includes(f)) return r[f];
  const p = r.params || {};
  if (f in p) return p[f];
  for (const k of Object.keys(p)) if (k.endsWith('.' + f)) return p[k];
  return undefined;
}

function matches(r) {
  for (const t of S.filter) {
    if (t.text) {
      if (!r._hay) {
        r._hay = [r.key, r.experiment, r.name, r.status, r.host,
                  ...Object.entries(r.params || {}).map(([k, v]) => `${k}=${v}`)].join(' ').toLowerCase();
      }
      if (!r._hay.includes(t.text)) return false;
      continue;
    }
    const v = fieldOf(r, t.field);
    if (v === undefined || v === null) return false;
    const a = Number(v), b = Number(t.value);
    const num = v !== '' && t.value !== '' && !isNaN(a) && !isNaN(b);
    const sa = String(v).toLowerCase(), sb = t.value.toLowerCase();
    let ok;
    switch (t.op) {
      case '>': ok = num && a > b; break;
      case '<': ok = num && a < b; break;
      case '>=': ok = num && a >= b; break;
      case '<=': ok = num && a <= b; break;
      case '=': ok = num ? a === b : sa === sb; break;
      case '!=': ok = num ? a !== b : sa !== sb; break;
      default: ok = sa.includes(sb);
    }
    if (!ok) return false;
  }
  return true;
}

/* ---- the runs table ---- */

function metricOrder(a, b) {
  const rank = (n) => (n.includes('samples_per_second') ? 2 : n.startsWith('test_') ? 1 : 0);
  return rank(a) - rank(b);
}

function tableColumns(runs) {
  const metricNames = [], seenM = new Set();
  for (const r of runs) for (const n of Object.keys(r.final || {})) if (!seenM.has(n)) seenM.add(n), metricNames.push(n);
  metricNames.sort(metricOrder);
  const paramKeys = [], seenP = new Set();
  const exps = new Set(runs.map((r) => splitKey(r.key)[0]));
  for (const e of exps) for (const k of S.paramKeys[e] || []) if (!seenP.has(k)) seenP.add(k), paramKeys.push(k);
  const short = shortNames(paramKeys);
  const cols = [
    {id: 'sel', label: '', group: 'run', get: (r) => (S.selected.includes(r.key) ? 0 : 1)},
    {id: 'experiment', label: 'experiment', group: 'run', get: (r) => r.experiment ?? splitKey(r.key)[0]},
    {id: 'run', label: 'run', group: 'run', get: (r) => r.run},
    {id: 'status', label: 'status', group: 'run', get: (r) => r.status},
    {id: 'start_time', label: 'started', group: 'run', get: (r) => r.start_time},
    {id: 'duration', label: 'duration', group: 'run', num: true, get: duration},
    {id: 'steps', label: 'steps', group: 'run', num: true, get: (r) => r.steps},
  ];
  // the params, the quality metrics, the best one, then throughput (samples per second) last
  for (const k of paramKeys)
    cols.push({id: 'p:' + k, label: short.get(k), title: k, group: 'params', get: (r) => r.params?.[k]});
  const speed = (n) => n.includes('samples_per_second');
  for (const n of metricNames.filter((n) => !speed(n)))
    cols.push({id: 'm:' + n, label: n, group: 'final metrics', num: true, get: (r) => r.final?.[n]});
  if (runs.some((r) => Object.keys(r.best || {}).length))
    cols.push({id: 'best', label: 'best', group: 'best', get: (r) => {
      const e = Object.entries(r.best || {});
      return e.length ? e[0][1] : undefined;
    }});
  for (const n of metricNames.filter(speed))
    cols.push({id: 'm:' + n, label: n.replace('samples_per_second', 'samples/s'), title: n, group: 'speed',
               num: true, get: (r) => r.final?.[n]});
  return cols;
}

function compareValues(a, b) {
  const na = a === undefined || a === null || a === '', nb = b === undefined || b === null || b === '';
  if (na || nb) return na - nb; // empty last
  const x = Number(a), y = Number(b);
  if (!isNaN(x) && !isNaN(y)) return x - y;
  return String(a).localeCompare(String(b), undefined, {numeric: true});
}

function renderTable() {
  const all = [...S.runs.values()];
  const cols = tableColumns(all);
  const shown = all.filter(matches);
  const col = cols.find((c) => c.id === S.sort.col) || cols.find((c) => c.id === 'start_time');
  shown.sort((a, b) => {
    const c = compareValues(col.get(a), col.get(b));
    const empty = (v) => v === undefined || v === null || v === '';
    if (empty(col.get(a)) !== empty(col.get(b))) return c; // empty last both ways
    return S.sort.dir * c || a.key.localeCompare(b.key);
  });

  const thead = $('#runs thead');
  thead.replaceChildren();
  const groups = el('tr', {class: 'groups'});
  for (let i = 0; i < cols.length;) {
    let j = i;
    while (j < cols.length && cols[j].group === cols[i].group) j++;
    groups.append(el('th', {colspan: j - i, text: cols[i].group === 'run' ? '' : cols[i].group}));
    i = j;
  }
  const head = el('tr');
  for (const c of cols) {
    const cls = [c.num ? 'num' : '', c.id === col.id ? (S.sort.dir > 0 ? 'sorted-asc' : 'sorted-desc') : '']
      .filter(Boolean).join(' ');
    head.append(el('th', {class: cls || null, title: c.title || c.label, 'data-col': c.id,
      text: c.label,
      onclick: () => {
        S.sort = {col: c.id, dir: S.sort.col === c.id ? -S.sort.dir : (c.num ? -1 : 1)};
        renderTable();
      }}));
  }
  thead.append(groups, head);

  const tbody = $('#runs tbody');
  tbody.replaceChildren();
  for (const r of shown.slice(0, MAX_ROWS)) {
    const sel = S.selected.includes(r.key);
    const tr = el('tr', {'data-run': r.key, class: sel ? 'selected' : null,
      onclick: (ev) => { if (ev.target.closest('a, input')) return; toggle(r.key); }});
    for (const c of cols) {
      const v = c.get(r);
      let td;
      if (c.id === 'sel') {
        const box = el('input', {type: 'checkbox', 'aria-label': 'select ' + r.key,
                                 onchange: () => toggle(r.key)});
        box.checked = sel;
        const sw = el('span', {class: 'swatch'});
        if (sel) sw.style.background = S.color.get(r.key);
        td = el('td', {}, box, sw);
      } else if (c.id === 'run') {
        td = el('td', {}, el('a', {class: 'run-name', href: '#', text: r.run, title: 'details of ' + r.key,
          onclick: (ev) => { ev.preventDefault(); showDetails(r.key); }}));
      } else if (c.id === 'status') {
        td = el('td', {}, el('span', {class: 'status ' + r.status,
          text: r.crashed ? 'failed (crashed)' : r.status, title: r.message || r.error || null}));
      } else if (c.id === 'start_time') {
        td = el('td', {text: fmtTime(v), title: v || null});
      } else if (c.id === 'duration') {
        td = el('td', {class: 'num', text: fmtDuration(v)});
      } else if (c.id === 'best') {
        const e = Object.entries(r.best || {});
        td = el('td', {text: e.length ? `${e[0][0]} ${fmt(e[0][1])}` + (r.best_step != null ? ` @${r.best_step}` : '') : ''});
      } else {
        td = el('td', {class: c.num ? 'num' : null, text: c.num ? fmt(v) : (v ?? '')});
      }
      tr.append(td);
    }
    tbody.append(tr);
  }
  $('#runs-count').textContent = `${shown.length} of ${all.length} runs · ${S.selected.length} selected`;
  $('#runs-more').textContent = shown.length > MAX_ROWS
    ? `showing the first ${MAX_ROWS} of ${shown.length}; narrow them with the filter` : '';
  S.shownKeys = shown.map((r) => r.key);
}

/* ---- metric points ---- */

async function fetchMetrics(key) {
  let m = S.metrics.get(key);
  if (!m) S.metrics.set(key, m = {rev: null, next: 0, status: null, series: new Map(), busy: false, stages: []});
  if (m.busy || (m.rev !== null && m.status !== 'running')) return false;
  m.busy = true;
  try {
    const q = m.rev === null ? '' : `?after=${m.next}&rev=${m.rev}`;
    const j = await getJSON(runURL(key) + '/metrics' + q);
    if (j.reset) m.series.clear();
    for (const s of j.series) {
      const id = s.name + '|' + s.split;
      const t = m.series.get(id);
      const stage = s.stage || s.step.map(() => 0); // only runs with stages send it
      if (!t) {
        m.series.set(id, {name: s.name, split: s.split, step: s.step, value: s.value,
                          wall: s.wall_time, epoch: s.epoch, stage});
      } else {
        t.step = t.step.concat(s.step), t.value = t.value.concat(s.value);
        t.wall = t.wall.concat(s.wall_time), t.epoch = t.epoch.concat(s.epoch);
        t.stage = t.stage.concat(stage);
      }
    }
    m.stages = j.stages || [];
    const changed = j.reset || j.series.length > 0 || m.status !== j.status;
    m.rev = j.rev, m.next = j.next, m.status = j.status, m.error = null;
    return changed;
  } catch (e) {
    m.error = e.message;
    return false;
  } finally {
    m.busy = false;
  }
}

async function pollMetrics() {
  const changed = await Promise.all(S.selected.map(fetchMetrics));
  if (changed.some(Boolean)) scheduleDraw();
}

/* ---- charts ---- */

let drawTimer = null;
function scheduleDraw() {
  if (drawTimer) return;
  drawTimer = setTimeout(() => { drawTimer = null; if (S.tab === 'curves') drawCharts(); }, 20);
}

function chartOrder(a, b) {
  /* loss (epoch means and validation) first, then the running batch_loss beside it */
  const rank = (n) => (n === 'loss' ? 0 : n === 'batch_loss' ? 0.5 : n === 'learning_rate' ? 3 : n.includes('samples_per_second') ? 4 : n === 'accuracy' ? 1 : 2);
  return rank(a) - rank(b) || a.localeCompare(b);
}

/* metric name -> [{key, s}] over the selected runs */
function chartData() {
  const byName = new Map();
  const f = S.metricFilter.toLowerCase();
  for (const key of S.selected) {
    const m = S.metrics.get(key);
    if (!m) continue;
    for (const s of m.series.values()) {
      if (f && !s.name.toLowerCase().includes(f)) continue;
      if (!byName.has(s.name)) byName.set(s.name, []);
      byName.get(s.name).push({key, s});
    }
  }
  return new Map([...byName.entries()].sort((a, b) => chartOrder(a[0], b[0])));
}

function drawCharts() {
  const box = $('#charts');
  const data = chartData();
  $('#charts-empty').hidden = data.size > 0;
  $('#charts-empty').textContent = S.selected.length
    ? 'No metric points yet for the selected runs.' : 'Select runs in the table to draw their curves.';
  for (const [name, card] of S.cards) if (!data.has(name)) card.remove(), S.cards.delete(name);
  for (const [name, entries] of data) {
    let card = S.cards.get(name);
    if (!card) S.cards.set(name, card = makeCard(name));
    box.append(card); // keeps the order of data
    drawChart(card, name, entries);
  }
}

function makeCard(name) {
  const logBtn = el('button', {type: 'button', title: 'logarithmic y axis', text: 'log'});
  logBtn.addEventListener('click', () => {
    if (S.logY.has(name)) S.logY.delete(name); else S.logY.add(name);
    scheduleDraw();
  });
  const svg = svgEl('svg', {role: 'img', 'aria-label': name});
  const card = el('div', {class: 'chart', 'data-metric': name},
                  el('div', {class: 'title'}, el('span', {text: name}), el('span', {class: 'spacer'}), logBtn),
                  svg);
  card._log = logBtn;
  card._svg = svg;
  svg.addEventListener('mousemove', (ev) => hover(card, ev));
  svg.addEventListener('mouseleave', () => unhover(card));
  return card;
}

function smoothed(ys, w) {
  if (!w) return ys;
  const out = new Array(ys.length);
  let acc = 0, n = 0;
  for (let i = 0; i < ys.length; i++) {
    const v = ys[i];
    if (!isNum(v)) { out[i] = v; continue; }
    acc = acc * w + (1 - w) * v;
    n++;
    out[i] = acc / (1 - Math.pow(w, n)); // debiased, as TensorBoard does
  }
  return out;
}

function runStartWall(key) {
  const m = S.metrics.get(key);
  let t0 = Infinity;
  if (m) for (const s of m.series.values()) if (s.wall.length && s.wall[0] < t0) t0 = s.wall[0];
  return t0;
}

function xValues(key, s) {
  if (S.xaxis === 'epoch') return s.epoch;
  if (S.xaxis === 'time') {
    const t0 = runStartWall(key);
    return s.wall.map((w) => w - t0);
  }
  return s.step;
}

/* About n round ticks covering [lo, hi]. */
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/* Ticks of a log axis over [lo, hi] given as log10 values: powers of ten (and 2x, 5x over
 * fewer than two decades); within one decade, round values as on a linear axis. */
function logTicks(lo, hi) {
  const out = [];
  const decades = hi - lo;
  if (decades < 1)
    return niceTicks(Math.pow(10, lo), Math.pow(10, hi), 5).filter((v) => v > 0).map(Math.log10);
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++)
    for (const f of decades < 2 ? [1, 2, 5] : [1]) {
      const v = Math.log10(f) + e;
      if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v);
    }
  return out;
}

function fmtAxis(v) {
  if (S.xaxis !== 'time') return fmt(v);
  if (v < 60) return `${+v.toFixed(1)}s`;
  if (v < 3600) return `${+(v / 60).toFixed(1)}m`;
  return `${+(v / 3600).toFixed(1)}h`;
}

function drawChart(card, name, entries) {
  const svg = card._svg;
  const log = S.logAll || S.logY.has(name);
  card._log.classList.toggle('on', log);
  const W = Math.max(280, Math.round(svg.getBoundingClientRect().width) || 420), H = 240;
  const M = {l: 52, r: 12, t: 10, b: 24};
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const ok = (x, y) => isNum(x) && isNum(y) && (!log || y > 0);
  const lines = entries.map(({key, s}) => {
    const xs = xValues(key, s);
    return {key, split: s.split, xs, raw: s.value, ys: smoothed(s.value, S.smooth), s};
  }).sort((a, b) => SPLITS.indexOf(a.split) - SPLITS.indexOf(b.split));
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const l of lines)
    for (const ys of S.smooth ? [l.ys, l.raw] : [l.ys])
      for (let i = 0; i < l.xs.length; i++) {
        if (!ok(l.xs[i], ys[i])) continue;
        const y = log ? Math.log10(ys[i]) : ys[i];
        x0 = Math.min(x0, l.xs[i]), x1 = Math.max(x1, l.xs[i]);
        y0 = Math.min(y0, y), y1 = Math.max(y1, y);
      }
  if (!(x1 >= x0)) {
    svg.append(svgEl('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle'})).textContent =
      log ? 'no positive values to draw on a log scale' : 'no points';
    card._plot = null;
    return;
  }
  if (x1 === x0) x0 -= 1, x1 += 1;
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d, y1 += d; }
  else { const pad = (y1 - y0) * 0.05; y0 -= pad, y1 += pad; }
  const sx = (x) => M.l + (x - x0) / (x1 - x0) * (W - M.l - M.r);
  const sy = (y) => H - M.b - ((log ? Math.log10(y) : y) - y0) / (y1 - y0) * (H - M.t - M.b);

  const grid = svgEl('g', {class: 'grid'}), axis = svgEl('g', {class: 'axis'});
  const yt = log ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
  for (const t of yt) {
    const py = H - M.b - (t - y0) / (y1 - y0) * (H - M.t - M.b);
    grid.append(svgEl('line', {x1: M.l, x2: W - M.r, y1: py, y2: py}));
    const label = svgEl('text', {x: M.l - 5, y: py + 3, 'text-anchor': 'end'});
    label.textContent = fmt(log ? Math.pow(10, t) : t);
    axis.append(label);
  }
  for (const t of niceTicks(x0, x1, Math.max(3, Math.floor((W - M.l) / 90)))) {
    const px = sx(t);
    grid.append(svgEl('line', {x1: px, x2: px, y1: M.t, y2: H - M.b}));
    const label = svgEl('text', {x: px, y: H - M.b + 14, 'text-anchor': 'middle'});
    label.textContent = fmtAxis(t);
    axis.append(label);
  }
  axis.append(svgEl('path', {d: `M${M.l},${M.t}V${H - M.b}H${W - M.r}`, fill: 'none'}));
  svg.append(grid, axis);
  if (S.xaxis !== 'time') svg.append(stageLines(entries, x0, x1, sx, M, H));

  const path = (xs, ys) => {
    let d = '', pen = false;
    for (let i = 0; i < xs.length; i++) {
      if (!ok(xs[i], ys[i])) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${sx(xs[i]).toFixed(1)},${sy(ys[i]).toFixed(1)}`;
      pen = true;
    }
    return d;
  };
  for (const l of lines) {
    const color = S.color.get(l.key) || '#888';
    if (S.smooth)
      svg.append(svgEl('path', {class: 'line raw', 'data-raw': l.key, d: path(l.xs, l.raw), stroke: color,
                                'stroke-dasharray': SPLIT_DASH[l.split]}));
    svg.append(svgEl('path', {class: 'line', 'data-run': l.key, 'data-metric': name, 'data-split': l.split,
                              d: path(l.xs, l.ys), stroke: color, 'stroke-dasharray': SPLIT_DASH[l.split]}));
    // a point with no drawable neighbour makes no line: mark it
    for (let i = 0; i < l.xs.length; i++) {
      if (!ok(l.xs[i], l.ys[i]) || ok(l.xs[i - 1], l.ys[i - 1]) || ok(l.xs[i + 1], l.ys[i + 1])) continue;
      const m = marker(l.split, sx(l.xs[i]), sy(l.ys[i]), color);
      m.setAttribute('data-run', l.key);
      svg.append(m);
    }
  }
  const cursor = svgEl('g', {visibility: 'hidden'});
  svg.append(cursor);
  card._plot = {lines, sx, sy, x0, x1, W, M, H, cursor, ok, name};
}

/* Where each stage after the first starts, for the runs drawn: a dotted line in the run's color,
 * labelled with the stage's number. */
function stageLines(entries, x0, x1, sx, M, H) {
  const g = svgEl('g', {class: 'stages'});
  for (const key of new Set(entries.map((e) => e.key))) {
    const stages = S.metrics.get(key)?.stages || [];
    for (const st of stages.slice(1)) {
      const x = S.xaxis === 'epoch' ? st.first_epoch : st.first_step;
      if (!isNum(x) || x < x0 || x > x1) continue;
      const px = sx(x).toFixed(1);
      g.append(svgEl('line', {class: 'stage-line', 'data-run': key, 'data-stage': st.stage, x1: px, x2: px,
                              y1: M.t, y2: H - M.b, stroke: S.color.get(key) || '#888'}));
      const label = svgEl('text', {x: +px + 3, y: M.t + 9});
      label.textContent = `stage ${st.stage}`;
      g.append(label);
    }
  }
  return g;
}

/* The mark of a lone point: a dot for train, a ring for validation, a hollow square for test. */
function marker(split, x, y, color) {
  const common = {class: 'dot', 'data-split': split, stroke: color, 'stroke-width': 1.6};
  if (split === 'test')
    return svgEl('rect', {...common, x: x - 3.5, y: y - 3.5, width: 7, height: 7, fill: '#fff'});
  return svgEl('circle', {...common, cx: x, cy: y, r: 3.5, fill: split === 'train' ? color : '#fff'});
}

/* The index in xs (ascending) nearest to x among points that can be drawn. */
function nearest(xs, ys, x, ok) {
  let lo = 0, hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1; else hi = mid;
  }
  let best = -1;
  for (let d = 0; d < xs.length && best < 0; d++)
    for (const i of [lo - d, lo + d - 1, lo + d])
      if (i >= 0 && i < xs.length && ok(xs[i], ys[i]) &&
          (best < 0 || Math.abs(xs[i] - x) < Math.abs(xs[best] - x))) best = i;
  return best;
}

function hover(card, ev) {
  const p = card._plot;
  if (!p) return;
  const box = card._svg.getBoundingClientRect();
  const px = (ev.clientX - box.left) * p.W / box.width;
  if (px < p.M.l || px > p.W - p.M.r) return unhover(card);
  const x = p.x0 + (px - p.M.l) / (p.W - p.M.l - p.M.r) * (p.x1 - p.x0);
  p.cursor.replaceChildren();
  p.cursor.setAttribute('visibility', 'visible');
  p.cursor.append(svgEl('line', {class: 'cursor', x1: px, x2: px, y1: p.M.t, y2: p.H - p.M.b}));
  const rows = [];
  for (const l of p.lines) {
    const i = nearest(l.xs, l.ys, x, p.ok);
    if (i < 0) continue;
    const color = S.color.get(l.key) || '#888';
    p.cursor.append(svgEl('circle', {cx: p.sx(l.xs[i]), cy: p.sy(l.ys[i]), r: 3, fill: color}));
    rows.push({l, i, color});
  }
  rows.sort((a, b) => b.l.ys[b.i] - a.l.ys[a.i]);
  const tip = $('#tooltip');
  const table = el('table');
  for (const {l, i, color} of rows) {
    const sw = el('span', {class: 'swatch'});
    sw.style.background = color;
    table.append(el('tr', {},
      el('td', {}, sw), el('td', {text: splitKey(l.key)[1]}), el('td', {text: l.split}),
      el('td', {class: 'num', text: `step ${l.s.step[i]}` + (l.s.stage[i] ? ` · stage ${l.s.stage[i]}` : '')}),
      el('td', {class: 'num', text: fmt(l.ys[i]) + (S.smooth ? ` (${fmt(l.raw[i])})` : '')})));
  }
  tip.replaceChildren(el('div', {text: p.name}), table);
  tip.hidden = false;
  const left = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(4, left)}px`;
  tip.style.top = `${ev.clientY + 14}px`;
}

function unhover(card) {
  if (card._plot) card._plot.cursor.setAttribute('visibility', 'hidden');
  $('#tooltip').hidden = true;
}

function drawLegend() {
  const box = $('#legend');
  box.replaceChildren();
  for (const key of S.selected) {
    const r = S.runs.get(key);
    const sw = el('span', {class: 'swatch'});
    sw.style.background = S.color.get(key);
    box.append(el('span', {class: 'item', title: key, 'data-run': key}, sw,
                   el('span', {text: `${splitKey(key)[0]} / ${r ? r.run : splitKey(key)[1]}`})));
  }
  for (const split of SPLITS) {
    const s = svgEl('svg', {width: 40, height: 10});
    s.append(svgEl('line', {x1: 0, x2: 26, y1: 5, y2: 5, stroke: '#444', 'stroke-width': 2,
                            'stroke-dasharray': SPLIT_DASH[split]}));
    s.append(marker(split, 34, 5, '#444'));
    box.append(el('span', {class: 'item'}, s, el('span', {class: 'muted', text: split})));
  }
}

/* ---- comparison ---- */

function detailsStamp(r) { return `${r.status}|${r.steps}|${r.end_time}|${r.checkpoint}`; }

async function loadDetails(key) {
  const r = S.runs.get(key);
  const c = S.details.get(key);
  if (c && r && c.stamp === detailsStamp(r)) return c.data;
  const data = await getJSON(runURL(key));
  S.details.set(key, {stamp: r ? detailsStamp(r) : '', data});
  return data;
}

function lowerIsBetter(name) { return /loss|error|mse|mae|perplexity/.test(name); }

async function renderCompare() {
  const keys = S.selected.filter((k) => S.runs.has(k));
  const box = $('#compare-table'), pc = $('#pc');
  if (!keys.length) {
    box.replaceChildren(el('p', {class: 'muted', text: 'Select runs in the table to compare them.'}));
    pc.replaceChildren();
    return;
  }
  let all;
  try {
    all = await Promise.all(keys.map(loadDetails));
  } catch (e) {
    box.replaceChildren(el('p', {class: 'error', text: e.message}));
    return;
  }
  const params = [], seen = new Set();
  for (const d of all) for (const k of Object.keys(d.params || {})) if (!seen.has(k)) seen.add(k), params.push(k);
  const differs = (k) => new Set(all.map((d) => d.params?.[k])).size > 1;
  const rows = params.filter((k) => S.compareAll || differs(k));
  const metrics = [], seenM = new Set();
  for (const k of keys) for (const n of Object.keys(S.runs.get(k).final || {})) if (!seenM.has(n)) seenM.add(n), metrics.push(n);
  metrics.sort(metricOrder);

  const table = el('table', {class: 'compare'});
  const head = el('tr', {}, el('th', {text: keys.length > 1 ? `${rows.length} params differ` : 'param'}));
  for (const k of keys) {
    const sw = el('span', {class: 'swatch'});
    sw.style.background = S.color.get(k);
    head.append(el('th', {title: k, 'data-run': k}, sw, splitKey(k)[1]));
  }
  table.append(el('thead', {}, head));
  const body = el('tbody');
  for (const p of rows)
    body.append(el('tr', {}, el('td', {text: p}), ...all.map((d) => el('td', {text: d.params?.[p] ?? '—'}))));
  if (metrics.length) body.append(el('tr', {}, el('th', {colspan: keys.length + 1, text: 'final metrics'})));
  for (const n of metrics) {
    const vals = keys.map((k) => S.runs.get(k).final?.[n]);
    const finite = vals.filter(isNum);
    const best = finite.length > 1 ? (lowerIsBetter(n) ? Math.min(...finite) : Math.max(...finite)) : null;
    body.append(el('tr', {}, el('td', {text: n}),
      ...vals.map((v) => el('td', {class: (v === best ? 'num best' : 'num'), text: fmt(v)}))));
  }
  table.append(body);
  box.replaceChildren(table);

  const sel = $('#pc-metric');
  if (!S.pcMetric || !metrics.includes(S.pcMetric))
    S.pcMetric = metrics.find((n) => n.startsWith('val_') && n !== 'val_samples_per_second') || metrics[0] || null;
  sel.replaceChildren(...metrics.map((n) => el('option', {value: n, text: n, selected: n === S.pcMetric})));
  drawParallel(pc, keys, all, params.filter(differs).slice(0, PC_MAX_AXES));
}

/* Parallel coordinates: one vertical axis per differing param and one for the chosen metric;
 * each run a polyline in its color. Numbers get a linear axis (logarithmic when all positive and
 * spread over more than a decade and a half), other values one tick each, in sorted order. */
function drawParallel(box, keys, all, params, o = {}) {
  box.replaceChildren();
  const metric = o.metric !== undefined ? o.metric : S.pcMetric;
  const axes = params.map((p) => ({name: p, vals: all.map((d) => d.params?.[p])}));
  if (metric) axes.push({name: metric, metric: true,
    vals: o.metricVals || keys.map((k) => S.runs.get(k).final?.[metric])});
  if (keys.length < 2 || axes.length < 2) {
    box.append(el('p', {class: 'muted', text: o.empty || (keys.length < 2
      ? 'Select two or more runs for parallel coordinates.'
      : 'The selected runs share every param: nothing to draw in parallel coordinates.')}));
    return;
  }
  const svg = svgEl('svg');
  box.append(svg);
  const W = Math.max(400, Math.round(svg.getBoundingClientRect().width) || 800), H = 300;
  const M = {l: 60, r: 60, t: 34, b: 16};
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const short = shortNames(params);
  const ax = (i) => M.l + i * (W - M.l - M.r) / (axes.length - 1);
  for (const [i, a] of axes.entries()) {
    const nums = a.vals.map((v) => (v === undefined || v === null || v === '' ? NaN : Number(v)));
    const present = a.vals.filter((v) => v !== undefined && v !== null && v !== '');
    a.numeric = present.length > 0 && present.every((v) => !isNaN(Number(v)));
    if (a.numeric) {
      const f = nums.filter(isFinite);
      let lo = Math.min(...f), hi = Math.max(...f);
      a.log = lo > 0 && hi / lo > 30;
      if (a.log) lo = Math.log10(lo), hi = Math.log10(hi);
      if (hi === lo) lo -= 1, hi += 1;
      a.pos = (v) => {
        const n = Number(v);
        if (v === undefined || v === null || v === '' || !isFinite(n) || (a.log && n <= 0)) return null;
        return H - M.b - ((a.log ? Math.log10(n) : n) - lo) / (hi - lo) * (H - M.t - M.b);
      };
      a.ticks = a.log ? [lo, (lo + hi) / 2, hi].map((t) => Math.pow(10, t)) : [lo, (lo + hi) / 2, hi];
    } else {
      const cats = [...new Set(present.map(String))].sort();
      a.pos = (v) => {
        const i = cats.indexOf(String(v));
        return i < 0 ? null : cats.length === 1 ? (H + M.t - M.b) / 2
          : H - M.b - i / (cats.length - 1) * (H - M.t - M.b);
      };
      a.ticks = cats;
    }
    const x = ax(i);
    svg.append(svgEl('line', {x1: x, x2: x, y1: M.t, y2: H - M.b, stroke: '#8c959f'}));
    const title = svgEl('text', {x, y: 12, 'text-anchor': 'middle', 'font-weight': a.metric ? 'bold' : null});
    title.textContent = a.metric ? a.name : short.get(a.name);
    const tt = svgEl('title');
    tt.textContent = a.name;
    title.append(tt);
    svg.append(title);
    for (const t of a.ticks) {
      const y = a.pos(t);
      if (y === null) continue;
      const label = svgEl('text', {x: x - 4, y: y + 3, 'text-anchor': 'end'});
      label.textContent = a.numeric ? fmt(Number(t)) : String(t).slice(0, 14);
      svg.append(label);
    }
  }
  for (const [j, key] of keys.entries()) {
    let d = '', pen = false;
    for (const [i, a] of axes.entries()) {
      const y = a.pos(a.vals[j]);
      if (y === null) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${ax(i).toFixed(1)},${y.toFixed(1)}`;
      pen = true;
    }
    if (o.line) svg.append(svgEl('path', {...o.line(key, j), d}));
    else svg.append(svgEl('path', {class: 'pc-line', 'data-run': key, d, stroke: S.color.get(key)}));
  }
}

/* ---- run details ---- */

function kvTable(pairs) {
  return el('table', {class: 'kv'}, ...pairs.map(([k, v]) =>
    el('tr', {}, el('td', {text: k}), el('td', {text: v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v)}))));
}

/* The run's stages: which one it is in (of how many the config has) and, per stage, the steps and
 * epochs its metric points cover. */
function stagesView(d) {
  const total = new Set(Object.keys(d.params || {}).map((k) => (k.match(/^stages\[(\d+)\]/) || [])[1])
    .filter((i) => i != null)).size;
  const range = (a, b) => (a === b || !isNum(b) ? fmt(a) : `${fmt(a)}–${fmt(b)}`);
  const now = d.stage ? `stage ${d.stage}${total ? ` of ${total}` : ''}` : '—';
  const running = d.status === 'running';
  return [
    el('h3', {text: 'stages'}),
    el('p', {class: 'stage-now'}, running ? 'now in ' : 'last: ', el('b', {text: now})),
    el('table', {class: 'stages'},
      el('tr', {}, ...['stage', 'steps', 'epochs'].map((h) => el('th', {text: h}))),
      ...d.stages.map((st) => el('tr', {'data-stage': st.stage, class: st.stage === d.stage ? 'current' : null},
        el('td', {class: 'num', text: st.stage}), el('td', {class: 'num', text: range(st.first_step, st.last_step)}),
        el('td', {class: 'num', text: isNum(st.first_epoch) ? range(st.first_epoch, st.last_epoch) : '—'})))),
  ];
}

async function showDetails(key) {
  S.detailsKey = key;
  setTab('details');
}

async function renderDetails() {
  const box = $('#details-body');
  const key = S.detailsKey || S.selected[0];
  if (!key) {
    box.replaceChildren(el('p', {class: 'muted', text: "Click a run's name in the table."}));
    return;
  }
  let d;
  try {
    d = await loadDetails(key);
  } catch (e) {
    box.replaceChildren(el('p', {class: 'error', text: e.message}));
    return;
  }
  const run = d.run || {};
  const kids = [
    el('h2', {}, `${key} `, el('span', {class: 'status ' + d.status, text: d.crashed ? 'failed (crashed)' : d.status})),
    el('p', {class: 'muted', text: d.dir}),
  ];
  if (d.run_error) kids.push(el('p', {class: 'error', text: d.run_error}));
  const fields = Object.entries(run).filter(([k, v]) => typeof v !== 'object' || v === null);
  kids.push(el('h3', {text: 'run.json'}), kvTable(fields));
  for (const [title, map] of [['final metrics', run.final_metrics], ['best metrics', run.best_metrics]])
    if (map && Object.keys(map).length)
      kids.push(el('h3', {text: title}), kvTable(Object.entries(map).map(([k, v]) => [k, fmt(v)])));

  if (d.stages?.length) kids.push(...stagesView(d));

  kids.push(el('h3', {text: `checkpoints (${(d.checkpoints || []).length})`}));
  if (d.checkpoints?.length) {
    kids.push(el('table', {}, el('tr', {}, ...['name', 'step', 'size', 'written', 'latest'].map((h) => el('th', {text: h}))),
      ...d.checkpoints.map((c) => el('tr', {}, el('td', {text: c.name}), el('td', {class: 'num', text: c.step}),
        el('td', {class: 'num', text: fmtBytes(c.bytes)}), el('td', {text: fmtTime(c.time)}),
        el('td', {text: c.latest ? '✓' : ''})))));
  } else kids.push(el('p', {class: 'muted', text: 'none'}));

  kids.push(el('h3', {text: `export versions (${(d.exports || []).length})`}));
  if (d.exports?.length) {
    const sig = (ts) => (ts || []).map((t) => `${t.name} ${t.dtype} [${(t.shape || []).join(', ')}]`).join('; ');
    kids.push(el('table', {}, el('tr', {}, ...['version', 'created', 'from checkpoint', 'size', 'inputs', 'outputs'].map((h) => el('th', {text: h}))),
      ...d.exports.map((x) => el('tr', {}, el('td', {class: 'num', text: x.version}), el('td', {text: fmtTime(x.created || x.time)}),
        el('td', {text: x.checkpoint || ''}), el('td', {class: 'num', text: fmtBytes(x.bytes)}),
        el('td', {text: sig(x.inputs)}), el('td', {text: sig(x.outputs)})))));
    const base = d.exports[0].path.replace(/\/[^/]*$/, '');
    kids.push(el('p', {}, 'Serve them: ', el('code', {text: `kiln serve --model_base_path ${base} --model_name ${splitKey(key)[0]}`})));
  } else kids.push(el('p', {class: 'muted', text: 'none'}));

  if (d.explain?.length) { // log.explain's attribution images (docs/explain.md)
    const [e, r] = splitKey(key);
    kids.push(el('h3', {text: `attributions (log.explain, ${d.explain.length})`}),
      el('div', {class: 'explain'}, ...d.explain.slice().reverse().map((x) => el('figure', {},
        el('img', {src: `/api/runs/${encodeURIComponent(e)}/${encodeURIComponent(r)}/explain/${encodeURIComponent(x.file)}`,
          alt: x.file, loading: 'lazy'}),
        el('figcaption', {text: `epoch ${x.epoch}, ${x.method}`})))));
  }

  kids.push(el('h3', {text: 'model summary'}));
  if (d.summary != null) {
    kids.push(el('pre', {class: 'summary', text: d.summary}));
    if (d.summary_truncated) kids.push(el('p', {class: 'muted', text: '(cut: summary.txt is longer)'}));
  } else kids.push(el('p', {class: d.summary_error ? 'error' : 'muted', text: d.summary_error || 'none (summary.txt is written when training starts)'}));

  kids.push(el('h3', {text: 'config.yaml'}));
  kids.push(d.config != null ? el('pre', {text: d.config}) : el('p', {class: 'error', text: d.config_error || 'missing'}));
  if (d.log_tail) kids.push(el('h3', {text: 'log.txt (the end)'}), el('pre', {text: d.log_tail}));
  box.replaceChildren(...kids);
}

/* ---- studies (kiln tune) ----
 * The list (/api/studies) and one study (/api/studies/NAME): its trials table (params, objective,
 * state incl. pruned, its run), the best objective so far over the trial numbers (finished
 * trials; every trial's value as a dot colored by state), and parallel coordinates of the
 * trials' params and objective (finished trials solid, pruned ones dashed). */

const STATE_COLOR = {finished: '#0969da', pruned: '#8c959f', failed: '#cf222e', running: '#1a7f37'};

function better(study, a, b) { return study.direction === 'minimize' ? a < b : a > b; }

async function renderStudies() {
  const list = $('#studies-list'), view = $('#study-view');
  let j;
  try {
    j = await getJSON('/api/studies');
  } catch (e) {
    list.replaceChildren(el('p', {class: 'error', text: e.message}));
    return;
  }
  if (!j.studies.length) {
    list.replaceChildren(el('p', {class: 'muted', text: 'No studies in this runs folder (kiln tune CONFIG makes one).'}));
    view.replaceChildren();
    return;
  }
  if (!S.study || !j.studies.some((s) => s.name === S.study)) S.study = j.studies[0].name;
  const cols = ['study', 'experiment', 'objective', 'trials', 'finished', 'pruned', 'failed', 'running', 'best', 'created'];
  const table = el('table', {class: 'studies'},
    el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', {text: c})))));
  const body = el('tbody');
  for (const st of j.studies) {
    body.append(el('tr', {'data-study': st.name, class: st.name === S.study ? 'current' : null,
      onclick: () => { S.study = st.name; saveHash(); renderStudies(); }},
      el('td', {}, el('a', {class: 'run-name', text: st.name})),
      el('td', {text: st.experiment}),
      el('td', {text: `${st.metric} (${st.direction === 'minimize' ? 'min' : 'max'})`}),
      ...['trials', 'finished', 'pruned', 'failed', 'running'].map((k) => el('td', {class: 'num', text: String(st[k])})),
      el('td', {class: 'num', text: fmt(st.best)}),
      el('td', {text: fmtTime(st.created)})));
  }
  table.append(body);
  list.replaceChildren(el('h2', {text: 'Studies'}), el('div', {class: 'table-wrap'}, table));
  let d;
  try {
    d = await getJSON(`/api/studies/${encodeURIComponent(S.study)}`);
  } catch (e) {
    view.replaceChildren(el('p', {class: 'error', text: e.message}));
    return;
  }
  renderStudy(view, d);
}

function renderStudy(view, d) {
  const st = d.study, trials = d.trials;
  const params = [], seen = new Set();
  for (const t of trials) for (const k of Object.keys(t.params || {})) if (!seen.has(k)) seen.add(k), params.push(k);
  let best = null;
  for (const t of trials)
    if (t.state === 'finished' && isNum(t.value) && (!best || better(st, t.value, best.value))) best = t;
  const head = el('tr', {}, el('th', {text: '#'}), el('th', {text: 'state'}),
    el('th', {class: 'num', text: st.metric}), el('th', {class: 'num', text: 'resource'}),
    ...params.map((p) => el('th', {title: p, text: p})), el('th', {text: 'run'}));
  const body = el('tbody');
  for (const t of trials) {
    const run = t.run && S.runs.has(t.run)
      ? el('a', {class: 'run-name', href: '#', text: splitKey(t.run)[1],
        onclick: (ev) => { ev.preventDefault(); S.detailsKey = t.run; setTab('details'); }})
      : el('span', {class: 'muted', text: t.run ? splitKey(t.run)[1] : '—'});
    body.append(el('tr', {'data-trial': String(t.number), 'data-state': t.state, title: t.message || null},
      el('td', {class: 'num', text: String(t.number)}),
      el('td', {}, el('span', {class: `status ${t.state}`, text: t.state})),
      el('td', {class: t === best ? 'num best' : 'num', text: fmt(t.value)}),
      el('td', {class: 'num', text: fmt(t.resource)}),
      ...params.map((p) => el('td', {class: typeof t.params?.[p] === 'number' ? 'num' : null,
        text: t.params?.[p] === undefined ? '—' : typeof t.params[p] === 'number' ? fmt(t.params[p]) : String(t.params[p])})),
      el('td', {}, run)));
  }
  const counts = ['finished', 'pruned', 'failed', 'running'].map((k) => `${st[k]} ${k}`).join(', ');
  const curve = el('div', {class: 'plot', id: 'study-best'}, el('h3', {text: `best ${st.metric} so far`}));
  const pc = el('div', {class: 'plot', id: 'study-pc'}, el('h3', {text: 'parallel coordinates'}));
  view.replaceChildren(
    el('h2', {text: `Study ${st.name}`}),
    el('p', {class: 'study-summary', text: `${st.trials} trials (${counts}); objective ${st.metric} ` +
      `(${st.direction === 'minimize' ? 'min' : 'max'}); best ${best ? `${fmt(best.value)} (trial ${best.number})` : '—'}`}),
    el('div', {class: 'plots'}, curve, pc),
    el('h3', {text: 'trials'}),
    el('div', {class: 'table-wrap trials'}, el('table', {class: 'trials'}, el('thead', {}, head), body)));
  drawBestCurve(curve, st, trials);
  const withValue = trials.filter((t) => isNum(t.value) && t.state !== 'failed');
  const pcBox = el('div');
  pc.append(pcBox);
  drawParallel(pcBox, withValue.map((t) => String(t.number)), withValue, params, {
    metric: st.metric, metricVals: withValue.map((t) => t.value),
    empty: 'Parallel coordinates need two or more trials with a value.',
    line: (key, j) => ({class: `pc-line ${withValue[j].state}`, 'data-trial': key,
      stroke: STATE_COLOR[withValue[j].state] || '#8c959f'}),
  });
}

/* The best finished value up to each trial number (a step line), and every trial's value. */
function drawBestCurve(box, st, trials) {
  const svg = svgEl('svg');
  box.append(svg);
  const pts = trials.filter((t) => isNum(t.value));
  if (!pts.length) {
    box.append(el('p', {class: 'muted', text: 'No trial has a value yet.'}));
    return;
  }
  const W = Math.max(380, Math.round(svg.getBoundingClientRect().width) || 480), H = 260;
  const M = {l: 56, r: 12, t: 10, b: 28};
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const n = Math.max(...trials.map((t) => t.number));
  let lo = Math.min(...pts.map((t) => t.value)), hi = Math.max(...pts.map((t) => t.value));
  if (hi === lo) lo -= 0.5, hi += 0.5;
  const sx = (x) => M.l + (n > 0 ? x / n : 0.5) * (W - M.l - M.r);
  const sy = (y) => H - M.b - (y - lo) / (hi - lo) * (H - M.t - M.b);
  const ax = svgEl('g', {class: 'axis'});
  ax.append(svgEl('line', {x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b}),
    svgEl('line', {x1: M.l, x2: M.l, y1: M.t, y2: H - M.b}));
  for (const v of niceTicks(lo, hi, 5)) {
    const t = svgEl('text', {x: M.l - 4, y: sy(v) + 3, 'text-anchor': 'end'});
    t.textContent = fmt(v);
    ax.append(t);
  }
  for (const v of niceTicks(0, Math.max(n, 1), Math.min(8, Math.max(n, 1))).filter(Number.isInteger)) {
    const t = svgEl('text', {x: sx(v), y: H - M.b + 14, 'text-anchor': 'middle'});
    t.textContent = String(v);
    ax.append(t);
  }
  const xl = svgEl('text', {x: (M.l + W - M.r) / 2, y: H - 2, 'text-anchor': 'middle'});
  xl.textContent = 'trial';
  ax.append(xl);
  svg.append(ax);
  let best = null, d = '';
  for (const t of trials) {
    if (t.state !== 'finished' || !isNum(t.value)) continue;
    if (best === null || better(st, t.value, best)) {
      d += best === null ? `M${sx(t.number).toFixed(1)},${sy(t.value).toFixed(1)}`
        : `H${sx(t.number).toFixed(1)}V${sy(t.value).toFixed(1)}`;
      best = t.value;
    }
  }
  if (best !== null) d += `H${sx(n).toFixed(1)}`;
  if (d) svg.append(svgEl('path', {class: 'best-line', d}));
  for (const t of pts) {
    const c = svgEl('circle', {class: `trial-dot ${t.state}`, 'data-trial': String(t.number),
      cx: sx(t.number).toFixed(1), cy: sy(t.value).toFixed(1), r: 3.5});
    const tt = svgEl('title');
    tt.textContent = `trial ${t.number} ${t.state}: ${fmt(t.value)}`;
    c.append(tt);
    svg.append(c);
  }
}

/* ---- tabs and controls ---- */

function setTab(tab) {
  S.tab = tab;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const s of document.querySelectorAll('section.tab')) s.hidden = s.id !== tab;
  saveHash();
  if (tab === 'curves') scheduleDraw();
  else if (tab === 'compare') renderCompare();
  else if (tab === 'studies') renderStudies();
  else renderDetails();
}

function bindControls() {
  let filterTimer = null;
  $('#filter').addEventListener('input', (ev) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { setFilter(ev.target.value); saveHash(); renderTable(); }, 120);
  });
  $('#select-shown').addEventListener('click', () => {
    for (const k of (S.shownKeys || []).slice(0, PALETTE.length * 2)) select(k);
    selectionChanged();
  });
  $('#select-none').addEventListener('click', () => {
    for (const k of S.selected.slice()) unselect(k);
    selectionChanged();
  });
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => setTab(b.dataset.tab));
  $('#xaxis').addEventListener('change', (ev) => { S.xaxis = ev.target.value; scheduleDraw(); });
  $('#smooth').addEventListener('input', (ev) => {
    S.smooth = Number(ev.target.value);
    $('#smooth-value').textContent = S.smooth.toFixed(2);
    scheduleDraw();
  });
  $('#log-all').addEventListener('change', (ev) => { S.logAll = ev.target.checked; scheduleDraw(); });
  $('#metric-filter').addEventListener('input', (ev) => { S.metricFilter = ev.target.value.trim(); scheduleDraw(); });
  $('#compare-all').addEventListener('change', (ev) => { S.compareAll = ev.target.checked; renderCompare(); });
  $('#pc-metric').addEventListener('change', (ev) => { S.pcMetric = ev.target.value; renderCompare(); });
  window.addEventListener('resize', scheduleDraw);
}

async function main() {
  bindControls();
  await refreshRuns();
  await pollMetrics();
  drawCharts();
  setInterval(refreshRuns, RUNS_EVERY_MS);
  setInterval(() => { if (S.tab === 'studies') renderStudies(); }, RUNS_EVERY_MS);
  setInterval(pollMetrics, METRICS_EVERY_MS);
}

main();
