"""SAELens interop without SAELens (toymodels.sae.saelens): a saved synthetic model read with
safetensors' numpy API, its forest's semantics, and our SAEs written in SAELens's format with the
encodings its inference classes compute (their formulas, in numpy). The round trips through
SAELens itself are in tests/sweeps/test_saelens.py (slow, skipped without sae-lens)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from toymodels import rng
from toymodels.sae import SAE_KINDS, SaeSpec, hparams
from toymodels.sae import saelens as core
from toymodels.sae.train import init_params

# An irregular forest as SAELens writes hierarchy.json: root 0 (exclusive, rescaling) with children
# 1, 2, 3; child 1 with children 4, 5 (not exclusive); an organisational node (no feature) under
# root 6 whose children 7, 8 are exclusive and gated by 6 itself. Features 9.. are outside it.
FOREST = {
    "roots": [
        {
            "feature_index": 0,
            "mutually_exclusive_children": True,
            "scale_children_by_parent": True,
            "children": [
                {"feature_index": 1, "children": [{"feature_index": 4}, {"feature_index": 5}]},
                {"feature_index": 2},
                {"feature_index": 3},
            ],
        },
        {
            "feature_index": 6,
            "children": [
                {
                    "feature_index": None,
                    "mutually_exclusive_children": True,
                    "children": [{"feature_index": 7}, {"feature_index": 8}],
                }
            ],
        },
    ]
}


def saved_model(path, n=12, m=6, seed=3, hierarchy=FOREST, correlated=False, mean=None, std=0.0):
    """A directory in SAELens 6.54's SyntheticModel.save format, written by hand."""
    r = np.random.default_rng(seed)
    F = r.normal(size=(n, m)).astype(np.float32)
    weights = {
        "feature_vectors": F / np.linalg.norm(F, axis=1, keepdims=True),
        "bias": r.normal(size=m).astype(np.float32),
        "firing_probabilities": r.uniform(0.2, 0.9, n).astype(np.float32),
    }
    if correlated:
        factor = (0.3 * r.normal(size=(n, 2))).astype(np.float32)
        weights.update(
            correlation_factor=factor, correlation_diag=(1 - (factor**2).sum(1)).astype(np.float32)
        )
    config = {
        "num_features": n,
        "hidden_dim": m,
        "firing_probability": {"generator_name": "constant", "probability": 0.5},
        "hierarchy": None,
        "orthogonalization": None,
        "correlation": None,
        "std_firing_magnitudes": std,
        "mean_firing_magnitudes": mean
        if mean is not None
        else {"generator_name": "linear", "start": 2.0, "end": 1.0},
        "bias": 1.0,
        "dtype": "float32",
        "seed": seed,
    }
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / core.WEIGHTS_FILE))
    (path / core.CONFIG_FILE).write_text(json.dumps(config))
    if hierarchy is not None:
        (path / core.HIERARCHY_FILE).write_text(json.dumps(hierarchy))
    return weights


def test_a_saved_model_is_read_bit_for_bit_without_torch(tmp_path):
    weights = saved_model(tmp_path / "m", correlated=True)
    arrays = core.read_synthetic_model(tmp_path / "m")
    for ours, theirs in [
        (arrays.feature_vectors_NxH, "feature_vectors"),
        (arrays.bias_H, "bias"),
        (arrays.firing_probabilities_N, "firing_probabilities"),
        (arrays.correlation_factor_NxR, "correlation_factor"),
        (arrays.correlation_diag_N, "correlation_diag"),
    ]:
        assert np.array_equal(ours, weights[theirs]) and ours.dtype == np.float32
    ramp = np.linspace(2.0, 1.0, 12)  # torch.linspace's values, to float32 rounding
    np.testing.assert_allclose(arrays.mean_N, ramp, rtol=2.5e-7)
    assert (
        arrays.mean_N[0] == 2.0
        and arrays.mean_N[-1] == 1.0
        and np.array_equal(arrays.std_N, np.zeros(12))
    )
    source, world = core.build(arrays)
    assert source.correlated and source.levels == 2 and source.exclusive and source.rescale
    assert np.array_equal(np.asarray(world.base.F_HxN), weights["feature_vectors"].T)
    assert np.array_equal(np.asarray(world.base.diag_sqrt_N), np.sqrt(weights["correlation_diag"]))


def test_folded_normal_magnitudes_need_the_reference(tmp_path):
    saved_model(tmp_path / "m", std={"generator_name": "folded_normal", "mean": 0.3, "std": 0.2})
    with pytest.raises(core.NeedsReference, match="saelens extra"):
        core.read_synthetic_model(tmp_path / "m")
    drawn = core.read_synthetic_model(
        tmp_path / "m", draw=lambda value, n, seed: np.full(n, seed, np.float32)
    )
    assert np.array_equal(
        drawn.std_N, np.full(12, 3 + 1)
    )  # SAELens seeds the spreads with seed + 1


def test_the_forest_as_arrays():
    forest = core.forest_arrays(FOREST, 12)
    assert forest["parent_N"].tolist() == [-1, 0, 0, 0, 1, 1, -1, 6, 6, -1, -1, -1]
    assert forest["level_N"].tolist() == [
        0,
        1,
        1,
        1,
        2,
        2,
        0,
        2,
        2,
        0,
        0,
        0,
    ]  # the organisational node counts
    groups = forest["group_N"]
    assert (
        groups[1] == groups[2] == groups[3] >= 0
        and groups[7] == groups[8] >= 0
        and groups[1] != groups[7]
    )
    assert (groups[[0, 4, 5, 6, 9]] == -1).all()
    assert forest["rescale_N"].tolist() == [False, True, True, True] + [False] * 8
    with pytest.raises(ValueError, match="appears twice"):
        core.forest_arrays(
            {"roots": [{"feature_index": 1, "children": [{"feature_index": 1}]}]}, 12
        )


def test_the_forest_gates_excludes_and_rescales(tmp_path):
    """Sampled from our source: a child fires only with its parent; exclusive siblings never fire
    together and, given the parent, one survives uniformly; children of 0 are scaled by x_0/μ_0;
    a root fires at its probability; each feature's magnitude is ReLU(μ + σ N(0, 1))."""
    saved_model(tmp_path / "m", std=0.1)
    arrays = core.read_synthetic_model(tmp_path / "m")
    source, world = core.build(arrays)
    B = 40_000
    x = np.asarray(
        jax.jit(lambda w: source.sample(w, rng.key_words(jax.random.key(1)), 0, B)[0])(world)
    )
    fires = x > 0
    for child, parent in [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (7, 6), (8, 6)]:
        assert not (fires[child] & ~fires[parent]).any()
    assert (
        not (fires[1] & fires[2]).any()
        and not (fires[2] & fires[3]).any()
        and not (fires[7] & fires[8]).any()
    )
    assert (fires[4] & fires[5]).any(), "4 and 5 are not exclusive"
    p = arrays.firing_probabilities_N
    for root in (0, 6, 9, 11):
        assert abs(fires[root].mean() - p[root]) < 4 * np.sqrt(p[root] * (1 - p[root]) / B)
    # siblings 7 and 8 both drawn: the survivor is uniform
    both = fires[6]
    expect_7 = p[7] * (1 - p[8]) + p[7] * p[8] / 2
    assert abs(fires[7][both].mean() - expect_7) < 4 * np.sqrt(
        expect_7 * (1 - expect_7) / both.sum()
    )
    # rescaled by the parent's value over its mean; unscaled child 4 keeps its own magnitude
    mu = arrays.mean_N
    ratio = x[1][fires[1]] / (x[0][fires[1]] / mu[0])
    assert abs(ratio.mean() - mu[1]) < 0.01 and abs(x[4][fires[4]].mean() - mu[4]) < 0.01


EVAL_KINDS = ["plain", "rescaled", "gated", "topk", "batchtopk", "jumprelu", "matryoshka"]
# Every kind at its defaults, and every other value of a static setting that changes what the
# codes are: (kind, options); () the declared defaults.
EXPORT_CASES = [(k, ()) for k in EVAL_KINDS] + [
    *((k, (("decoder", "unit"),)) for k in ("plain", "gated")),
    *((k, (("codes", "unscaled"),)) for k in ("batchtopk", "matryoshka")),
]


@pytest.mark.parametrize("kind, options", EXPORT_CASES)
def test_every_kind_writes_saelens_format_with_our_encodings(kind, options, tmp_path):
    """Random (not initial) parameters of each kind, written as SAELens's cfg.json and
    sae_weights.safetensors: SAELens's inference formula for the architecture, on the file, gives
    our evaluation codes (plain and gated: with the free decoder of their default, codes times
    ‖v_j‖, and with unit-norm columns; BatchTopK and Matryoshka: with the scaled codes of their
    default, ‖v_j‖ folded into the encoder rows and b_enc against the same θ, and unscaled)."""
    H, D = 6, 10
    spec = SaeSpec(
        dict_size=D, kind=kind, k_max=3 if SAE_KINDS.get(kind).top_k else 0, options=options
    )
    r = np.random.default_rng(0)
    one = jax.tree.map(lambda a: a[0], hparams(1, k=3, bandwidth=1e-3))
    params = {
        name: np.asarray(v) + 0.3 * r.normal(size=np.shape(v)).astype(np.float32)
        for name, v in init_params(jax.random.key(0), H, spec, one).items()
    }
    if "threshold" in params:
        params["threshold"] = np.float32(0.2)
    if "threshold_D" in params:  # JumpReLU's θ ≥ 0, as training projects it
        params["threshold_D"] = np.abs(params["threshold_D"])
    h_HxB = r.normal(size=(H, 64)).astype(np.float32)
    ours = np.asarray(
        SAE_KINDS.get(kind).encode(
            {n: jnp.asarray(v) for n, v in params.items()}, jnp.asarray(h_HxB), one, spec, False
        )[0]
    ).T
    cfg, tensors = core.to_saelens(kind, params, k=3, options=dict(options) if options else None)
    core.write_sae(tmp_path / kind, cfg, tensors)
    cfg, tensors = core.read_sae(tmp_path / kind)
    assert cfg["d_in"] == H and cfg["d_sae"] == D and cfg["apply_b_dec_to_input"] is True
    assert (
        tensors["W_enc"].shape == (H, D)
        and tensors["W_dec"].shape == (D, H)
        and tensors["b_dec"].shape == (H,)
    )
    assert np.allclose(np.linalg.norm(tensors["W_dec"], axis=1), 1.0, atol=1e-6)
    assert (ours > 0).any() and (ours == 0).any()
    np.testing.assert_allclose(
        core.encode_saelens(cfg, tensors, h_HxB.T), ours, atol=2e-5, rtol=1e-5
    )


def test_a_kind_saelens_has_not_is_refused():
    with pytest.raises(ValueError, match="no SAELens architecture for SAE kind 'mine'"):
        core.to_saelens("mine", {})


def test_params_travel_as_safetensors_bytes():
    params = {
        "W_enc_DxH": np.arange(6, dtype=np.float32).reshape(2, 3),
        "threshold": np.float32(0.5),
    }
    back = core.params_of_blob(core.params_blob(params))
    assert (
        np.array_equal(back["W_enc_DxH"], params["W_enc_DxH"]) and float(back["threshold"]) == 0.5
    )
