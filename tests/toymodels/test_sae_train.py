"""Training SAEs (``toymodels.sae.train``): vmapped = single, shared data streams, resampling, and the
science: the derived predictions of docs/science/saes.md on small worlds and the SynthSAEBench ordering
on a scaled-down world (issue 16 items 5, 6)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from toymodels.sae import (
    SaeSpec,
    decoder,
    hparams,
    make_train,
    mcc,
    sae_keys,
    split_keys,
    synthbench,
    train_mixed,
    train_saes,
)
from toymodels.sae.build import composition_world, simple_world
from toymodels.sae.train import init_params, resample_dead


def keys_for(n, uid=1, seeds=None):
    return split_keys(sae_keys(0, [uid] * n, range(n) if seeds is None else seeds))


def test_vmapped_saes_equal_single_runs_and_differ_by_their_hyperparameters():
    source, world = simple_world(6, 4, 0.2)
    spec = SaeSpec(
        dict_size=8,
        kind="topk",
        k_max=3,
        steps=30,
        batch_size=64,
        eval_batch=128,
        per_sae_source=False,
    )
    init, data = keys_for(4, seeds=[0, 1, 0, 0])
    hp = hparams(4, lr=[3e-3, 3e-3, 1e-2, 3e-3], k=[2, 2, 2, 3])
    many = train_saes(spec, source, init, hp, world, data)
    single = jax.jit(make_train(spec, source))
    for i in range(4):
        one = single(init[i], jax.tree.map(lambda a, i=i: a[i], hp), world, data[i])
        np.testing.assert_allclose(
            many.params["V_HxD"][i], one.params["V_HxD"], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(many.scores.fvu[i], one.scores.fvu, rtol=1e-5)
    V = np.asarray(many.params["V_HxD"])
    assert (
        not np.allclose(V[0], V[1]) and not np.allclose(V[0], V[2]) and not np.allclose(V[0], V[3])
    )
    again = train_saes(spec, source, init, hp, world, data)
    np.testing.assert_array_equal(V, again.params["V_HxD"])  # same keys, same bits


def test_a_shared_stream_gives_the_bits_of_per_sae_streams_with_one_key():
    # the plain program of the mixed-program test below (compiled once for both)
    source, world = simple_world(6, 4, 0.2)
    init, data = keys_for(2)
    hp = hparams(2, l1=[0.1, 0.3])
    base = dict(dict_size=8, kind="plain", steps=30, batch_size=64, eval_batch=128)
    base.update(per_sae_source=False)
    shared = train_saes(SaeSpec(**base, shared_data=True), source, init, hp, world, data[0])
    own = train_saes(SaeSpec(**base), source, init, hp, world, jnp.stack([data[0]] * 2))
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(own)):
        np.testing.assert_array_equal(a, b)


def test_a_mixed_program_trains_each_group_as_its_own_program_would():
    """Several kinds and sizes on one shared stream (``train_mixed``) = each spec alone, to
    rounding: within 1e-6 for plain; within 1e-3 for TopK, where Adam turns a rounding-level
    gradient of a rarely selected latent (1e-10 against 0) into a step of ~lr·g/(√v + ε)
    (after one step both agree to 1e-9)."""
    source, world = simple_world(6, 4, 0.2)
    init, data = keys_for(2)
    hps = (hparams(2, l1=[0.1, 0.3]), hparams(2, k=[1, 2]))
    base = dict(steps=30, batch_size=64, eval_batch=128, per_sae_source=False, shared_data=True)
    specs = (
        SaeSpec(dict_size=8, kind="plain", **base),
        SaeSpec(dict_size=5, kind="topk", k_max=2, **base),
    )
    mixed = train_mixed(specs, source, (init, init), hps, world, data[0])
    for spec, hp, got, atol in zip(specs, hps, mixed, (1e-6, 1e-3)):
        alone = train_saes(spec, source, init, hp, world, data[0])
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(alone)):
            np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    with pytest.raises(ValueError, match="share steps"):
        train_mixed(
            (specs[0], SaeSpec(dict_size=5, steps=31, per_sae_source=False)),
            source,
            (init, init),
            hps,
            world,
            data[0],
        )


def test_resampling_restarts_dead_latents_on_the_worst_reconstructed_inputs():
    spec = SaeSpec(dict_size=3, kind="jumprelu")
    hp = jax.tree.map(lambda a: a[0], hparams(1, init_threshold=0.5))
    params = init_params(jax.random.key(0), 2, spec, hp)
    params = {
        **params,
        "threshold_D": jnp.asarray([0.0, 1.0, 2.0]),
        "b_enc_D": jnp.asarray([0.1, 0.2, 0.3]),
    }
    opt = optax.adam(1e-3)
    state = opt.init(params)
    state = (state[0]._replace(mu=jax.tree.map(jnp.ones_like, state[0].mu)),) + tuple(state[1:])
    h = jnp.asarray([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    hhat = jnp.zeros_like(h)  # residuals: the third input worst, then the second
    dead = jnp.asarray([False, True, True])
    new, new_state = resample_dead(
        params, state, dead, h, hhat, spec, init_params(jax.random.key(1), 2, spec, hp)
    )
    np.testing.assert_allclose(decoder(new)[:, 1:], [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_array_equal(new["V_HxD"][:, 0], params["V_HxD"][:, 0])  # alive: untouched
    np.testing.assert_allclose(new["b_enc_D"], [0.1, 0.0, 0.0])
    np.testing.assert_allclose(new["threshold_D"], [0.0, 0.5, 0.5], rtol=1e-6)
    live_norm = float(jnp.linalg.norm(params["W_enc_DxH"][0]))
    np.testing.assert_allclose(
        jnp.linalg.norm(new["W_enc_DxH"][1:], axis=1), 0.2 * live_norm, rtol=1e-6
    )
    np.testing.assert_array_equal(new_state[0].mu["V_HxD"], [[1, 0, 0], [1, 0, 0]])


def test_resampling_revives_latents_that_never_fire():
    """Features along e0..e3; latents 4..7 start pointing at −e_i, where nothing ever fires."""
    source, world = simple_world(4, 4, 0.3, directions_kind="identity")
    init, data = keys_for(2, seeds=[0, 0])
    spec = dict(
        dict_size=8,
        steps=200,
        batch_size=128,
        eval_batch=1024,
        per_sae_source=False,
        shared_data=True,
    )
    results = {}
    for every in (0, 50):  # Bricken et al.'s resampling with their unit-norm decoder
        s = SaeSpec(**spec, resample_every=every, options=(("decoder", "unit"),))
        train = jax.jit(jax.vmap(make_train(s, source), in_axes=(0, 0, None, None)))
        results[every] = train(init, hparams(2, l1=0.05), world, data[0])
    assert float(results[50].scores.n_dead.mean()) < float(results[0].scores.n_dead.mean())


def best_of_seeds(result, groups: int):
    """Per group of equal settings, the SAE of lowest loss (the papers' best-of-k, docs/science/models.md)."""
    loss = np.asarray(result.scores.loss).reshape(groups, -1)
    return np.arange(loss.shape[0]) * loss.shape[1] + loss.argmin(axis=1)


@pytest.mark.reproduction
def test_shrinkage_orders_gated_below_rescaled_below_plain_and_gated_meets_its_closed_form():
    """docs/science/saes.md on one isolated feature (one dimension, density 1/2), best of 4 seeds at
    λ = 0.1 and 0.3. U[0, 1] magnitudes: FVU gated < rescaled < plain. Gated's gate is trained by
    the auxiliary loss and the L1 alone: threshold θ = λ/2, so FVU = p θ³/3 / Var(h). Fixed
    magnitudes: rescaled ≈ gated ≈ 0, plain not (its output is shrunk)."""
    p, l1 = 0.5, [0.1] * 4 + [0.3] * 4
    uniform = simple_world(1, 1, p, directions_kind="identity", magnitude="uniform")
    fixed = simple_world(1, 1, p, directions_kind="identity", magnitude="fixed")
    worlds = jax.tree.map(lambda a, b: jnp.stack([a] * 8 + [b] * 8), uniform[1], fixed[1])
    init, data = keys_for(16, seeds=list(range(4)) * 4)
    fvu = {}
    for kind in ("plain", "rescaled", "gated"):
        # the paper's gated SAE: unit-norm decoder, frozen in the auxiliary loss (SAELens's, the
        # default, lets that loss move the decoder: docs/saes/reference.md)
        unit = (("decoder", "unit"),) if kind != "rescaled" else ()
        spec = SaeSpec(
            dict_size=1, kind=kind, steps=2500, batch_size=512, eval_batch=16_384, options=unit
        )
        result = jax.device_get(
            train_saes(spec, uniform[0], init, hparams(16, l1=l1 * 2), worlds, data)
        )
        fvu[kind] = np.asarray(result.scores.fvu)[best_of_seeds(result, 4)]  # (uniform, fixed) × λ
    assert (fvu["gated"][:2] < fvu["rescaled"][:2]).all() and (
        fvu["rescaled"][:2] < fvu["plain"][:2]
    ).all()
    var = p / 3 - p**2 / 4
    np.testing.assert_allclose(
        fvu["gated"][:2], [p * t**3 / 3 / var for t in (0.05, 0.15)], rtol=0.25
    )
    assert (fvu["rescaled"][2:] < 1e-3).all() and (fvu["gated"][2:] < 1e-3).all()
    assert (fvu["plain"][2:] > 5e-3).all()


@pytest.mark.reproduction
def test_with_fixed_magnitudes_a_composed_latent_wins():
    """docs/science/saes.md: f1, f2 fire alone (0.2 each) or together (c), fixed magnitudes, three
    latents. A latent along (f1 + f2)/√2 codes the pair at L1 cost √2 instead of 2, so it should
    win for any c > 0. From random inits optimisation often misses it (at c = 0.05, λ = 0.1 no
    seed of 16 found it), so the two optima are compared directly: started at (f1, f2, the
    composed direction) an SAE keeps the composed latent and ends at a lower loss than one started
    at (f1, f2, a latent where nothing fires), at c = 0.05 and 0.2, λ = 0.1 and 0.3."""
    worlds = [composition_world(2, alone=0.2, together=c, magnitude="fixed") for c in (0.05, 0.2)]
    source = worlds[0][0]
    stacked = jax.tree.map(lambda a, b: jnp.stack([a] * 4 + [b] * 4), worlds[0][1], worlds[1][1])
    F = np.asarray(worlds[0][1].F_HxN)  # both worlds share their directions (seed 0)
    composed = (F[:, 0] + F[:, 1]) / np.sqrt(2)
    starts = [
        np.stack([F[:, 0], F[:, 1], composed], axis=1),
        np.stack([F[:, 0], F[:, 1], -composed], axis=1),
    ]
    V = jnp.asarray(np.stack(starts * 4), jnp.float32)  # (composed, not) × λ × c
    params0 = {
        "V_HxD": V,
        "W_enc_DxH": jnp.swapaxes(V, 1, 2),
        "b_enc_D": jnp.zeros((8, 3)),
        "b_dec_H": jnp.zeros((8, 2)),
    }
    init, data = keys_for(8, seeds=[0] * 8)
    spec = SaeSpec(dict_size=3, steps=2000, batch_size=512, eval_batch=16_384)
    l1 = [0.1, 0.1, 0.3, 0.3] * 2
    result = jax.device_get(
        train_saes(spec, source, init, hparams(8, l1=l1), stacked, data, params0)
    )
    loss, n_composed = (
        np.asarray(result.scores.loss).reshape(4, 2),
        np.asarray(result.scores.n_composed).reshape(4, 2),
    )
    assert (n_composed[:, 0] == 1).all() and (n_composed[:, 1] == 0).all(), n_composed
    assert (loss[:, 0] < loss[:, 1]).all(), loss


@pytest.fixture(scope="module")
def small_bench():
    return synthbench.build(synthbench.SYNTHBENCH_SMALL)


@pytest.mark.reproduction
@pytest.mark.parametrize(
    "codes",
    [
        "unscaled",
        pytest.param(
            "scaled",
            marks=pytest.mark.xfail(
                strict=True,
                reason="not reproduced at this scale with SAELens's codes: BatchTopK and Matryoshka "
                "at k = 2 reach MCC 0.61-0.63, L1 0.63-0.64 (docs/results/sae-bench.md)",
            ),
        ),
    ],
)
def test_synthbench_ordering_l1_lowest_mcc_at_matched_l0(small_bench, codes):
    """Issue 16 item 6, scaled down (``synthbench.SYNTHBENCH_SMALL``: 256 features in 32 dims, the
    published recipe otherwise; width 64 = n/4 as 4,096 of 16,384). Published at full size, L0 25:
    MCC 0.604 standard L1, 0.757 BatchTopK, 0.753 JumpReLU, 0.793 Matryoshka. BatchTopK and
    Matryoshka at k = 2 (the true L0 of the 64 most frequent features); JumpReLU (at its defaults
    otherwise) and L1 at the λ whose L0 is nearest 2 of two. All four kinds in one program on one stream
    (``train_mixed``).
    The ordering to reproduce: L1 lowest. It holds with BatchTopK's and Matryoshka's ``codes``
    unscaled; with SAELens's scaled codes (the default since sae23) it does not at this scale, at
    1,500 or 3,000 steps: a strict xfail, so the day it holds this test says so."""
    source, world = small_bench
    init, data = keys_for(2)
    common = dict(
        dict_size=64,
        steps=1500,
        batch_size=256,
        eval_batch=4096,
        per_sae_source=False,
        shared_data=True,
    )
    settings = {
        "plain": dict(l1=[5.0, 10.0]),
        "batchtopk": dict(k=2),
        "jumprelu": dict(l1=[10.0, 30.0]),
        "matryoshka": dict(k=2),
    }
    specs = tuple(
        SaeSpec(
            kind=kind,
            k_max=2 if "k" in values else 0,
            options=(("codes", codes),) if "k" in values else (),
            **common,
        )
        for kind, values in settings.items()
    )
    hps = tuple(hparams(2, lr=3e-3, **values) for values in settings.values())
    results = jax.device_get(train_mixed(specs, source, (init,) * 4, hps, world, data[0]))
    scores = {}
    for kind, result in zip(settings, results):
        W = np.asarray(jax.vmap(decoder)(result.params))
        scores[kind] = [(mcc(W[i], world.F_HxN), float(result.scores.l0[i])) for i in range(2)]
    matched = {kind: min(s, key=lambda m_l0: abs(m_l0[1] - 2.0)) for kind, s in scores.items()}
    assert all(abs(l0 - 2.0) < 1.5 for _, l0 in matched.values()), scores
    others = [matched[k][0] for k in ("batchtopk", "jumprelu", "matryoshka")]
    assert matched["plain"][0] < min(others) - 0.02, scores


def test_the_readme_example_recovers_the_features(capsys):
    from tests.readme import doc_block

    exec(doc_block("sae core"), {})  # noqa: S102 - the docs block, run as written
    mmcs = [float(v) for v in capsys.readouterr().out.split("]")[0].strip("[ ").split()]
    assert min(mmcs) > 0.95


def test_auxk_reaches_a_latent_only_after_the_dead_window_as_saelens_counts_it():
    """SAELens's dead latent: more than ``dead_window`` steps since it last fired, counted before
    each step. A latent pointing away from every input never fires under TopK, so nothing trains it
    until then: its decoder column stays as it was for steps 0..w and AuxK moves it at step w + 1.
    Without AuxK (α = 0) it never moves."""
    from toymodels.sae.train import make_sae

    source, world = simple_world(2, 2, 0.5, directions_kind="identity", magnitude="fixed")  # noqa: RUF059
    spec = SaeSpec(dict_size=3, kind="topk", k_max=1, aux_k=True)
    init, step = make_sae(spec, 2)
    params0 = {
        "W_enc_DxH": jnp.asarray([[1.0, 0.0], [0.0, 1.0], [-0.7, -0.7]]),
        "b_enc_D": jnp.zeros(3),
        "V_HxD": jnp.asarray([[1.0, 0.0, -0.7], [0.0, 1.0, -0.7]]),
        "b_dec_H": jnp.zeros(2),
    }
    h = jnp.asarray([[1.0, 0.0, 1.0, 0.3], [0.0, 1.0, 1.0, 0.2]])
    window = 3
    for alpha, moves_at in ((0.5, window + 1), (0.0, None)):
        hp = jax.tree.map(
            lambda a: a[0], hparams(1, k=1, aux_coefficient=alpha, dead_window=window)
        )
        state = init(jax.random.key(0), hp, params0)
        jstep = jax.jit(step)
        for t in range(window + 3):
            before = np.asarray(state.params["V_HxD"][:, 2])
            state, _ = jstep(state, h, hp, jnp.uint32(t))
            moved = not np.array_equal(np.asarray(state.params["V_HxD"][:, 2]), before)
            assert moved == (moves_at is not None and t >= moves_at), (alpha, t)
        assert int(state.since_fired_D[2]) == window + 3 and int(state.since_fired_D[0]) == 0


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_batch_top_k_kinds_start_their_decoder_and_tied_encoder_at_init_norm(kind):
    """BatchTopK's and Matryoshka's V and the encoder rows tied to it start at norm ``hp.init_norm``
    (0.1 by default, SAELens's decoder_init_norm); at 1 they start bit for bit as TopK (unit norm,
    as both did before)."""
    key = jax.random.key(3)
    spec = SaeSpec(dict_size=8, kind=kind, k_max=2)
    for norm in (0.1, 0.3):
        p = init_params(key, 4, spec, hparams(1, k=2, init_norm=norm))
        assert np.allclose(np.linalg.norm(p["V_HxD"], axis=0), norm, rtol=1e-6)
        assert np.allclose(np.linalg.norm(p["W_enc_DxH"], axis=1), norm, rtol=1e-6)
    default = init_params(key, 4, spec, hparams(1, k=2))
    assert np.allclose(np.linalg.norm(default["V_HxD"], axis=0), 0.1, rtol=1e-6)
    unit = init_params(key, 4, spec, hparams(1, k=2, init_norm=1.0))
    before = init_params(key, 4, SaeSpec(dict_size=8, kind="topk", k_max=2), hparams(1, k=2))
    assert {name: bool(jnp.array_equal(unit[name], before[name])) for name in before} == {
        name: True for name in before
    }


def test_fold_b_dec_is_on_by_default_and_trains_the_same_saes_to_rounding():
    """``SaeSpec.fold_b_dec`` encodes W_enc h − W_enc b_dec: the same training in other rounding,
    on by default (``sae.fold_b_dec``), and off (the bits of before) out of the chunk ids, so
    that stores written before it keep their ids (docs/results/sae-bench.md)."""
    import dataclasses

    from sweeps.sae.config import SaeConf
    from sweeps.sae.job import _id_fields
    from sweeps.sae.plan import SaeGroup
    from toymodels.sae.base import projection

    source, world = simple_world(6, 4, 0.2)
    init, data = keys_for(2)
    hp = hparams(2, l1=[0.1, 0.3])
    folded = SaeSpec(dict_size=8, kind="plain", steps=30, batch_size=64, eval_batch=128)
    folded = dataclasses.replace(folded, per_sae_source=False, shared_data=True)
    assert folded.fold_b_dec
    assert SaeConf().fold_b_dec is True
    base = dataclasses.replace(folded, fold_b_dec=False)
    params = init_params(jax.random.key(0), 4, base, jax.tree.map(lambda a: a[0], hp))
    params["b_dec_H"] = jnp.arange(4.0)
    h = jax.random.normal(jax.random.key(1), (4, 16))
    np.testing.assert_allclose(
        projection(params, h, folded), projection(params, h, base), rtol=1e-5, atol=1e-6
    )
    reference = train_saes(base, source, init, hp, world, data[0])
    got = train_saes(folded, source, init, hp, world, data[0])
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "fold_b_dec" not in _id_fields(SaeGroup(base, source))["spec"]
    assert _id_fields(SaeGroup(folded, source))["spec"]["fold_b_dec"] is True
