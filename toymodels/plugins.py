"""Your own kinds without forking: Python files named in the config's ``plugins`` list are run
once per process, before validation, and register their kinds in the core's tables
(``toymodels.models.register_model``, ``toymodels.data.register_data``,
``toymodels.terms.register_term``). See docs/kinds.md.

A file is loaded as a module named after its resolved path, so loading it again (a second sweep
in one notebook) replaces its kinds instead of clashing with them. Ray workers never read the
file: the chunks carry the kinds themselves (``kinds_used``), pickled by value.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from toymodels.data import DATA
from toymodels.models import MODELS
from toymodels.registry import ConfigError


def module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"toymodels_plugin_{digest}_{stem}"


def load_plugins(paths) -> list:
    """Run every plugin file (relative paths from the current directory); refuse, naming
    ``plugins``, a missing file or one that fails to run."""
    modules = []
    for i, given in enumerate(paths):
        path = Path(given).expanduser().resolve()
        key = f"plugins[{i}]"
        if path.suffix != ".py" or not path.is_file():
            raise ConfigError(
                key, f"{given!r} is not a Python file (a .py file that registers your kinds)"
            )
        name = module_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None  # a .py file always has both
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as error:
            del sys.modules[name]
            where = traceback.extract_tb(error.__traceback__)[-1]
            raise ConfigError(
                key,
                f"{given} failed to load ({type(error).__name__}: {error}, line {where.lineno})",
            ) from error
        modules.append(module)
    return modules


def source_digest(paths) -> str:
    """A digest of the plugin files' contents: a change to a kind's code is a different sweep."""
    h = hashlib.sha256()
    for given in paths:
        h.update(Path(given).expanduser().resolve().read_bytes())
    return h.hexdigest()[:16]


def kinds_used(model_names, data_names, term_names=()) -> tuple:
    """The registered kind objects (model and data kinds, loss terms) that are not built in, for the
    chunks to carry to workers."""
    from toymodels.terms import TERMS

    used: list[object] = [
        MODELS.get(n) for n in dict.fromkeys(model_names) if not MODELS.is_builtin(n)
    ]
    used += [DATA.get(n) for n in dict.fromkeys(data_names) if not DATA.is_builtin(n)]
    used += [TERMS.get(n) for n in dict.fromkeys(term_names) if not TERMS.is_builtin(n)]
    return tuple(used)


def plugin_modules(kinds) -> list:
    """The plugin-file modules that define ``kinds``: Ray must pickle them by value, since workers
    cannot import them by name."""
    names = {
        getattr(v, "__module__", None) for kind in kinds for v in vars(kind).values() if callable(v)
    }
    return [
        sys.modules[n]
        for n in sorted(n for n in names if n and n.startswith("toymodels_plugin_"))
        if n in sys.modules
    ]


def ensure_registered(kinds) -> None:
    """Register the kinds a chunk carries (on a worker that never loaded their file)."""
    from toymodels.data import DataKind
    from toymodels.terms import TERMS, LossTerm

    for kind in kinds:
        table = (
            DATA if isinstance(kind, DataKind) else TERMS if isinstance(kind, LossTerm) else MODELS
        )
        if table.find(kind.name) is not kind:
            table.register(kind)
