"""SAEs on stored toy models (``toymodels.sae.toy``, ``toymodels-sae``): each model's own data kind and
hidden layer (issue 15 item 2), its true directions, and the command on tiny stored sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sweeps.store import read_results
from tests.helpers import cli, tiny
from toymodels import rng
from toymodels.data import data_spec, sample_batch
from toymodels.models import forward_with_hidden, init_params
from toymodels.sae.toy import ToySource

SAE_ARGS = [
    "--l1",
    "0.1,0.3",
    "--dict-sizes",
    "n",
    "--steps",
    "20",
    "--batch",
    "32",
    "--eval-batch",
    "64",
    "--seeds",
    "2",
    "wandb.mode=disabled",
]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "sweep"
    done = cli("toymodels-sweep", *tiny(out, "sweep.seeds=1", "sweep.grid.density=[1.0,0.1]"))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def hidden_sweep(tmp_path_factory):
    """ReLU hidden layer on correlated pairs: neither the model nor the data that toymodels-sae
    assumed before issue 15's fix."""
    out = tmp_path_factory.mktemp("sae") / "hidden"
    done = cli(
        "toymodels-sweep",
        *tiny(
            out,
            "sweep.seeds=1",
            "model.kind=relu_hidden",
            "model.n_features=6",
            "model.n_hidden=3",
            "data.kind=correlated",
            "sweep.grid.density=[0.3]",
        ),
    )
    assert done.returncode == 0, done.stderr
    return out


def activation_variance(W_HxF, hidden: bool, pairs: bool, p: float, samples=400_000, seed=1):
    """E‖h − E h‖² by Monte Carlo in numpy, from the data kinds' definitions (docs/science/models.md):
    each feature (or each consecutive pair together) active with probability p, U[0, 1] values."""
    gen = np.random.default_rng(seed)
    n = W_HxF.shape[1]
    active = (
        gen.uniform(size=(n // 2, samples)) < p if pairs else gen.uniform(size=(n, samples)) < p
    )
    x = gen.uniform(size=(n, samples)) * (np.repeat(active, 2, axis=0) if pairs else active)
    h = W_HxF @ x
    h = np.maximum(h, 0.0) if hidden else h
    return float(((h - h.mean(axis=1, keepdims=True)) ** 2).sum(axis=0).mean())


def test_saes_train_on_the_stored_models_own_data_and_hidden_layer(hidden_sweep):
    """Issue 15 item 2. The activations' variance per input is mse·m / fvu, columns every version
    of the table has. It must be that of h = ReLU(W x) on correlated pairs; before the fix it was
    that of W x on independent features, 5.5x larger here (this test fails on main)."""
    done = cli(
        "toymodels-sae",
        str(hidden_sweep),
        "--kind",
        "plain",
        "--l1",
        "0.1",
        "--dict-sizes",
        "n",
        "--steps",
        "5",
        "--batch",
        "32",
        "--eval-batch",
        "65536",
    )
    assert done.returncode == 0, done.stderr
    row = read_results(hidden_sweep / "sae").iloc[0]
    W = np.asarray(pd.read_parquet(hidden_sweep / "results.parquet")["W"].iloc[0].tolist())
    seen = row["mse"] * row["n_hidden"] / row["fvu"]
    own = activation_variance(W, hidden=True, pairs=True, p=0.3)
    assumed_before = activation_variance(W, hidden=False, pairs=False, p=0.3)
    assert seen == pytest.approx(own, rel=0.03)
    assert abs(assumed_before - own) > 0.2 * own  # the test tells the two apart
    assert row["h_var"] == pytest.approx(seen, rel=1e-5) and row["toy_data_kind"] == "correlated"


def test_toy_source_draws_the_models_data_kind_and_forward_bit_for_bit():
    params = init_params(jax.random.key(0), 6, 3, 0.5, "relu_hidden")
    spec = data_spec("correlated", set_size=3)
    source = ToySource("relu_hidden", spec, 6, 3)
    density = jnp.full((6,), 0.4)
    words = rng.key_words(jax.random.key(1))
    z, h = source.sample({"params": params, "density_F": density}, words, 7, 128)
    x = sample_batch(spec, words, jnp.uint32(7), density, 128)
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(h, forward_with_hidden(params, x, "relu_hidden")[1])


@pytest.mark.parametrize(
    "model, data, expected",
    [
        ("relu", "sparse", lambda W: W),
        ("relu_hidden", "sparse", lambda W: np.maximum(W, 0)),
        ("relu", "signed", lambda W: np.concatenate([W, -W], axis=1)),
        ("abs", "signed", lambda W: np.concatenate([np.maximum(W, 0), np.maximum(-W, 0)], axis=1)),
    ],
)
def test_true_directions_are_the_hidden_response_to_each_feature_alone(model, data, expected):
    """W_i for tied models, ReLU(W_i) behind a ReLU hidden layer; signed data adds the response
    to −e_i as a second true feature (non-negative codes need their own latent for x_i < 0)."""
    params = init_params(jax.random.key(2), 5, 3, 0.7, model)
    source = ToySource(model, data_spec(data), 5, 3)
    truth = np.asarray(source.truth({"params": params, "density_F": jnp.ones(5)}))
    np.testing.assert_allclose(truth, expected(np.asarray(params["W"])), atol=1e-6)
    assert source.n_true == truth.shape[1]
    z, _ = source.sample(
        {"params": params, "density_F": jnp.ones(5)}, rng.key_words(jax.random.key(0)), 0, 64
    )
    assert z.shape == (source.n_true, 64) and (z >= 0).all()


def test_cli_is_an_sae_sweep_on_the_stored_models(tiny_sweep, tmp_path):
    """toymodels-sae runs a +sae=toy sweep into DIR/sae: the sweep's rows (one schema), drawn by
    toymodels-figures; an in-process run of one kind stores the same bits."""
    from sweeps.sae.cli import main

    first = cli("toymodels-sae", str(tiny_sweep), *SAE_ARGS)
    assert first.returncode == 0, first.stderr
    assert "toymodels-sweep ~experiment +sae=toy" in first.stdout
    table = read_results(tiny_sweep / "sae", arrays=True)
    expected = {
        "uid",
        "seed",
        "source_uid",
        "toy_seed",
        "density",
        "toy_model",
        "toy_data_kind",
        "n_features",
        "n_hidden",
        "interference_mean",
        "dims_per_feature",
        "kind",
        "dict_size",
        "sparsity",
        "l1",
        "k",
        "mmcs",
        "mmcs_reverse",
        "mmcs_chance",
        "mcc",
        "n_dead",
        "dead_fraction",
        "l0",
        "true_l0",
        "mse",
        "fvu",
        "h_var",
        "gamma",
        "precision",
        "recall",
        "f1",
        "absorption",
        "n_composed",
        "W_dec",
        "max_cos",
        "snap_loss",
        "params",
    }
    assert expected <= set(table.columns) and "sae_seed" not in table.columns
    # 2 toy models × 2 λ × 2 seeds × 2 kinds, dictionary size n = 5
    assert (
        len(table) == 16
        and set(table["dict_size"]) == {5}
        and set(table["kind"]) == {"plain", "gated"}
    )
    assert table["mmcs"].between(-1, 1).all() and table["mcc"].between(0, 1).all()
    # In this process, one kind only: the same bits, whatever else ran beside it.
    main([str(tiny_sweep), *SAE_ARGS, "--kind", "gated", "--out", str(tmp_path / "gated")])
    gated = read_results(tmp_path / "gated", arrays=True)
    theirs = table[table["kind"] == "gated"].set_index("uid").loc[gated["uid"]]
    assert all(np.array_equal(a, b) for a, b in zip(gated["W_dec"], theirs["W_dec"]))
    drawn = cli("toymodels-figures", str(tiny_sweep / "sae"))
    assert drawn.returncode == 0, drawn.stderr
    assert (tiny_sweep / "sae" / "figures" / "sae_recovery.png").exists()


def test_an_old_sae_parquet_is_still_drawn(tiny_sweep, tmp_path):
    """A sae.parquet written by toymodels-sae before it ran an SAE sweep (its own names: uid the toy
    model's, sae_seed) is still drawn beside its toy sweep (figure catalog), renamed on read."""
    import shutil

    import matplotlib.pyplot as plt

    from analysis.figures.catalog import FIGURES
    from analysis.figures.sae import SAE_TABLE
    from analysis.stored_sweep import StoredSweep

    old = tmp_path / "old"
    shutil.copytree(tiny_sweep, old, ignore=shutil.ignore_patterns("sae", "figures", "wandb"))
    sae_table(True).to_parquet(old / SAE_TABLE)
    sweep = StoredSweep.load(old)
    spec = FIGURES["sae_recovery"]
    assert spec.applies(sweep)
    table, _ = spec.inputs(sweep)
    assert {"source_uid", "seed"} <= set(table.columns) and "sae_seed" not in table.columns
    plt.close(spec.plot(table, "old"))


def test_cli_trains_the_new_kinds_with_k_for_top_k_kinds(tiny_sweep, tmp_path):
    from sweeps.sae.cli import main

    main(
        [
            str(tiny_sweep),
            "--kind",
            "topk,rescaled",
            "--k",
            "1,2",
            "--l1",
            "0.1",
            "--dict-sizes",
            "n",
            "--steps",
            "10",
            "--batch",
            "32",
            "--eval-batch",
            "64",
            "--out",
            str(tmp_path / "new"),
            "wandb.mode=disabled",
        ]
    )
    table = read_results(tmp_path / "new")
    topk = table[table["kind"] == "topk"]
    assert sorted(set(topk["k"])) == [1, 2] and (topk["sparsity"] == topk["k"]).all()
    assert (topk["l0"] <= topk["k"] + 1e-9).all()  # at most k latents per input
    assert set(table[table["kind"] == "rescaled"]["sparsity"]) == {0.1}


@pytest.mark.parametrize(
    "args, option",
    [
        (["--l1", "0.1,-1"], "--l1"),
        (["--l1", ""], "--l1"),
        (["--k", "0"], "--k"),
        (["--kind", "topk", "--k", "6"], "--k"),  # more than the 5 latents of --dict-sizes n
        (["--dict-sizes", "0"], "--dict-sizes"),
        (["--dict-sizes", ","], "--dict-sizes"),
        (["--kind", "sparse_coding"], "--kind"),
        (["--steps", "0"], "--steps"),
        (["--ortho", "-1"], "--ortho"),
        (["--models", "no_such_column > 1"], "--models"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tiny_sweep, capsys, args, option):
    from sweeps.sae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_sweep), "--dict-sizes", "n", *args])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_unknown_directory_exits_2(tmp_path, capsys):
    from sweeps.sae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "results.parquet" in capsys.readouterr().err


def test_sae_command_does_not_import_analysis():
    """sweeps → analysis is a forbidden arrow (issue 15 item 5): toymodels-figures draws the SAE sweep."""
    import subprocess
    import sys

    code = "import sys, sweeps.sae.cli; print(sorted(m for m in sys.modules if m.startswith('analysis')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def sae_table(with_density: bool) -> pd.DataFrame:
    rows = []
    for uid, (density, dstar) in enumerate([(1.0, 1.0), (0.3, 0.6), (0.05, 0.4)]):
        for kind, d, sparsity in [
            ("plain", 5, 0.1),
            ("gated", 5, 0.1),
            ("plain", 10, 0.3),
            ("topk", 5, 2),
        ]:
            rows.append(
                dict(
                    uid=uid,
                    toy_seed=0,
                    sae_seed=0,
                    n_features=5,
                    n_hidden=2,
                    kind=kind,
                    dict_size=d,
                    sparsity=sparsity,
                    mmcs=1 - dstar / 4,
                    mmcs_reverse=0.9,
                    mmcs_chance=0.8,
                    fvu=0.01,
                    l0=1.0,
                    true_l0=5 * density,
                    dead_fraction=0.1,
                    dims_per_feature=dstar,
                    interference_mean=1 - dstar,
                    **({"density": density} if with_density else {}),
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("with_density, last_panel", [(True, "D*"), (False, "interference")])
def test_recovery_figure_draws_against_density_or_d_star(with_density, last_panel):
    import matplotlib.pyplot as plt

    from analysis.figures.sae import legacy_sae_table, plot_sae_recovery

    fig = plot_sae_recovery(
        legacy_sae_table(sae_table(with_density)), stamp="test · config x · rev y"
    )
    axes = fig.axes
    assert len(axes) == 6 and last_panel in axes[5].get_title()
    assert len(axes[0].get_lines()) == 4 + 2  # one per (kind, d, λ or k), one chance level per d
    assert any("k=2" in line.get_label() for line in axes[0].get_lines())
    assert ("1 / density" in axes[0].get_xlabel()) == with_density
    plt.close(fig)
