"""The notebook side of the analysis (``analysis.api``): a stored sweep with its weights as arrays,
the figures ``toymodels-figures`` would draw, each drawn into any matplotlib target; importing the
analysis leaves matplotlib's backend and pyplot alone and needs no Hydra, Ray or wandb. That
``toymodels-figures`` draws exactly ``figure_names`` is checked in test_analysis.py."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis import api
from tests.helpers import assert_draws_the_same_into_every_target, compose_config, tiny

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
MODULES = sorted(
    ".".join(("analysis", *p.relative_to(ANALYSIS).with_suffix("").parts)).removesuffix(".__init__")
    for p in ANALYSIS.rglob("*.py")
)
FIGURES_OF_THE_SWEEP = [
    "loss_curves",
    "capacity_trajectories",
    "geometry_2d",
    "wtw",
    "dimensionality",
    "phase_diagram",
]


def run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_any_analysis_module_leaves_the_backend_and_pyplot_alone_and_needs_no_orchestration():
    assert len(MODULES) > 20 and "analysis.figures.catalog" in MODULES and "analysis.api" in MODULES
    out = run_python(
        "import importlib, sys, matplotlib; matplotlib.use('svg'); "
        f"[importlib.import_module(m) for m in {MODULES!r}]; "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules, "
        "[m for m in ('hydra', 'omegaconf', 'ray', 'wandb') if m in sys.modules])"
    )
    assert out == "svg False []"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A seconds-long n=3, m=2 sweep over (density, importance_last): six kinds of figure."""
    from sweeps.runner import run_sweep

    out = tmp_path_factory.mktemp("api") / "s"
    run_sweep(
        compose_config(
            [
                "experiment=tms_phase_3_2_small",
                *tiny(out),
                "sweep.seeds=2",
                "sweep.grid.density=[1.0,0.3,0.05]",
                "sweep.grid.importance_last=[0.3,3.0]",
            ]
        ),
        progress=False,
    )
    return out


def test_load_gives_the_table_with_weights_as_arrays(stored):
    from sweeps.store import as_matrix, read_results

    sweep = api.load(stored)
    table = sweep.table
    assert len(table) == 12 and sweep.axes == ["importance_last", "density"]
    assert sweep.config["name"] == "tms_phase_3_2_small" and "config" in sweep.stamp()
    W_MxHxF = np.stack(table["W"])
    assert W_MxHxF.shape == (12, 2, 3) and W_MxHxF.dtype == np.float64
    np.testing.assert_array_equal(W_MxHxF, as_matrix(read_results(stored)["W"]))
    snapshots = table["snap_capacity"].iloc[0]
    assert isinstance(snapshots, np.ndarray) and snapshots.shape == (
        3,
        3,
    )  # steps 10, 20, 30 × features
    assert isinstance(table["feature_importance"].iloc[0], np.ndarray)
    assert api.figure_names(sweep) == FIGURES_OF_THE_SWEEP


@pytest.mark.parametrize("name", FIGURES_OF_THE_SWEEP)
def test_every_figure_draws_the_same_into_every_target(stored, name):
    sweep = api.load(stored)
    assert_draws_the_same_into_every_target(lambda target: api.draw(name, sweep, target))


def test_draw_takes_a_directory_and_the_figures_own_options(stored):
    fig = api.draw("geometry_2d", str(stored), max_panels=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    phases = api.draw("phase_diagram", stored, feature=0)
    assert "Phase of feature 1" in phases.axes[0].get_title()
    assert set(api.FIGURES["phase_diagram"].options()) == {"feature", "thresholds", "crossover_at"}


def test_draw_refuses_what_it_cannot_draw_naming_what_it_can(stored):
    sweep = api.load(stored)
    with pytest.raises(ValueError, match="no figure 'geometry'.*geometry_2d"):
        api.draw("geometry", sweep)
    with pytest.raises(
        ValueError, match="'perturb' needs a density_last axis.*supports: loss_curves"
    ):
        api.draw("perturb", sweep)
    with pytest.raises(ValueError, match=r"takes the options \['max_panels'\], not \['panels'\]"):
        api.draw("geometry_2d", sweep, panels=3)
    with pytest.raises(FileNotFoundError):
        api.draw("loss_curves", stored.parent / "nowhere")


def test_a_multi_panel_figure_needs_an_axes_on_a_grid(stored):
    fig = Figure()
    with pytest.raises(ValueError, match="placed by hand"):
        api.draw("geometry_2d", api.load(stored), fig.add_axes((0.1, 0.1, 0.8, 0.8)))
    with pytest.raises(TypeError, match="target must be None"):
        api.draw("geometry_2d", api.load(stored), "ax")


def test_a_loaded_model_is_a_table_row_and_callable_on_a_batch(stored):
    """``api.model``: the kind's forward pass with the row's stored parameters, batch first."""
    sweep = api.load(stored)
    model = api.model(sweep, 3)
    row = sweep.table.iloc[3]
    assert model["loss"] == row["loss"] and model.row is not None and "relu" in repr(model)
    x = np.random.default_rng(0).uniform(size=(7, 3))
    W, b = row["W"], row["b"]
    np.testing.assert_allclose(model(x), np.maximum(x @ W.T @ W + b, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.hidden(x), x @ W.T, rtol=1e-5, atol=1e-6)
    assert model(x[0]).shape == (3,) and model.hidden(x[0]).shape == (2,)
    same = api.model(str(stored), sweep.table.iloc[3])  # a directory and a row
    np.testing.assert_array_equal(same(x), model(x))
    with pytest.raises(ValueError, match=r"x must be B×3 .*got shape \(7, 4\)"):
        model(np.ones((7, 4)))


def test_a_model_of_an_unregistered_kind_is_refused_without_running_any_code(stored):
    row = api.load(stored).table.iloc[0].copy()
    row["model"] = "kind_nobody_registered"
    with pytest.raises(
        ValueError, match="'kind_nobody_registered' .* neither built in nor registered"
    ):
        api.StoredModel(row)


def test_geometry_panels_fit_a_notebook_half_and_keep_long_vectors_inside(stored):
    """The notebook page's layout (docs/notebook.md: two halves of figsize=(14, 5)): the geometry title
    stays within
    its half, clear of the loss curves' legend; a vector longer than 1.5 stays inside its panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    sweep = api.load(stored)
    sweep.table["W"] = [3.0 * W for W in sweep.table["W"]]  # tips up to ±3 and beyond
    fig = Figure(figsize=(14, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    api.draw("loss_curves", sweep, left)
    sub = api.draw("geometry_2d", sweep, right)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    title = sub._suptitle.get_window_extent(renderer)
    assert sub.bbox.x0 - 1 <= title.x0 and title.x1 <= sub.bbox.x1 + 1 and title.y1 <= fig.bbox.y1
    legend = left.get_legend()
    assert legend is None or not title.overlaps(legend.get_window_extent(renderer))
    panels = [ax for ax in sub.axes]
    assert len(panels) == 6
    for ax, W in zip(panels, sweep.table.sort_values("loss")["W"]):
        lim = ax.get_xlim()[1]
        assert lim > 1.5 and all(np.abs(line.get_xydata()).max() < lim for line in ax.lines)
