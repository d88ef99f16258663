"""Our SAE pieces against SAELens 6.54's own code on the same numbers (skipped without sae-lens,
which the default suite does not install): uniqueness, JumpReLU's pseudo-derivatives, AuxK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")


def free_norm_params(rng, H, D):
    """Our shared SAE parameters at random, decoder columns of free norms (0.05 to 2 times a
    Gaussian's), drawn in a fixed order from ``rng``."""
    V = rng.normal(size=(H, D)) * rng.uniform(0.05, 2.0, size=D)
    return {
        "W_enc_DxH": jnp.asarray(rng.normal(size=(D, H)) * 0.5, jnp.float32),
        "b_enc_D": jnp.asarray(rng.normal(size=D) * 0.2, jnp.float32),
        "V_HxD": jnp.asarray(V, jnp.float32),
        "b_dec_H": jnp.asarray(rng.normal(size=H) * 0.1, jnp.float32),
    }


def assert_gradients_match(sae, grads, pairs):
    """Our gradient in each parameter against SAELens's (``pairs``: ours -> (theirs, whether
    ours is its transpose)) after its ``loss.backward()``."""
    for ours, (theirs, transposed) in pairs.items():
        g = getattr(sae, theirs).grad.numpy()
        np.testing.assert_allclose(
            np.asarray(grads[ours]).T if transposed else np.asarray(grads[ours]),
            g,
            rtol=2e-4,
            atol=2e-5,
            err_msg=ours,
        )


def test_uniqueness_is_saelens_feature_uniqueness():
    from sae_lens.synthetic.evals import feature_uniqueness

    from toymodels.sae.metrics import uniqueness

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(8, 12))
    for W in (
        rng.normal(size=(8, 20)),
        np.repeat(truth[:, :3], 4, axis=1) + 0.01 * rng.normal(size=(8, 12)),
    ):
        theirs = feature_uniqueness(torch.tensor(W.T), torch.tensor(truth.T))
        assert uniqueness(W, truth) == pytest.approx(theirs)


def test_jumprelu_straight_through_gradients_are_saelens():
    from sae_lens.saes.jumprelu_sae import JumpReLU, Step

    from toymodels.sae.base import jump_relu, step

    rng = np.random.default_rng(1)
    z, theta, eps = rng.normal(0.3, 0.2, size=(64, 5)), rng.uniform(0.2, 0.4, size=5), 0.05
    upstream = rng.normal(size=(64, 5))
    for ours, theirs in ((jump_relu, JumpReLU), (step, Step)):
        z_t = torch.tensor(z, requires_grad=True)
        theta_t = torch.tensor(theta, requires_grad=True)
        out = theirs.apply(z_t, theta_t, eps, False)
        (out * torch.tensor(upstream)).sum().backward()
        # ours: latents on the first axis (D×B), θ as D×1
        f = lambda zz, tt: jnp.sum(ours(zz, tt[:, None], jnp.asarray(eps)) * upstream.T)  # noqa: B023
        g_z, g_theta = jax.grad(f, argnums=(0, 1))(jnp.asarray(z.T), jnp.asarray(theta))
        np.testing.assert_allclose(
            np.asarray(ours(jnp.asarray(z.T), jnp.asarray(theta)[:, None], eps)).T,
            out.detach().numpy(),
            rtol=1e-6,
        )
        np.testing.assert_allclose(np.asarray(g_theta), theta_t.grad.numpy(), rtol=1e-5, atol=1e-6)
        if z_t.grad is not None:
            np.testing.assert_allclose(np.asarray(g_z).T, z_t.grad.numpy(), rtol=1e-6)


def test_auxk_is_saelens_topk_aux_loss():
    """SAELens's TopK training SAE with our weights (its decoder rescaling on, our decoder unit
    norm: the same function) gives the same AuxK loss for the same dead latents."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from toymodels.sae.base import decode, pre_activation
    from toymodels.sae.train import auxk_loss

    rng = np.random.default_rng(2)
    H, D, B = 8, 12, 32
    V = rng.normal(size=(H, D))
    V /= np.linalg.norm(V, axis=0)
    params = {
        "W_enc_DxH": jnp.asarray(rng.normal(size=(D, H)), jnp.float32),
        "b_enc_D": jnp.asarray(rng.normal(size=D) * 0.1, jnp.float32),
        "V_HxD": jnp.asarray(V, jnp.float32),
        "b_dec_H": jnp.asarray(rng.normal(size=H) * 0.1, jnp.float32),
    }
    h = jnp.asarray(rng.normal(size=(H, B)), jnp.float32)
    pre = pre_activation(params, h)
    codes = jnp.where(pre >= jnp.sort(pre, axis=0)[-3], pre, 0.0) * (
        pre > 0
    )  # any codes: the residual's source
    hhat = decode(params, codes)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=H, d_sae=D, k=3, aux_loss_coefficient=1 / 32))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(np.asarray(params["W_enc_DxH"]).T))
        sae.b_enc.copy_(torch.tensor(np.asarray(params["b_enc_D"])))
        sae.W_dec.copy_(torch.tensor(np.asarray(params["V_HxD"]).T))
        sae.b_dec.copy_(torch.tensor(np.asarray(params["b_dec_H"])))
    for dead in (np.arange(D) < 7, np.arange(D) == 4):  # more and fewer dead than k_aux = 4
        theirs = sae.calculate_topk_aux_loss(
            sae_in=torch.tensor(np.asarray(h).T),
            sae_out=torch.tensor(np.asarray(hhat).T),
            hidden_pre=torch.tensor(np.asarray(pre).T),
            dead_neuron_mask=torch.tensor(dead),
        )
        ours = auxk_loss(params, h, hhat, pre, jnp.asarray(dead)) / 32
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_free_decoder_plain_and_gated_train_on_saelens_loss_and_gradients(kind):
    """Our plain and gated at ``decoder=free`` (their default) with SAELens's weights (W_dec = Vᵀ,
    free norms): SAELens's training loss (MSE, its decoder-norm-weighted L1, gated's auxiliary
    reconstruction) and its gradients in W_enc, the biases and the decoder, from our loss."""
    from sae_lens import (
        GatedTrainingSAE,
        GatedTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
    )
    from sae_lens.saes.sae import TrainStepInput

    from toymodels.sae import SaeSpec, hparams
    from toymodels.sae.train import objective

    rng = np.random.default_rng(3)
    H, D, B, l1 = 6, 9, 32, 0.4
    params = free_norm_params(rng, H, D)
    if kind == "gated":
        params |= {
            "r_mag_D": jnp.asarray(rng.normal(size=D) * 0.3, jnp.float32),
            "b_mag_D": jnp.asarray(rng.normal(size=D) * 0.2, jnp.float32),
        }
        sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=H, d_sae=D, l1_coefficient=l1))
        names = {"b_enc_D": "b_gate", "r_mag_D": "r_mag", "b_mag_D": "b_mag"}
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=H, d_sae=D, l1_coefficient=l1))
        names = {"b_enc_D": "b_enc"}
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(np.asarray(params["W_enc_DxH"]).T))
        sae.W_dec.copy_(torch.tensor(np.asarray(params["V_HxD"]).T))
        sae.b_dec.copy_(torch.tensor(np.asarray(params["b_dec_H"])))
        for ours, theirs in names.items():
            getattr(sae, theirs).copy_(torch.tensor(np.asarray(params[ours])))
    h = rng.normal(size=(B, H)).astype(np.float32)
    out = sae.training_forward_pass(
        TrainStepInput(
            sae_in=torch.tensor(h),
            coefficients={"l1": l1},
            dead_neuron_mask=None,
            n_training_steps=0,
            is_logging_step=False,
        )
    )
    out.loss.backward()
    spec = SaeSpec(dict_size=D, kind=kind)  # decoder=free, the default
    hp = jax.tree.map(lambda a: a[0], hparams(1, l1=l1))
    loss, grads = jax.value_and_grad(lambda p: objective(p, jnp.asarray(h.T), hp, spec)[0])(params)
    assert float(loss) == pytest.approx(float(out.loss.detach()), rel=1e-5)
    # V is W_dec itself: our gradient in V is theirs in W_dec (through V/‖V‖ times ‖V‖)
    pairs = {"W_enc_DxH": ("W_enc", True), "V_HxD": ("W_dec", True), "b_dec_H": ("b_dec", False)}
    pairs |= {ours: (theirs, False) for ours, theirs in names.items()}
    assert_gradients_match(sae, grads, pairs)


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_scaled_codes_train_batch_top_k_kinds_on_saelens_loss_and_gradients(kind):
    """Our BatchTopK and Matryoshka at ``codes=scaled`` (their default) with SAELens's weights
    (W_dec = Vᵀ, free norms): SAELens's training loss (its codes pre·‖W_dec,j‖, the batch top-k
    of those, Matryoshka's inner reconstructions, AuxK over dead latents on the scaled
    pre-activations) and its gradients in every parameter, from our loss; at ``unscaled`` the
    loss differs."""
    import dataclasses

    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import TrainStepInput

    from toymodels.sae import SaeSpec, hparams
    from toymodels.sae.train import objective

    rng = np.random.default_rng(4)
    H, D, B, k, alpha = 6, 12, 32, 2, 0.5
    params = free_norm_params(rng, H, D) | {"threshold": jnp.float32(0.0)}
    common = dict(d_in=H, d_sae=D, k=k, aux_loss_coefficient=alpha)
    if kind == "matryoshka":
        sae = MatryoshkaBatchTopKTrainingSAE(
            MatryoshkaBatchTopKTrainingSAEConfig(**common, matryoshka_widths=[3, 6, D])
        )
    else:
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**common))
    assert sae.cfg.rescale_acts_by_decoder_norm  # SAELens's default
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(np.asarray(params["W_enc_DxH"]).T))
        sae.b_enc.copy_(torch.tensor(np.asarray(params["b_enc_D"])))
        sae.W_dec.copy_(torch.tensor(np.asarray(params["V_HxD"]).T))
        sae.b_dec.copy_(torch.tensor(np.asarray(params["b_dec_H"])))
    h = rng.normal(size=(B, H)).astype(np.float32)
    dead = np.arange(D) % 3 == 0  # 4 dead latents, more than k_aux = 3
    out = sae.training_forward_pass(
        TrainStepInput(
            sae_in=torch.tensor(h),
            coefficients={},
            dead_neuron_mask=torch.tensor(dead),
            n_training_steps=0,
            is_logging_step=False,
        )
    )
    out.loss.backward()
    spec = SaeSpec(
        dict_size=D,
        kind=kind,
        k_max=k,
        aux_k=True,
        matryoshka_widths=(3, 6) if kind == "matryoshka" else (),
    )
    hp = jax.tree.map(lambda a: a[0], hparams(1, k=k, aux_coefficient=alpha))

    def loss_of(p, spec=spec):
        return objective(p, jnp.asarray(h.T), hp, spec, dead_D=jnp.asarray(dead))[0]

    loss, grads = jax.value_and_grad(loss_of)(params)
    assert float(loss) == pytest.approx(float(out.loss.detach()), rel=1e-5)
    pairs = {
        "W_enc_DxH": ("W_enc", True),
        "V_HxD": ("W_dec", True),
        "b_enc_D": ("b_enc", False),
        "b_dec_H": ("b_dec", False),
    }
    assert_gradients_match(sae, grads, pairs)
    unscaled = dataclasses.replace(spec, options=(("codes", "unscaled"),))
    assert float(loss_of(params, unscaled)) != pytest.approx(float(loss), rel=1e-3)
