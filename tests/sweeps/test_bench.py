"""``toymodels-bench`` and the PyTorch reference of the notebook (skipped without torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sweeps.bench import main
from sweeps.executors.ray_executor import usable_cores

pytestmark = pytest.mark.slow


def test_bench_json_without_reference(capsys):
    assert (
        main(["--steps", "20", "--configs", "n5m2", "--json", "--no-reference", "--processes", "1"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [row["config"] for row in rows] == ["n5m2"]
    assert rows[0]["ours"] == rows[0]["ours_one_process"] > 0 and rows[0]["ours_pinned"] is None
    assert rows[0]["reference"] is None and rows[0]["ratio"] is None
    assert (
        rows[0]["ours_device"] == "cpu" and rows[0]["reference_device"] is None
    )  # the tests run JAX on the CPU


def test_the_reference_runs_where_ours_does():
    pytest.importorskip("torch")
    from sweeps.bench.cli import reference_device

    assert reference_device("cpu") == "cpu"  # never CUDA against ours on the CPU
    import torch

    assert reference_device("gpu") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.reproduction
def test_bench_times_one_pinned_process_per_core(capsys, whole_machine):
    if len(usable_cores()) < 2:
        pytest.skip("needs two cores")
    assert (
        main(["--steps", "10", "--configs", "n2m1", "--json", "--no-reference", "--processes", "2"])
        == 0
    )
    (row,) = json.loads(capsys.readouterr().out)
    assert row["processes"] == 2 and row["batch_blocks"] == 8  # n2m1 runs as tms_phase_2d does
    assert row["ours"] == row["ours_pinned"] > 0 and row["ours_one_process"] > 0


@pytest.mark.parametrize(
    "args", [["--processes", "0"], ["--processes", "10000"], ["--batch-blocks", "0"]]
)
def test_bench_rejects_bad_counts(args):
    with pytest.raises(SystemExit):
        main([*args, "--no-reference"])


def test_bench_rejects_unknown_config():
    with pytest.raises(SystemExit):
        main(["--configs", "n7m3", "--no-reference"])


def test_bench_without_torch_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else find_spec(name, *a),
    )
    assert main(["--steps", "5", "--configs", "n5m2"]) != 0
    assert "pip install -e '.[bench]'" in capsys.readouterr().err


def test_reference_learns_dense_features():
    pytest.importorskip("torch")
    from sweeps.bench.reference_torch import train_reference

    out = train_reference(
        n_features=5, n_hidden=2, n_instances=3, steps=300, density=1.0, importance=1.0, seed=0
    )
    assert out["W"].shape == (3, 5, 2)
    assert out["b"].shape == (3, 5)
    assert out["loss_history"].shape == (300, 3)
    init_loss_I, final_loss_I = out["init_loss"], out["final_loss"]
    assert init_loss_I.shape == final_loss_I.shape == (3,)
    assert np.all(np.isfinite(final_loss_I))
    # Dense uniform features through a 2-d bottleneck: the loss falls clearly below its value at
    # init (to about 0.05-0.07 from 0.07-0.28, depending on the draw of W).
    assert np.all(final_loss_I < 0.8 * init_loss_I)
    assert final_loss_I.mean() < 0.5 * init_loss_I.mean()
    history = out["loss_history"]
    assert np.all(history[-20:].mean(axis=0) < history[:20].mean(axis=0))


def test_reference_is_seeded():
    pytest.importorskip("torch")
    from sweeps.bench.reference_torch import train_reference

    a, b = (train_reference(4, 2, 2, steps=5, density=0.5, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a["W"], b["W"])
    np.testing.assert_array_equal(a["final_loss"], b["final_loss"])


def test_bench_json_with_reference(capsys):
    pytest.importorskip("torch")
    assert main(["--steps", "20", "--configs", "n5m2", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["ours"] > 0 and row["reference"] > 0
    assert row["ratio"] == pytest.approx(row["ours"] / row["reference"])
    assert row["ours_device"] == row["reference_device"] == "cpu"
    assert row["ratio"] > 0


@pytest.mark.reproduction
def test_sae_bench_runs_ours_only_without_saelens(capsys, monkeypatch):
    """``toymodels-bench sae`` without SAELens: ours only, said so, one evaluator's scores."""
    from sweeps.bench import sae

    monkeypatch.setattr(sae, "has_reference", lambda: False)
    assert (
        main(
            [
                "sae",
                "--steps",
                "10",
                "--kinds",
                "topk",
                "--eval-samples",
                "100000",
                "--n-saes",
                "2",
                "--throughput-steps",
                "2",
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "ours only" in captured.err and out["reference"] is None
    assert [(r["kind"], r["coefficient"], r["goal"]) for r in out["parity"]] == [
        ("topk", 2, "-"),
        ("topk", 4, "-"),
        ("topk", 8, "-"),
    ]
    assert all(r["saelens"] is None and 0 <= r["ours"]["mcc"] <= 1 for r in out["parity"])
    # k codes per input, but a latent tied with the k-th is kept too (``base.example_top_k_mask``:
    # pre ≥ the k-th largest): after 10 steps one input of 10⁵ can carry k + 1 (b_dec folded:
    # 4.0000095 at k = 4)
    l0 = [r["ours"]["l0"] for r in out["parity"]]
    assert all(k <= v <= k + 1e-4 for v, k in zip(l0, (2, 4, 8))), l0
    assert [r["n"] for r in out["throughput"]] == [2] and all(
        r["ours"] > 0 and r["bound"] > 0 for r in out["throughput"]
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--kinds", "plain,nope"],
        ["--eval-samples", "1000"],
        ["--n-saes", "0"],
        ["--steps", "0"],
        ["--ours", "foo=1"],  # no kind declares it
        ["--kinds", "plain", "--ours", "aux_coefficient=1"],  # not a hyperparameter of plain
        ["--ours", "k=3"],  # the sparsity setting the bench sweeps
        ["--ours", "aux_coefficient=-1"],
        ["--ours", "init_norm"],
    ],
)
def test_sae_bench_rejects_bad_options(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sae", *args])
    assert exit_.value.code == 2 and "error" in capsys.readouterr().err


def test_sae_bench_sets_our_hyperparameters_for_the_kinds_that_declare_them():
    """``--ours NAME=VALUE`` reaches each kind that declares NAME, cast by its declaration; AuxK is
    compiled in or out by the value given, not the default."""
    from sweeps.bench import sae
    from toymodels.sae import SAE_KINDS

    args = sae.parse_args(["--ours", "aux_coefficient=1", "--ours", "dead_window=50"])
    assert args.ours == {"aux_coefficient": 1.0, "dead_window": 50}
    topk, plain = SAE_KINDS.get("topk"), SAE_KINDS.get("plain")
    assert sae.own_hparams(topk, args.ours) == args.ours and sae.own_hparams(plain, args.ours) == {}
    assert sae.aux_k_at_defaults(topk, 100, args.ours)  # a window of 50 is outlasted in 100 steps
    assert not sae.aux_k_at_defaults(topk, 100)  # the default window of 1,000 is not
    assert not sae.aux_k_at_defaults(topk, 5000, {"aux_coefficient": 0.0})
