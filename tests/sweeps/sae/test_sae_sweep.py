"""SAE sweeps are ordinary sweeps (issue 16 item 1): ``toymodels-sweep experiment=sae_...`` plans SAEs,
trains each chunk as one ``train_saes`` program, stores one row per SAE with its decoder in the
resumable store, tracks in wandb and draws from the store."""

import jax
import numpy as np
import pandas as pd
import pytest

from sweeps.config import ConfigError
from sweeps.jobs import make_chunks, run_chunk
from sweeps.plan import plan_sweep
from sweeps.store import read_results
from tests.helpers import EXPERIMENTS, cli, compose_config
from toymodels.sae import decoder, hparams, sae_keys, split_keys, train_saes
from toymodels.sae.build import simple_world

SAE_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("sae_")]
# Seconds-long: two kinds (a λ kind and a top-k kind) of sae_pareto_small, 40 steps.
QUICK = [
    "experiment=sae_pareto_small",
    "sweep.grid.kind=[plain,topk]",
    "sweep.grid.l1=[0.1,0.3]",
    "sweep.grid.k=[1,2]",
    "sae.steps=40",
    "sae.batch_size=64",
    "sae.eval_batch=256",
    "sweep.executor=local",
]
ON_TOYS = ["+sae=toy", "~sweep.grid.density", "name=sae_on_toys"]  # docs/saes/index.md's command


def test_every_sae_experiment_composes_and_plans():
    expected = {
        "sae_pareto": 7 * 5 * 2,
        "sae_pareto_small": 7 * 3,
        "sae_shrinkage": 3 * 2 * 4 * 3,
        "sae_shrinkage_small": 3 * 2 * 2,
        "sae_composition": 2 * 5 * 5 * 3,
        "sae_composition_small": 2 * 3 * 2,
        "sae_orthogonality": 2 * 2 * 4 * 2,
        "sae_orthogonality_small": 2 * 2 * 2,
        "sae_active": 4 * 6 * 2,
        "sae_active_small": 2 * 3,
    }
    for name in SAE_EXPERIMENTS:
        saes = plan_sweep(compose_config([f"experiment={name}"])).units
        assert len(saes) == expected[name], name
        assert len({p.uid for _, p in saes}) == len(saes)


def test_a_kind_is_trained_once_per_setting_it_reads():
    """A top-k kind reads k, not λ: the grid's λ axis does not multiply it (nor k the λ kinds)."""
    saes = plan_sweep(compose_config(QUICK)).units
    kinds = [(g.spec.kind, p.value("l1"), p.value("k")) for g, p in saes]
    assert kinds == [
        ("plain", 0.1, None),
        ("plain", 0.3, None),
        ("topk", None, 1),
        ("topk", None, 2),
    ]
    assert {g.spec.k_max for g, _ in saes if g.spec.kind == "topk"} == {2}


@pytest.mark.parametrize(
    "override, key",
    [
        ("sae.world.n_hidden=0", "sae.world.n_hidden"),
        ("sae.kind=nope", "sae.kind"),
        ("sweep.grid.l1=[0.1,-1]", r"sweep.grid.l1\[1\]"),
        ("sweep.grid.kind=[plain,nope]", r"sweep.grid.kind\[1\]"),
        ("sweep.grid.k=[1,64]", "sweep.grid.k"),
        ("+sweep.grid.weight_decay=[0.1]", "sweep.grid.weight_decay"),
        ("sweep.grid.l1=[0.1,0.1]", "sweep.grid.l1"),
        ("sae.dict_size=3m", "sae.dict_size"),
        ("sae.world.directions=identity", "sae.world.directions"),
        ("sae.source=somewhere", "sae.source"),
        ("sae.source=toy", "sae.toy.sweep"),
    ],
)
def test_bad_sae_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        compose_config(QUICK + [override])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("saesweep") / "sweep"
    done = cli("toymodels-sweep", *QUICK, f"sweep.out={out}", "wandb.mode=offline")
    assert done.returncode == 0, done.stderr
    assert "4/4 models stored (4 trained now" in done.stdout
    return out


def test_one_row_per_sae_with_its_decoder(stored):
    table = read_results(stored, arrays=True)
    assert list(table["kind"]) == ["plain", "plain", "topk", "topk"] and table["uid"].is_unique
    assert all(W.shape == (8, 32) for W in table["W_dec"])
    assert np.allclose([np.linalg.norm(W, axis=0) for W in table["W_dec"]], 1.0, atol=1e-5)
    assert list(table["sparsity"]) == [0.1, 0.3, 1, 2] and list(table["l0"][2:]) == [1.0, 2.0]
    assert table["mcc"].between(0, 1).all() and (table["true_l0"] > 0).all()
    assert list((stored / "wandb" / "logged").iterdir()), "every chunk is logged (offline)"


def test_rerun_trains_nothing(stored):
    done = cli("toymodels-sweep", *QUICK, f"sweep.out={stored}", "wandb.mode=disabled")
    assert done.returncode == 0, done.stderr
    assert "(0 trained now, 4 already there)" in done.stdout


def test_the_same_config_gives_the_same_bits(stored):
    config = compose_config(QUICK + [f"sweep.out={stored}"])
    table = read_results(stored, arrays=True)
    for chunk in make_chunks(plan_sweep(config)):
        again = run_chunk(chunk)
        rows = table[table["chunk"] == chunk.id]
        assert list(again["uid"]) == list(rows["uid"])
        for a, b in zip(again["W_dec"], rows["W_dec"]):
            assert np.array_equal(np.asarray(a), b)
        assert list(again["fvu"]) == list(rows["fvu"])


def test_a_stored_sae_is_train_saes_on_its_world(stored):
    """The row equals the SAE trained alone (a chunk of one; equal up to rounding, since XLA may
    order a vmapped program's sums by its width), and that one equals ``train_saes`` called by
    hand: its world, key (world id, seed) and hyperparameters go where they should."""
    config = compose_config(QUICK + ["sweep.chunk_size=1", f"sweep.out={stored}"])
    chunks = make_chunks(plan_sweep(config))
    assert [c.n_models for c in chunks] == [1, 1, 1, 1]
    row = read_results(stored, arrays=True).iloc[1]
    alone = run_chunk(chunks[1]).iloc[0]
    assert alone["uid"] == row["uid"]
    assert np.allclose(np.asarray(alone["W_dec"]), row["W_dec"], atol=1e-6, rtol=0)

    point, spec = chunks[1].points[0], chunks[1].spec.spec
    source, world = simple_world(16, 8, 0.06, directions_kind="random", magnitude="uniform", seed=0)
    init, data = split_keys(sae_keys(0, [point.source_uid], [0]))
    result = train_saes(
        spec,
        source,
        init,
        hparams(1, lr=3e-3, l1=0.3),
        jax.tree.map(lambda a: a[None], world),
        data,
    )
    by_hand = np.asarray(decoder(jax.tree.map(lambda a: a[0], result.params)))
    assert np.array_equal(by_hand, np.asarray(alone["W_dec"]))


def test_figures_are_drawn_from_the_store(stored):
    done = cli("toymodels-figures", str(stored))
    assert done.returncode == 0, done.stderr
    assert (stored / "figures" / "sae_pareto.png").is_file()
    assert not (stored / "figures" / "loss_curves.png").exists(), "toy-model figures do not apply"


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    from tests.helpers import tiny

    out = tmp_path_factory.mktemp("saetoy") / "toys"
    done = cli("toymodels-sweep", *tiny(out, "sweep.seeds=1", "sweep.grid.density=[1.0,0.1]"))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.reproduction
def test_saes_on_a_stored_toy_sweep_match_toymodels_sae(toy_sweep, tmp_path):
    """``toymodels-sae`` is a shortcut of this sweep: the same SAEs (same keys: the toy model's uid
    and the SAE seed), the same rows, bit for bit; figure ``sae_recovery`` drawn from the store."""
    out = tmp_path / "saes"
    done = cli(
        "toymodels-sweep",
        *ON_TOYS,
        f"sae.toy.sweep={toy_sweep}",
        "sweep.seeds=1",
        "sae.kind=plain",
        "sae.dict_size=n",
        "+sweep.grid.l1=[0.1,0.3]",
        "sae.steps=20",
        "sae.batch_size=32",
        "sae.eval_batch=64",
        "sweep.executor=local",
        "wandb.mode=disabled",
        f"sweep.out={out}",
    )
    assert done.returncode == 0, done.stderr
    ours = read_results(out, arrays=True)
    assert len(ours) == 4 and set(ours["density"]) == {1.0, 0.1}
    done = cli(
        "toymodels-sae",
        str(toy_sweep),
        "--kind",
        "plain",
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
        "--out",
        str(tmp_path / "short"),
        "wandb.mode=disabled",
    )
    assert done.returncode == 0, done.stderr
    theirs = read_results(tmp_path / "short", arrays=True)
    for _, row in ours.iterrows():
        match = theirs[(theirs["source_uid"] == row["source_uid"]) & (theirs["l1"] == row["l1"])]
        assert len(match) == 1
        assert np.array_equal(match["W_dec"].iloc[0], row["W_dec"])
    done = cli("toymodels-figures", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "figures" / "sae_recovery.png").is_file()


@pytest.mark.reproduction
@pytest.mark.slow
def test_an_sae_sweep_on_ray_stores_the_same_bits(stored, tmp_path):
    out = tmp_path / "ray"
    done = cli(
        "toymodels-sweep",
        *QUICK[:-1],
        "sweep.executor=ray",
        "ray.num_cpus=2",
        f"sweep.out={out}",
        "wandb.mode=disabled",
    )
    assert done.returncode == 0, done.stderr
    ray_rows, local = read_results(out, arrays=True), read_results(stored, arrays=True)
    assert ray_rows["ray_node"].notna().all()
    for a, b in zip(ray_rows["W_dec"], local["W_dec"]):
        assert np.array_equal(a, b)


def test_a_missing_toy_sweep_is_refused_before_any_compute(tmp_path):
    config = compose_config([*ON_TOYS, f"sae.toy.sweep={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match="^sae.toy.sweep: .* holds no results.parquet"):
        plan_sweep(config)


def _shrinkage_table():
    """FVU ordered gated < rescaled < plain at both λ with U[0, 1] magnitudes, at one λ when fixed."""
    fvu = {
        ("uniform", 0.1): (0.01, 0.02, 0.03),
        ("uniform", 0.3): (0.02, 0.05, 0.09),
        ("fixed", 0.1): (0.001, 0.002, 0.02),
        ("fixed", 0.3): (0.01, 0.004, 0.05),
    }
    rows = [
        dict(
            kind=kind,
            magnitude=mag,
            l1=l1,
            seed=seed,
            fvu=values[i] + 0.001 * seed,
            gamma=1.0,
            mcc=0.9,
        )
        for (mag, l1), values in fvu.items()
        for i, kind in enumerate(["gated", "rescaled", "plain"])
        for seed in range(2)
    ]
    return pd.DataFrame(rows)


def test_the_shrinkage_figure_shows_seed_means_and_counts_the_predicted_order():
    from types import SimpleNamespace

    from analysis.figures.sae_sweep import plot_sae_shrinkage, shrinkage_note

    table = _shrinkage_table()
    assert shrinkage_note(SimpleNamespace(table=table)) == {
        "fvu gated < rescaled < plain (fixed magnitudes)": "1/2 λ values",
        "fvu gated < rescaled < plain (uniform magnitudes)": "2/2 λ values",
    }
    fig = plot_sae_shrinkage(table)
    fvu_uniform = fig.axes[1]  # columns: fixed, uniform; first row: FVU
    assert "FVU, magnitude=uniform" in fvu_uniform.get_title()
    lines = {line.get_label(): line.get_ydata().tolist() for line in fvu_uniform.lines}
    assert lines["kind=plain"] == pytest.approx([0.0305, 0.0905])
    assert list(lines) == ["kind=plain", "kind=gated", "kind=rescaled"]
    assert "SAELens" in fig._suptitle.get_text()


@pytest.mark.parametrize("world", ["synthetic", "toy"])
def test_the_orthogonality_and_composition_figures_show_their_means(world):
    from analysis.figures.sae_sweep import plot_sae_composition, plot_sae_orthogonality

    rows = [
        dict(
            kind=kind,
            ortho=ortho,
            seed=seed,
            mcc=0.9 - 0.1 * ortho + 0.01 * seed,
            fvu=0.1,
            n_features=4,
            n_hidden=2,
            directions="pairs",
            cosine=0.8,
            magnitude="fixed",
            together=ortho / 10,
            l1=0.1,
            n_composed=seed,
        )
        for kind in ("plain", "topk")
        for ortho in (0.0, 0.1, 1.0)
        for seed in range(2)
    ]
    table = pd.DataFrame(rows)
    if world == "toy":  # an SAE sweep on stored toy models has no world directions
        table = table.drop(columns=["directions", "cosine"])
    fig = plot_sae_orthogonality(table)
    assert fig.axes[0].get_title() == (
        "MCC (SAELens), world=pairs cos=0.8"
        if world == "synthetic"
        else "MCC (SAELens), world=toy models (n=4, m=2)"
    )
    plain = fig.axes[0].lines[0]
    assert plain.get_label() == "kind=plain" and plain.get_ydata().tolist() == pytest.approx(
        [0.905, 0.895, 0.805]
    )
    composed = (
        plot_sae_composition(table).axes[0].lines[0]
    )  # one of the two seeds has a composed latent
    assert composed.get_ydata().tolist() == pytest.approx([0.5, 0.5, 0.5])
