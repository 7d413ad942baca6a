// The tailsrv viewer: follows /stream with fetch and renders it as lines.
//
// Each file followed keeps the absolute byte position of what it received
// (Tailsrv-Start plus the bytes since): after a dropped connection it asks for
// exactly the next byte, proving with the last bytes received that the file
// is still the same (before=, as the TCP resume proof); when the server says
// it was replaced (Tailsrv-Replaced), it notes so and follows the new file
// from its start, as tail -F. Log text only ever becomes text (paint.js).
//
// Several files served (GET /files): the page opens on their list; ?file=A
// follows one, ?file=A&file=B several in one view, interleaved as lines
// arrive, each line marked with its file. ?lines=N: lines to open with (1000
// a file); ?max=N: lines kept (10000).
import {jsonObject, paint, parse} from './paint.js';

const params = new URLSearchParams(location.search);
const option = (key, fallback) => {
  const n = Number(params.get(key));
  return Number.isInteger(n) && n > 0 ? n : fallback;
};
const INITIAL_LINES = option('lines', 1000);
const MAX_LINES = option('max', 10000);
const FILES = params.getAll('file');
const MERGED = FILES.length > 1;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
const LIST_EVERY_MS = 1000; // a new file listed within 2 s
const PROOF_BYTES = 4096; // the most a resume proof covers (docs/rotation.md)
const REPLACED = 'file replaced; following the new file';
const TAG_COLOURS = [4, 5, 6, 2, 3, 13]; // a merged view's file tags: ANSI's, not red

const $ = (id) => document.getElementById(id);
const log = $('log');
const filterBox = $('filter');
const regexBox = $('regex');
const excludeBox = $('exclude');
const statusText = $('status');
const unseenButton = $('unseen');
const number = (n) => n.toLocaleString();

const entries = []; // the last MAX_LINES lines {file, text, ...} and notes {file, note}
const pendingRows = new Map(); // follower -> the row of its line not complete yet
let lineCount = 0; // lines in entries
let shownCount = 0; // of those, the ones the filter shows
let paused = false;
let held = 0; // entries received while paused
let following = true;
let unseen = 0;
let matcher = null; // null: every line; else {regex} or {text}, and exclude
let invalid = ''; // why the regular expression is not one
let title = 'tailsrv';

// ---- Filtering: an entry's marks ([start, end] matches), or null when hidden.
function ranges(plain) {
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

function classify(entry) {
  if (entry.note !== undefined) return;
  if (!entry.parsed) {
    entry.parsed = parse(entry.text);
    entry.json = jsonObject(entry.parsed.plain);
  }
  const found = matcher ? ranges(entry.parsed.plain) : [];
  entry.marks = !matcher || Boolean(found.length) !== matcher.exclude ? found : null;
}

function count(list, sign) {
  for (const entry of list) {
    if (entry.note !== undefined) continue;
    lineCount += sign;
    if (entry.marks) shownCount += sign;
  }
}

function setFilter() {
  const query = filterBox.value;
  matcher = null;
  invalid = '';
  if (query && regexBox.checked) {
    try { matcher = {regex: new RegExp(query, 'giu')}; } catch (e) { invalid = e.message; }
  } else if (query) {
    matcher = {text: query.toLowerCase()};
  }
  if (matcher) matcher.exclude = excludeBox.checked;
  filterBox.classList.toggle('invalid', Boolean(invalid));
  filterBox.title = invalid;
  entries.forEach(classify);
  lineCount = shownCount = 0;
  count(entries, 1);
  showCount();
  renderAll();
}

function showCount() {
  const counter = $('count');
  counter.classList.toggle('bad', Boolean(invalid));
  if (invalid) counter.textContent = 'invalid regular expression';
  else if (!matcher) counter.textContent = `${number(lineCount)} line${lineCount === 1 ? '' : 's'}`;
  else counter.textContent = `${number(shownCount)} of ${number(lineCount)} lines`;
  $('empty').hidden = !matcher || shownCount > 0;
}

// ---- Rendering.
function entryRow(entry, pending) {
  const div = document.createElement('div');
  if (entry.note !== undefined) {
    div.className = 'note';
    div.textContent = MERGED ? `${entry.file}: ${entry.note}` : entry.note;
    return div;
  }
  if (!entry.marks) return null;
  div.className = pending ? 'line pending' : 'line';
  div.entry = entry;
  if (MERGED) {
    div.dataset.file = entry.file;
    const tag = document.createElement('span');
    tag.className = `tag k${TAG_COLOURS[FILES.indexOf(entry.file) % 6]}`;
    tag.textContent = entry.file;
    div.append(tag);
  }
  if (entry.json && !pending) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'expand';
    button.setAttribute('aria-expanded', String(Boolean(entry.open)));
    button.setAttribute('aria-label', 'pretty-print this JSON');
    div.append(button);
  }
  paint(div, entry.parsed, entry.marks, entry.json, entry.open);
  return div;
}

function render(list) {
  const fragment = document.createDocumentFragment();
  for (const entry of list) {
    const div = entryRow(entry);
    if (div) fragment.append(div);
  }
  log.insertBefore(fragment, log.querySelector('.pending'));
  let extra = log.childElementCount - pendingRows.size - MAX_LINES;
  while (extra-- > 0) log.firstElementChild.remove();
}

function renderAll() {
  log.textContent = '';
  pendingRows.clear();
  render(paused && held ? entries.slice(0, -held) : entries);
  for (const follower of followers) showPending(follower);
  if (following) scrollToEnd();
}

function showPending(follower) {
  if (paused) return;
  const old = pendingRows.get(follower);
  if (old) old.remove();
  pendingRows.delete(follower);
  if (follower.pending) {
    const entry = {file: follower.file, text: follower.pending};
    classify(entry);
    const div = entryRow(entry, true);
    if (div) { pendingRows.set(follower, div); log.append(div); }
  }
  if (following) scrollToEnd();
}

function add(list) {
  list.forEach(classify);
  entries.push(...list);
  count(list, 1);
  if (entries.length > MAX_LINES) count(entries.splice(0, entries.length - MAX_LINES), -1);
  showCount();
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

// ---- Scrolling, the new-lines counter, pausing, wrapping.
const atEnd = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 8;
function scrollToEnd() { window.scrollTo(0, document.documentElement.scrollHeight); }

function showUnseen() {
  unseenButton.hidden = unseen === 0;
  unseenButton.textContent = `${unseen} new line${unseen === 1 ? '' : 's'} ↓`;
  document.title = unseen ? `(${unseen}) ${title}` : title;
}

window.addEventListener('scroll', () => {
  following = atEnd();
  if (following && unseen) { unseen = 0; showUnseen(); }
});
unseenButton.addEventListener('click', scrollToEnd);

$('pause').addEventListener('click', (event) => {
  paused = !paused;
  event.target.setAttribute('aria-pressed', String(paused));
  event.target.textContent = paused ? 'Resume' : 'Pause';
  if (!paused && held) {
    render(entries.slice(-held));
    arrived(held);
    held = 0;
  }
  for (const follower of followers) showPending(follower);
  showStatus();
});

$('wrap').addEventListener('change', (event) => log.classList.toggle('nowrap', !event.target.checked));

log.addEventListener('click', (event) => {
  const button = event.target.closest('.expand');
  if (!button) return;
  const div = button.parentElement;
  div.entry.open = !div.entry.open;
  div.replaceWith(entryRow(div.entry));
});

filterBox.addEventListener('input', setFilter);
regexBox.addEventListener('change', setFilter);
excludeBox.addEventListener('change', setFilter);
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

// ---- Copy and download: the lines the filter shows, as text.
function shownText() {
  const lines = [];
  for (const entry of entries) {
    if (entry.marks) lines.push(MERGED ? `${entry.file}: ${entry.parsed.plain}` : entry.parsed.plain);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

$('copy').addEventListener('click', async (event) => {
  const text = shownText();
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) { // not a secure context (http to another host)
    const area = document.createElement('textarea');
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  event.target.textContent = 'Copied';
  setTimeout(() => { event.target.textContent = 'Copy'; }, 1500);
});

$('download').addEventListener('click', () => {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([shownText()], {type: 'text/plain'}));
  link.download = `${title.replace(/[^\w.-]+/g, '_')}.txt`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
});

// ---- The status: each follower's state, the held lines.
function showStatus() {
  const shown = followers.find((f) => f.bad) || followers.find((f) => f.state !== 'live') || followers[0];
  const state = MERGED && shown.state !== 'live' ? `${shown.file}: ${shown.state}` : shown.state;
  statusText.textContent = paused ? `paused, ${held} new line${held === 1 ? '' : 's'} held · ${state}` : state;
  statusText.classList.toggle('bad', shown.bad);
}

// Where each follower resumes (read by the tests).
function showPositions() {
  if (MERGED) log.dataset.positions = JSON.stringify(Object.fromEntries(followers.map((f) => [f.file, f.position])));
  else log.dataset.position = followers[0].position;
}

// The bytes as base64url without padding, for the before= parameter.
function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One file's stream, followed for good: `file` is its name, or null for the
// only file of a server that names none.
class Follower {
  constructor(file) {
    this.file = file;
    this.position = null; // absolute byte of the next byte to receive; null: from the last lines
    this.restart();
    this.state = 'connecting…';
    this.bad = false;
    this.retry = RETRY_FIRST_MS;
  }

  // Nothing of a file received yet.
  restart() {
    this.decoder = new TextDecoder('utf-8');
    this.pending = ''; // text after the last newline: a line not complete yet
    this.recent = new Uint8Array(0); // the last bytes received (up to PROOF_BYTES), before position
  }

  setState(text, bad) {
    this.state = text;
    this.bad = Boolean(bad);
    showStatus();
  }

  note(text) {
    add([{file: this.file, note: text}]);
  }

  lines(parts) {
    add(parts.map((line) => ({file: this.file, text: line.endsWith('\r') ? line.slice(0, -1) : line})));
  }

  remember(bytes) {
    const recent = this.recent;
    if (bytes.length >= PROOF_BYTES) { this.recent = bytes.slice(bytes.length - PROOF_BYTES); return; }
    const keep = Math.min(recent.length, PROOF_BYTES - bytes.length);
    this.recent = new Uint8Array(keep + bytes.length);
    this.recent.set(recent.subarray(recent.length - keep));
    this.recent.set(bytes, keep);
  }

  // A new file from its start: the old one's unfinished line ends here, then the note.
  replaced() {
    const rest = this.pending + this.decoder.decode();
    this.restart();
    if (rest) this.lines([rest]);
    this.note(REPLACED);
    showPending(this);
  }

  receive(bytes) {
    this.remember(bytes);
    this.position += bytes.length;
    showPositions();
    const parts = (this.pending + this.decoder.decode(bytes, {stream: true})).split('\n');
    this.pending = parts.pop();
    if (parts.length) this.lines(parts);
    showPending(this);
  }

  // Follows the stream until the server ends it in order (or throws).
  async follow() {
    // Nothing received yet, so nothing shown and nothing to prove: start afresh.
    if (this.position && !this.recent.length) this.position = null;
    const query = new URLSearchParams();
    if (this.file !== null) query.set('file', this.file);
    query.set('start', this.position === null ? `-${INITIAL_LINES}l` : String(this.position));
    if (this.position) query.set('before', base64url(this.recent));
    const response = await fetch(`stream?${query}`, {cache: 'no-store'});
    if (!response.ok) throw new Error(`${response.status}: ${(await response.text()).trim()}`);
    const size = Number(response.headers.get('Tailsrv-Size'));
    if (!FILES.length) {
      title = decodeURIComponent(response.headers.get('Tailsrv-Name') || 'tailsrv');
      $('name').textContent = title;
      showUnseen();
    }
    if (this.position !== null && this.position > size) {
      // The file shrank below what we have: our position means nothing in it now.
      await response.body.cancel();
      this.note(`The file was truncated to ${size} bytes; showing it again from its last lines.`);
      this.position = null;
      this.restart();
      showPending(this);
      return this.follow();
    }
    if (response.headers.get('Tailsrv-Replaced') === '1') {
      this.replaced();
      this.position = null;
    }
    if (this.position === null) this.position = Number(response.headers.get('Tailsrv-Start'));
    showPositions();
    this.setState('live');
    this.retry = RETRY_FIRST_MS;
    const reader = response.body.getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      this.receive(value);
    }
  }

  async run() {
    for (;;) {
      let why;
      try {
        await this.follow();
        why = 'the server ended the stream (stopping, or the file was truncated or removed)';
      } catch (error) {
        why = error instanceof TypeError ? 'connection lost' : String(error.message || error);
      }
      this.setState(`${why}; reconnecting in ${(this.retry / 1000).toFixed(1)} s`, true);
      await sleep(this.retry);
      this.retry = Math.min(this.retry * 2, RETRY_MAX_MS);
      this.setState('reconnecting…', true);
    }
  }
}

const followers = [];

function view(files) {
  if (FILES.length) {
    title = FILES.join(' + ');
    $('name').textContent = title;
    showUnseen();
    log.style.setProperty('--tag', `${Math.max(...FILES.map((f) => f.length))}ch`);
  }
  for (const file of files) followers.push(new Follower(file));
  showCount();
  for (const follower of followers) follower.run();
}

// ---- Several files served: their list, and a menu to switch between them.
const opening = (names) => {
  const query = new URLSearchParams(params);
  query.delete('file');
  for (const name of names) query.append('file', name);
  return `?${query}`;
};

// The files served (GET /files), or null from a server that does not list them.
async function served() {
  const response = await fetch('files', {cache: 'no-store'});
  return response.ok ? response.json() : null;
}

function size(n) {
  let unit = 0;
  for (; n >= 1024 && unit < 4; unit++) n /= 1024;
  return unit ? `${n.toFixed(1)} ${' KMGT'[unit]}iB` : `${n} B`;
}

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

const rows = new Map(); // file name -> its row in the list

// Only what changed: 10,000 rows rewritten every second keep a core busy.
function set(node, key, value) {
  if (node[key] !== value) node[key] = value;
}

function showList(files) {
  const names = new Set(files.map((f) => f.name));
  for (const [name, row] of rows) if (!names.has(name)) { row.remove(); rows.delete(name); }
  let previous = null;
  for (const {name, size: bytes, modified} of files) {
    let row = rows.get(name);
    if (!row) {
      row = document.createElement('tr');
      const tick = Object.assign(document.createElement('input'), {type: 'checkbox', value: name});
      tick.setAttribute('aria-label', `tick ${name}`);
      row.insertCell().append(tick);
      row.insertCell().append(Object.assign(document.createElement('a'), {href: opening([name]), textContent: name}));
      row.insertCell().className = 'size';
      row.insertCell();
      rows.set(name, row);
    }
    set(row.cells[2], 'textContent', size(bytes));
    set(row.cells[3], 'textContent', ago(modified));
    set(row.cells[3], 'title', new Date(modified * 1000).toLocaleString());
    if (!row.parentNode || row.previousSibling !== previous) { // in the server's order, by name
      if (previous) previous.after(row); else $('files').prepend(row);
    }
    previous = row;
  }
  set(statusText, 'textContent', `${number(files.length)} file${files.length === 1 ? '' : 's'}`);
  statusText.classList.remove('bad');
}

async function list(files) {
  document.body.classList.add('listing');
  $('list').hidden = false;
  const ticked = () => [...$('files').querySelectorAll('input:checked')].map((tick) => tick.value);
  $('files').addEventListener('change', () => { $('together').disabled = !ticked().length; });
  $('together').addEventListener('click', () => { location.search = opening(ticked()); });
  for (;;) {
    if (files) showList(files);
    await sleep(LIST_EVERY_MS);
    try {
      files = await served();
    } catch (error) {
      files = null;
      statusText.textContent = 'connection lost; retrying';
      statusText.classList.add('bad');
    }
  }
}

function menu(files) {
  const menu = $('switch');
  menu.hidden = $('all').hidden = false;
  $('name').hidden = true; // the menu shows it
  menu.add(new Option(title, '', true, true));
  menu.options[0].disabled = true;
  for (const {name} of files) menu.add(new Option(name, name));
  menu.addEventListener('change', () => { location.search = opening([menu.value]); });
}

async function start() {
  const files = await served().catch(() => null);
  if (!FILES.length && files && files.length !== 1) return list(files);
  view(FILES.length ? FILES : [null]);
  if (files && files.length > 1) menu(files);
}

start();
