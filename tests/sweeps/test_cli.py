"""The commands as a user meets them: the docs' own command lines, file-system errors as one
line naming the path and what to do, a double Ctrl-C, figures of an unfinished sweep."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.cli import prepare_overrides
from sweeps.plan import plan_sweep
from tests.helpers import CONF_DIR, cli, compose_config, tiny


def _documented_commands() -> list[str]:
    """Every toymodels-sweep command line in the code blocks of the README and the docs pages, and
    in the experiment files."""
    from tests.readme import blocks

    unplanned = ("shows an error", "needs a stored sweep", "needs a saved SAELens model")
    lines = [
        line
        for block in blocks()
        if not (block.reason or "").startswith(unplanned)
        for line in block.code.splitlines()
    ]
    lines += [
        p.read_text().splitlines()[1].lstrip("# ")
        for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))
    ]
    commands = []
    for line in lines:
        for part in line.split("&&"):
            if re.match(r"\s*toymodels-sweep\s", part):
                commands.append(shlex.join(shlex.split(part, comments=True)[1:]))
    # docs/saes/reference.md's SAE kind registers in the process that loads it: its commands run as
    # written, each in its own process, in tests/sweeps/sae/test_sae_hparams.py.
    return [c for c in dict.fromkeys(commands) if "my_sae.py" not in c]


DOCUMENTED = _documented_commands()


def test_the_docs_document_a_generator_axis():
    assert "experiment=tms_phase_2d 'sweep.grid.density=geomspace(0.01, 1, 40)'" in DOCUMENTED


@pytest.mark.parametrize("command", DOCUMENTED)
def test_every_documented_command_composes_and_plans(command, tmp_path, monkeypatch):
    """Through the CLI's own override handling, then Hydra's compose and the planner (in a
    directory holding the plugin files the docs' commands name: docs/kinds.md's own kind,
    docs/architecture.md's loss term)."""
    from tests.readme import doc_block

    (tmp_path / "my_kinds.py").write_text(doc_block("my_kinds.py"))
    (tmp_path / "my_terms.py").write_text(doc_block("my_terms.py"))
    monkeypatch.chdir(tmp_path)
    overrides = prepare_overrides(shlex.split(command))
    models = plan_sweep(compose_config(overrides)).units
    assert models
    if "geomspace(0.01, 1, 40)" in command:
        assert len({dict(p.coords)["density"] for _, p in models}) == 40


def _one_error_line(result, command="toymodels-sweep"):
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_sweep_out_that_cannot_be_created_is_one_line_before_any_compute(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sweep"
    result = cli("toymodels-sweep", "experiment=tms_intro", *tiny(out), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert (
        f"sweep.out: cannot write {out}: Not a directory" in line
        and "choose another sweep.out" in line
    )


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process may not write: by its mode, or (as root, who writes through
    modes) a read-only tmpfs."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True
    ).returncode:
        pytest.skip("as root, a read-only directory needs a read-only mount, and mount failed")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_sweep_out_is_one_line(read_only_dir, tmp_path):
    out = read_only_dir / "sweep"
    result = cli("toymodels-sweep", "experiment=tms_intro", *tiny(out), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert f"cannot write {out}" in line and re.search(
        "Read-only file system|Permission denied", line
    )


def test_figures_of_a_killed_or_damaged_sweep_and_an_unwritable_figures_dir(store_copy, tmp_path):
    out = store_copy  # 4 models in 2 chunks
    chunks = sorted((out / "chunks").glob("*.parquet"))

    # killed before it finished: results.parquet not written yet, one chunk never stored
    (out / "results.parquet").unlink()
    chunks[0].unlink()
    killed = cli("toymodels-figures", str(out), "--out", str(tmp_path / "f1"), cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr
    assert re.search(
        r"note: .*no results\.parquet yet.*drawing the 2 of 4 models its finished chunks hold; "
        r"rerun the sweep's command",
        killed.stderr,
    ), killed.stderr
    assert (tmp_path / "f1" / "geometry_2d.png").exists()

    # a truncated results.parquet: drawn from the chunks instead
    (out / "results.parquet").write_bytes(chunks[1].read_bytes()[:200])
    damaged = cli("toymodels-figures", str(out), "--out", str(tmp_path / "f2"), cwd=tmp_path)
    assert damaged.returncode == 0, damaged.stderr
    assert (
        "results.parquet is damaged" in damaged.stderr
        and (tmp_path / "f2" / "loss_curves.png").exists()
    )

    # nowhere to write the figures: a file where figures/ should be
    (out / "figures").write_text("")
    blocked = cli("toymodels-figures", str(out), cwd=tmp_path)
    assert blocked.returncode == 1
    line = _one_error_line(blocked, "toymodels-figures")
    assert f"cannot write {out / 'figures'}" in line and "--out DIR" in line

    # nothing finished at all
    for path in (out / "chunks").glob("*.parquet"):
        path.unlink()
    empty = cli("toymodels-figures", str(out), cwd=tmp_path)
    assert empty.returncode == 2
    assert "holds no finished model yet" in _one_error_line(empty, "toymodels-figures")


# toymodels-sweep's own main() under a file size limit: the OS refuses to grow any file past
# 12 KiB (EFBIG; Python ignores SIGXFSZ), which sweep.yaml and Hydra's record stay below and a chunk
# does not. Works without root, unlike a small tmpfs.
FSIZE_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (12288, 12288))
import sweeps.cli
sys.argv = ["toymodels-sweep", *sys.argv[1:]]
sweeps.cli.main()
"""


@pytest.mark.parametrize("limit", ["full tmpfs", "file size limit"])
def test_a_write_the_os_refuses_is_one_line_naming_the_file(tmp_path, limit):
    args = ["experiment=tms_intro", "sweep.grid.density=[1.0,0.5]"]
    if (
        limit == "full tmpfs"
    ):  # a real ENOSPC: 32 KiB hold sweep.yaml and Hydra's record, not a chunk
        disk = tmp_path / "disk"
        disk.mkdir()
        if (
            os.geteuid() != 0
            or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(disk)], capture_output=True
            ).returncode
        ):
            pytest.skip("mounting a tmpfs needs root")
        out = disk / "s"
        command = [str(Path(sys.executable).with_name("toymodels-sweep")), *args, *tiny(out)]
        expect, advice = "No space left on device", "free some space"
    else:
        out = tmp_path / "s"
        command = [sys.executable, "-c", FSIZE_LIMITED, *args, *tiny(out)]
        expect, advice = "File too large", "ulimit -f"
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )
        assert result.returncode == 1, result.stderr
        line = _one_error_line(result)
        assert (
            line.startswith(f"toymodels-sweep: error: {out}/chunks/")
            and expect in line
            and advice in line
        )
        assert "rerun the same command to resume" in line
        assert [
            p for p in out.rglob("*") if p.name.endswith(".tmp")
        ] == []  # the failed write's temporary too
    finally:
        if limit == "full tmpfs":
            subprocess.run(["umount", str(disk)], check=True)


def _processes_with(token: str) -> list[str]:
    """Live processes whose environment carries ``token`` (the driver's, inherited by Ray's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and token.encode() in (proc / "environ").read_bytes()
                and ") Z " not in (proc / "stat").read_text()
            ):  # not a zombie awaiting its parent
                found.append((proc / "cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return found


@pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="finds Ray's processes through /proc"
)
@pytest.mark.parametrize("moment", ["raylet", "_ray_run_chunk"])  # Ray starting; a chunk training
def test_ctrl_c_pressed_again_and_again_still_shuts_down_the_local_ray(tmp_path, moment):
    """As a terminal does: SIGINT to the whole process group, then again every 0.1 s while the
    driver is stopping. Ray's dashboard and runtime-env agents used to outlive the command."""
    token = f"toymodels-test-{os.getpid()}-{time.time_ns()}"
    out = tmp_path / "s"
    args = [
        "experiment=tms_intro",
        *[a for a in tiny(out) if a != "sweep.executor=local"],
        "sweep.grid.density=[1.0,0.5,0.2,0.1]",
        "train.steps=20000",
        "sweep.chunk_size=3",
        "ray.num_cpus=2",
    ]
    exe = Path(sys.executable).with_name("toymodels-sweep")
    env = dict(os.environ, JAX_PLATFORMS="cpu", TOYMODELS_TEST_TOKEN=token)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [str(exe), *args],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(moment in p for p in _processes_with(token)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    left = _processes_with(token)
    for _ in range(20):  # a moment for processes already told to exit
        if not left:
            break
        time.sleep(0.25)
        left = _processes_with(token)
    assert not left, f"still running after the driver exited: {[c[:60] for c in left]}"
