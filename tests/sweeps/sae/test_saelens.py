"""sae.world.kind=saelens and toymodels-saelens export (sweeps.sae.saelens). Without sae-lens: a saved
SAELens directory as a sweep's world, the export of its stored SAEs, and the refusals. With it
(slow, skipped without sae-lens): SAELens's own generator and loader against ours."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweeps.config import ConfigError
from sweeps.plan import plan_sweep
from sweeps.sae import saelens
from sweeps.store import read_results
from tests.helpers import cli, compose_config
from tests.toymodels.test_sae_saelens import EXPORT_CASES, saved_model
from toymodels import rng
from toymodels.sae import SAE_KINDS, SaeSpec, hparams
from toymodels.sae import saelens as core
from toymodels.sae.train import init_params

BASE = [
    "+sae=world",
    "~sweep.grid.density",
    "sae.world.kind=saelens",
    "sae.steps=40",
    "sae.batch_size=64",
    "sae.eval_batch=256",
    "sae.dict_size=12",
    "sweep.executor=local",
    "wandb.mode=disabled",
    "sweep.seeds=1",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("saelens") / "model"
    saved_model(path, correlated=True, std=0.1)
    return path


@pytest.fixture(scope="module")
def stored(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("saelens_sweep") / "sweep"
    done = cli(
        "toymodels-sweep",
        *BASE,
        f"sae.world.saelens={model_dir}",
        "+sweep.grid.kind=[topk,jumprelu,batchtopk]",
        "sae.k=2",
        "sae.l1=0.01",
        f"sweep.out={out}",
    )
    assert done.returncode == 0, done.stderr
    return out


def test_a_saved_saelens_model_is_a_sweep_world(stored, model_dir):
    table = read_results(stored, arrays=True)
    assert list(table["kind"]) == ["topk", "jumprelu", "batchtopk"] and 1 < table["l0"][0] <= 2
    assert list(table["codes"].fillna("-")) == ["-", "-", "scaled"]  # the kinds that read it
    assert (table["world_kind"] == "saelens").all() and (
        table["saelens"] == str(model_dir.resolve())
    ).all()
    assert (
        (table["n_features"] == 12).all()
        and (table["n_hidden"] == 6).all()
        and table["mcc"].between(0, 1).all()
    )
    assert (table["true_l0"] > 1).all()  # p in [0.2, 0.9] over 12 features, gated by the forest


def test_stored_saes_export_to_saelens_format(stored, tmp_path, capsys):
    assert (
        saelens.main(["export", str(stored), str(tmp_path / "out")]) == 0
    )  # toymodels-saelens export
    table = read_results(stored, arrays=True)
    source, world = core.build(core.read_synthetic_model(read_results(stored)["saelens"][0]))
    _, h_HxB = source.sample(world, rng.key_words(jax.random.key(5)), 0, 128)
    for _, row in table.iterrows():
        cfg, tensors = core.read_sae(tmp_path / "out" / str(row["uid"]))
        assert cfg["architecture"] == "jumprelu" or (
            cfg["architecture"] == "topk" and cfg["k"] == 2
        )
        # θ, encoder scaled by ‖v_j‖ (JumpReLU; BatchTopK's scaled codes against its one θ)
        assert (cfg["architecture"] == "jumprelu") == (row["kind"] in ("jumprelu", "batchtopk"))
        np.testing.assert_allclose(
            tensors["W_dec"], np.asarray(row["W_dec"]).T, atol=1e-6
        )  # our decoder, rows
        params = core.params_of_blob(row["params"])
        options = (("codes", row["codes"]),) if row["kind"] == "batchtopk" else ()
        spec = SaeSpec(dict_size=12, kind=row["kind"], k_max=int(row["k"]), options=options)
        ours = SAE_KINDS.get(row["kind"]).encode(
            {k: jnp.asarray(v) for k, v in params.items()},
            h_HxB,
            jax.tree.map(lambda a: a[0], hparams(1, k=max(int(row["k"]), 1))),
            spec,
            False,
        )[0]
        np.testing.assert_allclose(
            core.encode_saelens(cfg, tensors, np.asarray(h_HxB).T),
            np.asarray(ours).T,
            atol=2e-5,
            rtol=1e-5,
        )
        assert (np.asarray(ours) > 0).any()
    capsys.readouterr()
    assert saelens.main(["export", str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: store: " in err


def test_a_row_stored_before_params_is_refused():
    with pytest.raises(ConfigError, match="^params: SAE uid 7 was stored without its parameters"):
        saelens.export_row({"uid": 7, "kind": "plain", "W_dec": [[1.0]]}, "unused")


def test_bad_saelens_worlds_are_refused_naming_the_key(model_dir, tmp_path, monkeypatch):
    def refused(key, *overrides):
        with pytest.raises(ConfigError, match=f"^{key}: "):
            plan_sweep(compose_config(BASE + list(overrides)))

    refused("sae.world.saelens")  # none given
    refused("sae.world.saelens", f"sae.world.saelens={tmp_path}")  # a directory without a model
    refused(r"sweep.grid.density", f"sae.world.saelens={model_dir}", "+sweep.grid.density=[0.1]")
    refused(r"sae.world.saelens.seed", "+sae.world.saelens={num_features: 8, hidden_dim: 4}")
    monkeypatch.setattr(saelens, "has_saelens", lambda: False)
    refused("sae.world.saelens", "+sae.world.saelens={num_features: 8, hidden_dim: 4, seed: 1}")
    (tmp_path / "cfg.json").write_text(
        json.dumps({"num_features": 8, "hidden_dim": 4, "seed": 1, "dtype": "float16"})
    )
    refused(r"sae.world.saelens.dtype", f"sae.world.saelens={tmp_path / 'cfg.json'}")


# --- against SAELens itself (slow) -------------------------------------------------------------

CONFIG = {
    "num_features": 48,
    "hidden_dim": 12,
    "seed": 11,
    "bias": 0.5,
    "firing_probability": {
        "generator_name": "zipfian",
        "exponent": 0.7,
        "max_prob": 0.4,
        "min_prob": 0.03,
    },
    "hierarchy": {
        "total_root_nodes": 3,
        "branching_factor": [2, 3],
        "max_depth": 2,
        "mutually_exclusive_portion": 0.5,
        "compensate_probabilities": True,
        "scale_children_by_parent": True,
    },
    "correlation": {"rank": 3, "correlation_scale": 0.2, "seed": None},
    "orthogonalization": {"num_steps": 10, "lr": 0.01, "chunk_size": 1024},
    "mean_firing_magnitudes": {"generator_name": "linear", "start": 2.0, "end": 1.0},
    "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.3, "std": 0.2},
}


@pytest.mark.slow
def test_a_saelens_world_is_saelens_own(tmp_path):
    """The same feature matrix, probabilities, copula and forest as SAELens's generator builds;
    read from its saved directory without SAELens, the same bits (ramps within a float32 ulp); and
    sampled by us, every feature fires at SAELens's rate within sampling error."""
    pytest.importorskip("sae_lens")
    import torch
    from sae_lens.synthetic import SyntheticModel

    model = SyntheticModel(saelens._saelens_config(CONFIG))
    model.save(tmp_path / "m")
    config = compose_config(BASE + ["+sae.world.saelens=" + json.dumps(CONFIG).replace('"', "")])
    ((group, _),) = plan_sweep(config).units
    built = saelens.world_of(saelens.canonical(config.sae.world.saelens))
    read = core.read_synthetic_model(tmp_path / "m", draw=saelens._folded_normal)
    for arrays in (saelens.generate(CONFIG), read):
        assert np.array_equal(
            arrays.feature_vectors_NxH, model.feature_dict.feature_vectors.detach().numpy()
        )
        assert np.array_equal(
            arrays.firing_probabilities_N, model.activation_generator.firing_probabilities.numpy()
        )
        assert np.array_equal(
            arrays.correlation_factor_NxR, model.correlation_matrix.correlation_factor.numpy()
        )
        assert np.array_equal(
            arrays.std_N, model.activation_generator.std_firing_magnitudes.numpy()
        )
        np.testing.assert_array_max_ulp(
            arrays.mean_N, model.activation_generator.mean_firing_magnitudes.numpy(), 1
        )
        assert arrays.hierarchy == model.hierarchy.to_dict()
    source, world = built
    assert group.source == source and source.levels == 2 and source.correlated
    B = 200_000
    torch.manual_seed(0)
    theirs = model.activation_generator.sample(B).numpy() > 0
    ours = (
        np.asarray(
            jax.jit(lambda w: source.sample(w, rng.key_words(jax.random.key(0)), 0, B)[0])(world)
        ).T
        > 0
    )
    rate_t, rate_o = theirs.mean(0), ours.mean(0)
    se = np.sqrt(rate_t * (1 - rate_t) * 2 / B)
    assert (
        np.abs(rate_o - rate_t) < 4.5 * se + 1e-6
    ).all()  # 48 features, two-sided, ~1.6e-4 false alarms
    co_t, co_o = (theirs.T.astype(float) @ theirs) / B, (ours.T.astype(float) @ ours) / B
    assert (
        np.abs(co_o - co_t).max() < 0.01
    )  # co-firing: exclusion zeros, correlation and the forest's gates


@pytest.mark.slow
@pytest.mark.parametrize("kind, options", EXPORT_CASES)
def test_an_exported_sae_loads_in_saelens_to_our_encodings(kind, options, tmp_path):
    pytest.importorskip("sae_lens")
    import torch
    from sae_lens import SAE

    H, D = 6, 10
    spec = SaeSpec(
        dict_size=D, kind=kind, k_max=3 if SAE_KINDS.get(kind).top_k else 0, options=options
    )
    r = np.random.default_rng(1)
    one = jax.tree.map(lambda a: a[0], hparams(1, k=3))
    params = {
        name: np.asarray(v) + 0.3 * r.normal(size=np.shape(v)).astype(np.float32)
        for name, v in init_params(jax.random.key(0), H, spec, one).items()
    }
    if "threshold" in params:
        params["threshold"] = np.float32(0.2)
    if "threshold_D" in params:  # JumpReLU's θ ≥ 0, as training projects it
        params["threshold_D"] = np.abs(params["threshold_D"])
    h_HxB = r.normal(size=(H, 256)).astype(np.float32)
    ours = np.asarray(
        SAE_KINDS.get(kind).encode(
            {n: jnp.asarray(v) for n, v in params.items()}, jnp.asarray(h_HxB), one, spec, False
        )[0]
    ).T
    cfg, tensors = core.to_saelens(kind, params, k=3, options=dict(options) if options else None)
    sae = SAE.load_from_disk(core.write_sae(tmp_path / kind, cfg, tensors))
    with torch.no_grad():
        theirs = sae.encode(torch.from_numpy(h_HxB.T)).numpy()
    np.testing.assert_allclose(theirs, ours, atol=2e-5, rtol=1e-5)
    assert (ours > 0).any()
