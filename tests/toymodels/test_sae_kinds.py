"""SAE kinds (``toymodels.sae.kinds``, ``toymodels.sae.base``): each kind's formula on constructed
inputs, the straight-through gradients, top-k with a per-SAE k, the shared pieces."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.registry import ConfigError
from toymodels.sae import SAE_KINDS, SaeKind, SaeSpec, hparams
from toymodels.sae.base import (
    batch_top_k_mask,
    decode,
    decoder,
    example_top_k_mask,
    jump_relu,
    kth_largest,
    latent_axis,
    pre_activation,
    step,
)
from toymodels.sae.kinds import matryoshka_terms, matryoshka_widths, track_threshold
from toymodels.sae.train import init_params, objective, ortho_penalty


def one(**values):
    """One SAE's hyperparameters (scalars)."""
    return jax.tree.map(lambda a: a[0], hparams(1, **values))


def hand_params(W_enc_DxH, b_enc_D, **extra):
    W_enc_DxH = jnp.asarray(W_enc_DxH, jnp.float32)
    _d, m = W_enc_DxH.shape
    params = {
        "W_enc_DxH": W_enc_DxH,
        "b_enc_D": jnp.asarray(b_enc_D, jnp.float32),
        "V_HxD": W_enc_DxH.T,
        "b_dec_H": jnp.zeros((m,)),
    }
    return {**params, **{k: jnp.asarray(v, jnp.float32) for k, v in extra.items()}}


def reconstruct(kind, params, h_HxB, hp=None, spec=None, training=False):
    spec = spec or SaeSpec(dict_size=params["b_enc_D"].shape[0], kind=kind)
    f_DxB, _ = SAE_KINDS.get(kind).encode(params, h_HxB, hp or one(), spec, training)
    return f_DxB, decode(params, f_DxB)


def test_isolated_feature_plain_shrinks_rescaled_rescales_gated_keeps():
    """docs/science/saes.md: on a feature of magnitude a alone (unit encoder and decoder along it, gate
    threshold θ), plain outputs (a − θ)₊, rescaled r(a − θ)₊, gated a·1[a > θ]."""
    theta, r = 0.25, 1.7  # off the grid of a, so a > θ is never a tie
    a = np.linspace(0.0, 1.0, 11)
    h_HxB = jnp.asarray(np.stack([a, np.zeros_like(a)]), jnp.float32)
    base = dict(W_enc_DxH=np.eye(2), b_enc_D=[-theta, -theta])
    expected = {
        "plain": np.maximum(a - theta, 0.0),
        "rescaled": r * np.maximum(a - theta, 0.0),
        "gated": a * (a > theta),
    }
    extra = {
        "plain": {},
        "rescaled": {"r_mag_D": [math.log(r)] * 2},
        "gated": {"r_mag_D": [0.0, 0.0], "b_mag_D": [0.0, 0.0]},
    }
    for kind, want in expected.items():
        _, hhat = reconstruct(kind, hand_params(**base, **extra[kind]), h_HxB)
        np.testing.assert_allclose(hhat[0], want, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(hhat[1], 0.0, atol=1e-6)


def test_composed_latent_pays_l1_root_two_for_the_pair_instead_of_two():
    """docs/science/saes.md: with fixed magnitudes, a unit latent along (f1 + f2)/√2 codes the pair
    f1 + f2 with √2, where the two features' own latents code it with 1 + 1."""
    h_Hx1 = jnp.asarray([[1.0], [1.0]])
    own = hand_params(np.eye(2), [0.0, 0.0])
    composed = hand_params(np.array([[1.0, 1.0]]) / math.sqrt(2), [0.0])
    for params, cost in ((own, 2.0), (composed, math.sqrt(2))):
        f, hhat = reconstruct("plain", params, h_Hx1)
        assert float(jnp.sum(f)) == pytest.approx(cost, rel=1e-6)
        np.testing.assert_allclose(hhat, h_Hx1, atol=1e-6)


def test_gate_decides_which_units_fire_and_magnitude_path_their_size():
    params = hand_params(np.eye(2), [-0.5, -0.5], r_mag_D=[np.log(2.0), 0.0], b_mag_D=[0.0, 1.0])
    h_HxB = jnp.asarray([[1.0, 0.2], [0.2, 1.0]])
    f, _ = reconstruct("gated", params, h_HxB)
    # gate open only where the coordinate exceeds 0.5; magnitude 2·h for unit 0, h + 1 for unit 1
    np.testing.assert_allclose(f, [[2.0, 0.0], [0.0, 2.0]], atol=1e-6)


def test_topk_keeps_each_inputs_k_largest_with_k_per_sae_under_one_maximum():
    pre_DxB = jnp.asarray([[3.0, -1.0], [1.0, 0.5], [2.0, 0.2], [-4.0, -0.1]])
    masks = jax.vmap(lambda k: example_top_k_mask(pre_DxB, k, 3))(jnp.array([1, 2, 3]))
    expected = [
        [[1, 0], [0, 1], [0, 0], [0, 0]],
        [[1, 0], [0, 1], [1, 1], [0, 0]],
        [[1, 0], [1, 1], [1, 1], [0, 0]],
    ]  # never a non-positive pre-activation
    np.testing.assert_array_equal(masks, np.array(expected, bool))


def test_batchtopk_keeps_the_batchs_k_times_b_largest_and_encodes_alone_at_evaluation():
    pre_DxB = jnp.asarray([[3.0, 0.1, 0.2], [2.0, 0.3, -1.0], [1.5, 0.05, 0.4]])
    mask, threshold = batch_top_k_mask(pre_DxB, jnp.int32(1))  # k·B = 3 of 9 entries
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    assert float(threshold) == pytest.approx(1.5)
    params = hand_params(np.eye(3), np.zeros(3), threshold=0.25)
    spec = SaeSpec(dict_size=3, kind="batchtopk", k_max=2)
    f_eval, _ = reconstruct("batchtopk", params, pre_DxB, one(k=1), spec, training=False)
    np.testing.assert_allclose(f_eval, np.where(pre_DxB > 0.25, pre_DxB, 0.0))
    _, aux = SAE_KINDS.get("batchtopk").encode(params, pre_DxB, one(k=1), spec, True)
    tracked = track_threshold(params, aux, spec)["threshold"]  # θ + (1 − 0.99)(1.5 − θ)
    assert float(tracked) == pytest.approx(0.25 + 0.01 * 1.25)


def test_kth_largest_by_bisection_equals_sorting():
    values = jnp.asarray(
        np.random.default_rng(0).exponential(size=(64, 32)) * (np.arange(32) % 3 > 0), jnp.float32
    )
    ordered = np.sort(np.asarray(values).ravel())[::-1]
    for k in (1, 7, 500, 1300, 2048):
        assert float(kth_largest(values, jnp.int32(k))) == ordered[k - 1]
    mask, threshold = batch_top_k_mask(values - 0.5, jnp.int32(40))  # 40·32 > the positive entries
    assert float(threshold) == 0.0 and int(mask.sum()) == int((values > 0.5).sum())


def test_jumprelu_forward_and_the_papers_pseudo_derivatives():
    """Rajamanoharan et al. 2024 eqs. 11-12: ∂/∂θ of z·H(z − θ) is −(θ/ε)K((z − θ)/ε), of
    H(z − θ) is −(1/ε)K(…), K the rectangle of width 1; z gets H(z − θ) and 0."""
    z = jnp.asarray([0.1, 0.48, 0.52, 0.56, 0.9])
    theta, eps = jnp.asarray(0.5), jnp.asarray(0.1)
    np.testing.assert_allclose(jump_relu(z, theta, eps), [0, 0, 0.52, 0.56, 0.9], atol=1e-7)
    in_window = np.abs(np.asarray(z) - 0.5) < 0.05  # |z − θ|/ε < ½: 0.48 and 0.52
    g_z, g_theta = jax.grad(lambda z, t: jnp.sum(jump_relu(z, t, eps)), argnums=(0, 1))(z, theta)
    np.testing.assert_allclose(g_z, np.asarray(z) > 0.5)
    assert float(g_theta) == pytest.approx(-(0.5 / 0.1) * in_window.sum(), rel=1e-6)
    g_z, g_theta = jax.grad(lambda z, t: jnp.sum(step(z, t, eps)), argnums=(0, 1))(z, theta)
    np.testing.assert_allclose(g_z, 0.0)
    assert float(g_theta) == pytest.approx(-(1 / 0.1) * in_window.sum(), rel=1e-6)


def test_matryoshka_adds_every_narrower_prefixs_reconstruction_error():
    spec = SaeSpec(dict_size=4, kind="matryoshka", k_max=2, matryoshka_widths=(1, 3))
    assert matryoshka_widths(spec) == (1, 3, 4)
    assert matryoshka_widths(SaeSpec(dict_size=64, kind="matryoshka", k_max=1)) == (1, 4, 16, 64)
    rng = np.random.default_rng(0)
    params = hand_params(rng.normal(size=(4, 3)), np.zeros(4))
    params["b_dec_H"] = jnp.asarray([0.1, -0.2, 0.3])
    f_DxB, h_HxB = (
        jnp.asarray(rng.uniform(size=(4, 5)), jnp.float32),
        jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
    )
    W = np.asarray(decoder(params))
    by_hand = sum(
        np.mean(
            np.sum(
                (np.asarray(h_HxB) - (W[:, :w] @ np.asarray(f_DxB)[:w] + [[0.1], [-0.2], [0.3]]))
                ** 2,
                axis=0,
            )
        )
        for w in (1, 3)
    )
    terms = matryoshka_terms(params, h_HxB, f_DxB, {}, one(), spec)
    assert float(terms["matryoshka"]) == pytest.approx(by_hand, rel=1e-5)


def test_orthogonality_penalty_is_the_mean_squared_overlap_of_distinct_columns():
    assert float(ortho_penalty(jnp.eye(4)[:, :3])) == pytest.approx(0.0, abs=1e-7)
    assert float(ortho_penalty(jnp.ones((2, 3)) / math.sqrt(2))) == pytest.approx(1.0, rel=1e-6)
    W = np.asarray(decoder(hand_params(np.random.default_rng(1).normal(size=(5, 3)), np.zeros(5))))
    G = W.T @ W
    assert float(ortho_penalty(jnp.asarray(W))) == pytest.approx(
        (G[~np.eye(5, dtype=bool)] ** 2).mean(), rel=1e-5
    )


@pytest.mark.parametrize("kind", SAE_KINDS.names())
def test_every_kind_has_finite_gradients_that_reach_encoder_and_decoder(kind):
    spec = SaeSpec(dict_size=6, kind=kind, k_max=2, ortho=True)
    h_HxB = jnp.asarray(np.random.default_rng(4).normal(size=(3, 32)), jnp.float32)
    hp = one(l1=0.1, k=2, bandwidth=0.5, ortho=0.1, init_threshold=0.05)
    params = init_params(jax.random.key(3), 3, spec, hp)
    grads = jax.grad(lambda p: objective(p, h_HxB, hp, spec)[0])(params)
    for name, g in grads.items():
        assert np.isfinite(np.asarray(g)).all(), name
    assert float(jnp.abs(grads["V_HxD"]).sum()) > 0 and float(jnp.abs(grads["W_enc_DxH"]).sum()) > 0
    if kind == "jumprelu":  # the threshold learns through the straight-through estimator
        assert float(jnp.abs(grads["threshold_D"]).sum()) > 0


def test_decoder_columns_have_unit_norm_and_names_carry_the_latent_axis():
    params = hand_params(np.random.default_rng(2).normal(size=(4, 3)), np.zeros(4))
    np.testing.assert_allclose(jnp.linalg.norm(decoder(params), axis=0), 1.0, rtol=1e-6)
    assert [latent_axis(n) for n in ("W_enc_DxH", "V_HxD", "b_enc_D", "b_dec_H", "threshold")] == [
        0,
        1,
        0,
        None,
        None,
    ]


def test_a_new_kind_is_one_object_in_the_table():
    """A user's kind: one SaeKind registered from its own module; the built-ins are fixed."""

    def encode_abs(params, h_HxB, hp, spec, training):
        return jnp.abs(pre_activation(params, h_HxB)), {}

    mine = SaeKind(name="test_abs_codes", encode=encode_abs, doc="f = |pre|, no penalty")
    SAE_KINDS.register(mine)
    spec = SaeSpec(dict_size=2, kind="test_abs_codes")
    params = hand_params(np.eye(2), [-1.0, 0.0])
    loss, (f, _, _) = objective(params, jnp.asarray([[0.2], [2.0]]), one(), spec)
    np.testing.assert_allclose(f, [[0.8], [2.0]], atol=1e-6)  # |0.2 − 1|, |2 + 0|
    assert float(loss) == pytest.approx(0.6**2, rel=1e-5)  # ĥ = (0.8, 2) against h = (0.2, 2)
    with pytest.raises(ConfigError, match="built-in"):
        SAE_KINDS.register(SaeKind(name="plain", encode=encode_abs))


def test_the_sae_core_imports_no_orchestration_packages():
    import subprocess
    import sys

    code = (
        "import sys, toymodels.sae, toymodels.sae.synthbench, toymodels.sae.toy; "
        "print(sorted(m for m in ('hydra', 'ray', 'wandb', 'matplotlib', 'omegaconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_jumprelu_codes_pass_the_gated_pre_activation_through_the_free_norm_decoder():
    """f_j = ‖v_j‖ z_j H(z_j − θ_j), so ĥ = V z_gated + b_dec: the decoder's norm is SAELens's free
    W_dec norm. At init every θ is θ₀ and V, with the encoder tied to it, has norm 0.1; θ is
    projected onto θ ≥ 0 after a step, never clamped inside the loss."""
    from toymodels.sae.kinds import project_threshold

    spec = SaeSpec(dict_size=3, kind="jumprelu")
    params = hand_params(np.eye(3), [0.0, 0.0, 0.0], threshold_D=[0.2, 0.5, 0.5])
    params["V_HxD"] = jnp.asarray(np.diag([2.0, 0.5, 1.0]), jnp.float32)
    h = jnp.asarray([[0.3], [0.4], [0.6]])
    f, hhat = reconstruct("jumprelu", params, h, spec=spec)
    np.testing.assert_allclose(f[:, 0], [2.0 * 0.3, 0.0, 0.6], atol=1e-6)  # 0.4 < θ = 0.5: silent
    np.testing.assert_allclose(hhat[:, 0], [0.6, 0.0, 0.6], atol=1e-6)  # V z_gated
    hp = one(init_threshold=0.03)
    fresh = init_params(jax.random.key(0), 4, SaeSpec(dict_size=5, kind="jumprelu"), hp)
    np.testing.assert_allclose(fresh["threshold_D"], 0.03)
    np.testing.assert_allclose(jnp.linalg.norm(fresh["V_HxD"], axis=0), 0.1, rtol=1e-5)
    np.testing.assert_allclose(fresh["W_enc_DxH"], fresh["V_HxD"].T)
    projected = project_threshold(
        {**params, "threshold_D": jnp.asarray([-0.1, 0.0, 0.2])}, {}, spec
    )
    np.testing.assert_allclose(projected["threshold_D"], [0.0, 0.0, 0.2])


def test_jumprelus_l0_penalty_moves_thresholds_with_lambda_through_the_window():
    """The L0 term's gradient in θ_j is −λ/ε times the inputs with z_j within ε/2 of θ_j (per
    input of the batch mean): λ sets how hard θ is pushed up, where log θ under Adam would not."""
    from toymodels.sae.kinds import jumprelu_terms

    spec = SaeSpec(dict_size=2, kind="jumprelu")
    z = jnp.asarray([[0.49, 0.52, 0.9, 0.1], [0.2, 0.21, 0.3, 0.19]])
    params = {"threshold_D": jnp.asarray([0.5, 0.2])}
    for lam in (0.01, 1.0):
        hp = one(l1=lam, bandwidth=0.1)
        grad = jax.grad(
            lambda p: jumprelu_terms(
                p,
                None,
                None,
                {"pre": z, "theta": p["threshold_D"][:, None]},
                hp,  # noqa: B023
                spec,
            )["l0"]
        )(params)["threshold_D"]
        np.testing.assert_allclose(
            grad, [-lam / 0.1 * 2 / 4, -lam / 0.1 * 3 / 4], rtol=1e-5
        )  # 0.3 is out


def test_auxk_lets_the_top_dead_latents_reconstruct_the_residual_as_saelens():
    """Gao et al.'s AuxK as SAELens computes it: per input the k_aux = m/2 largest pre-activations
    among dead latents (raw, not rectified), through the decoder without its bias, against the
    residual h − ĥ held fixed; scaled by min(dead / k_aux, 1); 0 with none dead. Only dead
    latents' parameters get its gradient."""
    from toymodels.sae.train import aux_k_count, auxk_loss, top_dead

    assert aux_k_count(4, 6) == 2 and aux_k_count(1, 6) == 1 and aux_k_count(64, 8) == 8
    pre = jnp.asarray([[3.0, -1.0], [2.0, 0.5], [1.0, -2.0], [5.0, 4.0]])
    dead = jnp.asarray([True, True, True, False])
    np.testing.assert_array_equal(
        top_dead(pre, dead, 2), [[True, True], [True, True], [False, False], [False, False]]
    )  # −1 and 0.5 beat −2
    np.testing.assert_array_equal(
        top_dead(pre, dead, 5), [[True, True], [True, True], [True, True], [False, False]]
    )  # all 3 dead
    rng = np.random.default_rng(0)
    params = hand_params(rng.normal(size=(4, 4)), np.zeros(4))
    h = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    hhat = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    codes = np.array(
        [[3.0, -1.0], [2.0, 0.5], [0.0, 0.0], [0.0, 0.0]]
    )  # k_aux = 2 of the 3 dead per input
    W = np.asarray(decoder(params))
    error = np.mean(np.sum((np.asarray(h - hhat) - W @ codes) ** 2, axis=0))
    assert float(auxk_loss(params, h, hhat, pre, dead)) == pytest.approx(
        min(3 / 2, 1.0) * error, rel=1e-5
    )
    one_dead = jnp.asarray([False, True, False, False])
    codes_one = np.array([[0, 0], [2.0, 0.5], [0, 0], [0, 0]])
    error_one = np.mean(np.sum((np.asarray(h - hhat) - W @ codes_one) ** 2, axis=0))
    assert float(auxk_loss(params, h, hhat, pre, one_dead)) == pytest.approx(
        error_one / 2, rel=1e-5
    )
    assert float(auxk_loss(params, h, hhat, pre, jnp.zeros(4, bool))) == 0.0
    spec = SaeSpec(dict_size=4, kind="topk", k_max=1, aux_k=True)
    hp = one(k=1, aux_coefficient=0.5)
    base = jax.grad(lambda p: objective(p, h, hp, spec)[0])(params)
    with_aux = jax.grad(lambda p: objective(p, h, hp, spec, dead_D=one_dead)[0])(params)
    diff = np.abs(np.asarray(with_aux["W_enc_DxH"] - base["W_enc_DxH"])).sum(axis=1)
    assert (
        diff[1] > 0 and diff[[0, 2, 3]].max() == 0.0
    )  # the encoder rows of live latents are untouched


def test_gradients_are_clipped_to_a_global_norm_per_sae():
    from toymodels.sae.train import clip_global_norm

    grads = {"a": jnp.asarray([3.0, 0.0]), "b": jnp.asarray([[4.0]])}  # global norm 5
    clipped = clip_global_norm(grads, jnp.asarray(1.0))
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [[0.8]], rtol=1e-6)
    for limit in (0.0, 10.0):  # off, or already below
        np.testing.assert_array_equal(clip_global_norm(grads, jnp.asarray(limit))["a"], grads["a"])


def test_every_kind_declares_its_hyperparameters_and_hparams_takes_their_defaults():
    """The kinds own their settings (issue 23): each declares its hyperparameters; ``hparams``
    fills the undeclared ones from the declarations and refuses a name no kind declares."""
    from toymodels.sae import HyperParam, register_sae
    from toymodels.sae.hyperparams import L1, K

    names = {
        kind.name: [h.name for h in kind.hparams]
        for kind in SAE_KINDS
        if kind.name
        in ("plain", "gated", "rescaled", "topk", "batchtopk", "jumprelu", "matryoshka")
    }
    assert names == {
        "plain": ["l1", "decoder", "grad_clip"],
        "gated": ["l1", "decoder", "grad_clip"],
        "rescaled": ["l1"],
        "topk": ["k", "aux_coefficient", "dead_window"],
        **{
            k: ["k", "aux_coefficient", "dead_window", "init_norm", "codes"]
            for k in ("batchtopk", "matryoshka")
        },
        "jumprelu": ["l1", "bandwidth", "init_threshold", "grad_clip"],
    }
    assert SAE_KINDS.get("topk").sparsity is K and SAE_KINDS.get("jumprelu").sparsity is L1
    hp = one()
    assert float(hp.bandwidth) == pytest.approx(0.05) and float(
        hp.aux_coefficient
    ) == pytest.approx(1 / 32)
    assert hp.k.dtype == jnp.int32 and int(hp.dead_window) == 1000
    with pytest.raises(TypeError, match="no SAE kind declares a per-SAE hyperparameter 'nope'"):
        hparams(1, nope=1.0)
    with pytest.raises(AttributeError, match="has no 'nope'"):
        hp.nope  # noqa: B018
    assert (
        HyperParam("x", 1, low=0, low_open=True, high=2).problem(0)
        == "must be a finite number > 0 and <= 2, got 0"
    )
    assert (
        HyperParam("n", 1, low=1, integer=True).problem(1.5) == "must be an integer >= 1, got 1.5"
    )
    with pytest.raises(ValueError, match="its default must be"):
        HyperParam("bad", -1, low=0)
    decoder = SAE_KINDS.get("plain").hparam("decoder")  # a choice among names: static
    assert decoder.problem("unit") == "" and decoder.cast("free") == "free"
    assert decoder.problem(1) == "must be one of free, unit, got 1"
    codes = SAE_KINDS.get("batchtopk").hparam("codes")
    assert codes is SAE_KINDS.get("matryoshka").hparam("codes") and not codes.per_sae
    assert (codes.default, codes.neutral) == ("scaled", "unscaled")
    assert codes.problem("pre") == "must be one of scaled, unscaled, got 'pre'"
    with pytest.raises(ValueError, match="static"):
        HyperParam("bad", "a", choices=("a", "b"))
    clash = HyperParam("l1", 0.5, low=0)  # an "l1" unlike the built-in one: refused
    with pytest.raises(ConfigError, match="declares hyperparameter 'l1' unlike"):
        register_sae(SaeKind(name="test_clash", encode=lambda *a: (None, {}), hparams=(clash,)))


# --- plain and gated: the decoder's parameterisation (docs/saes/reference.md) --------------------


def _free_params(extra=()):
    """Two latents in two dimensions, decoder columns of norms 0.5 and 2 (not unit)."""
    V = np.array([[0.5, 0.0], [0.0, 2.0]], np.float32)
    W_enc = np.array([[1.0, 0.5], [-0.3, 1.0]], np.float32)
    params = {
        "W_enc_DxH": jnp.asarray(W_enc),
        "b_enc_D": jnp.asarray([0.1, -0.2]),
        "V_HxD": jnp.asarray(V),
        "b_dec_H": jnp.asarray([0.05, -0.1]),
    }
    return {**params, **{k: jnp.asarray(v, jnp.float32) for k, v in dict(extra).items()}}


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_free_decoder_loss_is_saelens_and_unit_is_the_unit_norm_l1(kind):
    """decoder=free: ĥ = V c + b_dec with SAELens's codes c (ReLU(pre) for plain, the gated codes
    for gated) and the penalty λ Σ_j ‖v_j‖ c_j (gated: on ReLU(π_gate), and the gate path's
    reconstruction through the live V); decoder=unit: ĥ = (V/‖V‖) c + b_dec, λ Σ_j c_j, gated's
    gate path through the frozen unit decoder. Against the loss written out by hand."""
    extra = {"r_mag_D": [0.3, -0.2], "b_mag_D": [0.1, 0.0]} if kind == "gated" else {}
    params = _free_params(extra)
    h = np.array([[1.0, 0.2, -0.5], [0.4, 1.5, 0.3]], np.float32)
    l1 = 0.3
    x = h - np.asarray(params["b_dec_H"])[:, None]
    V, W_enc = np.asarray(params["V_HxD"]), np.asarray(params["W_enc_DxH"])
    norms = np.linalg.norm(V, axis=0)[:, None]
    pre = W_enc @ x + np.asarray(params["b_enc_D"])[:, None]
    if kind == "plain":
        codes, penalised = np.maximum(pre, 0), np.maximum(pre, 0)
    else:
        mag = np.exp(extra["r_mag_D"])[:, None] * (W_enc @ x) + np.array(extra["b_mag_D"])[:, None]
        codes, penalised = (pre > 0) * np.maximum(mag, 0), np.maximum(pre, 0)
    b = np.asarray(params["b_dec_H"])[:, None]

    def sq(a):
        return float(np.mean(np.sum(a**2, axis=0)))

    want = {
        "free": sq(h - (V @ codes + b))
        + l1 * float(np.mean(np.sum(norms * penalised, axis=0)))
        + (sq(h - (V @ penalised + b)) if kind == "gated" else 0.0),
        "unit": sq(h - ((V / norms.T) @ codes + b))
        + l1 * float(np.mean(np.sum(penalised, axis=0)))
        + (sq(h - ((V / norms.T) @ penalised + b)) if kind == "gated" else 0.0),
    }
    hp = one(l1=l1)
    for decoder_kind, expected in want.items():
        spec = SaeSpec(dict_size=2, kind=kind, options=(("decoder", decoder_kind),))
        loss, (f, _, _) = objective(params, jnp.asarray(h), hp, spec)
        assert float(loss) == pytest.approx(expected, rel=1e-5), decoder_kind
        scale = norms if decoder_kind == "free" else 1.0
        np.testing.assert_allclose(f, scale * codes, rtol=1e-5, atol=1e-6)
    if kind == "gated":  # the gate path's loss reaches the decoder with free, not with unit
        for decoder_kind, reaches in (("free", True), ("unit", False)):
            spec = SaeSpec(dict_size=2, kind=kind, options=(("decoder", decoder_kind),))
            grad = jax.grad(gate_path_loss)(params, jnp.asarray(h), hp, spec)
            assert bool(jnp.any(grad["V_HxD"] != 0)) is reaches, decoder_kind


def gate_path_loss(params, h, hp, spec):
    """Gated's auxiliary loss alone: the gate path's reconstruction error."""
    gated = SAE_KINDS.get("gated")
    aux = gated.encode(params, h, hp, spec, True)[1]
    return gated.loss_terms(params, h, None, aux, hp, spec)["aux"]


@pytest.mark.parametrize("decoder_kind, scale", [("free", 0.1), ("unit", 1.0)])
def test_free_decoder_starts_at_norm_0_1_with_the_encoder_tied(decoder_kind, scale):
    spec = SaeSpec(dict_size=6, kind="plain", options=(("decoder", decoder_kind),))
    params = init_params(jax.random.key(3), 4, spec, one())
    np.testing.assert_allclose(jnp.linalg.norm(params["V_HxD"], axis=0), scale, rtol=1e-6)
    np.testing.assert_array_equal(params["W_enc_DxH"], params["V_HxD"].T)
    assert SaeSpec(dict_size=6, kind="gated").option("decoder") == "free"  # the default


def _before_issue_21():
    """plain and gated as 72e86c7 defined them (unit-norm decoder, λ‖f‖₁, no clipping), as plug-ins."""
    from toymodels.sae.hyperparams import L1
    from toymodels.sae.kinds import encode_gated, gate_terms, init_gated

    plain = SaeKind(
        name="plain_72e86c7",
        encode=lambda p, h, hp, spec, training: (jax.nn.relu(pre_activation(p, h)), {}),
        hparams=(L1,),
        loss_terms=lambda p, h, f, aux, hp, spec: {"l1": hp.l1 * jnp.mean(jnp.sum(f, axis=0))},
    )

    def encode_gated_then(p, h, hp, spec, training):
        return encode_gated(
            p, h, hp, dataclasses.replace(spec, options=(("decoder", "unit"),)), training
        )

    gated = SaeKind(
        name="gated_72e86c7",
        encode=encode_gated_then,
        loss_terms=gate_terms,
        init=init_gated,
        hparams=(L1,),
    )
    return {"plain": plain, "gated": gated}


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_decoder_unit_without_clipping_is_the_program_of_the_kind_before_issue_21(kind):
    """``decoder=unit grad_clip=0 fold_b_dec=false`` is the kind as it was: one SAE's whole
    training program (init, steps, evaluation) is the same jaxpr as the kind's 72e86c7 definition
    gives, so the same bits on every backend (what a store written then resumes to); at
    ``grad_clip`` 1, or with b_dec folded (the default), it is not."""
    from toymodels.sae import make_train, register_sae, sae_keys, split_keys
    from toymodels.sae.build import simple_world

    old = _before_issue_21()[kind]
    if old.name not in SAE_KINDS:
        register_sae(old)
    source, world = simple_world(6, 4, 0.2)
    init, data = split_keys(sae_keys(0, [1], [0]))

    def program(name, options=(), clip=True, fold=False, **values):
        spec = SaeSpec(
            fold_b_dec=fold,
            dict_size=8,
            kind=name,
            steps=20,
            batch_size=64,
            eval_batch=256,
            dead_samples=256,
            options=options,
            clip=clip,
        )
        hp = jax.tree.map(lambda a: a[0], hparams(1, l1=0.3, **values))
        text = str(jax.make_jaxpr(make_train(spec, source))(init[0], hp, world, data[0]))
        return text.replace(name, "KIND")

    unit = (("decoder", "unit"),)
    then = program(old.name)
    # as a sweep plans it: grad_clip 0 for every SAE compiles the clip out (SaeSpec.clip)
    assert program(kind, unit, clip=False, grad_clip=0.0) == then
    assert program(kind, unit, grad_clip=1.0) != then
    assert program(kind, unit, clip=False, fold=True, grad_clip=0.0) != then
    assert program(kind, fold=True) != then  # the default: decoder=free, b_dec folded


# --- batchtopk and matryoshka: codes scaled by ‖v_j‖ (docs/saes/reference.md) --------------------

BATCH_KINDS = ["batchtopk", "matryoshka"]
CODES = ["scaled", "unscaled"]


@pytest.mark.parametrize("codes", CODES)
@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_batch_top_k_codes_are_pre_times_the_decoder_norm_when_scaled(kind, codes):
    """``codes=scaled`` (the default, SAELens's ``rescale_acts_by_decoder_norm``): c = pre·‖v_j‖;
    training keeps the batch's k·B largest of c, evaluation c > θ, AuxK ranks c (``aux["pre"]``),
    the decoder is V/‖V‖. ``unscaled``: c = pre. Written out by hand where the two keep different
    latents: column norms 0.5, 1, 3 along the axes, so V/‖V‖ = I and ĥ = c."""
    norms = np.array([0.5, 1.0, 3.0], np.float32)
    params = hand_params(np.eye(3), np.zeros(3), V_HxD=np.diag(norms), threshold=0.6)
    h = jnp.asarray([[1.0, 0.2], [0.8, 0.1], [0.4, 0.3]])  # pre = h (W_enc = I, no biases)
    spec = SaeSpec(dict_size=3, kind=kind, k_max=1, options=(("codes", codes),))
    c = np.asarray(h) * (norms[:, None] if codes == "scaled" else 1.0)
    # k·B = 2: scaled keeps 3·0.4 and 3·0.3 (latent 2 in both inputs), unscaled 1.0 and 0.8
    kept = [[0, 0], [0, 0], [1, 1]] if codes == "scaled" else [[1, 0], [1, 0], [0, 0]]
    f, aux = SAE_KINDS.get(kind).encode(params, h, one(k=1), spec, True)
    np.testing.assert_allclose(f, np.where(kept, c, 0.0), rtol=1e-6)
    np.testing.assert_allclose(aux["pre"], c, rtol=1e-6)  # what AuxK ranks and θ tracks
    assert float(aux["batch_threshold"]) == pytest.approx(0.9 if codes == "scaled" else 0.8)
    np.testing.assert_allclose(decode(params, f), f, rtol=1e-6)
    f_eval, _ = SAE_KINDS.get(kind).encode(params, h, one(k=1), spec, False)
    np.testing.assert_allclose(f_eval, np.where(c > 0.6, c, 0.0), rtol=1e-6)
    loss, _ = objective(params, h, one(k=1, aux_coefficient=0.0), spec)
    recon = np.mean(np.sum((np.asarray(h) - np.where(kept, c, 0.0)) ** 2, axis=0))
    if kind == "batchtopk":
        assert float(loss) == pytest.approx(recon, rel=1e-5)
    else:  # one width (3): no narrower prefix
        assert matryoshka_widths(spec) == (3,) and float(loss) == pytest.approx(recon, rel=1e-5)


@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_codes_default_to_scaled_and_unscaled_is_the_program_of_the_kind_before(kind):
    """``codes`` defaults to ``scaled``; ``unscaled`` is the kind as aab1d17 defined it: one
    SAE's whole training program (init, steps with AuxK, evaluation) is the same jaxpr as the
    kind's old definition gives, so the same bits (what a store written then resumes to)."""
    from toymodels.sae import make_train, register_sae, sae_keys, split_keys
    from toymodels.sae.base import batch_top_k_mask
    from toymodels.sae.build import simple_world
    from toymodels.sae.kinds import BATCH_TOP_K_HPARAMS, declared_init_norm

    def encode_then(params, h_HxB, hp, spec, training):
        pre_DxB = pre_activation(params, h_HxB, spec)
        if not training:
            return jnp.where(pre_DxB > params["threshold"], pre_DxB, 0.0), {"pre": pre_DxB}
        mask_DxB, threshold = batch_top_k_mask(pre_DxB, hp.k)
        return jnp.where(mask_DxB, pre_DxB, 0.0), {"batch_threshold": threshold, "pre": pre_DxB}

    new = SAE_KINDS.get(kind)
    name = f"{kind}_aab1d17"
    if name not in SAE_KINDS:
        register_sae(
            dataclasses.replace(
                new,
                name=name,
                encode=encode_then,
                hparams=tuple(h for h in BATCH_TOP_K_HPARAMS if h.name != "codes"),
                init_scale=declared_init_norm,
            )
        )
    assert SaeSpec(dict_size=4, kind=kind).option("codes") == "scaled"
    source, world = simple_world(6, 4, 0.2)
    init, data = split_keys(sae_keys(0, [1], [0]))

    def program(name, options=()):
        spec = SaeSpec(
            dict_size=8,
            kind=name,
            steps=20,
            batch_size=64,
            k_max=2,
            aux_k=True,
            eval_batch=256,
            dead_samples=256,
            options=options,
            fold_b_dec=False,  # as aab1d17 encoded (sae.fold_b_dec=false)
        )
        hp = jax.tree.map(lambda a: a[0], hparams(1, k=2, dead_window=5))
        text = str(jax.make_jaxpr(make_train(spec, source))(init[0], hp, world, data[0]))
        return text.replace(name, "KIND")

    then = program(name)
    assert program(kind, (("codes", "unscaled"),)) == then
    assert program(kind) != then


@pytest.mark.parametrize("codes", CODES)
@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_batch_top_k_kinds_train_the_same_bits_jitted_or_not_and_run_to_run(kind, codes):
    """Each setting of ``codes``: training steps jitted and not give the same SAE (to rounding),
    and the same keys give the same bits twice."""
    from toymodels.sae.train import make_sae

    spec = SaeSpec(dict_size=8, kind=kind, k_max=2, aux_k=True, options=(("codes", codes),))
    init, step = make_sae(spec, 4)
    hp = one(k=2, dead_window=2)
    h = jax.random.normal(jax.random.key(1), (4, 32))

    def run(stepper):
        state = init(jax.random.key(0), hp)
        for t in range(6):
            state, loss = stepper(state, h, hp, jnp.uint32(t))
        return state.params, loss

    (jitted, loss_j), (again, _) = run(jax.jit(step)), run(jax.jit(step))
    plain, loss_p = run(step)
    for name in jitted:
        np.testing.assert_array_equal(jitted[name], again[name], err_msg=name)
        np.testing.assert_allclose(jitted[name], plain[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert float(loss_j) == pytest.approx(float(loss_p), rel=1e-5)
    assert float(jitted["threshold"]) > 0  # θ tracked on the codes of this setting
