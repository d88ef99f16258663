"""The documentation as a reader meets it (docs/reference/writing-docs.md): every code block of the
README and the docs pages is run by a test or says why not, every page is in the site's
navigation, every path the docs name exists, code comments point to docs pages that exist, and
nothing points outside the repository. The generated tables list every kind and figure. The site
itself is built with ``mkdocs build --strict`` by scripts/docs (CI's .ci/run)."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest
import yaml

from tests.helpers import REPO
from tests.readme import MARKER, blocks, doc_pages

DOCS = REPO / "docs"
TEST_SOURCES = [
    p for p in (REPO / "tests").rglob("*.py") if p.name not in ("readme.py", "test_docs.py")
]


def tables_module():
    spec = importlib.util.spec_from_file_location(
        "docs_tables", REPO / "scripts" / "docs_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_code_block_is_run_by_a_test_or_says_why_not():
    unmarked = [b.where() for b in blocks() if not b.name and not (b.reason or "").strip()]
    assert not unmarked, (
        "a code block needs '<!-- test: NAME -->' (a test runs it) or "
        f"'<!-- not run: REASON -->' on the line above it: {unmarked}"
    )
    assert len(blocks()) > 20


def test_each_tested_block_has_one_name_and_a_test_that_uses_it():
    names = [b.name for b in blocks() if b.name]
    assert len(names) == len(set(names)), f"a name marks two blocks: {sorted(names)}"
    tests = "\n".join(p.read_text() for p in TEST_SOURCES)
    unused = [n for n in names if f'"{n}"' not in tests]
    assert not unused, (
        f"no test fetches these marked blocks (doc_block(NAME) / doc_commands(NAME)): {unused}"
    )


def test_a_marker_stands_right_above_its_block():
    """A marker line followed by anything but a code fence marks nothing: a slip, not a choice."""
    for page in doc_pages():
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if MARKER.match(line.strip()):
                assert i + 1 < len(lines) and lines[i + 1].startswith("```"), (
                    f"{page.relative_to(REPO)}:{i + 1}"
                )


@pytest.mark.parametrize(
    "block",
    [b for b in blocks() if b.reason and b.lang in ("python", "bash")],
    ids=lambda b: b.where(),
)
def test_a_block_that_is_not_run_still_parses(block):
    if block.lang == "python":
        compile(block.code, block.where(), "exec")
    else:
        done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
        assert done.returncode == 0, f"{block.where()}: {done.stderr}"


def _nav_pages(nav) -> list[str]:
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_navigation_and_every_entry_exists_or_is_pending():
    nav = _nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert not pages - set(nav), f"pages missing from mkdocs.yml's nav: {sorted(pages - set(nav))}"
    pending = tables_module().PENDING
    assert not set(nav) - pages - pending, (
        f"nav entries without a page: {sorted(set(nav) - pages - pending)}"
    )


REPO_PATH = re.compile(
    r"`((?:toymodels|sweeps|analysis|scripts|tests|conf|docs)/[\w./-]*[\w/])`"
    r"|\b((?:toymodels|sweeps|analysis|scripts|tests|conf|docs)/[\w/-]+\.(?:py|yaml|md))\b"
)


def test_every_path_the_docs_name_exists():
    missing = []
    for page in doc_pages():
        for path in (a or b for a, b in REPO_PATH.findall(page.read_text())):
            if (
                not any(c in path for c in "<*")
                and "..." not in path
                and not (REPO / path).exists()
            ):
                missing.append(f"{page.relative_to(REPO)}: {path}")
    assert not missing, f"paths named in the docs that do not exist: {missing}"


def test_code_comments_point_to_docs_pages_that_exist():
    missing = []
    for source in [
        *REPO.glob("toymodels/**/*.py"),
        *REPO.glob("sweeps/**/*.py"),
        *REPO.glob("analysis/**/*.py"),
        *REPO.glob("scripts/*"),
        *REPO.glob("conf/**/*.yaml"),
        *REPO.glob("tests/**/*.py"),
    ]:
        if source.is_file():
            for page in re.findall(r"docs/[\w/-]+\.md", source.read_text(errors="replace")):
                if not (REPO / page).exists():
                    missing.append(f"{source.relative_to(REPO)}: {page}")
    assert not missing, f"comments point to docs pages that do not exist: {missing}"


def test_generated_tables_list_every_kind_and_figure():
    from analysis.figures.catalog import FIGURES
    from toymodels.data import DATA
    from toymodels.models import MODELS
    from toymodels.sae import SAE_KINDS

    tables = tables_module()
    for name, registry in (("model-kinds", MODELS), ("data-kinds", DATA), ("sae-kinds", SAE_KINDS)):
        text = tables.TABLES[name]()
        assert all(f"| `{kind.name}`<br>" in text for kind in registry), name
    text = tables.TABLES["figures"]()
    assert all(f"| `{name}`<br>`analysis/figures/" in text for name in FIGURES)
    keys = tables.TABLES["config-keys"]()
    assert "| `train.lr` | float | `0.001` | a finite number > 0 | peak learning rate |" in keys
    rendered = tables.render("x\n<!-- table: grid-axes -->\ny")
    assert "| `density` | per model | `data.density` |" in rendered
    with pytest.raises(ValueError, match="no generated table 'nope'"):
        tables.render("<!-- table: nope -->")
    pages_tables = {
        m for page in DOCS.rglob("*.md") for m in tables.MARKER.findall(page.read_text())
    }
    assert pages_tables <= set(tables.TABLES), pages_tables - set(tables.TABLES)


def test_nothing_points_outside_the_repository():
    """The project explains itself: no file refers to SCIENCE.md (or a bare section sign of it),
    to ../shared, or to a README section that moved to the docs."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"SCIENCE(\.md)?\b|\.\./shared|STYLE\.md|§\s*\d|README[,:] *[\"A-Z(]")
    found = [
        f"{path}:{i}"
        for path in tracked
        if (REPO / path).is_file() and path != "tests/test_docs.py"
        for i, line in enumerate((REPO / path).read_text(errors="replace").splitlines(), start=1)
        if outside.search(line)
    ]
    assert not found, f"references outside the repository (point to a docs page instead): {found}"
