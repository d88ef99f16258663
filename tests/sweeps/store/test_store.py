"""The store never mixes, loses or invents results: rows carry the config they were trained under,
temporary and damaged files are never read as chunks, a failed write says what failed."""

import os
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweeps.config import ConfigError
from sweeps.runner import run_sweep
from sweeps.store import HASH_KEY, atomic_write, config_hash, read_results
from sweeps.store.meta import body_hash, config_yaml
from tests.helpers import EXPERIMENTS, compose_config, tiny

GRID = [
    "experiment=tms_intro",
    "sweep.grid.density=[1.0,0.5]",
    "sweep.chunk_size=2",
]  # 6 models, 3 chunks


def _config(out, *extra):
    return compose_config([*GRID, *tiny(out), *extra])


def _chunks(out):
    return sorted((out / "chunks").glob("*.parquet"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_a_sweep_yaml_body_hashes_to_its_first_line(experiment):
    config = compose_config([f"experiment={experiment}"])
    assert body_hash(config_yaml(config)) == config_hash(config)


def test_a_sweep_yaml_body_that_is_a_list_has_no_hash():
    with pytest.raises(TypeError, match="a mapping of keys, not a list"):
        body_hash("- sweep\n- train\n")


def test_chunks_carry_their_config_hash_and_a_lost_sweep_yaml_adopts_nothing(tmp_path, capsys):
    out = tmp_path / "s"
    config = _config(out)
    run_sweep(config, progress=False)
    for path in _chunks(out):
        assert pq.read_schema(path).metadata[HASH_KEY].decode() == config_hash(config)

    (out / "sweep.yaml").unlink()
    other = _config(out, "train.steps=20", "train.lr=0.01")
    with pytest.raises(
        ConfigError,
        match=r"sweep\.out: .* no sweep\.yaml, and chunks/ holds models trained under "
        r"another config",
    ):
        run_sweep(other, progress=False)
    assert not (out / "sweep.yaml").exists()

    # the config the chunks were trained under gets its sweep.yaml back and reuses every row
    again = run_sweep(config, progress=False)
    assert (again.trained, again.already_done, again.stored) == (0, 6, 6)
    assert "sweep.yaml was missing" in capsys.readouterr().err


def test_an_edited_sweep_yaml_body_is_refused(tmp_path):
    out = tmp_path / "s"
    config = _config(out)
    run_sweep(config, progress=False)
    meta = out / "sweep.yaml"
    meta.write_text(
        meta.read_text().replace("steps: 30", "steps: 20")
    )  # the body only, not the hash line
    for attempt in (config, _config(out, "train.steps=20")):
        with pytest.raises(
            ConfigError,
            match=r"sweep\.yaml was edited.*Undo the edit, or run the changed config "
            r"with another sweep\.out",
        ):
            run_sweep(attempt, progress=False)


def test_rows_of_another_config_are_neither_done_nor_consolidated(tmp_path, capsys):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run_sweep(_config(ours), progress=False)
    run_sweep(_config(theirs, "train.steps=20"), progress=False)  # the same model ids, other models
    stray = _chunks(theirs)[0]
    (ours / "chunks" / stray.name).write_bytes(stray.read_bytes())
    report = run_sweep(_config(ours), progress=False)
    table = read_results(ours)
    assert len(table) == 6 and table["uid"].is_unique and (table["steps"] == 30).all()
    assert (report.trained, report.stored) == (0, 6)
    assert f"{stray.name} was trained under another config" in capsys.readouterr().err


def test_leftover_temporaries_are_ignored_and_removed(tmp_path):
    out = tmp_path / "s"
    config = _config(out)
    run_sweep(config, progress=False)
    data = _chunks(out)[0].read_bytes()
    leftovers = [
        out / "chunks" / ".tmp-4242-partial.parquet",  # the temporary name of earlier versions
        out / "chunks" / ".tmp-4243-complete.parquet",
        out / "chunks" / ".0123.parquet.4244-abcdef.tmp",
        out / ".results.parquet.4245-abcdef.tmp",
    ]
    leftovers[0].write_bytes(data[: len(data) // 2])  # a kill or a full disk during the write
    for path in leftovers[1:]:
        path.write_bytes(data)
    fresh = out / "chunks" / ".0456.parquet.4246-abcdef.tmp"  # may be a write in flight: kept
    fresh.write_bytes(data)
    an_hour_ago = time.time() - 3600
    for path in leftovers:
        os.utime(path, (an_hour_ago, an_hour_ago))
    report = run_sweep(config, progress=False)
    assert (report.trained, report.stored) == (0, 6)
    assert len(read_results(out)) == 6  # the complete temporary added no rows
    assert not any(p.exists() for p in leftovers) and fresh.exists()


def test_a_damaged_chunk_is_set_aside_with_one_line_and_its_models_retrained(tmp_path, capsys):
    out = tmp_path / "s"
    config = _config(out)
    run_sweep(config, progress=False)
    victim = _chunks(out)[0]
    lost = len(pd.read_parquet(victim))
    victim.write_bytes(victim.read_bytes()[:300])  # truncated from outside
    report = run_sweep(config, progress=False)
    assert (report.trained, report.stored) == (lost, 6)
    err = [line for line in capsys.readouterr().err.splitlines() if victim.name in line]
    assert (
        len(err) == 1
        and "damaged" in err[0]
        and "chunks/corrupt" in err[0]
        and "trained again" in err[0]
    )
    assert (out / "chunks" / "corrupt" / victim.name).exists()
    assert len(read_results(out)) == 6


def test_a_failed_write_removes_its_temporary_and_raises_its_own_error(tmp_path):
    """A real failing write: the OS refuses to grow a file past RLIMIT_FSIZE (EFBIG, Python ignores
    SIGXFSZ), in a child process so that the limit binds nothing else."""
    target = tmp_path / "big.parquet"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import resource, sys; from pathlib import Path; from sweeps.store import atomic_write\n"
                "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
                "try:\n    atomic_write(Path(sys.argv[1]), b'x' * 100_000)\n"
                "except OSError as e:\n    print(e.errno, e.filename, e.__context__ is None, e.__cause__ is None)"
            ),
            str(target),
        ],
        capture_output=True,
        text=True,
    )
    assert child.stdout.split() == [str(27), str(target), "True", "True"], (
        child.stderr
    )  # EFBIG, no chained error
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary
    assert atomic_write(target, b"ok") and target.read_bytes() == b"ok"


def test_a_store_written_before_chunks_carried_a_hash_still_resumes(tmp_path):
    out = tmp_path / "s"
    config = _config(out)
    run_sweep(config, progress=False)
    for path in _chunks(out):  # as the previous version wrote them: no hash, no '# models' line
        table = pq.read_table(path)
        pq.write_table(
            table.replace_schema_metadata(
                {k: v for k, v in table.schema.metadata.items() if k != HASH_KEY}
            ),
            path,
        )
    meta = out / "sweep.yaml"
    meta.write_text(
        "".join(
            line
            for line in meta.read_text().splitlines(keepends=True)
            if not line.startswith("# models:")
        )
    )
    report = run_sweep(config, progress=False)
    assert (report.trained, report.already_done, report.stored) == (0, 6, 6)
    (out / "sweep.yaml").unlink()  # with no sweep.yaml to vouch for them, no config adopts them
    with pytest.raises(ConfigError, match="hash none"):
        run_sweep(config, progress=False)


def test_a_store_written_by_the_last_landed_version_still_resumes(tmp_path):
    """sweep.yaml of `toymodels-sweep experiment=tms_intro train.steps=300` as d6d35fb wrote it,
    before the config had plugins, kind options, the monosemanticity term, the sae section and a
    per-device piece size: the same command hashes to its first line, and the body still does."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "data" / "sweep_d6d35fb_tms_intro.yaml").read_text()
    stored, body = text.splitlines()[0].split(": ")[1], text.split("\n", 1)[1]
    assert body_hash(body) == stored
    assert config_hash(compose_config(["experiment=tms_intro", "train.steps=300"])) == stored
    assert (
        config_hash(
            compose_config(["experiment=tms_intro", "train.steps=300", "train.mono_penalty=0.1"])
        )
        != stored
    )


def _damage(path, column, to):
    """Rewrite chunk ``path`` with ``column`` replaced by ``to(column)`` (or dropped for None), its
    config hash kept: valid parquet with the right tag, the wrong rows."""

    table = pq.read_table(path)
    metadata = table.schema.metadata
    i = table.column_names.index(column)
    table = (
        table.remove_column(i)
        if to is None
        else table.set_column(i, column, to(table.column(column)))
    )
    pq.write_table(table.replace_schema_metadata(metadata), path)


def _as_text(column):
    import pyarrow as pa

    return pa.array([str(v) for v in column.to_pylist()])


def _flattened(column):
    import pyarrow as pa

    return pa.array([[x for row in matrix for x in row] for matrix in column.to_pylist()])


def _text_inside(column):
    import pyarrow as pa

    return pa.array([[[str(x) for x in row] for row in matrix] for matrix in column.to_pylist()])


def _transposed(column):
    import numpy as np
    import pyarrow as pa

    return pa.array([np.asarray(m).T.tolist() for m in column.to_pylist()])


def _nan(column):
    import pyarrow as pa

    return pa.array([[[float("nan")] * len(row) for row in m] for m in column.to_pylist()])


def _as_float(column):
    import pyarrow as pa

    return pa.array([float(v) for v in column.to_pylist()])


DAMAGES = {
    "no W": ("W", None),
    "loss as text": ("loss", _as_text),
    "uid as float": ("uid", _as_float),
    "W flattened": ("W", _flattened),
    "text inside W": ("W", _text_inside),
    "W transposed": ("W", _transposed),
    "NaN in W": ("W", _nan),
    "no grid axis": ("density", None),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_chunk_with_damaged_rows_is_set_aside_and_its_models_retrained(
    store_copy, damage, capsys
):
    """Valid parquet with the right config hash but the wrong rows (issue 22 item 4): on 43f758a a
    chunk without W resumed with exit 0 and rows of W = None, loss as text crashed every resume."""
    from analysis.api import load
    from tests.sweeps.conftest import TINY_STORE

    victim = _chunks(store_copy)[0]
    lost = set(pd.read_parquet(victim)["uid"])
    column, to = DAMAGES[damage]
    _damage(victim, column, to)
    report = run_sweep(compose_config([*TINY_STORE, *tiny(store_copy)]), progress=False)
    assert (report.trained, report.stored) == (len(lost), 4), report.summary()
    err = [line for line in capsys.readouterr().err.splitlines() if victim.name in line]
    assert (
        len(err) == 1
        and "damaged" in err[0]
        and "chunks/corrupt" in err[0]
        and "trained again" in err[0]
    ), err
    assert (store_copy / "chunks" / "corrupt" / victim.name).exists()
    table = pq.read_table(store_copy / "results.parquet")
    assert (
        str(table.schema.field("uid").type) == "int64"
        and str(table.schema.field("loss").type) == "double"
    )
    assert str(table.schema.field("W").type) == "list<element: list<element: double>>"
    assert len(load(store_copy).table) == 4


# sweep.yaml of each command as 43f758a (the last version before issue 23's restructuring) wrote
# it, and the ids of the models it planned (their number and a digest of the sorted uids).
STORES_43F758A = {
    "mono_architectures_small": (
        ["train.steps=200"],
        12,
        "0ccb06891b7838ec",
    ),  # l1_hidden and mono terms
    "capacity_marginal_small": (["train.steps=200"], 66, "88ecb0e0c1825914"),  # the capacity term
    "dd_cpu_small": (["train.steps=300"], 12, "394703d6023c2402"),  # finite data
    # SAEs on a world: plain, gated, rescaled, plain and gated at their unit-norm decoder unclipped
    # (issue 21 changed their defaults and the other kinds' SAEs: tests/sweeps/sae/test_sae_hparams.py)
    "sae_shrinkage_small": (
        ["sae.decoder=unit", "sae.grad_clip=0", "sae.fold_b_dec=false"],
        12,
        "0e6893d755cb50e1",
    ),
}


@pytest.mark.parametrize("experiment", sorted(STORES_43F758A))
def test_a_store_written_by_43f758a_still_resumes(experiment):
    """A toy sweep with each optional loss term, a finite-data sweep and an SAE sweep, as 43f758a
    wrote them: the same command hashes to the stored first line (the body still does) and plans
    the same models (the same uids), so resuming such a store trains nothing."""
    import hashlib
    from pathlib import Path

    from sweeps.plan import plan_sweep

    overrides, n_models, digest = STORES_43F758A[experiment]
    text = (Path(__file__).parent.parent / "data" / f"sweep_43f758a_{experiment}.yaml").read_text()
    stored, body = text.splitlines()[0].split(": ")[1], text.split("\n", 2)[2]
    assert text.splitlines()[1] == f"# models: {n_models}"
    assert body_hash(body) == stored
    config = compose_config([f"experiment={experiment}", *overrides])
    assert config_hash(config) == stored
    uids = sorted(p.uid for _, p in plan_sweep(config).units)
    assert (len(uids), hashlib.sha256(",".join(map(str, uids)).encode()).hexdigest()[:16]) == (
        n_models,
        digest,
    )
