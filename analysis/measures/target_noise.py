"""Trained models of a ``random_target`` sweep measured against the linear closed form
(``analysis.theory.target_noise``): loss, geometry, full reconstruction and one-hot accuracy on
fresh examples from the core's own sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.measures.model_rows import outputs_of
from analysis.seeds import best_of_seeds
from analysis.theory.target_noise import (
    angular_unevenness,
    closed_form,
    frame_deviation,
    optimal_bias,
    tight_frame,
)
from sweeps.store import nested_array

EVAL_EXAMPLES = 8192


def sample_examples(
    n_features: int,
    density: float,
    noise_scale: float,
    examples: int = EVAL_EXAMPLES,
    seed: int = 1,
):
    """(x F×B, t B) from the core's sampler of ``random_target`` (its own weights give t)."""
    from toymodels import rng
    from toymodels.data import data_spec, sample_weighted_batch

    spec = data_spec("random_target", noise_scale=noise_scale)
    x, w = sample_weighted_batch(
        spec,
        rng.key_words(jax.random.key(seed)),
        jnp.uint32(0),
        jnp.full((n_features,), density, jnp.float32),
        examples,
    )
    return np.asarray(x, np.float64), np.asarray(jnp.argmax(w, axis=0))


def reconstruction_measures(
    row: pd.Series, noise_scale: float, examples: int = EVAL_EXAMPLES
) -> dict:
    """On fresh examples: the target-only loss, the full-reconstruction MSE (every output against
    its input, mean over features) and the one-hot accuracy (the target is the largest output)."""
    n, p = int(row["n_features"]), float(row["feature_density"][0])
    x, t = sample_examples(n, p, noise_scale, examples)
    out = outputs_of(row, x)
    cols = np.arange(x.shape[1])
    return {
        "target_mse": float(np.mean((out[t, cols] - x[t, cols]) ** 2)),
        "full_mse": float(np.mean((out - x) ** 2)),
        "onehot_accuracy": float(np.mean(np.argmax(out, axis=0) == t)),
    }


def even_frame_measures(
    n: int, p: float, noise_scale: float, examples: int = EVAL_EXAMPLES
) -> dict:
    """The linear optimum as n evenly spaced vectors (an equal-norm tight frame for n ≥ 3, at
    ‖W_i‖² = 1/(1 + k) with the optimal bias): its full-reconstruction MSE and one-hot accuracy,
    the reference for a trained frame of the same loss."""
    W = tight_frame(2 * np.pi * np.arange(n) / n, float(closed_form(n, 2, p, noise_scale)["norm2"]))
    b = optimal_bias(W, np.full(n, p), noise_scale)
    x, t = sample_examples(n, p, noise_scale, examples)
    out = W.T @ W @ x + b[:, None]
    return {
        "even_full_mse": float(np.mean((out - x) ** 2)),
        "even_onehot_accuracy": float(np.mean(np.argmax(out, 0) == t)),
    }


def measure_table(table: pd.DataFrame, noise_scale: float) -> pd.DataFrame:
    """``table`` plus each model's geometry (‖W_i‖² mean, frame deviation, unevenness for m = 2),
    reconstruction measures and the linear closed form at its (n, m, p)."""
    rows = []
    for _, row in table.iterrows():
        W = nested_array(row["W"])
        n, m, p = int(row["n_features"]), int(row["n_hidden"]), float(row["feature_density"][0])
        theory = closed_form(n, m, p, noise_scale)
        rows.append(
            {
                "norm2_mean": float(np.mean(np.sum(W * W, axis=0))),
                "frame_deviation": frame_deviation(W),
                "unevenness": angular_unevenness(W) if m == 2 else float("nan"),
                "theory_loss": float(theory["loss"]),
                "theory_norm2": float(theory["norm2"]),
                **reconstruction_measures(row, noise_scale),
                **(even_frame_measures(n, p, noise_scale) if m == 2 and n >= 3 else {}),
            }
        )
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def best_per_point(measured: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss seed per (model, n, density)."""
    keys = [k for k in ("model", "n_features", "density") if k in measured]
    return best_of_seeds(measured, keys)


def linear_agreement(best: pd.DataFrame) -> float:
    """Largest |loss/closed form − 1| of the linear models with a background (p > 0)."""
    lin = best[(best["model"] == "linear") & (best["theory_loss"] > 0)]
    return (
        float(np.max(np.abs(lin["loss"] / lin["theory_loss"] - 1.0))) if len(lin) else float("nan")
    )
