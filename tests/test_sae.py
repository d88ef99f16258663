"""Sparse autoencoders on toy-model activations: scores on constructed dictionaries, recovery without
superposition, batching, and the ``toymodels-sae`` command on a tiny stored sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from tests.helpers import cli, tiny
from toymodels.sae import (
    SaeParams,
    SaeSpec,
    activity_scores,
    chance_mmcs,
    decoder,
    encode,
    make_train_sae,
    mmcs,
    represented,
    sae_keys,
    sae_loss,
    train_saes,
)


def random_W(seed, n_hidden, n_features):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n_hidden, n_features)), jnp.float32)


def test_mmcs_is_one_for_the_true_directions_in_any_order_and_scale():
    W_HxF = random_W(0, 3, 5)
    assert float(mmcs(W_HxF, W_HxF)) == pytest.approx(1.0, abs=1e-6)
    dictionary = 2.5 * W_HxF[:, ::-1]  # permuted and rescaled, with extra elements
    dictionary = jnp.concatenate([dictionary, random_W(1, 3, 4)], axis=1)
    assert float(mmcs(W_HxF, dictionary)) == pytest.approx(1.0, abs=1e-6)
    assert float(mmcs(dictionary, W_HxF)) < 0.99  # the extra elements are not true features


def test_mmcs_skips_masked_entries_and_is_nan_when_nothing_is_left():
    true = jnp.eye(2)
    dictionary = jnp.asarray([[1.0, 1.0], [0.0, 1.0]])  # e1 and the diagonal
    assert float(mmcs(true, dictionary)) == pytest.approx((1 + 1 / np.sqrt(2)) / 2, abs=1e-6)
    assert float(mmcs(true, dictionary, jnp.array([True, False]))) == pytest.approx(1.0)
    assert float(mmcs(true, dictionary, dict_mask_D=jnp.array([False, True]))) == pytest.approx(1 / np.sqrt(2))
    assert np.isnan(float(mmcs(true, dictionary, jnp.array([False, False]))))
    assert np.isnan(float(mmcs(true, dictionary, dict_mask_D=jnp.array([False, False]))))


def test_represented_features_follow_the_norm_threshold():
    W = jnp.asarray([[1.0, 0.05, 0.0, 0.3], [0.0, 0.05, 0.0, 0.0]])
    assert represented(W).tolist() == [True, False, False, True]


def test_chance_mmcs_in_two_dimensions_matches_the_nearest_of_random_angles():
    """In 2-D the best of d uniform random directions is cos(smallest angle); a Monte Carlo over
    angles checks the one over normal vectors."""
    angles = np.random.default_rng(0).uniform(-np.pi, np.pi, (100_000, 5))
    expected = np.cos(np.abs(angles)).max(axis=1).mean()
    assert chance_mmcs(2, 5) == pytest.approx(expected, abs=0.01)
    assert chance_mmcs(2, 10) > chance_mmcs(2, 5) > chance_mmcs(3, 5)  # more elements, fewer dimensions


def test_dead_units_and_l0_on_constructed_codes():
    f_DxB = jnp.asarray([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 2.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    dead, l0 = activity_scores(f_DxB)
    assert dead.tolist() == [True, False, False]
    assert float(l0) == pytest.approx((2 + 1 + 2 + 1) / 4)


def hand_params(W_enc_DxH, b_enc_D, r_mag_D=None, b_mag_D=None):
    W_enc_DxH = jnp.asarray(W_enc_DxH, jnp.float32)
    d, m = W_enc_DxH.shape
    zeros = jnp.zeros((d,))
    return SaeParams(W_enc_DxH=W_enc_DxH, b_enc_D=jnp.asarray(b_enc_D, jnp.float32), V_HxD=W_enc_DxH.T,
                     b_dec_H=jnp.zeros((m,)), r_mag_D=zeros if r_mag_D is None else jnp.asarray(r_mag_D),
                     b_mag_D=zeros if b_mag_D is None else jnp.asarray(b_mag_D))


def test_gate_decides_which_units_fire_and_magnitude_path_their_size():
    params = hand_params(np.eye(2), [-0.5, -0.5], r_mag_D=[np.log(2.0), 0.0], b_mag_D=[0.0, 1.0])
    h_HxB = jnp.asarray([[1.0, 0.2], [0.2, 1.0]])
    f, _ = encode(params, h_HxB, "gated")
    # gate open only where the coordinate exceeds 0.5; magnitude 2·h for unit 0, h + 1 for unit 1
    np.testing.assert_allclose(f, [[2.0, 0.0], [0.0, 2.0]], atol=1e-6)
    plain, _ = encode(params, h_HxB, "plain")
    np.testing.assert_allclose(plain, [[0.5, 0.0], [0.0, 0.5]], atol=1e-6)


def test_decoder_columns_have_unit_norm():
    params = hand_params(random_W(2, 4, 3), np.zeros(4))
    np.testing.assert_allclose(jnp.linalg.norm(decoder(params), axis=0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_gradients_are_finite_and_reach_every_used_parameter(kind):
    params = hand_params(random_W(3, 6, 3), np.full(6, 0.1))
    h_HxB = random_W(4, 3, 32)
    grads = jax.jit(jax.grad(sae_loss), static_argnums=3)(params, h_HxB, jnp.float32(0.1), kind)
    for name, g in vars(grads).items():
        assert np.isfinite(np.asarray(g)).all(), name
    assert float(jnp.abs(grads.V_HxD).sum()) > 0 and float(jnp.abs(grads.W_enc_DxH).sum()) > 0
    used_by_gated = float(jnp.abs(grads.r_mag_D).sum()) > 0
    assert used_by_gated == (kind == "gated")


# The gated SAE's L1 acts on its gate; at λ = 0.3 one seed in 16 kept a rotated pair of units,
# at 0.5 none of 16 did (min MMCS 0.998), nor did the plain SAE at 0.3 (min 0.997).
@pytest.mark.parametrize("kind, l1", [("plain", 0.3), ("gated", 0.5)])
def test_sae_recovers_features_without_superposition(kind, l1):
    """Identity toy model (n = m = 4), density 0.2: every feature is its own direction."""
    spec = SaeSpec(dict_size=8, steps=1500, batch_size=256, kind=kind, lr=3e-3, eval_batch=2048)
    n = 2
    result = train_saes(spec, sae_keys(0, [5] * n, range(n)), jnp.broadcast_to(jnp.eye(4), (n, 4, 4)),
                        jnp.full((n, 4), 0.2), jnp.full((n,), l1))
    scores = jax.device_get(result.scores)
    assert (scores.mmcs > 0.9).all(), scores.mmcs
    assert (scores.mmcs > chance_mmcs(4, 8) + 0.1).all()
    assert (scores.fvu < 0.2).all()
    assert (scores.l0 < 2.0).all()  # sparse codes: 0.8 true features active per input


# The settings ``SAE_ARGS`` gives the command below, so this process compiles that program once.
CLI_SPEC = SaeSpec(dict_size=5, steps=20, batch_size=32, kind="gated", lr=3e-3, eval_batch=64)


def test_vmapped_saes_equal_single_runs_and_differ_by_l1():
    W = jnp.stack([random_W(6 + i % 3, 2, 5) for i in range(8)])
    density = jnp.asarray(np.linspace(0.05, 1.0, 8)[:, None].repeat(5, 1), jnp.float32)
    l1 = jnp.asarray([0.01, 0.1, 1.0, 0.3, 0.01, 0.1, 1.0, 0.3], jnp.float32)
    keys = sae_keys(0, [3, 4, 5, 3, 4, 5, 3, 4], [0] * 8)
    many = train_saes(CLI_SPEC, keys, W, density, l1)
    single = jax.jit(make_train_sae(CLI_SPEC))
    for i in (0, 5, 7):
        one = single(keys[i], W[i], density[i], l1[i])
        np.testing.assert_allclose(many.params.V_HxD[i], one.params.V_HxD, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(many.scores.loss[i], one.scores.loss, rtol=1e-5)
    # One toy model and key in every row: rows 0 and 1 differ only by λ, rows 0 and 4 not at all.
    row0 = jnp.zeros(8, int)
    same = train_saes(CLI_SPEC, keys[row0], W[row0], density[row0], l1)
    assert not np.allclose(same.params.V_HxD[0], same.params.V_HxD[1])
    np.testing.assert_array_equal(same.params.V_HxD[0], same.params.V_HxD[4])  # same λ, same bits


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "sweep"
    done = cli("toymodels-sweep", *tiny(out, "sweep.seeds=1", "sweep.grid.density=[1.0,0.1]"))
    assert done.returncode == 0, done.stderr
    return out


SAE_ARGS = ["--l1", "0.1,0.3", "--dict-sizes", "n", "--steps", "20", "--batch", "32", "--eval-batch", "64",
            "--seeds", "2"]


def test_cli_writes_the_table_and_figure_and_reruns_identically(tiny_sweep):
    from sweeps.sae_cli import main

    first = cli("toymodels-sae", str(tiny_sweep), *SAE_ARGS)
    assert first.returncode == 0, first.stderr
    table = pd.read_parquet(tiny_sweep / "sae.parquet")
    assert (tiny_sweep / "figures" / "sae_recovery.png").exists()
    assert (tiny_sweep / "figures" / "sae_recovery.pdf").exists()
    expected = {"uid", "toy_seed", "density", "n_features", "n_hidden", "interference_mean", "dims_per_feature",
                "kind", "dict_size", "l1", "sae_seed", "mmcs", "mmcs_reverse", "mmcs_chance", "n_dead",
                "dead_fraction", "l0", "mse", "fvu", "W_dec"}
    assert expected <= set(table.columns)
    # 2 toy models × 2 λ × 2 seeds × 2 kinds, dictionary size n = 5
    assert len(table) == 16 and set(table["dict_size"]) == {5} and set(table["kind"]) == {"plain", "gated"}
    assert table["mmcs"].between(-1, 1).all()
    # Again in this process, one kind only: the same bits, whatever else ran beside it.
    main([str(tiny_sweep), *SAE_ARGS, "--kind", "gated"])
    again = pd.read_parquet(tiny_sweep / "sae.parquet")
    gated = table[table["kind"] == "gated"].reset_index(drop=True)
    pd.testing.assert_frame_equal(gated, again, check_exact=True)


@pytest.mark.parametrize("args, option", [
    (["--l1", "0.1,-1"], "--l1"),
    (["--l1", ""], "--l1"),
    (["--dict-sizes", "0"], "--dict-sizes"),
    (["--dict-sizes", ","], "--dict-sizes"),
    (["--kind", "topk"], "--kind"),
    (["--steps", "0"], "--steps"),
    (["--models", "no_such_column > 1"], "--models"),
])
def test_bad_options_exit_2_naming_the_option(tiny_sweep, capsys, args, option):
    from sweeps.sae_cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_sweep), *args])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_unknown_directory_exits_2(tmp_path, capsys):
    from sweeps.sae_cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "results.parquet" in capsys.readouterr().err


def sae_table(with_density: bool) -> pd.DataFrame:
    rows = []
    for uid, (density, dstar) in enumerate([(1.0, 1.0), (0.3, 0.6), (0.05, 0.4)]):
        for kind, d, l1 in [("plain", 5, 0.1), ("gated", 5, 0.1), ("plain", 10, 0.3)]:
            rows.append(dict(uid=uid, toy_seed=0, sae_seed=0, n_features=5, n_hidden=2, kind=kind, dict_size=d,
                             l1=l1, mmcs=1 - dstar / 4, mmcs_reverse=0.9, mmcs_chance=0.8, fvu=0.01, l0=1.0,
                             true_l0=5 * density, dead_fraction=0.1, dims_per_feature=dstar,
                             interference_mean=1 - dstar, **({"density": density} if with_density else {})))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("with_density, last_panel", [(True, "D*"), (False, "interference")])
def test_recovery_figure_draws_against_density_or_d_star(with_density, last_panel):
    import matplotlib.pyplot as plt

    from analysis.figures.sae import plot_sae_recovery

    fig = plot_sae_recovery(sae_table(with_density), stamp="test · config x · rev y")
    axes = fig.axes
    assert len(axes) == 6 and last_panel in axes[5].get_title()
    assert len(axes[0].get_lines()) == 3 + 2  # one per (kind, d, λ), one chance level per d
    assert ("1 / density" in axes[0].get_xlabel()) == with_density
    plt.close(fig)
