"""The --http viewer page in a real headless Chromium (Debian's), driven by
Playwright. One browser for the module; each test opens its own page on its
own server. Every wait is bounded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import append, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for a headless browser that reaches nothing but loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
#: The issue's promise: an appended line shows within a second.
LIVE_MS = 1000
#: Everything else the page does, bounded.
WAIT_MS = 10000
#: The page follows its file.
FOLLOWING = "() => document.getElementById('log').dataset.position !== undefined"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (CI installs it: .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def viewer(browser, start_server, logfile):
    """open(query="", *args, path=logfile, ready=FOLLOWING) -> (page, server):
    the page on a fresh tailsrv --http serving path, once ready (JavaScript) holds."""
    pages = []

    def open_page(query: str = "", *args: str, path: Path = None, ready: str = FOLLOWING):
        for attempt in range(3):  # free ports are taken from under us on a busy machine
            port = free_port()
            try:
                server = start_server(path or logfile, "--http", f"127.0.0.1:{port}", *args)
                break
            except AssertionError as error:
                if "Address already in use" not in str(error) or attempt == 2:
                    raise
        page = browser.new_page(viewport={"width": 1000, "height": 600}, locale="en-US",
                                permissions=["clipboard-read", "clipboard-write"])
        page.set_default_timeout(WAIT_MS)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
        page.errors = errors
        pages.append(page)
        page.goto(f"http://127.0.0.1:{port}/{query}")
        page.wait_for_function(ready)
        if ready == FOLLOWING:  # and the lines there were, shown: not only the response's head
            received(page, path or logfile)
        return page, server

    yield open_page
    for page in pages:
        assert not page.errors
        page.close()


def shown(page) -> list:
    """The complete lines the page shows, as text."""
    return page.eval_on_selector_all("#log .line:not(.pending)", "rows => rows.map(r => r.textContent)")


def received(page, logfile: Path) -> None:
    """Wait until the page has every byte of the file."""
    size = logfile.stat().st_size
    page.wait_for_function(f"() => Number(document.getElementById('log').dataset.position) === {size}")


def test_last_lines_then_live_appends(viewer, logfile):
    logfile.write_text("".join(f"line {i}\n" for i in range(1500)))
    page, _ = viewer()
    assert shown(page) == [f"line {i}" for i in range(500, 1500)]
    assert page.title() == "app.log"
    assert page.is_hidden("#switch") and page.is_hidden("#all")  # one file: no list
    append(logfile, b"fresh\n")
    page.wait_for_function("() => document.querySelector('#log .line:last-child').textContent === 'fresh'",
                           timeout=LIVE_MS)


def test_lines_and_max_options_bound_the_dom(viewer, logfile):
    logfile.write_text("".join(f"line {i}\n" for i in range(300)))
    page, _ = viewer("?lines=200&max=50")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 50")
    append(logfile, "".join(f"more {i}\n" for i in range(10)).encode())
    received(page, logfile)
    assert shown(page) == [f"line {i}" for i in range(260, 300)] + [f"more {i}" for i in range(10)]


def test_markup_is_text_and_ansi_is_colour(viewer, logfile):
    logfile.write_bytes(b"<img src=x onerror=alert(1)>\n\x1b[1;31mred\x1b[0m plain \x1b[2K\n")
    page, _ = viewer()
    assert shown(page) == ["<img src=x onerror=alert(1)>", "red plain "]
    assert page.query_selector("#log img") is None
    assert page.eval_on_selector("#log .f1", "e => e.textContent + ' ' + e.className") == "red b f1"


def test_utf8_split_across_appends_and_a_pending_line(viewer, logfile):
    logfile.write_bytes(b"")
    page, _ = viewer()
    text = "caf\u00e9 \u20ac \U0001F600".encode()
    append(logfile, text[:4])  # half of the e-acute
    received(page, logfile)
    append(logfile, text[4:-2])  # half of the emoji
    received(page, logfile)
    page.wait_for_function("() => document.querySelector('#log .pending') !== null")
    append(logfile, text[-2:] + b" done\n")
    received(page, logfile)
    assert shown(page) == ["caf\u00e9 \u20ac \U0001F600 done"]
    assert page.query_selector("#log .pending") is None


def test_filter_highlights_and_regex(viewer, logfile):
    logfile.write_text("INFO start\nERROR disk full\ninfo ok\nWarn error-ish\n")
    page, _ = viewer()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "filter"
    page.keyboard.type("error")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 2")
    assert shown(page) == ["ERROR disk full", "Warn error-ish"]
    assert page.eval_on_selector_all("#log mark", "m => m.map(e => e.textContent)") == \
        ["ERROR", "error"]
    append(logfile, b"no match\nanother ERROR\n")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 3")
    page.check("#regex")
    page.fill("#filter", "^info")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 2")
    assert shown(page) == ["INFO start", "info ok"]
    page.press("#filter", "Escape")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 6")
    assert page.input_value("#filter") == ""


def test_filter_counts_says_when_nothing_matches_and_excludes(viewer, logfile):
    logfile.write_text("".join(f"line {i}{' needle' if i % 80 == 0 else ''}\n" for i in range(960)))
    page, _ = viewer()
    assert page.inner_text("#count") == "960 lines"
    page.fill("#filter", "needle")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 12")
    assert page.inner_text("#count") == "12 of 960 lines"
    assert page.is_hidden("#empty")
    page.fill("#filter", "nowhere")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 0")
    assert page.inner_text("#count") == "0 of 960 lines"
    assert page.inner_text("#empty") == "No line matches the filter."
    assert page.inner_text("#status") == "live"
    append(logfile, "".join(f"more {i}\n" for i in range(40)).encode() + b"nowhere else\n")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 1")
    assert page.inner_text("#count") == "1 of 1,001 lines"
    assert page.is_hidden("#empty")
    page.check("#regex")
    page.fill("#filter", "needle(")
    page.wait_for_function("() => document.getElementById('filter').classList.contains('invalid')")
    assert page.inner_text("#count") == "invalid regular expression"
    assert "invalid regular expression" in page.get_attribute("#filter", "title").lower()
    append(logfile, b"while invalid\n")
    received(page, logfile)
    assert page.inner_text("#count") == "invalid regular expression"
    page.fill("#filter", "^(line|more) \\d+$")
    page.check("#exclude")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 14")
    assert shown(page) == [f"line {i} needle" for i in range(0, 960, 80)] + ["nowhere else",
                                                                            "while invalid"]
    assert page.inner_text("#count") == "14 of 1,002 lines"
    assert page.query_selector("#log mark") is None


def test_wrapped_lines_hang_and_wrapping_toggles(viewer, logfile):
    logfile.write_text("start " + "word " * 400 + "end\nnext line\n")
    page, _ = viewer()
    geometry = """() => {
        const row = document.querySelector('#log .line');
        const range = document.createRange();
        range.selectNodeContents(row);
        const rects = [...range.getClientRects()];
        const height = parseFloat(getComputedStyle(row).lineHeight);
        return {lines: Math.round(row.getBoundingClientRect().height / height),
                first: rects[0].left, rest: rects[rects.length - 1].left,
                wide: document.getElementById('log').scrollWidth > document.getElementById('log').clientWidth};
    }"""
    wrapped = page.evaluate(geometry)
    assert wrapped["lines"] > 2 and not wrapped["wide"]
    assert wrapped["rest"] > wrapped["first"] + 10  # the rest of the line is indented
    assert page.is_checked("#wrap")
    page.uncheck("#wrap")
    unwrapped = page.evaluate(geometry)
    assert unwrapped["lines"] == 1 and unwrapped["wide"]
    assert shown(page) == ["start " + "word " * 400 + "end", "next line"]
    page.check("#wrap")
    assert page.evaluate(geometry)["lines"] == wrapped["lines"]


def test_level_words_are_coloured_without_ansi(viewer, logfile):
    logfile.write_bytes(b"05:00 ERROR disk full\nWARNING: low\nx WARN y\n05:01 INFO ok\n"
                        b"DEBUG z\nlevel=error msg=x\n[warn] nginx\nno error here, Info\n"
                        b"\x1b[34mERROR\x1b[0m blue\n")
    page, _ = viewer()
    levels = page.eval_on_selector_all(
        "#log [class*=lv-]", "s => s.map(e => [e.textContent, e.className, getComputedStyle(e).color])")
    assert [level[:2] for level in levels] == [
        ["ERROR", "lv-e"], ["WARNING", "lv-w"], ["WARN", "lv-w"], ["INFO", "lv-i"],
        ["DEBUG", "lv-d"], ["error", "lv-e"], ["warn", "lv-w"], ["ERROR", "f4 lv-e"]]
    text_colour = page.eval_on_selector("#log", "e => getComputedStyle(e).color")
    colours = {name: colour for _, name, colour in levels}
    assert len({colours["lv-e"], colours["lv-w"], colours["lv-i"], text_colour}) == 4
    assert colours["f4 lv-e"] != colours["lv-e"]  # the line's own colour wins
    assert shown(page)[-1] == "ERROR blue"


def test_json_lines_show_keys_and_values_and_expand(viewer, logfile):
    line = '{"level":"info","msg":"<img src=x onerror=alert(1)>","port":8080,"ok":true,"tags":["a",null]}'
    logfile.write_text(line + "\n{not json}\n[1, 2]\n")
    page, _ = viewer()
    assert shown(page) == [line, "{not json}", "[1, 2]"]
    tokens = page.eval_on_selector_all(
        "#log .line:first-child span", "s => s.map(e => [e.className, e.textContent])")
    assert tokens == [["jk", '"level"'], ["lv-i", "info"], ["jk", '"msg"'],
                      ["js", '"<img src=x onerror=alert(1)>"'], ["jk", '"port"'], ["jn", "8080"],
                      ["jk", '"ok"'], ["jl", "true"], ["jk", '"tags"'], ["js", '"a"'], ["jl", "null"]]
    assert page.query_selector("#log img") is None
    assert len(page.query_selector_all("#log .expand")) == 1  # only the JSON object
    page.click("#log .expand")
    pretty = json.dumps(json.loads(line), indent=2)
    assert page.inner_text("#log .pretty") == pretty
    assert page.get_attribute("#log .expand", "aria-expanded") == "true"
    page.fill("#filter", "8080")  # re-rendered: still open
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 1")
    assert page.inner_text("#log .pretty") == pretty
    page.click("#log .expand")
    assert page.query_selector("#log .pretty") is None


def test_copy_and_download_what_is_shown(viewer, logfile):
    logfile.write_bytes(b"GET /api/a 200\nGET /static 200\n\x1b[31mGET /api/b 500\x1b[0m\n")
    page, _ = viewer()
    page.fill("#filter", "api")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 2")
    page.click("#copy")
    assert page.evaluate("navigator.clipboard.readText()") == "GET /api/a 200\nGET /api/b 500\n"
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "app.log.txt"
    assert Path(download.value.path()).read_text() == "GET /api/a 200\nGET /api/b 500\n"


def test_favicon_is_served(viewer):
    page, server = viewer()
    icon = page.evaluate("""() => fetch(document.querySelector('link[rel=icon]').href)
        .then(r => r.text().then(body => [r.status, r.headers.get('content-type'), body.slice(0, 4)]))""")
    assert icon == [200, "image/svg+xml", "<svg"]
    assert " 404" not in server.log


def test_pause_keeps_everything_and_resume_shows_it(viewer, logfile):
    page, _ = viewer()
    page.click("#pause")
    append(logfile, b"a\nb\n")
    received(page, logfile)
    assert shown(page) == ["hello", "world"]
    assert "2 new lines held" in page.inner_text("#status")
    page.click("#pause")
    assert shown(page) == ["hello", "world", "a", "b"]


def test_scrolled_up_counts_new_lines(viewer, logfile):
    logfile.write_text("".join(f"line {i}\n" for i in range(300)))
    page, _ = viewer()
    page.wait_for_function("() => window.scrollY > 0")  # it follows the end
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function("() => window.scrollY === 0")
    append(logfile, b"x\ny\nz\n")
    page.wait_for_function("() => document.title === '(3) app.log'")
    assert page.inner_text("#unseen") == "3 new lines \u2193"
    page.click("#unseen")
    page.wait_for_function("() => document.title === 'app.log'")
    assert page.is_hidden("#unseen")
    append(logfile, b"w\n")
    received(page, logfile)
    page.wait_for_function("() => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 8")


def test_server_restarted_page_resumes_exactly(viewer, logfile):
    logfile.write_text("".join(f"before {i}\n" for i in range(50)))
    page, server = viewer()
    server.kill()
    page.wait_for_function("() => document.getElementById('status').classList.contains('bad')")
    append(logfile, b"while down 1\nwhile down 2\npartial")
    server.restart()
    append(logfile, b" line\nafter\n")
    received(page, logfile)
    assert shown(page) == logfile.read_text().splitlines()
    assert page.inner_text("#status") == "live"


def test_replaced_by_a_longer_file_is_said_then_followed(viewer, logfile):
    """Killed server, file replaced by a longer one, server back on the same
    port: the page's resume proof fails, so it notes the replacement and shows
    the new file from its first line, never its bytes as the old file's."""
    old = "".join(f"old {i}\n" for i in range(50))
    logfile.write_text(old)
    page, server = viewer()
    received(page, logfile)
    server.kill()
    page.wait_for_function("() => document.getElementById('status').classList.contains('bad')")
    logfile.rename(logfile.with_name("app.log.1"))
    new = "".join(f"new {i}\n" for i in range(80))
    logfile.write_text(new)
    server.restart()
    received(page, logfile)
    assert page.inner_text("#log .note") == "file replaced; following the new file"
    texts = page.eval_on_selector_all("#log > div", "rows => rows.map(r => r.textContent)")
    assert texts == [*old.splitlines(), "file replaced; following the new file",
                     *new.splitlines()]
    assert page.inner_text("#status") == "live"


def test_truncated_file_is_said_and_shown_again(viewer, logfile):
    logfile.write_text("".join(f"old {i}\n" for i in range(50)))
    page, _ = viewer()
    logfile.write_text("new 1\nnew 2\n")  # shorter than what the page has
    page.wait_for_function("() => document.querySelector('#log .note') !== null")
    assert "truncated to 12 bytes" in page.inner_text("#log .note")
    received(page, logfile)
    assert shown(page)[-2:] == ["new 1", "new 2"]
    assert page.inner_text("#status") == "live"


def test_screenshot(viewer, logfile, tmp_path):
    """The page as the README shows it (TAILSRV_SCREENSHOT=docs/viewer.png
    writes it there)."""
    paths = ["/", "/api/orders", "/api/users/42", "/static/app.js", "/login"]
    lines = []
    for i in range(60):
        time = f"2026-12-02T05:{i // 6:02d}:{i * 7 % 60:02d}Z"
        if i % 13 == 6:
            lines.append(json.dumps({"time": time, "level": "warn", "msg": "slow query",
                                     "path": paths[1], "ms": 800 + i}, separators=(",", ":")))
            continue
        level = "ERROR" if i % 11 == 5 else "WARN" if i % 7 == 3 else "INFO"
        status = 500 if level == "ERROR" else 404 if level == "WARN" else 200
        lines.append(f"{time} {level} GET {paths[i % 5]} {status} {3 + i * 13 % 90} ms"
                     + (" upstream reset: " + "retrying the pool of orders " * 6 if i == 46 else ""))
    logfile.write_text("\n".join(lines) + "\n")
    page, _ = viewer()
    page.fill("#filter", "api")
    page.wait_for_function("() => document.querySelectorAll('#log mark').length > 0")
    page.locator("#log .expand").last.click()
    page.wait_for_function("() => document.querySelector('#log .pretty') !== null")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    target = Path(os.environ.get("TAILSRV_SCREENSHOT") or tmp_path / "viewer.png")
    page.screenshot(path=str(target))
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.fixture
def logs(tmp_path):
    """A directory of two files for the pages of several files."""
    directory = tmp_path / "viewed"
    directory.mkdir()
    (directory / "a.log").write_text("alpha 1\nalpha 2\n")
    (directory / "b.log").write_text("".join(f"beta {i}\n" for i in range(300)))
    return directory


def test_file_list_opens_files_and_shows_new_ones(viewer, logs):
    page, _ = viewer(path=logs, ready="() => document.querySelectorAll('#files tr').length === 2")
    assert page.is_hidden("#log") and page.is_hidden("#filter")
    rows = page.eval_on_selector_all("#files tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [row[1:3] for row in rows] == [["a.log", "16 B"], ["b.log", "2.5 KiB"]]
    assert all(row[3].endswith(" s ago") for row in rows)
    assert page.inner_text("#status") == "2 files"
    new = "0 <img src=x onerror=alert(1)> & 100%.log"  # created while the page is open; not markup, nor a URL
    (logs / new).write_text("fresh\n")
    page.wait_for_function("() => document.querySelectorAll('#files tr').length === 3")
    assert page.inner_text("#files tr:first-child a") == new
    assert page.query_selector("#files img") is None
    page.click("#files tr:first-child a")
    page.wait_for_function(FOLLOWING)
    assert page.evaluate("new URL(location).searchParams.getAll('file')") == [new]
    assert shown(page) == ["fresh"] and page.title() == new
    append(logs / new, b"more\n")
    page.wait_for_function("() => document.querySelector('#log .line:last-child').textContent === 'more'")
    assert page.is_visible("#all")
    page.select_option("#switch", "b.log")  # switching files
    page.wait_for_url("**/?file=b.log")
    page.wait_for_function(FOLLOWING)
    assert shown(page) == [f"beta {i}" for i in range(300)] and page.title() == "b.log"
    (logs / new).unlink()
    page.click("#all")
    page.wait_for_function("() => document.querySelectorAll('#files tr').length === 2")


def test_merged_view_interleaves_lines_marked_with_their_file(viewer, logs):
    both = "() => { const p = document.getElementById('log').dataset.positions;" \
           " return p && !Object.values(JSON.parse(p)).includes(null); }"
    page, _ = viewer("?file=a.log&file=b.log&lines=2", path=logs, ready=both)
    assert page.title() == "a.log + b.log"
    marked = "rows => rows.map(r => [r.dataset.file, r.querySelector('.tag').textContent, r.textContent.slice(r.firstChild.textContent.length)])"
    page.wait_for_function("() => document.querySelectorAll('#log .line').length === 4")
    first = page.eval_on_selector_all("#log .line", marked)
    assert sorted(first) == [["a.log", "a.log", "alpha 1"], ["a.log", "a.log", "alpha 2"],
                             ["b.log", "b.log", "beta 298"], ["b.log", "b.log", "beta 299"]]
    for n, (name, text) in enumerate([("a.log", "a new"), ("b.log", "b new"), ("a.log", "a again")]):
        append(logs / name, f"{text}\n".encode())
        page.wait_for_function(f"() => document.querySelectorAll('#log .line').length === {5 + n}")
    assert page.eval_on_selector_all("#log .line", marked)[4:] == [
        ["a.log", "a.log", "a new"], ["b.log", "b.log", "b new"], ["a.log", "a.log", "a again"]]
    append(logs / "b.log", b"half")  # each file's unfinished line is its own
    page.wait_for_function("() => document.querySelector('#log .pending') !== null")
    append(logs / "a.log", b"whole\n")
    page.wait_for_function("() => document.querySelector('#log .line:not(.pending):nth-last-child(2)')"
                           ".textContent.endsWith('whole')")
    assert page.eval_on_selector("#log .pending", "r => r.dataset.file") == "b.log"
    assert page.input_value("#switch") == "" and page.is_visible("#all")
    page.click("#copy")
    assert page.evaluate("navigator.clipboard.readText()").splitlines()[-2:] == [
        "a.log: a again", "a.log: whole"]


def test_merged_view_resumes_each_file_exactly(viewer, logs):
    page, server = viewer("?file=a.log&file=b.log", path=logs,
                          ready="() => document.getElementById('status').textContent === 'live'")
    positions = "() => JSON.stringify(JSON.parse(document.getElementById('log').dataset.positions))"
    expected = lambda: json.dumps({name: (logs / name).stat().st_size for name in ("a.log", "b.log")},
                                  separators=(",", ":"))
    page.wait_for_function(f"() => ({positions})() === {expected()!r}")
    server.kill()
    page.wait_for_function("() => document.getElementById('status').classList.contains('bad')")
    append(logs / "a.log", b"a while down\npartial")
    append(logs / "b.log", b"b while down\n")
    server.restart()
    append(logs / "a.log", b" line\n")
    page.wait_for_function(f"() => ({positions})() === {expected()!r}")
    for name in ("a.log", "b.log"):
        rows = page.eval_on_selector_all(f"#log .line[data-file='{name}']",
                                         "rs => rs.map(r => r.textContent.slice(r.firstChild.textContent.length))")
        assert rows == (logs / name).read_text().splitlines()
    page.wait_for_function("() => document.getElementById('status').textContent === 'live'")
