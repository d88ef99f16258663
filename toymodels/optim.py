"""Learning-rate schedules and the AdamW optimiser, with per-model (traced) lr and weight decay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine")


def lr_multiplier(
    step: jax.Array, schedule: str, total_steps: int, warmup_steps: int = 0
) -> jax.Array:
    """Multiplier of the peak learning rate at ``step`` (0-based).

    - ``constant``: 1 (the TMS notebook's default).
    - ``linear``: 1 - t/T, decaying to 0.
    - ``cosine``: ½(1 + cos(π t/T)), decaying to 0.
    - ``warmup_cosine``: linear 0→1 over ``warmup_steps``, then cosine to 0 over the rest
      (Henighan et al. 2023).
    """
    t = jnp.asarray(step, jnp.float32)
    total = float(max(total_steps, 1))
    if schedule == "constant":
        return jnp.ones_like(t)
    if schedule == "linear":
        return 1.0 - t / total
    if schedule == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * t / total))
    if schedule == "warmup_cosine":
        warm = float(max(warmup_steps, 1))
        rest = float(max(total_steps - warmup_steps, 1))
        up = t / warm
        down = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(t - warmup_steps, 0.0, rest) / rest))
        return jnp.where(t < warmup_steps, up, down)
    raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")


def make_optimizer(
    lr: jax.Array,
    weight_decay: jax.Array,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay on every parameter (bias included), as torch.optim.AdamW
    applied to ``model.parameters()`` in the notebook. ``lr`` and ``weight_decay`` may be traced."""

    def learning_rate(step):
        return lr * lr_multiplier(step, schedule, total_steps, warmup_steps)

    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
