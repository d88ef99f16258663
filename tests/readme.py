"""The README's code blocks, found by the marker line ``<!-- README test: NAME -->`` above them, so
a test runs exactly what a user copies."""

from __future__ import annotations

import re
import shlex

from tests.helpers import REPO

_MARKED = re.compile(r"<!-- README test: (?P<name>[^>]+?) -->\n```\w*\n(?P<code>.*?)```", re.S)


def readme_block(name: str) -> str:
    blocks = {m.group("name"): m.group("code") for m in _MARKED.finditer((REPO / "README.md").read_text())}
    if name not in blocks:
        raise KeyError(f"README has no block marked '<!-- README test: {name} -->'; it has {sorted(blocks)}")
    return blocks[name]


def readme_commands(name: str) -> list[list[str]]:
    """The shell commands of a marked bash block, each split as the shell would (comments dropped)."""
    return [shlex.split(line, comments=True) for line in readme_block(name).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
