"""The documentation's tables, generated from the code at build time so that they cannot drift:
the kind tables (``toymodels.models.MODELS``, ``toymodels.data.DATA``, ``toymodels.sae.SAE_KINDS``),
the figure catalog (``analysis.figures.catalog.FIGURES``), the experiments of ``conf/experiment/``
(each file's comment and launch command, its size from the planner) and the config keys (the
schema's dataclasses, their comments, and the rule table ``sweeps.validation.RULES``).

A docs page asks for a table with a line of its own, which MkDocs replaces while building (the
words before the comment are for whoever reads the Markdown itself, e.g. on GitHub)::

    > A table generated from the code: `.venv/bin/python scripts/docs_tables.py model-kinds`. <!-- table: model-kinds -->

It is replaced (this file is the site's hook, named in ``mkdocs.yml``);
an unknown table name stops the build. Nothing is written into ``docs/``, so there is nothing to
keep current by hand. To see a table in a terminal::

    .venv/bin/python scripts/docs_tables.py model-kinds
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import logging
import re
import sys
import tokenize
import typing
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The whole line is replaced; what stands before the comment is for readers of the raw Markdown.
MARKER = re.compile(r"^(?:> .*)?<!-- table: (?P<name>[\w-]+) -->$", re.MULTILINE)
log = logging.getLogger("mkdocs.plugins.toymodels")

# Pages other branches are writing now: in the nav, left out of it until they exist. Remove a
# name once its page has landed.
PENDING = {
    "saes/reference.md",
    "security.md",
    "results/compressed-computation.md",
    "science/compressed-computation.md",
    "spd.md",
    "results/spd.md",
    "devices.md",
}


# --- helpers -------------------------------------------------------------------------------------


def cell(text) -> str:
    """Text safe in a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text) -> str:
    return f"`{text}`" if text not in ("", None) else ""


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def first_paragraph(doc: str | None) -> str:
    return (inspect.cleandoc(doc or "").split("\n\n")[0]).replace("\n", " ")


def source_of(obj) -> str:
    """Where ``obj`` is written, as a path in the repository."""
    source = inspect.getsourcefile(obj)
    assert source is not None, f"{obj!r} has no source file"
    path = Path(source).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return path.name


def field_comments(cls) -> dict[str, str]:
    """The comments of a dataclass's fields: the one on the field's line, after the comment
    lines right above it."""
    lines, _ = inspect.getsourcelines(cls)
    comments: dict[str, str] = {}
    above: list[str] = []
    tokens = tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
    by_line: dict[int, str] = {}
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        match = re.match(r"^(\w+)\s*:", stripped)
        if stripped.startswith("#"):
            above.append(by_line.get(number, ""))
        elif match and not stripped.startswith(("def ", "class ", "@")):
            trailing = by_line.get(number, "")
            comments[match.group(1)] = " ".join([*above, trailing]).strip()
            above = []
        else:
            above = []
    return comments


# --- kinds ---------------------------------------------------------------------------------------


def _options(options) -> str:
    return ", ".join(f"`{k}` = `{v!r}`" for k, v in dict(options or {}).items())


def model_kinds() -> str:
    """Every model kind of ``toymodels.models.MODELS`` (the built-in ones and any registered)."""
    from toymodels.models import MODELS

    rows = []
    for kind in MODELS:
        traits = [
            t
            for t, on in (
                ("privileged hidden basis", kind.privileged),
                ("layers' read vectors recorded", kind.read_matrices is not None),
                ("finite data", kind.output_activation is not None),
                ("outputs unweighted by importance", not kind.importance_weighted),
            )
            if on
        ]
        rows.append(
            [
                f"{code(kind.name)}<br>{code(source_of(kind.init))}",
                kind.doc,
                _options(kind.options),
                ", ".join(traits),
            ]
        )
    return table(["`model.kind` (file)", "model", "options (default)", "traits"], rows)


def job_kinds() -> str:
    """Every job kind of ``sweeps.plan.JOB_KINDS``, in the order a config is matched against them."""
    from sweeps.plan import JOB_KINDS

    rows = [
        [
            f"{code(kind.name)}<br>{code(source_of(kind.program))}",
            kind.doc,
            "the one-worker width" if kind.pad_to_one_worker else "the chunk's size",
            "yes" if kind.model_bytes is not None else "no (by its working set)",
        ]
        for kind in JOB_KINDS
    ]
    return table(
        [
            "job kind (its program's file)",
            "trains",
            "chunks padded to",
            "GPU chunks sized by memory",
        ],
        rows,
    )


def loss_terms() -> str:
    """Every loss term of ``toymodels.terms.TERMS``, in the order they are added to the loss."""
    from sweeps.jobs.terms import config_key
    from toymodels.terms import TERMS

    rows = [
        [
            f"{code(term.name)}<br>{code(source_of(term.penalty))}",
            term.doc,
            ", ".join(code(config_key(p)) for p in term.params),
            ", ".join(code(n) for n in term.switches),
        ]
        for term in TERMS
    ]
    return table(
        ["term (file)", "adds to the loss", "settings (each a grid axis of its name)", "on when"],
        rows,
    )


def data_kinds() -> str:
    """Every data kind of ``toymodels.data.DATA``."""
    from toymodels.data import DATA

    rows = []
    for kind in DATA:
        traits = [
            t
            for t, on in (
                ("signed", kind.signed),
                ("feature sets", kind.sets),
                ("per-entry loss weights", kind.weights is not None),
                ("density 0 allowed", getattr(kind, "zero_density", False)),
                ("kurtosis stored", kind.kurtosis is not None),
            )
            if on
        ]
        fn = kind.value or kind.batch
        where = f"<br>{code(source_of(fn))}" if fn else ""
        rows.append([code(kind.name) + where, kind.doc, _options(kind.options), ", ".join(traits)])
    return table(["`data.kind` (file)", "inputs", "options (default)", "traits"], rows)


def sae_kinds() -> str:
    """Every SAE kind of ``toymodels.sae.SAE_KINDS``, with the hyperparameters it reads."""
    from toymodels.sae import SAE_KINDS

    rows = []
    for kind in SAE_KINDS:
        hparams = getattr(kind, "hparams", ())
        names = [
            getattr(h, "name", h)
            for h in (hparams.values() if isinstance(hparams, dict) else hparams)
        ]
        rows.append(
            [
                f"{code(kind.name)}<br>{code(source_of(kind.encode))}",
                kind.doc,
                ", ".join(code(n) for n in names),
                "yes" if getattr(kind, "top_k", False) else "",
            ]
        )
    return table(["`sae.kind` (file)", "codes and loss", "reads", "top-k"], rows)


# --- figures -------------------------------------------------------------------------------------


def figures(prefix: str = "") -> str:
    """Every figure of ``analysis.figures.catalog.FIGURES`` (whose name starts with ``prefix``):
    when a sweep gets it, what it draws (the plot function's docstring), its options and notes."""
    from analysis.figures.catalog import FIGURES

    rows = []
    for name, spec in FIGURES.items():
        if not name.startswith(prefix):
            continue
        what = first_paragraph(spec.plot.__doc__)
        if not what:
            raise ValueError(
                f"figure {name!r}: {spec.plot.__module__}.{spec.plot.__name__} has no docstring; "
                "the figure table is its first paragraph"
            )
        options = ", ".join(code(o) for o in spec.options()) + (
            "; prints notes" if spec.notes else ""
        )
        rows.append(
            [f"{code(name)}<br>{code(source_of(spec.plot))}", spec.when, what, options.lstrip("; ")]
        )
    return table(["figure (file)", "drawn when", "what", "options"], rows)


# --- experiments ---------------------------------------------------------------------------------


def experiment_header(path: Path) -> tuple[str, str]:
    """(the launch command on the file's second line, the comment paragraph after it)."""
    lines = path.read_text().splitlines()
    command = lines[1].lstrip("# ").strip() if len(lines) > 1 else ""
    words = []
    for line in lines[2:]:
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    return command, " ".join(w for w in words if w)


@functools.lru_cache(maxsize=1)
def _planned() -> dict[str, int]:
    """Models (or SAEs) each experiment plans, from the planner itself."""
    from hydra import compose, initialize_config_dir

    from sweeps.config import CONF_DIR, register_schema, to_config
    from sweeps.plan import plan_sweep

    register_schema()
    counts = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
            counts[path.stem] = len(
                plan_sweep(
                    to_config(compose(config_name="config", overrides=[f"experiment={path.stem}"]))
                ).units
            )
    return counts


def experiments(prefix: str = "") -> str:
    """Every experiment of ``conf/experiment/`` (whose name starts with ``prefix``): its comment, its
    launch command, its size."""
    from sweeps.config import CONF_DIR

    planned = _planned()
    rows = []
    for path in sorted((CONF_DIR / "experiment").glob(f"{prefix}*.yaml")):
        command, what = experiment_header(path)
        rows.append([code(path.stem), what, f"{planned[path.stem]:,}", code(command)])
    return table(["experiment", "what", "models", "command"], rows)


# --- config keys ---------------------------------------------------------------------------------


def _schema_sections():
    """(dotted prefix, dataclass) of every section of the config schema, the ``sae`` one included."""
    from sweeps.config import Config

    def walk(cls, prefix):
        yield prefix, cls
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if typing.get_origin(hint) is typing.Union:
                hint = next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), hint)
            if dataclasses.is_dataclass(hint):
                yield from walk(hint, f"{prefix}{f.name}.")

    yield from walk(Config, "")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return value if not dataclasses.is_dataclass(value) else None
    return None


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return (
            " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
            + " or null"
        )
    if origin in (list, dict):
        return "list" if origin is list else "mapping"
    return {"Any": "any"}.get(
        getattr(hint, "__name__", str(hint)), getattr(hint, "__name__", str(hint))
    )


def _allowed(key: str) -> str:
    """What a key may be: its rule in ``sweeps.validation.RULES``, or the kind table it names."""
    from sweeps.config import WANDB_MODES
    from sweeps.validation import RULES, Number, OneOf
    from toymodels.data import DATA
    from toymodels.models import MODELS
    from toymodels.sae import SAE_KINDS

    tables = {
        "model.kind": MODELS.names(),
        "data.kind": DATA.names(),
        "sae.kind": SAE_KINDS.names(),
        "wandb.mode": WANDB_MODES,
    }
    if key in tables:
        return "one of " + ", ".join(f"`{v}`" for v in tables[key])
    rule = RULES.get(key)
    if isinstance(rule, OneOf):
        return "one of " + ", ".join(f"`{v}`" for v in rule.allowed)
    if isinstance(rule, Number):
        if rule.high_key:
            return f"an integer from {rule.low:g} to below `{rule.high_key}`"
        text = rule.describe(None)
        return text + (" or null" if rule.optional else "")
    if rule is not None:  # another rule object (a density): its docstring says what
        return first_paragraph(type(rule).__doc__)
    return ""


def config_keys(sae: bool = False, spd: bool = False) -> str:
    """The keys of the config schema (``sweeps/config.py``; with ``sae`` the ``sae`` section's, else
    the others): its default in the schema, what it may be (``sweeps.validation.RULES``), and its
    comment in the schema."""
    from sweeps.validation import RULES

    rows = []
    for prefix, cls in _schema_sections():
        if prefix.startswith("sae.") != sae or prefix.startswith("spd.") != spd:
            continue
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if typing.get_origin(hint) is typing.Union:
                inner = next(
                    (a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None
                )
                if inner is not None:
                    continue
            if dataclasses.is_dataclass(hint):
                continue
            key = prefix + f.name
            rows.append(
                [
                    code(key),
                    _type_name(hint),
                    code(repr(_default(f))),
                    _allowed(key),
                    comments.get(f.name, ""),
                ]
            )
    grid_only = [k for k in RULES if k.startswith("sweep.grid.") and not sae and not spd]
    for key in grid_only:
        rows.append(
            [
                code(key),
                "list",
                "",
                "each value " + _allowed(key),
                "a grid axis without a key of its own",
            ]
        )
    return table(["key", "type", "default", "allowed", "meaning"], rows)


_AXIS_ONLY = {  # axes without a config key of their own
    "importance_last": "the last feature's importance (the others from data.importance)",
    "density_last": "the last feature's density (the others from data.density)",
    "density_last_ratio": "the last feature's density as a multiple of its configured one (not with density_last)",
    "model": "the model kind (compare architectures on the same data)",
}


def grid_axes() -> str:
    """The grid axes of a toy-model sweep (``sweeps.config``, and each loss term's settings,
    ``toymodels.terms``): per model (array leaves of one compiled program) or static (they split
    chunks), and the key whose rule each value follows."""
    from sweeps.config import PER_MODEL_AXES, STATIC_AXES
    from sweeps.jobs.terms import all_params, config_key
    from sweeps.validation import AXIS_RULES

    AXIS_RULES = {**AXIS_RULES, **{p.name: config_key(p) for p in all_params()}}
    PER_MODEL_AXES = PER_MODEL_AXES + tuple(p.name for p in all_params())  # type: ignore[assignment]

    comments = {}
    for prefix, cls in _schema_sections():
        for name, text in field_comments(cls).items():
            comments[prefix + name] = text
    rows = []
    for axis in PER_MODEL_AXES + STATIC_AXES:
        key = AXIS_RULES.get(axis, "")
        meaning = _AXIS_ONLY.get(axis) or comments.get(key, "")
        rows.append(
            [
                code(axis),
                "per model" if axis in PER_MODEL_AXES else "static",
                code(key) if key and not key.startswith("sweep.grid.") else "",
                meaning,
            ]
        )
    rows.append(
        [
            "a model kind's option (`layers`, `hidden_bias`)",
            "static",
            "`model.options.<option>`",
            "swept with `+sweep.grid.<option>=[...]`",
        ]
    )
    return table(["axis", "kind", "each value as", "meaning"], rows)


def sae_grid_axes() -> str:
    """The grid axes of an SAE sweep (the ``sae`` section): training and source axes, and every
    registered SAE kind's declared hyperparameters (``toymodels.sae.hyperparams``), per SAE or
    static, with the kinds that read them."""
    from sweeps.sae import config as module
    from toymodels.sae import SAE_KINDS

    hparams = module.kind_hparams()
    per = (
        set(module.TRAIN_PER_AXES)
        | set(module.WORLD_PER_AXES)
        | {n for n, h in hparams.items() if h.per_sae}
    )
    world = set(module.WORLD_PER_AXES) | set(module.WORLD_STATIC_AXES)
    axes = dict.fromkeys(
        module.TRAIN_PER_AXES
        + module.SAE_STATIC_AXES
        + tuple(hparams)
        + module.WORLD_PER_AXES
        + module.WORLD_STATIC_AXES
    )
    rows = []
    for axis in axes:
        readers = (
            [k.name for k in SAE_KINDS if k.hparam(axis) is not None] if axis in hparams else []
        )
        rows.append(
            [
                code(axis),
                "per SAE" if axis in per else "static",
                "worlds only" if axis in world else "any source",
                ", ".join(code(r) for r in readers) if readers else "every kind",
            ]
        )
    return table(["axis", "kind", "source", "read by"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "model-kinds": model_kinds,
    "data-kinds": data_kinds,
    "sae-kinds": sae_kinds,
    "job-kinds": job_kinds,
    "loss-terms": loss_terms,
    "figures": figures,
    "sae-figures": functools.partial(figures, "sae_"),
    "experiments": experiments,
    "sae-experiments": functools.partial(experiments, "sae_"),
    "config-keys": config_keys,
    "sae-config-keys": functools.partial(config_keys, True),
    "spd-config-keys": functools.partial(config_keys, spd=True),
    "grid-axes": grid_axes,
    "sae-grid-axes": sae_grid_axes,
}


def render(markdown: str, page: str = "") -> str:
    """``markdown`` with every ``<!-- table: NAME -->`` line replaced by that table."""

    def one(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise ValueError(
                f"{page}: no generated table {name!r}; the tables are: {', '.join(TABLES)}"
            )
        return (
            f"<!-- generated from the code by scripts/docs_tables.py ({name}) -->\n\n"
            + TABLES[name]()
            + "\n"
        )

    return MARKER.sub(one, markdown)


# --- MkDocs hooks --------------------------------------------------------------------------------


def _drop_pending(nav, docs_dir: Path):
    out = []
    for item in nav:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                value = _drop_pending(value, docs_dir)
                if value:
                    out.append({title: value})
                continue
            item_path = value
        else:
            item_path = item
        if (
            isinstance(item_path, str)
            and item_path in PENDING
            and not (docs_dir / item_path).exists()
        ):
            log.info("nav: %s is not written yet, left out", item_path)
            continue
        out.append(item)
    return out


def on_config(config):
    sys.path.insert(0, str(REPO))  # the packages, when MkDocs runs from another directory
    config["nav"] = _drop_pending(config["nav"], Path(config["docs_dir"]))
    return config


def on_page_markdown(markdown, page, config, files):
    return render(markdown, page.file.src_path)


if __name__ == "__main__":
    names = sys.argv[1:] or list(TABLES)
    for name in names:
        if name not in TABLES:
            sys.exit(f"no table {name!r}; the tables are: {', '.join(TABLES)}")
        print(f"## {name}\n\n{TABLES[name]()}\n")
