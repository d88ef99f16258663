"""A new target every sample (``data.kind=random_target``; SCIENCE.md §8, issue 17 item 2): the
loss covers x_t only, t uniform over the n features, x_t ~ U[0, 1], every other feature
Bernoulli(p)·U[0, s] with s = ``noise_scale`` (0.1).

Linear model x' = WᵀWx + b, exactly. Write g_t = ‖W_t‖², G = WᵀW, v_T = Var x_t = 1/12 and
v_j = Var x_j = p_j(s²/3 − p_j s²/4) for a background feature. The bias b_t only ever meets
examples whose target is t, so it cancels their mean error, and

    L(W) = (1/n) Σ_t [ v_T (1 − g_t)² + Σ_{j≠t} v_j G_tj² ]   (``linear_target_loss``).

With equal densities let ρ = v_j/v_T = p(0.04 − 0.03p) for s = 0.1. Since Σ_t Σ_j G_tj² = tr(M²)
with M = WWᵀ (m×m) and tr(M²) ≥ tr(M)²/m = (Σ g)²/m, and Σ g² ≥ (Σ g)²/n,

    n·L/v_T ≥ Σ (1 − g_t)² + ρ[(Σ g)²/m − Σ g²] ≥ n[(1 − g)² + k g²],  k = ρ(n/m − 1),

(the second step at fixed Σ g = ng, using 1 − ρ > 0), with equality iff M ∝ I (a tight frame)
and every g_t = g. Minimising over g: g = 1/(1 + k) and L = v_T·k/(1 + k) = (1/12)·k/(1 + k)
(``closed_form``), for n ≥ m. Every equal-norm tight frame attains it: in the plane any n
directions whose doubled angles sum to zero, evenly spaced or not. The loss cannot tell them
apart; the full reconstruction (every output against its input) and whether the target is the
largest output (one-hot accuracy) can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.model_rows import outputs_of, stacked

TARGET_VAR = 1.0 / 12.0  # Var U[0, 1]
EVAL_EXAMPLES = 8192


def background_var(p, noise_scale: float = 0.1):
    """Var of Bernoulli(p)·U[0, s]: p s²/3 − (p s/2)²."""
    p = np.asarray(p, np.float64)
    return p * noise_scale**2 / 3.0 - (p * noise_scale / 2.0) ** 2


def closed_form(n, m, p, noise_scale: float = 0.1) -> dict:
    """The linear model's optimum at equal densities: ρ, k, loss and ‖W_t‖² (module docstring)."""
    rho = background_var(p, noise_scale) / TARGET_VAR
    k = rho * (np.asarray(n, np.float64) / m - 1.0)
    return {"rho": rho, "k": k, "loss": TARGET_VAR * k / (1.0 + k), "norm2": 1.0 / (1.0 + k)}


def linear_target_loss(W_HxF, density_F, noise_scale: float = 0.1, b_F=None) -> float:
    """The exact expected target-only loss of x' = WᵀWx + b; the optimal bias when ``b_F`` is
    None, else the variance terms plus each target's squared mean error."""
    W = np.asarray(W_HxF, np.float64)
    p = np.asarray(density_F, np.float64)
    G = W.T @ W
    g = np.diag(G)
    v_F, mu_F = background_var(p, noise_scale), p * noise_scale / 2.0
    off = G - np.diag(g)
    per_target = TARGET_VAR * (1.0 - g) ** 2 + (off**2) @ v_F
    if b_F is not None:
        per_target = per_target + ((g - 1.0) * 0.5 + off @ mu_F + np.asarray(b_F, np.float64)) ** 2
    return float(np.mean(per_target))


def optimal_bias(W_HxF, density_F, noise_scale: float = 0.1) -> np.ndarray:
    """b_t cancelling the mean error of examples with target t."""
    W = np.asarray(W_HxF, np.float64)
    G = W.T @ W
    g = np.diag(G)
    return -((g - 1.0) * 0.5 + (G - np.diag(g)) @ (np.asarray(density_F) * noise_scale / 2.0))


def tight_frame(angles, norm2: float) -> np.ndarray:
    """2×n W with columns at ``angles`` and squared norm ``norm2`` each."""
    a = np.asarray(angles, np.float64)
    return np.sqrt(norm2) * np.stack([np.cos(a), np.sin(a)])


def frame_deviation(W_HxF) -> float:
    """‖M/c − I‖_F/√m with M = WWᵀ, c = tr M/m: 0 exactly for a tight frame."""
    W = np.asarray(W_HxF, np.float64)
    M = W @ W.T
    m = M.shape[0]
    c = np.trace(M) / m
    return float(np.linalg.norm(M / max(c, 1e-12) - np.eye(m)) / np.sqrt(m)) if c > 0 else float("nan")


def angular_unevenness(W_2xF) -> float:
    """How far n directions in the plane are from evenly spaced: the spread (max − min) of the
    gaps between consecutive doubled angles 2θ (a direction and its negative read the same
    through G² terms), relative to the even gap 2π/n. 0 for evenly spaced lines."""
    W = np.asarray(W_2xF, np.float64)
    doubled = np.sort(np.mod(2.0 * np.arctan2(W[1], W[0]), 2 * np.pi))
    gaps = np.diff(np.concatenate([doubled, doubled[:1] + 2 * np.pi]))
    return float(np.ptp(gaps) / (2 * np.pi / W.shape[1]))


def sample_examples(n_features: int, density: float, noise_scale: float, examples: int = EVAL_EXAMPLES,
                    seed: int = 1):
    """(x F×B, t B) from the core's sampler of ``random_target`` (its own weights give t)."""
    from toymodels import rng
    from toymodels.data import data_spec, sample_weighted_batch

    spec = data_spec("random_target", noise_scale=noise_scale)
    x, w = sample_weighted_batch(spec, rng.key_words(jax.random.key(seed)), jnp.uint32(0),
                                 jnp.full((n_features,), density, jnp.float32), examples)
    return np.asarray(x, np.float64), np.asarray(jnp.argmax(w, axis=0))


def reconstruction_measures(row: pd.Series, noise_scale: float, examples: int = EVAL_EXAMPLES) -> dict:
    """On fresh examples: the target-only loss, the full-reconstruction MSE (every output against
    its input, mean over features) and the one-hot accuracy (the target is the largest output)."""
    n, p = int(row["n_features"]), float(row["feature_density"][0])
    x, t = sample_examples(n, p, noise_scale, examples)
    out = outputs_of(row, x)
    cols = np.arange(x.shape[1])
    return {"target_mse": float(np.mean((out[t, cols] - x[t, cols]) ** 2)),
            "full_mse": float(np.mean((out - x) ** 2)),
            "onehot_accuracy": float(np.mean(np.argmax(out, axis=0) == t))}


def even_frame_measures(n: int, p: float, noise_scale: float, examples: int = EVAL_EXAMPLES) -> dict:
    """The linear optimum as n evenly spaced vectors (an equal-norm tight frame for n ≥ 3, at
    ‖W_i‖² = 1/(1 + k) with the optimal bias): its full-reconstruction MSE and one-hot accuracy,
    the reference for a trained frame of the same loss."""
    W = tight_frame(2 * np.pi * np.arange(n) / n, float(closed_form(n, 2, p, noise_scale)["norm2"]))
    b = optimal_bias(W, np.full(n, p), noise_scale)
    x, t = sample_examples(n, p, noise_scale, examples)
    out = W.T @ W @ x + b[:, None]
    return {"even_full_mse": float(np.mean((out - x) ** 2)), "even_onehot_accuracy": float(np.mean(np.argmax(out, 0) == t))}


def measure_table(table: pd.DataFrame, noise_scale: float) -> pd.DataFrame:
    """``table`` plus each model's geometry (‖W_i‖² mean, frame deviation, unevenness for m = 2),
    reconstruction measures and the linear closed form at its (n, m, p)."""
    rows = []
    for _, row in table.iterrows():
        W = stacked(row["W"])
        n, m, p = int(row["n_features"]), int(row["n_hidden"]), float(row["feature_density"][0])
        theory = closed_form(n, m, p, noise_scale)
        rows.append({"norm2_mean": float(np.mean(np.sum(W * W, axis=0))), "frame_deviation": frame_deviation(W),
                     "unevenness": angular_unevenness(W) if m == 2 else float("nan"),
                     "theory_loss": float(theory["loss"]), "theory_norm2": float(theory["norm2"]),
                     **reconstruction_measures(row, noise_scale),
                     **(even_frame_measures(n, p, noise_scale) if m == 2 and n >= 3 else {})})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def best_per_point(measured: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss seed per (model, n, density)."""
    keys = [k for k in ("model", "n_features", "density") if k in measured]
    return measured.loc[measured.groupby(keys, sort=True)["loss"].idxmin()]


def linear_agreement(best: pd.DataFrame) -> float:
    """Largest |loss/closed form − 1| of the linear models with a background (p > 0)."""
    lin = best[(best["model"] == "linear") & (best["theory_loss"] > 0)]
    return float(np.max(np.abs(lin["loss"] / lin["theory_loss"] - 1.0))) if len(lin) else float("nan")


PANELS = (("loss", "target-only loss (eval)", "theory_loss", True),
          ("norm2_mean", "mean ‖W_i‖²", "theory_norm2", False),
          ("frame_deviation", "‖WWᵀ/c − I‖_F/√m (0: tight frame)", None, True),
          ("full_mse", "full-reconstruction MSE", "even_full_mse", True),
          ("onehot_accuracy", "one-hot accuracy (argmax x' = t)", "even_onehot_accuracy", False))
MARKERS = {"linear": "o", "relu": "x"}


def _curves(ax, best: pd.DataFrame, column: str, theory: str | None, log_y: bool, colors: dict) -> None:
    for (model, p), line in best.groupby(["model", "density"], sort=True):
        line = line.sort_values("n_features")
        ax.plot(line["n_features"], line[column], MARKERS.get(model, "s") + ("-" if model == "linear" else ":"),
                color=colors[p], ms=4, lw=0.8, mfc="none" if model != "linear" else colors[p],
                label=f"{model}, p={p:.3g}")
        if theory and model == "linear" and theory in line:
            ax.plot(line["n_features"], line[theory], "-", color=colors[p], lw=2.5, alpha=0.35)
    from analysis.family_panels import set_log_scale

    set_log_scale(ax, best["n_features"])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("n features (m = 2)")


def _geometry_row(axes_row, best: pd.DataFrame, model: str, density: float) -> None:
    from analysis.family_panels import draw_vectors

    rows = best[(best["model"] == model) & np.isclose(best["density"], density)].sort_values("n_features")
    rows = rows[rows["n_features"] <= 50]
    for ax in axes_row:
        ax.axis("off")
    for ax, (_, row) in zip(axes_row, rows.iterrows()):
        ax.axis("on")
        W = stacked(row["W"])
        draw_vectors(ax, W, ["C0"] * W.shape[1])
        ax.set_title(f"{model}, n={int(row['n_features'])}, p={density:.3g}\nuneven {row['unevenness']:.2f}, "
                     f"acc {row['onehot_accuracy']:.2f}", fontsize=7)


def plot_target_noise(measured: pd.DataFrame, stamp: str = ""):
    """Top: each measure against n per (model, density), best seed; thick pale lines the linear
    closed form. Bottom: the best seed's W_i in the plane for the linear and ReLU models at one
    background density (uneven = spread of the doubled-angle gaps / even gap)."""
    import matplotlib.pyplot as plt

    from analysis.sweep import stamp_figure, wrapped_suptitle

    best = best_per_point(measured)
    densities = sorted(best["density"].unique())
    colors = {p: plt.get_cmap("viridis")(0.85 * i / max(len(densities) - 1, 1)) for i, p in enumerate(densities)}
    models = [m for m in ("linear", "relu") if m in set(best["model"])] or sorted(set(best["model"]))
    fig = plt.figure(figsize=(19, 4.2 + 2.4 * len(models)))
    grid = fig.add_gridspec(1 + len(models), 6, height_ratios=[1.7] + [1.0] * len(models))
    for k, (column, label, theory, log_y) in enumerate(PANELS):
        ax = fig.add_subplot(grid[0, k])
        _curves(ax, best, column, theory, log_y, colors)
        ax.set_title(label, fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    shown = [p for p in densities if p > 0]
    density = shown[len(shown) // 2] if shown else densities[0]
    for r, model in enumerate(models):
        _geometry_row([fig.add_subplot(grid[1 + r, c]) for c in range(6)], best, model, density)
    wrapped_suptitle(fig, "A new target every sample, loss on x_t only (random_target): best of "
                     f"{measured['seed'].nunique()} seed(s). Thick pale lines: the linear model's exact optimum "
                     "(1/12)k/(1+k), ‖W‖² = 1/(1+k), k = ρ(n/m − 1), reached by every equal-norm tight frame; in the "
                     "last two panels, that optimum as evenly spaced vectors (same loss). "
                     f"Largest |linear/closed form − 1| = {linear_agreement(best):.3f}.")
    stamp_figure(fig, stamp)
    fig.subplots_adjust(top=0.86, bottom=0.06, hspace=0.55, wspace=0.35, left=0.04, right=0.99)
    return fig


def target_noise_figures(sweep) -> dict:
    """``target_noise`` for a ``random_target`` sweep; the linear models' agreement with the closed
    form goes to ``sweep.notes``."""
    table = sweep.table
    if "data_kind" not in table or not (table["data_kind"] == "random_target").any():
        return {}
    data = sweep.config.get("data", {})
    noise_scale = float(data.get("options", {}).get("noise_scale", 0.1))
    table = table[table["data_kind"] == "random_target"]
    if "density" not in table:
        table = table.assign(density=[float(d[0]) for d in table["feature_density"]])
    measured = measure_table(table, noise_scale)
    sweep.notes["target_noise_linear_max_rel_error"] = round(linear_agreement(best_per_point(measured)), 4)
    return {"target_noise": plot_target_noise(measured, sweep.stamp())}
