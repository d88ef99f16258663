"""toymodels: the pure JAX core (data, models, optimiser, training loop, metrics).

Imports nothing of Hydra, Ray, wandb or matplotlib; the orchestration lives in ``sweeps`` and the
figures in ``analysis``.
"""

import os

# The same config and seed give the same bits on a GPU too. XLA's GPU scatter-adds and some
# reductions (finite data's gradient) use atomics, whose order changes from run to run, unless this
# flag is set (docs/gpus.md#determinism: with it, a rerun is bit-identical on an H200 and no slower).
# It takes effect when jax starts its backend, so it is set here, before any computation; on the
# CPU it changes nothing. A user's own XLA_FLAGS entry for it (=false to opt out) is kept.
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops"
if DETERMINISTIC_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DETERMINISTIC_FLAG}=true".strip()

from toymodels.train import (  # noqa: E402  (after XLA_FLAGS, before jax starts)
    HParams,
    Snapshots,
    TrainResult,
    TrainSpec,
    make_train,
    model_keys,
    stream_key_words,
    train_many,
)

__all__ = [
    "HParams",
    "Snapshots",
    "TrainResult",
    "TrainSpec",
    "make_train",
    "model_keys",
    "stream_key_words",
    "train_many",
]
