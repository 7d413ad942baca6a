"""The README and the pages under docs/ hang together: the README keeps the
set-up commands that CI and newcomers rely on, stays a front door, and every
link and repository path in the documentation leads somewhere that exists."""

import re
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: Lines the README may grow to before it stops being a front door: the long
#: documentation belongs in docs/ (about 130 lines when the split was made).
README_MAX_LINES = 250

#: The two set-up commands, exactly as a newcomer copies them (.ci/run runs
#: the second).
SETUP_COMMANDS = [
    "pip install . && tailsrv -p 4321 /var/log/nginx/access.log",
    "pip install -e '.[test]' && python -m pytest",
]

LINK = re.compile(r"\]\(([^)\s]*)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
#: A path inside this repository, as the documentation names one (relative to
#: the root of a checkout), not part of a longer path such as /run/tailsrv/x.
REPO_PATH = re.compile(r"(?<![\w/.@-])((?:scripts|tests|tailsrv|docs)/[\w./@*-]*)")


def prose(page: Path) -> Iterator[str]:
    """The page's lines outside code blocks (fenced, or indented 4 spaces)."""
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):
            yield line


def anchors(page: Path) -> List[str]:
    """The anchors GitHub makes for the page's headings: lower case, spaces
    as hyphens, other punctuation dropped, repeats numbered."""
    seen: Dict[str, int] = {}
    result = []
    for line in prose(page):
        if line.startswith("#"):
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            result.append(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return result


def test_readme_keeps_the_setup_commands():
    code = [line.strip() for line in README.read_text().splitlines() if line.startswith("    ")]
    for command in SETUP_COMMANDS:
        assert command in code


def test_readme_is_a_front_door():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move long sections to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_lead_somewhere(page):
    for line in prose(page):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not ours to check
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}: no such file"
            if anchor:
                assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_repository_paths_exist(page):
    for path in REPO_PATH.findall(page.read_text()):
        path = path.rstrip(".")
        assert list(ROOT.glob(path)), f"{page.name}: {path} is not in the repository"
