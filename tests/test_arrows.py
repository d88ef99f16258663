"""The allowed imports between the packages (a pure core, thin edges, data flowing
one way): ``toymodels`` imports nothing of ``sweeps``, ``analysis``, Hydra, Ray, wandb or
matplotlib; ``analysis`` reads ``sweeps`` only through the store's public reader and imports no
Hydra, Ray or wandb; ``sweeps`` never imports ``analysis``. Inside ``sweeps``, each subpackage
imports only the parts of ``sweeps`` stated in ``SWEEPS_SUBPACKAGES``, Ray is imported only by
``sweeps.executors`` and wandb only by ``sweeps.tracking``. Every import statement counts, at any
depth of a module (a function-level import too)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("toymodels", "sweeps", "analysis")
NOT_IN_THE_CORE = {"sweeps", "analysis", "hydra", "omegaconf", "ray", "wandb", "matplotlib"}
ORCHESTRATION = {"hydra", "omegaconf", "ray", "wandb"}
STORE_READER = {
    "read_results",
    "read_stored",
    "read_config",
    "read_config_hash",
    "as_matrix",
    "with_arrays",
    "nested_array",
    "reader_kinds",
}
# Inside sweeps: what of the rest of sweeps each subpackage may import (its own modules always).
# The top-level modules (config, validation, config_kinds, resources, runner, cli, api) are the hub.
SWEEPS_SUBPACKAGES = {
    "sweeps.store": {"sweeps.config"},  # the store knows nothing of what wrote the chunks
    "sweeps.tracking": {"sweeps.config", "sweeps.store"},
    # The one chunk machinery and the toy-model job kinds: they know no other job kind (sweeps.sae
    # is one, built on sweeps.jobs; the hub's sweeps.plan lists them all).
    "sweeps.jobs": {
        "sweeps.config",
        "sweeps.config_kinds",
        "sweeps.resources",
        "sweeps.validation",
    },
    "sweeps.executors": {"sweeps.config", "sweeps.resources", "sweeps.jobs"},
    "sweeps.sae": {
        "sweeps.config",
        "sweeps.config_kinds",
        "sweeps.resources",
        "sweeps.jobs",
        "sweeps.store",
    },
    "sweeps.backdoor": {"sweeps.config", "sweeps.plan", "sweeps.store"},
    "sweeps.bench": {
        "sweeps.executors",
        "sweeps.sae",
    },  # the SAE bench builds SAELens worlds as sweeps do
}
ONLY_IN = {"ray": "sweeps.executors", "wandb": "sweeps.tracking"}  # within sweeps
# Arrows that are part of the design, beyond the rules above.
ALLOWED = {
    (
        "analysis/cli.py",
        "sweeps.tracking.figure_log",
    ): "toymodels-figures logs what it drew to the sweep's wandb summary run",
    (
        "sweeps/sae/cli.py",
        "sweeps.cli",
    ): "toymodels-sae is a shortcut that runs toymodels-sweep on the config it builds",
}
# Known violations, each to be removed by the work that ends it; any other one fails the test.
KNOWN_EXCEPTIONS: dict = {}


def imports(path: Path, root: Path):
    """(module, imported names, line) of every import statement in the file, relative ones resolved."""
    package = list(path.relative_to(root).parent.parts)  # what a relative import counts from
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module, tuple(alias.name for alias in node.names), node.lineno


def breaks_an_arrow(package: str, module: str, names: tuple) -> bool:
    top = module.split(".")[0]
    if package == "toymodels":
        return top in NOT_IN_THE_CORE
    if package == "analysis":
        reads_the_store = module == "sweeps.store" and names and set(names) <= STORE_READER
        return top in ORCHESTRATION or (top == "sweeps" and not reads_the_store)
    return package == "sweeps" and top == "analysis"


def _sweeps_units(module: str, names: tuple) -> set[str]:
    """The ``sweeps.X`` an import reaches (``from sweeps import X`` imports the module ``sweeps.X``)."""
    parts = module.split(".")
    return {f"sweeps.{name}" for name in names} if len(parts) == 1 else {".".join(parts[:2])}


def breaks_a_sweeps_arrow(where: str, module: str, names: tuple) -> bool:
    """An import inside ``sweeps`` against ``SWEEPS_SUBPACKAGES`` or ``ONLY_IN``."""
    parts = where[:-3].split("/")
    own = ".".join(
        parts[:2]
    )  # sweeps.store for sweeps/store/meta.py (and sweeps/store/__init__.py)
    top = module.split(".")[0]
    if top in ONLY_IN:
        return own != ONLY_IN[top]
    if top != "sweeps" or len(parts) < 3 or own not in SWEEPS_SUBPACKAGES:
        return False
    return any(
        unit != own and unit not in SWEEPS_SUBPACKAGES[own] for unit in _sweeps_units(module, names)
    )


def arrow_violations(root: Path) -> dict[tuple[str, str], str]:
    """{(file, imported module): "file:line imports ..."} for every import against the rules."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for module, names, line in imports(path, root):
                breaks = breaks_an_arrow(package, module, names) or (
                    package == "sweeps" and breaks_a_sweeps_arrow(where, module, names)
                )
                if breaks and (where, module) not in ALLOWED:
                    what = (
                        f"from {module} import {', '.join(names)}" if names else f"import {module}"
                    )
                    found[(where, module)] = f"{where}:{line}: {what}"
    return found


def test_packages_import_only_along_the_allowed_arrows():
    found = arrow_violations(REPO)
    new = [text for key, text in found.items() if key not in KNOWN_EXCEPTIONS]
    assert not new, "imports against the package arrows:\n" + "\n".join(new)
    gone = [f"{key} ({why})" for key, why in KNOWN_EXCEPTIONS.items() if key not in found]
    assert not gone, (
        "these known exceptions no longer occur: delete them from KNOWN_EXCEPTIONS: "
        + ", ".join(gone)
    )


def test_a_planted_violation_of_each_rule_is_caught(tmp_path):
    files = {
        "toymodels/core.py": "import numpy\nimport matplotlib.pyplot as plt\n",
        "toymodels/deep/inner.py": "def f():\n    from sweeps import store\n",
        "toymodels/spd/edge.py": "from toymodels.spd.train import decompose_many\nimport wandb\n",
        "sweeps/edge.py": "from sweeps.store import read_results\n\ndef g():\n    import analysis.api\n",
        "analysis/ok.py": "from sweeps.store import as_matrix, read_results\nfrom analysis.stored_sweep import StoredSweep\n",
        "analysis/figures/bad.py": "from sweeps.plan import plan_sweep\nfrom sweeps.store import as_matrix, write_chunk\n",
        "analysis/whole.py": "import sweeps.store\nimport wandb\n",
        "analysis/figures/relative.py": "from ..sweep import StoredSweep\nfrom ...sweeps.store import write_chunk\n",
        "sweeps/store/meta.py": "from sweeps.config import Config\nfrom sweeps.store.locks import Claim\n",
        "sweeps/store/__init__.py": "from sweeps.jobs import Chunk\nfrom .meta import META\n",
        "sweeps/jobs/chunks.py": "from sweeps import resources, tracking\nfrom sweeps.sae.plan import plan_saes\n",
        "sweeps/executors/local.py": "import ray\nfrom ..jobs.chunks import run_chunk\n",
        "sweeps/runner.py": "from sweeps.tracking import Tracker\n\ndef h():\n    import ray\n",
        "sweeps/tracking/run.py": "import wandb\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(arrow_violations(tmp_path).values()) == [
        "analysis/figures/bad.py:1: from sweeps.plan import plan_sweep",
        "analysis/figures/bad.py:2: from sweeps.store import as_matrix, write_chunk",
        "analysis/figures/relative.py:2: from sweeps.store import write_chunk",
        "analysis/whole.py:1: import sweeps.store",
        "analysis/whole.py:2: import wandb",
        "sweeps/edge.py:4: import analysis.api",
        "sweeps/jobs/chunks.py:1: from sweeps import resources, tracking",
        "sweeps/jobs/chunks.py:2: from sweeps.sae.plan import plan_saes",
        "sweeps/runner.py:4: import ray",
        "sweeps/store/__init__.py:1: from sweeps.jobs import Chunk",
        "toymodels/core.py:2: import matplotlib.pyplot",
        "toymodels/deep/inner.py:2: from sweeps import store",
        "toymodels/spd/edge.py:2: import wandb",
    ]
