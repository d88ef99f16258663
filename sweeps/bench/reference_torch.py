"""A PyTorch reference of the original TMS notebook's training algorithm (Elhage et al. 2022).

Written from the notebook's description, for ``toymodels-bench`` and for cross-checking the JAX
core: every model is an *instance* along an explicit axis of one stacked module, and

- ``W_IxFxH`` is initialised by ``xavier_normal_`` applied to the whole stacked tensor (so its std
  depends on the number of instances, see ``toymodels.models.init_std(init="notebook")``), ``b_IxF``
  by zeros;
- forward: ``h = einsum("...if,ifh->...ih", x, W)``, ``x' = relu(einsum("...ih,ifh->...if", h, W) + b)``;
- data: a fresh batch every step, feature f of instance i is ``U[0, 1)`` with probability ``p[i, f]``
  and 0 otherwise (two uniform draws per entry);
- loss: ``(importance * (|x| - x')**2)`` averaged over batch and features, summed over instances;
- ``torch.optim.AdamW(lr=1e-3, weight_decay=0.01)`` with torch's default betas and eps, constant lr.

It runs on any torch device (``device="cuda"`` for a GPU): the batch is drawn there, and the timed
loop ends with a synchronisation, so its seconds are the device's.

Array names carry their shape: ``B`` batch, ``I`` instances, ``F`` features (n), ``H`` hidden (m),
``S`` steps. This is the only module that imports torch (an optional extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class ReferenceModel(nn.Module):
    """``n_instances`` tied-weight ReLU toy models stacked along an instance axis."""

    def __init__(self, n_features: int, n_hidden: int, n_instances: int):
        super().__init__()
        self.W_IxFxH = nn.Parameter(torch.empty((n_instances, n_features, n_hidden)))
        nn.init.xavier_normal_(self.W_IxFxH)
        self.b_IxF = nn.Parameter(torch.zeros((n_instances, n_features)))

    def forward(self, x_BxIxF: torch.Tensor) -> torch.Tensor:
        h_BxIxH = torch.einsum("...if,ifh->...ih", x_BxIxF, self.W_IxFxH)
        out_BxIxF = torch.einsum("...ih,ifh->...if", h_BxIxH, self.W_IxFxH) + self.b_IxF
        return torch.relu(out_BxIxF)


def generate_batch(
    batch_size: int, density_IxF: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sparse features as in the notebook: one uniform for the value, one for whether it is present
    (drawn on ``density_IxF``'s device)."""
    shape = (batch_size, *density_IxF.shape)
    device = density_IxF.device
    feat_BxIxF = torch.rand(shape, generator=generator, device=device)
    present_BxIxF = torch.rand(shape, generator=generator, device=device) <= density_IxF
    return torch.where(present_BxIxF, feat_BxIxF, torch.zeros((), device=device))


def loss_per_instance(
    model: ReferenceModel, x_BxIxF: torch.Tensor, importance_IxF: torch.Tensor
) -> torch.Tensor:
    """Importance-weighted squared error, mean over batch and features: shape (I,)."""
    error_BxIxF = importance_IxF * (x_BxIxF.abs() - model(x_BxIxF)) ** 2
    return error_BxIxF.mean(dim=(0, 2))


def _per_instance(value, n_instances: int, n_features: int, vector_axis: str) -> torch.Tensor:
    """Broadcast a scalar, a 1-D array, or an (I, F) array to (I, F) float32.

    A 1-D density is per instance (the notebook's ``feature_probability[:, None]``); a 1-D importance
    is per feature (shared by every instance).
    """
    t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if t.ndim == 1:
        t = t[:, None] if vector_axis == "instance" else t[None, :]
    return t.expand(n_instances, n_features).contiguous()


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _evaluate(model, density_IxF, importance_IxF, eval_samples: int, batch_size: int, seed: int):
    """Mean loss per instance over ``eval_samples`` fresh samples from a generator of its own."""
    generator = torch.Generator(device=density_IxF.device).manual_seed(seed)
    n_chunks = max(1, -(-eval_samples // batch_size))
    total_I = sum(
        loss_per_instance(model, generate_batch(batch_size, density_IxF, generator), importance_IxF)
        for _ in range(n_chunks)
    )
    return (total_I / n_chunks).cpu().numpy()


def train_reference(
    n_features: int,
    n_hidden: int,
    n_instances: int,
    steps: int,
    batch_size: int = 1024,
    density=0.1,
    importance=1.0,
    seed: int = 0,
    threads: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    eval_samples: int = 8192,
    device: str = "cpu",
) -> dict:
    """Train ``n_instances`` toy models the notebook's way.

    ``density``: float, (I,) per instance or (I, F). ``importance``: float, (F,) per feature or
    (I, F). ``threads``: torch intra-op threads for this call (None keeps torch's default, the
    machine's cores); restored afterwards. ``device``: a torch device ("cpu", "cuda").

    Returns a dict of numpy arrays: ``final_loss`` (I,) and ``init_loss`` (I,), each the mean loss
    over ``eval_samples`` held-out samples (same samples before and after training);
    ``loss_history`` (S, I), the training loss at each step; ``W`` (I, F, H); ``b`` (I, F); and
    ``seconds``, the wall time of the training loop alone (model set-up and evaluation excluded).
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = ReferenceModel(n_features, n_hidden, n_instances).to(device)
        density_IxF = _per_instance(density, n_instances, n_features, "instance").to(device)
        importance_IxF = _per_instance(importance, n_instances, n_features, "feature").to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        eval_seed = seed + 1_000_003
        init_loss_I = _evaluate(
            model, density_IxF, importance_IxF, eval_samples, batch_size, eval_seed
        )

        # Preallocated: keeping one small tensor per step between the large freed batch buffers
        # fragments glibc's heap (gigabytes of RSS over a few hundred steps at 2,500 instances).
        loss_SxI = torch.empty((steps, n_instances), device=device)
        _synchronize(device)
        start = time.perf_counter()
        for t in range(steps):
            optimizer.zero_grad(set_to_none=True)
            x_BxIxF = generate_batch(batch_size, density_IxF)
            loss_I = loss_per_instance(model, x_BxIxF, importance_IxF)
            loss_I.sum().backward()
            optimizer.step()
            loss_SxI[t] = loss_I.detach()
        _synchronize(device)  # a GPU runs the loop asynchronously: wait for its last step
        seconds = time.perf_counter() - start

        final_loss_I = _evaluate(
            model, density_IxF, importance_IxF, eval_samples, batch_size, eval_seed
        )
        return {
            "final_loss": final_loss_I,
            "init_loss": init_loss_I,
            "loss_history": loss_SxI.cpu().numpy(),
            "W": model.W_IxFxH.detach().cpu().numpy().copy(),
            "b": model.b_IxF.detach().cpu().numpy().copy(),
            "seconds": seconds,
        }
    finally:
        torch.set_num_threads(previous_threads)
