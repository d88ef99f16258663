"""toymodels: the pure JAX core (data, models, optimiser, training loop, metrics).

Imports nothing of Hydra, Ray, wandb or matplotlib; the orchestration lives in ``sweeps`` and the
figures in ``analysis``.
"""

from toymodels.train import (
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
