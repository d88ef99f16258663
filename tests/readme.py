"""The code blocks of the README and of every docs page, found by the marker line
``<!-- test: NAME -->`` right above them, so that a test runs exactly what a user copies
(``<!-- README test: NAME -->``, the README's older form, is read too). A block that no test runs
says why on that line instead: ``<!-- not run: REASON -->``; tests/test_docs.py checks that every
block has one of the two."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(
    r"^<!-- (?:README )?test: (?P<name>[^>]+?) -->$|^<!-- not run: (?P<reason>[^>]*?) -->$"
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    name: str | None  # <!-- test: NAME -->
    reason: str | None  # <!-- not run: REASON -->

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and every page of the docs site."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(pages: list[Path] | None = None) -> list[Block]:
    """Every fenced code block of the pages, with the marker on the line above it (if any)."""
    found = []
    for path in pages or doc_pages():
        text = path.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.match(before.strip())
            found.append(
                Block(
                    path,
                    text.count("\n", 0, match.start()) + 1,
                    match.group("lang"),
                    match.group("code"),
                    marker.group("name") if marker else None,
                    marker.group("reason") if marker else None,
                )
            )
    return found


def doc_block(name: str) -> str:
    """The code of the block marked ``<!-- test: NAME -->`` (in the README or any docs page)."""
    named = {b.name: b.code for b in blocks() if b.name}
    if name not in named:
        raise KeyError(
            f"no docs page has a block marked '<!-- test: {name} -->'; there are {sorted(named)}"
        )
    return named[name]


def doc_commands(name: str) -> list[list[str]]:
    """The shell commands of a marked bash block, each split as the shell would (comments dropped)."""
    return [
        shlex.split(line, comments=True)
        for line in doc_block(name).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


readme_block, readme_commands = doc_block, doc_commands  # the names the tests used first
