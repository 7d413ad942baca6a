// One log line as DOM nodes, for the viewer (viewer.js).
//
// A line is text: it only ever becomes text nodes in spans, never markup.
// What the spans show: ANSI colours (SGR escapes; other escapes are dropped),
// the level word (ERROR, WARN...) coloured when the line has no colour of its
// own there, a JSON object's keys and values, and the filter's matches.

const ESCAPE = /\x1b(?:\[([0-9;:?]*)([ -/]*[@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
// The level: an upper-case word anywhere, or any case as logfmt, brackets and JSON write it.
const LEVEL_WORD = /\b(ERROR|ERR|FATAL|CRITICAL|WARN|WARNING|INFO|DEBUG|TRACE)\b/;
const LEVEL_TAGGED = /(?:\blevel=|\[|"level":\s*")(error|err|fatal|critical|warn|warning|info|debug|trace)\b/i;
// A JSON token: a string (a key when a colon follows), a number, a literal.
const JSON_TOKEN = /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b/g;

function colour256(n) {
  if (n < 16) return n;
  if (n >= 232) { const v = 8 + 10 * (n - 232); return `rgb(${v},${v},${v})`; }
  const level = (i) => (i ? 55 + 40 * i : 0);
  n -= 16;
  return `rgb(${level(Math.floor(n / 36))},${level(Math.floor(n / 6) % 6)},${level(n % 6)})`;
}

function applySgr(state, codes) {
  const list = codes === '' ? [0] : codes.split(/[;:]/).map(Number);
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === 0) Object.assign(state, {b: false, d: false, i: false, u: false, fg: null, bg: null});
    else if (c === 1) state.b = true;
    else if (c === 2) state.d = true;
    else if (c === 3) state.i = true;
    else if (c === 4) state.u = true;
    else if (c === 22) state.b = state.d = false;
    else if (c === 23) state.i = false;
    else if (c === 24) state.u = false;
    else if (c >= 30 && c <= 37) state.fg = c - 30;
    else if (c >= 90 && c <= 97) state.fg = c - 82;
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = c - 40;
    else if (c >= 100 && c <= 107) state.bg = c - 92;
    else if (c === 49) state.bg = null;
    else if (c === 38 || c === 48) {
      let value = null;
      if (list[i + 1] === 5) { value = colour256(list[i + 2] & 255); i += 2; }
      else if (list[i + 1] === 2) { value = `rgb(${list[i + 2] & 255},${list[i + 3] & 255},${list[i + 4] & 255})`; i += 4; }
      state[c === 38 ? 'fg' : 'bg'] = value;
    }
  }
}

// A line as plain text and its ANSI-styled runs: [start, end, state].
export function parse(line) {
  const runs = [];
  const state = {b: false, d: false, i: false, u: false, fg: null, bg: null};
  let plain = '';
  let last = 0;
  const take = (text) => {
    text = text.replace(CONTROL, '');
    if (text) { runs.push([plain.length, plain.length + text.length, {...state}]); plain += text; }
  };
  ESCAPE.lastIndex = 0;
  for (let m; (m = ESCAPE.exec(line));) {
    take(line.slice(last, m.index));
    if (m[2] === 'm') applySgr(state, m[1]);
    last = ESCAPE.lastIndex;
  }
  take(line.slice(last));
  return {plain, runs};
}

// The line's JSON object, or null when the line is not one.
export function jsonObject(plain) {
  if (!/^\s*\{[^]*\}\s*$/.test(plain)) return null;
  try {
    const value = JSON.parse(plain);
    return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
  } catch (e) {
    return null;
  }
}

// The first level word's [start, end, class], or null.
function level(plain) {
  const word = LEVEL_WORD.exec(plain);
  const tagged = LEVEL_TAGGED.exec(plain);
  const m = word && (!tagged || word.index <= tagged.index) ? word : tagged;
  if (!m) return null;
  const end = m.index + m[0].length;
  const c = m[1][0].toLowerCase(); // error, fatal, critical; warn; info; debug, trace
  return [end - m[1].length, end, `lv-${'efc'.includes(c) ? 'e' : c === 't' ? 'd' : c}`];
}

// A JSON text's tokens as [start, end, class].
function jsonTokens(text) {
  const found = [];
  JSON_TOKEN.lastIndex = 0;
  for (let m; (m = JSON_TOKEN.exec(text));) {
    const kind = m[1] ? (m[2] ? 'jk' : 'js') : m[3] ? 'jn' : 'jl';
    found.push([m.index, m.index + (m[1] || m[0]).length, kind]);
  }
  return found;
}

function classes(style) {
  const list = ['b', 'd', 'i', 'u'].filter((k) => style[k]);
  if (typeof style.fg === 'number') list.push(`f${style.fg}`);
  if (typeof style.bg === 'number') list.push(`k${style.bg}`);
  return list;
}

// Appends `plain` to `parent`, cut where any layer of [start, end, ...]
// ranges begins or ends: the ANSI runs, the level, JSON tokens, the marks.
function paintText(parent, plain, runs, decorations, marks) {
  const layers = [runs, decorations, marks];
  const cuts = new Set([0, plain.length]);
  for (const layer of layers) for (const [start, end] of layer) cuts.add(start).add(end);
  const points = [...cuts].sort((a, b) => a - b);
  const next = layers.map(() => 0);
  for (let p = 0; p + 1 < points.length; p++) {
    const [at, stop] = [points[p], points[p + 1]];
    const [run, decoration, mark] = layers.map((layer, k) => {
      while (next[k] < layer.length && layer[next[k]][1] <= at) next[k]++;
      const range = layer[next[k]];
      return range && range[0] <= at ? range : null;
    });
    let node = document.createTextNode(plain.slice(at, stop));
    if (mark) { const m = document.createElement('mark'); m.append(node); node = m; }
    const style = run ? run[2] : {};
    const list = classes(style);
    if (decoration) list.push(decoration[2]);
    if (list.length || typeof style.fg === 'string' || typeof style.bg === 'string') {
      const span = document.createElement('span');
      if (list.length) span.className = list.join(' ');
      if (typeof style.fg === 'string') span.style.color = style.fg;
      if (typeof style.bg === 'string') span.style.backgroundColor = style.bg;
      span.append(node);
      node = span;
    }
    parent.append(node);
  }
}

// Appends a line to `parent`: {plain, runs} from parse, `marks` the filter's
// [start, end] matches, `json` its object (jsonObject) or null, `open` whether
// that object is shown pretty-printed below the line too.
export function paint(parent, {plain, runs}, marks, json, open) {
  const decorations = json ? jsonTokens(plain) : [];
  const found = level(plain);
  if (found) {
    const inside = decorations.findIndex(([start, end]) => start <= found[0] && found[1] <= end);
    if (inside >= 0) decorations.splice(inside, 1);
    decorations.push(found);
    decorations.sort((a, b) => a[0] - b[0]);
  }
  paintText(parent, plain, runs, decorations, marks);
  if (json && open) {
    const pretty = document.createElement('div');
    pretty.className = 'pretty';
    const text = JSON.stringify(json, null, 2);
    paintText(pretty, text, [], jsonTokens(text), []);
    parent.append(pretty);
  }
}
