"""SAELens 6.54 as the SAE bench's reference (``toymodels-bench sae``): its training SAE classes,
trained by its own ``train_toy_sae`` on its own synthetic generator, saved as inference SAEs;
and a plain loop of its training step over N SAEs, for throughput. The only bench module that
imports torch and sae-lens (the ``saelens`` extra)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from toymodels.sae import saelens as core

# Our kind -> SAELens's training architecture.
ARCHITECTURES = {
    "plain": "standard",
    "gated": "gated",
    "topk": "topk",
    "batchtopk": "batchtopk",
    "jumprelu": "jumprelu",
    "matryoshka": "matryoshka_batchtopk",
}


def training_sae(kind: str, d_in: int, d_sae: int, coefficient, widths=()):
    """A fresh SAELens training SAE of our ``kind`` with its sparsity ``coefficient`` (λ or k),
    every other setting at SAELens's default."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    if kind == "plain":
        return StandardTrainingSAE(
            StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=coefficient)
        )
    if kind == "gated":
        return GatedTrainingSAE(
            GatedTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=coefficient)
        )
    if kind == "jumprelu":
        return JumpReLUTrainingSAE(
            JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l0_coefficient=coefficient)
        )
    if kind == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=int(coefficient)))
    if kind == "batchtopk":
        return BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=int(coefficient))
        )
    if kind == "matryoshka":
        return MatryoshkaBatchTopKTrainingSAE(
            MatryoshkaBatchTopKTrainingSAEConfig(
                d_in=d_in, d_sae=d_sae, k=int(coefficient), matryoshka_widths=list(widths)
            )
        )
    raise ValueError(f"SAELens has no counterpart of kind {kind!r}")


def train(
    model,
    kind: str,
    d_sae: int,
    coefficient,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    widths=(),
    threads: int = 1,
) -> tuple[dict, dict, float]:
    """Train one SAELens SAE on its synthetic model; (cfg, tensors) of its inference SAE as saved
    by SAELens, and the training seconds (torch at ``threads`` threads)."""
    from sae_lens.synthetic.training import train_toy_sae

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    sae = training_sae(kind, model.cfg.hidden_dim, d_sae, coefficient, widths)
    start = time.perf_counter()
    train_toy_sae(
        sae,
        model.feature_dict,
        model.activation_generator,
        training_samples=steps * batch_size,
        batch_size=batch_size,
        lr=lr,
    )
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(Path(tmp))
        cfg, tensors = core.read_sae(tmp)
    return cfg, tensors, seconds


def time_loop(
    n_saes: int,
    d_in: int,
    d_sae: int,
    steps: int,
    batch_size: int,
    lr: float,
    l1: float,
    threads: int | None = None,
) -> float:
    """SAE·steps/s of ``n_saes`` StandardTrainingSAEs trained one after the other at every step on
    one shared batch (SAELens in a loop): its training_forward_pass, backward and Adam. One warm-up
    step is not timed."""
    from sae_lens.saes.sae import TrainStepInput

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _time_loop(n_saes, d_in, d_sae, steps, batch_size, lr, l1, TrainStepInput)
    finally:
        torch.set_num_threads(before)


_DEFAULT_THREADS = torch.get_num_threads()


def default_threads() -> int:
    """torch's thread count when this module was imported."""
    return _DEFAULT_THREADS


def _time_loop(n_saes, d_in, d_sae, steps, batch_size, lr, l1, TrainStepInput) -> float:
    saes = [training_sae("plain", d_in, d_sae, l1) for _ in range(n_saes)]
    opts = [torch.optim.Adam(s.parameters(), lr=lr) for s in saes]
    batches = torch.randn(8, batch_size, d_in) * (torch.rand(8, batch_size, d_in) < 0.1)

    def step(t: int):
        x = batches[t % len(batches)]
        for sae, opt in zip(saes, opts):
            out = sae.training_forward_pass(
                TrainStepInput(
                    sae_in=x,
                    coefficients={"l1": l1},
                    dead_neuron_mask=None,
                    n_training_steps=t,
                    is_logging_step=False,
                )
            )
            opt.zero_grad()
            out.loss.backward()
            opt.step()

    step(0)
    start = time.perf_counter()
    for t in range(1, steps + 1):
        step(t)
    return n_saes * steps / (time.perf_counter() - start)
