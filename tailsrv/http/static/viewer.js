// The tailsrv viewer: follows /stream with fetch and renders it as lines.
//
// It keeps the absolute byte position of what it has received (Tailsrv-Start
// plus the bytes since), so after a dropped connection it asks for exactly the
// next byte: nothing lost, nothing repeated. It proves that the file is still
// the one it was reading with the last bytes it received (before=, as the TCP
// resume proof); when the server says the file was replaced (Tailsrv-Replaced),
// it notes so and follows the new file from its start, as tail -F. Log text
// only ever becomes text nodes, never markup. Page URL options: ?lines=N (lines to open with, 1000),
// ?max=N (lines kept, 10000).
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const option = (key, fallback) => {
    const n = Number(params.get(key));
    return Number.isInteger(n) && n > 0 ? n : fallback;
  };
  const INITIAL_LINES = option('lines', 1000);
  const MAX_LINES = option('max', 10000);
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 10000;
  const PROOF_BYTES = 4096; // the most a resume proof covers (docs/rotation.md)
  const REPLACED = 'file replaced; following the new file';

  const $ = (id) => document.getElementById(id);
  const log = $('log');
  const filterBox = $('filter');
  const regexBox = $('regex');
  const pauseButton = $('pause');
  const statusText = $('status');
  const unseenButton = $('unseen');

  let position = null; // absolute byte of the next byte to receive; null: from the last lines
  let decoder = new TextDecoder('utf-8');
  let pending = ''; // text after the last newline: a line not complete yet
  let recent = new Uint8Array(0); // the last bytes received (up to PROOF_BYTES), before position
  let pendingRow = null;
  const entries = []; // the last MAX_LINES lines (strings) and notes ({note})
  let paused = false;
  let held = 0; // entries received while paused
  let following = true;
  let unseen = 0;
  let matcher = null; // null: every line; else {regex} or {text}
  let name = 'tailsrv';

  // ---- ANSI SGR escapes: colours and weights as classes, the rest stripped.
  const ESCAPE = /\x1b(?:\[([0-9;:?]*)([ -/]*[@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;
  const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

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

  // A line as plain text and styled runs over it.
  function parse(line) {
    const runs = [];
    const state = {b: false, d: false, i: false, u: false, fg: null, bg: null};
    let plain = '';
    let last = 0;
    const take = (text) => {
      text = text.replace(CONTROL, '');
      if (text) { runs.push({start: plain.length, end: plain.length + text.length, style: {...state}}); plain += text; }
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

  // ---- Filtering.
  function ranges(plain) {
    if (!matcher) return [];
    const found = [];
    if (matcher.regex) {
      const re = matcher.regex;
      re.lastIndex = 0;
      for (let m; (m = re.exec(plain));) {
        if (m[0].length === 0) { re.lastIndex++; continue; }
        found.push([m.index, m.index + m[0].length]);
      }
    } else {
      const haystack = plain.toLowerCase();
      for (let at = haystack.indexOf(matcher.text); at >= 0; at = haystack.indexOf(matcher.text, at + matcher.text.length)) {
        found.push([at, at + matcher.text.length]);
      }
    }
    return found;
  }

  function setFilter() {
    const query = filterBox.value;
    filterBox.classList.remove('invalid');
    matcher = null;
    if (query && regexBox.checked) {
      try { matcher = {regex: new RegExp(query, 'giu')}; } catch (e) { filterBox.classList.add('invalid'); }
    } else if (query) {
      matcher = {text: query.toLowerCase()};
    }
    renderAll();
  }

  // ---- Rendering.
  function styled(node, style) {
    const classes = [];
    for (const k of ['b', 'd', 'i', 'u']) if (style[k]) classes.push(k);
    if (typeof style.fg === 'number') classes.push(`f${style.fg}`);
    if (typeof style.bg === 'number') classes.push(`k${style.bg}`);
    if (!classes.length && !style.fg && !style.bg) return node;
    const span = document.createElement('span');
    if (classes.length) span.className = classes.join(' ');
    if (typeof style.fg === 'string') span.style.color = style.fg;
    if (typeof style.bg === 'string') span.style.backgroundColor = style.bg;
    span.append(node);
    return span;
  }

  // The row for a line, or null when the filter hides it.
  function row(line, className) {
    const {plain, runs} = parse(line);
    const marks = ranges(plain);
    if (matcher && !marks.length) return null;
    const div = document.createElement('div');
    div.className = className;
    let r = 0;
    for (const run of runs) {
      for (let at = run.start; at < run.end;) {
        while (r < marks.length && marks[r][1] <= at) r++;
        let stop = run.end;
        let marked = false;
        if (r < marks.length) {
          marked = marks[r][0] <= at;
          stop = Math.min(run.end, marked ? marks[r][1] : marks[r][0]);
        }
        let node = document.createTextNode(plain.slice(at, stop));
        if (marked) { const mark = document.createElement('mark'); mark.append(node); node = mark; }
        div.append(styled(node, run.style));
        at = stop;
      }
    }
    return div;
  }

  function entryRow(entry) {
    if (typeof entry === 'string') return row(entry, 'line');
    const div = document.createElement('div');
    div.className = 'note';
    div.textContent = entry.note;
    return div;
  }

  function render(list) {
    const fragment = document.createDocumentFragment();
    for (const entry of list) {
      const div = entryRow(entry);
      if (div) fragment.append(div);
    }
    log.insertBefore(fragment, pendingRow);
    let extra = log.childElementCount - (pendingRow ? 1 : 0) - MAX_LINES;
    while (extra-- > 0) log.firstElementChild.remove();
  }

  function renderAll() {
    log.textContent = '';
    pendingRow = null;
    render(entries);
    showPending();
    if (following) scrollToEnd();
  }

  function showPending() {
    if (paused) return;
    const div = pending ? row(pending, 'line pending') : null;
    if (pendingRow) pendingRow.remove();
    pendingRow = div;
    if (div) log.append(div);
    if (following) scrollToEnd();
  }

  function add(list) {
    entries.push(...list);
    if (entries.length > MAX_LINES) entries.splice(0, entries.length - MAX_LINES);
    if (paused) {
      held += list.length;
      showStatus();
      return;
    }
    // Scrolled away since the last scroll event? Then this is not for following.
    if (following && !atEnd()) following = false;
    render(list);
    arrived(list.length);
  }

  function arrived(count) {
    if (following) scrollToEnd();
    else { unseen += count; showUnseen(); }
  }

  function note(text) {
    add([{note: text}]);
  }

  // ---- Scrolling, the new-lines counter, pausing.
  const atEnd = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 8;
  function scrollToEnd() { window.scrollTo(0, document.documentElement.scrollHeight); }

  function showUnseen() {
    unseenButton.hidden = unseen === 0;
    unseenButton.textContent = `${unseen} new line${unseen === 1 ? '' : 's'} ↓`;
    document.title = unseen ? `(${unseen}) ${name}` : name;
  }

  window.addEventListener('scroll', () => {
    following = atEnd();
    if (following && unseen) { unseen = 0; showUnseen(); }
  });
  unseenButton.addEventListener('click', scrollToEnd);

  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    pauseButton.setAttribute('aria-pressed', String(paused));
    if (!paused && held) {
      render(entries.slice(-held));
      arrived(held);
      held = 0;
    }
    showPending();
    showStatus();
  });

  filterBox.addEventListener('input', setFilter);
  regexBox.addEventListener('change', setFilter);
  filterBox.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { filterBox.value = ''; setFilter(); filterBox.blur(); event.preventDefault(); }
  });
  document.addEventListener('keydown', (event) => {
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
    if (event.key === '/' && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      filterBox.focus();
      filterBox.select();
    }
  });

  // ---- The stream.
  let state = 'connecting…';
  let bad = false;
  function showStatus(text, isBad) {
    if (text !== undefined) { state = text; bad = Boolean(isBad); }
    statusText.textContent = paused ? `paused, ${held} new line${held === 1 ? '' : 's'} held · ${state}` : state;
    statusText.classList.toggle('bad', bad);
  }

  function remember(bytes) {
    if (bytes.length >= PROOF_BYTES) { recent = bytes.slice(bytes.length - PROOF_BYTES); return; }
    const keep = Math.min(recent.length, PROOF_BYTES - bytes.length);
    const next = new Uint8Array(keep + bytes.length);
    next.set(recent.subarray(recent.length - keep));
    next.set(bytes, keep);
    recent = next;
  }

  // The bytes as base64url without padding, for the before= parameter.
  function base64url(bytes) {
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // A new file from its start: the old one's unfinished line ends here, then the note.
  function replaced() {
    const rest = pending + decoder.decode();
    decoder = new TextDecoder('utf-8');
    pending = '';
    recent = new Uint8Array(0);
    add([...(rest ? [rest.endsWith('\r') ? rest.slice(0, -1) : rest] : []), {note: REPLACED}]);
    showPending();
  }

  function receive(bytes) {
    remember(bytes);
    position += bytes.length;
    log.dataset.position = position; // where a reconnect resumes (read by the tests)
    const parts = (pending + decoder.decode(bytes, {stream: true})).split('\n');
    pending = parts.pop();
    if (parts.length) add(parts.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line)));
    showPending();
  }

  // Follows the stream until the server ends it in order (or throws).
  async function follow() {
    // Nothing received yet, so nothing shown and nothing to prove: start afresh.
    if (position && !recent.length) position = null;
    const start = position === null ? `-${INITIAL_LINES}l` : String(position);
    const before = position ? `&before=${base64url(recent)}` : '';
    const response = await fetch(`stream?start=${encodeURIComponent(start)}${before}`, {cache: 'no-store'});
    if (!response.ok) throw new Error(`${response.status}: ${(await response.text()).trim()}`);
    const size = Number(response.headers.get('Tailsrv-Size'));
    name = decodeURIComponent(response.headers.get('Tailsrv-Name') || 'tailsrv');
    $('name').textContent = name;
    showUnseen();
    if (position !== null && position > size) {
      // The file shrank below what we have: our position means nothing in it now.
      await response.body.cancel();
      note(`The file was truncated to ${size} bytes; showing it again from its last lines.`);
      position = null;
      decoder = new TextDecoder('utf-8');
      pending = '';
      recent = new Uint8Array(0);
      showPending();
      return follow();
    }
    if (response.headers.get('Tailsrv-Replaced') === '1') {
      replaced();
      position = null;
    }
    if (position === null) position = Number(response.headers.get('Tailsrv-Start'));
    log.dataset.position = position;
    showStatus('live');
    retry = RETRY_FIRST_MS;
    const reader = response.body.getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      receive(value);
    }
  }

  let retry = RETRY_FIRST_MS;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function run() {
    for (;;) {
      let why;
      try {
        await follow();
        why = 'the server ended the stream (stopping, or the file was truncated or removed)';
      } catch (error) {
        why = error instanceof TypeError ? 'connection lost' : String(error.message || error);
      }
      showStatus(`${why}; reconnecting in ${(retry / 1000).toFixed(1)} s`, true);
      await sleep(retry);
      retry = Math.min(retry * 2, RETRY_MAX_MS);
      showStatus('reconnecting…', true);
    }
  }

  run();
})();
