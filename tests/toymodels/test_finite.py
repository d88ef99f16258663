"""Finite training sets (issue 7): data, piecewise loss, training, table rows and figures.

The science: docs/science/double-descent.md (unit-norm finite data, repeats, memorisation, double
descent), docs/science/models.md (full batch, warm-up + cosine), docs/science/metrics.md (data-point
dimensionality).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from tests.helpers import memory_analysis
from toymodels import finite as F
from toymodels import metrics, rng
from toymodels.models import model_loss


def hparams(density, dataset_seeds, n, wd=1e-2, lr=1e-3, importance=None):
    k = len(dataset_seeds)
    imp = np.ones((k, n)) if importance is None else np.broadcast_to(importance, (k, n))
    return F.FiniteHParams(
        density=jnp.broadcast_to(jnp.float32(density), (k,)) * 1.0,
        importance_F=jnp.asarray(imp, jnp.float32),
        lr=jnp.broadcast_to(jnp.asarray(lr, jnp.float32), (k,)) * 1.0,
        weight_decay=jnp.broadcast_to(jnp.asarray(wd, jnp.float32), (k,)) * 1.0,
        dataset_seed=jnp.asarray(dataset_seeds, jnp.uint32),
    )


training_set = jax.jit(F.training_set, static_argnums=0)


def keys(count, base=0):
    return jax.vmap(lambda u: jax.random.fold_in(jax.random.key(base), u))(
        jnp.arange(count, dtype=jnp.uint32)
    )


def binomial_sf(n, p, K):
    """P(Binomial(n, p) > K), exactly."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(K + 1, n + 1))


# ---------------------------------------------------------------- data


def test_raw_points_have_the_sparse_feature_statistics():
    """Each feature active independently with probability p, values U[0, 1] (before normalising)."""
    n, p, N = 200, 0.05, 20_000
    K = F.max_active_for(n, p, N)
    idx, raw, count = map(
        np.asarray,
        jax.jit(F.sample_raw_points, static_argnums=(2, 3, 4))(
            rng.key_words(jax.random.key(3)), jnp.float32(p), N, n, K
        ),
    )
    active = raw > 0
    assert (count <= K).all() and (active.sum(axis=1) == count).all()
    assert abs(count.mean() - n * p) < 5 * math.sqrt(n * p * (1 - p) / N)
    assert count.var() == pytest.approx(n * p * (1 - p), rel=0.06)
    freq_F = np.bincount(idx[active], minlength=n) / N  # every feature, not only low indices
    assert np.abs(freq_F - p).max() < 5 * math.sqrt(p * (1 - p) / N)
    values = np.sort(raw[active])
    ks = np.abs(values - np.arange(1, len(values) + 1) / len(values)).max()
    assert ks < 1.63 / math.sqrt(len(values))  # Kolmogorov–Smirnov at the 1% level
    for row, a in zip(idx[:500], active[:500]):
        assert np.all(np.diff(row[a]) > 0)  # distinct indices


def test_overflow_is_counted_at_the_binomial_tail_rate():
    """With a small cap, points with more than K active features keep K and count K + 1."""
    n, p, K, N = 50, 0.1, 6, 40_000
    _, raw, count = map(
        np.asarray,
        jax.jit(F.sample_raw_points, static_argnums=(2, 3, 4))(
            rng.key_words(jax.random.key(1)), jnp.float32(p), N, n, K
        ),
    )
    over = count > K
    assert (count[over] == K + 1).all() and ((raw[over] > 0).sum(axis=1) == K).all()
    tail = binomial_sf(n, p, K)
    assert abs(over.mean() - tail) < 5 * math.sqrt(tail / N)


def test_max_active_for_is_the_smallest_safe_cap():
    n, p, T, tail = 100, 0.1, 1000, 1e-6
    K = F.max_active_for(n, p, T, tail)
    assert T * binomial_sf(n, p, K) < tail <= T * binomial_sf(n, p, K - 1)
    assert F.max_active_for(7, 1.0) == 7


def test_points_are_unit_norm_and_empty_points_stay_zero():
    spec = F.FiniteSpec(n_features=20, n_hidden=2, n_train=500, max_active=20, piece_size=64)
    points, count = training_set(spec, jnp.float32(0.05), jnp.uint32(4))
    norms = np.linalg.norm(np.asarray(points.val_NxK), axis=1)[:500]
    count = np.asarray(count)[:500]
    assert (count == 0).sum() > 50  # P(empty) = 0.95^20 ≈ 0.36
    np.testing.assert_allclose(norms[count > 0], 1.0, atol=1e-6)
    assert (norms[count == 0] == 0).all()
    assert np.asarray(points.weight_N).sum() == 500  # padding to whole pieces carries no weight


def test_repeated_points_appear_R_times():
    spec = F.FiniteSpec(
        n_features=40, n_hidden=2, n_train=40, repeats=4, n_repeated=3, piece_size=16
    )
    x_NxF = np.asarray(F.densify(training_set(spec, jnp.float32(0.2), jnp.uint32(2))[0], 40).T)[:40]
    _, distinct, repeated = F.repeat_layout(spec)
    assert list(repeated) == [0, 4, 8] and distinct[:40].sum() == 40 - 3 * 3
    for r in repeated:
        assert all(np.array_equal(x_NxF[r], x_NxF[r + c]) for c in range(4))
    unique_rows = {tuple(row) for row in x_NxF[distinct[:40]] if row.any()}
    assert len(unique_rows) == (x_NxF[distinct[:40]].any(axis=1)).sum()  # the rest are fresh


def test_dataset_depends_only_on_its_seed():
    spec = F.FiniteSpec(n_features=30, n_hidden=2, n_train=20, max_active=10)
    a, b, c = (training_set(spec, jnp.float32(0.1), jnp.uint32(s))[0] for s in (5, 5, 6))
    assert np.array_equal(a.idx_NxK, b.idx_NxK) and np.array_equal(a.val_NxK, b.val_NxK)
    assert not np.array_equal(a.val_NxK, c.val_NxK)
    test_spec = F.FiniteSpec(
        n_features=30, n_hidden=2, n_train=20, n_test=20, max_active=10, test_seed=5
    )
    held_out = jax.jit(F.held_out_set, static_argnums=0)(test_spec, jnp.float32(0.1))
    assert not np.array_equal(
        a.val_NxK, held_out.val_NxK
    )  # test stream ≠ a dataset of the same seed


# ---------------------------------------------------------------- loss


@pytest.mark.parametrize("model", F.finite_kinds())
def test_piecewise_sparse_loss_and_grad_equal_the_dense_reference(model):
    """Every kind the finite trainer takes, against the kind's own forward on dense data."""
    n, m, T = 30, 3, 50
    spec = F.FiniteSpec(
        n_features=n,
        n_hidden=m,
        n_train=T,
        piece_size=16,
        max_active=8,
        repeats=3,
        n_repeated=2,
        model=model,
    )
    points, _ = training_set(spec, jnp.float32(0.1), jnp.uint32(7))
    x_FxT = F.densify(points, n)[:, :T]
    importance_F = 0.9 ** jnp.arange(n, dtype=jnp.float32)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = F.FiniteParams(jax.random.normal(k1, (m, n)), 0.2 * jax.random.normal(k2, (n,)))

    def dense(params):
        return model_loss({"W": params.W_HxF, "b": params.b_F}, x_FxT, importance_F, model)

    ref_loss, ref_grad = jax.jit(jax.value_and_grad(dense))(params)
    loss_fn = partial(F.dataset_loss, n_points=T, spec=spec)
    # Every form of the written-out gradient: matrix products (CPU), fused reductions (GPU), and
    # fused with the dense error computed again for the row sums (the GPU's candidate).
    written = [
        jax.jit(
            partial(F.dataset_loss_and_grad, n_points=T, spec=spec, fused=fused, recompute=again)
        )(params, points, importance_F)
        for fused, again in ((False, False), (True, False), (True, True))
    ]
    plain, auto = jax.jit(jax.value_and_grad(loss_fn))(
        params, points, importance_F
    )  # autodiff of the loss
    assert float(plain) == pytest.approx(float(ref_loss), rel=1e-5)
    for loss, _ in written:
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    for g in (*(grad for _, grad in written), auto):
        np.testing.assert_allclose(g.W_HxF, ref_grad.W_HxF, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g.b_F, ref_grad.b_F, rtol=1e-4, atol=1e-6)


def test_memory_stays_bounded_at_paper_scale():
    """n = 10,000, T = 10⁵: a dense dataset would be T·n·4 = 4 GB; the compiled step and the
    whole training program keep far below that (XLA's own memory analysis; nothing runs)."""
    n, T, m = 10_000, 100_000, 2
    spec = F.FiniteSpec(
        n_features=n,
        n_hidden=m,
        n_train=T,
        steps=2,
        warmup_steps=1,
        max_active=38,
        snapshot_every=1,
    )
    B, P = F.piece_layout(T, spec.piece_size)
    sds = jax.ShapeDtypeStruct
    points = F.SparsePoints(
        sds((P * B, spec.K), jnp.int32),
        sds((P * B, spec.K), jnp.float32),
        sds((P * B,), jnp.float32),
    )
    params = F.FiniteParams(sds((m, n), jnp.float32), sds((n,), jnp.float32))
    step = jax.jit(partial(F.dataset_loss_and_grad, n_points=T, spec=spec))
    step = step.lower(params, points, sds((n,), jnp.float32))
    bound = T * n * 4 // 10
    assert memory_analysis(step).temp_size_in_bytes < bound
    hp = F.FiniteHParams(
        sds((1,), jnp.float32),
        sds((1, n), jnp.float32),
        sds((1,), jnp.float32),
        sds((1,), jnp.float32),
        sds((1,), jnp.uint32),
    )
    whole = memory_analysis(F.train_finite_many.lower(spec, keys(1), hp))
    assert whole.temp_size_in_bytes < bound


# ---------------------------------------------------------------- dimensionality


@pytest.mark.parametrize("T", [3, 5, 8])
def test_points_on_a_regular_polygon_have_dimensionality_m_over_T(T):
    angles = 2 * np.pi * np.arange(T) / T
    W_HxF = np.stack([np.cos(angles), np.sin(angles)])  # feature t's direction on a T-gon
    points = F.SparsePoints(
        jnp.arange(T, dtype=jnp.int32)[:, None], jnp.ones((T, 1)), jnp.ones(T)
    )  # x_t = e_t
    dims = F.dimensionality(F.hidden_vectors(jnp.asarray(W_HxF, jnp.float32), points))
    np.testing.assert_allclose(dims, 2 / T, rtol=1e-5)


def test_dimensionality_matches_the_capacity_formula():
    W = np.random.default_rng(0).normal(size=(3, 12))
    W[:, 4] = 0.0
    np.testing.assert_allclose(F.dimensionality(W.T), metrics.capacity(W), rtol=1e-10, atol=1e-12)


def test_memorisation_detector():
    dims = np.linspace(0.0, 0.01, 3000)
    dims[17] = 0.5
    assert F.memorised(dims, 17) and not F.memorised(dims, 16)
    assert F.memorised(dims, 2999 - 1, top=0.01) and not F.memorised(dims, 2000, top=0.01)
    copies = np.full(10, 0.1)
    copies[:4] = 0.2  # one point repeated 4 times: its copies must not outrank it
    distinct = np.array([True, False, False, False] + [True] * 6)
    assert float(F.rank_fraction(copies, 0, distinct)) == 0.0 and F.memorised(
        copies, 0, 0.001, distinct
    )


# ---------------------------------------------------------------- training


TINY = F.FiniteSpec(
    n_features=20,
    n_hidden=2,
    n_train=12,
    steps=60,
    warmup_steps=10,
    max_active=8,
    piece_size=5,
    n_test=50,
    repeats=3,
    n_repeated=1,
    snapshot_every=25,
    hidden_points=8,
)


@pytest.fixture(scope="module")
def tiny_run():
    hp = hparams(
        jnp.asarray([0.1, 0.2, 0.1]),
        [0, 1, 0],
        20,
        wd=jnp.asarray([1e-2, 0.0, 0.1]),
        lr=jnp.asarray([1e-2, 3e-3, 1e-2]),
    )
    return hp, F.train_finite_many(TINY, keys(3), hp)


def test_vmapped_training_equals_single_runs(tiny_run):
    hp, many = tiny_run
    single = jax.jit(F.train_finite, static_argnums=0)
    for i in range(3):
        pick = partial(jax.tree.map, lambda a, i=i: a[i])
        one = single(TINY, keys(3)[i], pick(hp))
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(pick(many))):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_same_seed_same_bits(tiny_run):
    hp, first = tiny_run
    again = F.train_finite_many(TINY, keys(3), hp)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        assert np.array_equal(a, b)


def test_models_train_on_their_own_dataset_and_report_it(tiny_run):
    hp, res = tiny_run
    assert res.snapshots.step_S[0].tolist() == [25, 50, 60]
    assert res.hidden_first_PxH.shape == (3, 8, 2) and res.data_dims_T.shape == (3, 12)
    hidden = jax.jit(lambda W, p, s: F.hidden_vectors(W, F.training_set(TINY, p, s)[0]))
    for i in range(3):
        h = hidden(res.params.W_HxF[i], hp.density[i], hp.dataset_seed[i])
        np.testing.assert_allclose(res.hidden_first_PxH[i], h[:8], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.hidden_repeated_RxH[i], h[:1], rtol=1e-5, atol=1e-6)
        assert float(res.train_loss[i]) == pytest.approx(float(res.snapshots.train_loss_S[i, -1]))


def test_a_tiny_dataset_is_memorised():
    """n = 50, S = 0.9, m = 2, T = 5: the model stores the points themselves (train loss far below
    test loss) and they share the hidden plane (their dimensionalities sum to about m)."""
    spec = F.FiniteSpec(
        n_features=50,
        n_hidden=2,
        n_train=5,
        steps=3000,
        warmup_steps=100,
        max_active=20,
        n_test=2000,
        snapshot_every=1000,
    )
    hp = jax.tree.map(lambda a: a[0], hparams(0.1, [0], 50))
    res = jax.jit(F.train_finite, static_argnums=0)(spec, jax.random.key(1), hp)
    assert float(res.train_loss) < 0.25 * float(res.test_loss)
    assert float(jnp.sum(res.data_dims_T)) > 1.5


# ---------------------------------------------------------------- table and figures


def test_finite_table_has_one_row_per_model(tiny_run):
    from sweeps.jobs.finite import finite_table

    hp, res = tiny_run
    meta = [dict(n_train=12, seed=s, uid=100 + s, order=s) for s in range(2)]  # a padded chunk
    table = finite_table(meta, TINY, jax.device_get(res), 3.0, hp)
    assert len(table) == 2 and table["uid"].tolist() == [100, 101]
    row = table.iloc[1]
    assert (
        row["weight_decay"] == 0.0
        and row["dataset_seed"] == 1
        and row["density"] == pytest.approx(0.2)
    )
    assert (
        np.asarray(row["W"]).shape == (2, 20)
        and len(row["hidden"]) == 8
        and len(row["feature_dims"]) == 20
    )
    assert row["norm_W"] == pytest.approx(float(np.linalg.norm(res.params.W_HxF[1])), rel=1e-6)
    assert len(row["snap_step"]) == len(row["snap_test_loss"]) == 3 and row["train_seconds"] == 1.5
    assert row["repeated_memorised"] == (row["repeated_rank"] < 0.001)
    assert row["data_dim_max"] >= row["data_dim_q999"] >= row["data_dim_median"]


def synthetic_table(with_bump=True):
    """A finite-data table shaped like finite_table's, with a test-loss bump at T = 100."""
    rows = []
    rng_ = np.random.default_rng(0)
    for wd in (0.01, 0.1):
        for T in (3, 10, 30, 100, 300, 1000):
            for ds in range(3):
                for seed in range(2):
                    bump = 2.0 if (with_bump and wd == 0.01 and T == 100) else 1.0
                    W = rng_.normal(size=(2, 12))
                    rows.append(
                        dict(
                            n_train=T,
                            dataset_seed=ds,
                            seed=seed,
                            weight_decay=wd,
                            lr=1e-3,
                            density=0.1,
                            n_features=12,
                            n_hidden=2,
                            steps=100,
                            repeats=[1, 2, 4][ds],
                            n_repeated=1,
                            train_loss=1e-3 * T**0.3 + 1e-4 * seed,
                            test_loss=bump * 1e-2 / T**0.2 * (1 + 0.01 * ds),
                            norm_W=5 / (1 + abs(np.log(T / 30))),
                            norm_b=3.0,
                            W=W.tolist(),
                            hidden=rng_.normal(size=(min(T, 8), 2)).tolist(),
                            feature_dims=F.dimensionality(W.T).tolist(),
                            data_dims=list(np.full(min(T, 8), 2 / T)),
                            feature_dim_sum=1.8,
                            data_dim_sum=2.0 * min(1, 30 / T),
                            repeated_dim=0.1 * ds,
                            repeated_memorised=ds == 2,
                            data_dim_q999=0.05,
                        )
                    )
    return pd.DataFrame(rows)


def test_bump_location_finds_the_test_loss_peak():
    from analysis.figures.double_descent import bump_location

    table = synthetic_table()
    assert bump_location(table) == 100.0
    assert math.isnan(bump_location(table, weight_decay=0.1))
    assert math.isnan(bump_location(synthetic_table(with_bump=False)))


DD_FIGURES = ["dd_losses", "dd_norms", "dd_dimensionality", "dd_geometry", "dd_memorisation"]


def test_double_descent_figures_draw_from_a_table(tmp_path):
    from analysis.figures.catalog import draw, figure_names, notes
    from analysis.stored_sweep import StoredSweep

    sweep = StoredSweep(tmp_path, synthetic_table(), {"name": "dd"}, "abc")
    assert figure_names(sweep) == ["loss_curves", *DD_FIGURES]
    assert notes("dd_losses", sweep) == {"bump_T": 100.0}
    draw("dd_geometry", sweep).savefig(tmp_path / "geometry.png", dpi=50)
    one_T = StoredSweep(tmp_path, synthetic_table().query("n_train == 100"), {"name": "dd"}, "abc")
    assert figure_names(one_T) == ["loss_curves", "dd_geometry", "dd_memorisation"]


@pytest.mark.parametrize("name", DD_FIGURES)
def test_double_descent_figures_draw_the_same_into_every_target(name, tmp_path):
    from analysis.figures.catalog import draw
    from analysis.stored_sweep import StoredSweep
    from tests.helpers import assert_draws_the_same_into_every_target

    sweep = StoredSweep(tmp_path, synthetic_table(), {"name": "dd"}, "abc")
    assert_draws_the_same_into_every_target(lambda target: draw(name, sweep, target))


def test_piece_size_zero_takes_the_devices_default():
    assert F.piece_layout(100_000, 0, "cpu") == (1024, 98) and F.piece_layout(
        100_000, 0, "gpu"
    ) == (32_768, 4)
    assert F.piece_layout(300, 0, "gpu") == (300, 1) and F.piece_layout(300, 64) == (64, 5)
    assert F.piece_layout(100_000, 0) == F.piece_layout(100_000, 0, jax.default_backend())
