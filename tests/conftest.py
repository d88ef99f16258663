import os
import secrets

# Tests run on the CPU; keep JAX from grabbing an accelerator a developer machine may have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests' own Ray clusters (fixtures, ray.cluster_utils) need a token, this session's, held in the
# environment only (docs/security.md); a sweep's own local Ray makes its own token whatever this says.
os.environ.setdefault("RAY_AUTH_MODE", "token")
if os.environ["RAY_AUTH_MODE"] == "token" and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("WANDB_MODE", "offline")

# The rest of the run's set-up: one compilation cache for the whole run, and under pytest-xdist
# (``scripts/test`` runs ``-n <cores>``) each worker pinned to its own core(s).
#
# Compilation cache. Every process of one run (xdist's workers, the CLIs and Ray workers the tests
# start) shares one fresh directory as JAX's persistent compilation cache (in the run's temporary
# directory, removed at the end, with each process's Ray files: see RAY_TMPDIR below): a
# program one test compiled is loaded, not compiled again, by any other test or subprocess of the
# run, whatever worker it runs on, and nothing is read from or left in ``~/.cache`` (a run here is
# what a clean clone in CI sees). ``TOYMODELS_TEST_COMPILE_CACHE=DIR`` keeps the cache in DIR
# between runs instead; ``=off`` runs without one (what the default cache of a sweep then does is
# the tests' business: they set ``TOYMODELS_COMPILE_CACHE`` themselves).
#
# Pinning. One JAX process per core, pinned, beats one process on both cores (docs/ray.md), and a
# pinned process sizes XLA's thread pool from its cores, so two workers on two cores do not fight
# over them. Everything a test starts (a CLI, a local Ray and its workers) inherits the worker's
# cores. A test that needs the whole machine (it pins processes to cores itself) asks for the
# ``whole_machine`` fixture. ``TOYMODELS_TEST_PIN=0`` leaves workers unpinned.

import shutil
import tempfile

import pytest

# -- the run's directory: its compilation cache, each process's Ray --------------------------

_RUN_DIR = "TOYMODELS_TEST_RUN_DIR"  # made by the run's first process, inherited by the rest
_OWNS_RUN_DIR = (
    _RUN_DIR not in os.environ
)  # a plain pytest, or xdist's controller (before its workers)
if _OWNS_RUN_DIR:
    # Short, under /tmp as Ray's own files are (not under a long TMPDIR such as macOS's): Ray's
    # sockets live under it, and a socket's path is at most 107 bytes.
    os.environ[_RUN_DIR] = tempfile.mkdtemp(
        prefix="tmt-", dir="/tmp" if os.path.isdir("/tmp") else None
    )

_chosen = os.environ.get("TOYMODELS_TEST_COMPILE_CACHE", "")
if _chosen.strip().lower() in ("off", "0", "none", "false"):
    os.environ["TOYMODELS_COMPILE_CACHE"] = "off"
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
else:
    # Read by JAX when it is imported (this process, and every subprocess) and by
    # sweeps.resources.compile_cache_dir(), which hands it to Ray's workers.
    _cache = os.path.expanduser(_chosen) if _chosen else os.path.join(os.environ[_RUN_DIR], "jax")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(_cache)
    # The programs of the tests' seconds-long sweeps compile in less than JAX's default threshold
    # of 1 s on a quiet machine, and are the ones compiled again and again (the same tiny sweep in
    # many tests and CLIs): keep them all.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Each process's local Rays keep their files (sessions, sockets, and ray_current_cluster, the
# address of the last cluster started with `ray start` or ray.cluster_utils, which a ray.init()
# without an address joins) in a directory of its own: a test's two-node cluster in one worker is
# never joined by a sweep's local Ray in the other, nor is another user's on a shared machine.
os.environ["RAY_TMPDIR"] = os.path.join(
    os.environ[_RUN_DIR], os.environ.get("PYTEST_XDIST_WORKER", "main")
)
os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)


def pytest_unconfigure(config):
    if _OWNS_RUN_DIR and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ[_RUN_DIR], ignore_errors=True)


# -- one core per xdist worker ----------------------------------------------------------------

_MACHINE_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _pin_worker() -> None:
    """Pin this xdist worker to its share of the cores the run started with (gw0 the first,
    gw1 the next, ...), before JAX starts its CPU backend; nothing with more workers than cores."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    if os.environ.get("TOYMODELS_TEST_PIN", "1") == "0" or not 1 < workers <= len(_MACHINE_CORES):
        return
    index, share = int(worker[2:]), len(_MACHINE_CORES) // workers
    os.sched_setaffinity(0, _MACHINE_CORES[index * share : (index + 1) * share])


_pin_worker()


@pytest.fixture
def whole_machine():
    """Every core the run started with, for this test only (it pins processes to cores itself):
    the test's own process may use them all while it runs, and what it starts inherits them."""
    if not hasattr(os, "sched_setaffinity"):
        yield sorted(range(os.cpu_count() or 1))
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _MACHINE_CORES)
    try:
        yield list(_MACHINE_CORES)
    finally:
        os.sched_setaffinity(0, mine)


# -- one wandb service per command ------------------------------------------------------------
#
# wandb keeps the address of the service a process started in that process's environment
# (WANDB_SERVICE), and every process started from it afterwards connects to that service instead of
# starting its own. Once a test logged a sweep offline in a worker, every later CLI of that worker
# would log through the worker's service: a command's tracking would depend on which tests ran
# before it in its worker, and fail (a warning, nothing logged) whenever that service is gone or
# busy. A command started by a test gets a service of its own, as in a user's shell.


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


# -- two tiers: the default suite, and the reproductions (docs/reference/contributing.md) -----------
#
# A test marked ``reproduction`` trains long enough to reproduce a published or measured result, or
# runs end to end a path the default suite already checks more cheaply. ``pytest`` (and
# ``scripts/test``) leave those out; ``--all`` runs both tiers, ``-m reproduction`` the second
# alone (any ``-m`` that names the marker decides for itself), and a test named by its node id
# (``path::name``) always runs. CI's ``.ci/run`` runs both tiers.


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        default=False,
        help="run both tiers: the default suite and the tests marked reproduction",
    )


# The files that take longest (CPU time of the default suite, and the Ray and lock tests that also
# wait; measured 2026-12-04 with ``scripts/test --durations=0``) first: pytest-xdist hands each
# worker whole files in this order (``--dist loadfile --no-loadscope-reorder``, scripts/test), so a
# long file met last would run alone while the other worker idles. Only an order: a file renamed
# or gone just runs in its place.
LONGEST_FIRST = (
    "tests/toymodels/test_core.py",
    "tests/sweeps/test_cli.py",
    "tests/sweeps/sae/test_cli.py",
    "tests/analysis/test_family.py",
    "tests/sweeps/executors/test_ray.py",
    "tests/sweeps/spd/test_spd_sweep.py",
    "tests/sweeps/test_resources.py",
    "tests/analysis/test_study_figures.py",
    "tests/sweeps/store/test_locks.py",
    "tests/toymodels/test_sae_train.py",
    "tests/toymodels/test_spd.py",
    "tests/toymodels/test_kinds.py",
    "tests/toymodels/test_finite.py",
    "tests/sweeps/test_config.py",
    "tests/sweeps/test_compile_cache.py",
    "tests/sweeps/test_sweep.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
    if config.getoption("--all") or "reproduction" in (config.option.markexpr or ""):
        return
    named = set()
    for arg in config.args:
        path, sep, rest = arg.partition("::")
        if sep:
            named.add(os.path.relpath(os.path.abspath(path), config.rootpath) + sep + rest)
    keep, left_out = [], []
    for item in items:
        chosen = item.nodeid in named or item.nodeid.split("[")[0] in named
        (left_out if item.get_closest_marker("reproduction") and not chosen else keep).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep
