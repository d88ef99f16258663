"""``toymodels-bench``: training throughput of ``train_many`` against the notebook's PyTorch loop
(``toymodels-bench sae``: our SAEs beside SAELens's, ``sweeps.bench.sae``).

Throughput is models·steps per second (models trained × optimiser steps / wall seconds), batch
1024, on the same data distribution (density 0.1, importance 0.9**i) and optimiser (AdamW,
lr 1e-3, weight decay 0.01, constant) in both implementations.

- ours: ``train_many`` (one ``jit(vmap(train))`` program) is called once to compile, then a second
  call with fresh keys is timed; compile time is excluded (and printed separately). The timed call
  includes its one snapshot and a 4,096-sample evaluation, a negligible share of the steps. It is
  timed twice: in one process on every core, and split over one process per core, each pinned to
  its core (the models divided as evenly as possible, all timed calls started together, the
  slowest one's time counted): how a sweep's Ray workers run.
- reference: ``sweeps.bench.reference_torch`` (the notebook's instance-axis model) runs a short
  warm-up training first, then the training loop alone of a second run is timed.

Both run on the same kind of device, so the ratio is like for like: on a GPU when JAX's default
backend is one and torch sees CUDA (ours in one process there: pinning cores is a CPU matter),
on the CPU otherwise; the table and the JSON name each side's device.

The PyTorch reference is an optional extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.executors.ray_executor import usable_cores
from toymodels import HParams, TrainSpec, model_keys, train_many
from toymodels.train import EVAL_BATCH

BATCH_SIZE = 1024
DENSITY = 0.1
IMPORTANCE_DECAY = 0.9
LR = 1e-3
WEIGHT_DECAY = 0.01
REFERENCE_WARMUP_STEPS = 10
INSTALL_HINT = "pip install -e '.[bench]'"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark shape: ``n_models`` models of n features and m hidden dimensions."""

    name: str
    n_features: int
    n_hidden: int
    n_models: int
    default_steps: int  # ours takes roughly 10 s on a 2-core CPU
    batch_blocks: int = 1  # ours' train.batch_blocks: what the experiments training this shape use


CONFIGS = {
    c.name: c
    for c in (
        BenchConfig("n5m2", n_features=5, n_hidden=2, n_models=10, default_steps=5000),
        BenchConfig("n100m20", n_features=100, n_hidden=20, n_models=20, default_steps=500),
        BenchConfig(
            "n2m1", n_features=2, n_hidden=1, n_models=2500, default_steps=200, batch_blocks=8
        ),
    )
}


def importance(n_features: int) -> np.ndarray:
    """Benchmark importance profile, I_i = 0.9**i: shape (F,)."""
    return (IMPORTANCE_DECAY ** np.arange(n_features)).astype(np.float32)


def _ours(cfg: BenchConfig, steps: int, batch_blocks: int, uids: np.ndarray):
    """(spec, hparams) of ours for the models ``uids`` of ``cfg``."""
    spec = TrainSpec(
        n_features=cfg.n_features,
        n_hidden=cfg.n_hidden,
        steps=steps,
        batch_size=BATCH_SIZE,
        snapshot_every=steps,
        batch_blocks=batch_blocks,
        eval_samples=EVAL_BATCH,
    )
    N, F = len(uids), cfg.n_features
    hp = HParams(
        density_F=jnp.full((N, F), DENSITY, jnp.float32),
        importance_F=jnp.broadcast_to(jnp.asarray(importance(F)), (N, F)),
        lr=jnp.full((N,), LR, jnp.float32),
        weight_decay=jnp.full((N,), WEIGHT_DECAY, jnp.float32),
    )
    return spec, hp


def _compile_then_time(
    cfg: BenchConfig, steps: int, batch_blocks: int, uids, handshake=None
) -> tuple[float, float]:
    """(seconds of a second ``train_many`` call, seconds of the first, compiling call). With
    ``handshake`` = (ready queue, go event), the first call's time is put on the queue and the
    second call waits for the event, so that several processes start it together."""
    spec, hp = _ours(cfg, steps, batch_blocks, uids)
    begin = time.perf_counter()
    jax.block_until_ready(train_many(spec, model_keys(0, uids), hp))
    first_s = time.perf_counter() - begin
    if handshake is not None:
        ready, go = handshake
        ready.put(first_s)
        go.wait()
    begin = time.perf_counter()
    jax.block_until_ready(train_many(spec, model_keys(1, uids), hp))
    return time.perf_counter() - begin, first_s


def time_ours(cfg: BenchConfig, steps: int, batch_blocks: int = 1) -> tuple[float, float]:
    """(models·steps/s of a second ``train_many`` call on all models, seconds of the first call)."""
    seconds, first_s = _compile_then_time(cfg, steps, batch_blocks, np.arange(cfg.n_models))
    return cfg.n_models * steps / seconds, first_s


def _pinned_worker(
    core: int, cfg: BenchConfig, steps: int, batch_blocks: int, uids, ready, go, results
) -> None:
    if hasattr(os, "sched_setaffinity"):  # where the OS has CPU affinity (Linux)
        os.sched_setaffinity(
            0, {core}
        )  # before JAX starts its CPU backend: one thread, on this core
    results.put(_compile_then_time(cfg, steps, batch_blocks, uids, (ready, go))[0])


def time_ours_pinned(cfg: BenchConfig, steps: int, batch_blocks: int, processes: int) -> float:
    """models·steps/s of ``cfg``'s models split over ``processes`` processes, one per core."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fresh interpreters: JAX starts after pinning
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    parts = [part for part in np.array_split(np.arange(cfg.n_models), processes) if len(part)]
    cores = usable_cores()
    workers = [
        context.Process(
            target=_pinned_worker,
            args=(cores[i], cfg, steps, batch_blocks, part, ready, go, results),
        )
        for i, part in enumerate(parts)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=600)
        go.set()
        seconds = max(results.get(timeout=3600) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=60)
    return cfg.n_models * steps / seconds


def ours_device() -> str:
    """JAX's default device, as the table prints it ("cpu", "gpu: NVIDIA H100 80GB HBM3")."""
    device = jax.devices()[0]
    return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"


def reference_device(jax_platform: str | None = None) -> str:
    """The torch device of the reference: CUDA when torch sees it and ours runs on a GPU (JAX's
    ``jax_platform``, default its default backend), so both sides share the kind of device."""
    import torch

    platform = jax_platform or jax.default_backend()
    return "cuda" if platform == "gpu" and torch.cuda.is_available() else "cpu"


def describe_torch_device(device: str) -> str:
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if device == "cuda" else "cpu"


def time_reference(cfg: BenchConfig, steps: int, threads: int, device: str = "cpu") -> float:
    """models·steps/s of the PyTorch reference's training loop, after a short warm-up run."""
    from sweeps.bench.reference_torch import train_reference

    kwargs: dict[str, Any] = dict(
        n_features=cfg.n_features,
        n_hidden=cfg.n_hidden,
        n_instances=cfg.n_models,
        batch_size=BATCH_SIZE,
        density=DENSITY,
        importance=importance(cfg.n_features),
        threads=threads,
        eval_samples=1,
        device=device,
    )
    train_reference(steps=REFERENCE_WARMUP_STEPS, seed=0, **kwargs)
    result = train_reference(steps=steps, seed=1, **kwargs)
    return cfg.n_models * steps / result["seconds"]


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toymodels-bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per config (default: per config, about 10 s of ours on 2 cores: "
        + ", ".join(f"{c.name} {c.default_steps}" for c in CONFIGS.values())
        + ")",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        metavar="NAME",
        help=f"configs to run (space or comma separated; default all: {' '.join(CONFIGS)})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON list instead of a table"
    )
    parser.add_argument(
        "--batch-blocks",
        type=int,
        default=None,
        metavar="K",
        help="ours computes each batch in K column blocks (train.batch_blocks; default per config: "
        + ", ".join(f"{c.name} {c.batch_blocks}" for c in CONFIGS.values())
        + ")",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="P",
        help="also time ours split over P pinned processes, one per core (default on a CPU: "
        f"the cores this process may use, {len(usable_cores())}; on a GPU 1; 1: one process only)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, the machine's cores)",
    )
    args = parser.parse_args(argv)
    args.configs = [name for item in args.configs for name in item.split(",") if name]
    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be positive")
    if args.processes is None:
        args.processes = 1 if jax.default_backend() != "cpu" else len(usable_cores())
    if not 1 <= args.processes <= len(usable_cores()):
        parser.error(f"--processes must be between 1 and the {len(usable_cores())} usable cores")
    if args.batch_blocks is not None and args.batch_blocks < 1:
        parser.error("--batch-blocks must be positive")
    return args


def format_table(rows: list[dict], compile_s: dict, threads) -> str:
    """The human-readable table, with how each side was timed."""
    processes = rows[0]["processes"]
    devices = f"ours on {rows[0]['ours_device']}" + (
        ""
        if rows[0]["reference_device"] is None
        else f", reference on {rows[0]['reference_device']}"
    )
    header = (
        f"{'config':<8} {'models':>6} {'steps':>6} {'blocks':>6} {'ours 1 proc':>12} "
        f"{f'ours {processes} procs':>13} {'reference':>12} {'ratio':>8}"
    )
    lines = [
        f"throughput in models·steps/s (batch 1024, density 0.1, importance 0.9**i); {devices}",
        header,
    ]
    for row in rows:
        ref = "-" if row["reference"] is None else f"{row['reference']:,.0f}"
        pinned = "-" if row["ours_pinned"] is None else f"{row['ours_pinned']:,.0f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(
            f"{row['config']:<8} {row['models']:>6} {row['steps']:>6} {row['batch_blocks']:>6} "
            f"{row['ours_one_process']:>12,.0f} {pinned:>13} {ref:>12} {ratio:>8}"
        )
    compiles = ", ".join(f"{name} {s:.1f} s" for name, s in compile_s.items())
    lines.append(
        f"ours: train_many timed on a second call, compile excluded (first call: {compiles}); "
        f"'{processes} procs': the models split over {processes} processes pinned one per core"
    )
    if threads is not None:
        lines.append(
            f"reference: PyTorch loop timed after a {REFERENCE_WARMUP_STEPS}-step warm-up run, "
            f"{threads} torch threads (CPU); ratio = ours ({processes} procs) / reference"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``toymodels-bench``; returns the exit status. ``toymodels-bench sae ...`` is
    the SAE bench (``sweeps.bench.sae``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sae"]:
        from sweeps.bench.sae import main as sae_main

        return sae_main(argv[1:])
    args = parse_args(argv)
    with_reference = not args.no_reference
    threads, torch_device, torch_name = None, None, None
    if with_reference:
        if importlib.util.find_spec("torch") is None:
            print(
                "toymodels-bench: the PyTorch reference needs torch, an optional extra: "
                f"{INSTALL_HINT}  (or pass --no-reference)",
                file=sys.stderr,
            )
            return 1
        import torch

        threads = args.threads if args.threads is not None else torch.get_num_threads()
        torch_device = reference_device()
        torch_name = describe_torch_device(torch_device)
    device_name = ours_device()

    rows, compile_s = [], {}
    for name in args.configs:
        cfg = CONFIGS[name]
        steps = args.steps if args.steps is not None else cfg.default_steps
        blocks = args.batch_blocks if args.batch_blocks is not None else cfg.batch_blocks
        one, compile_s[name] = time_ours(cfg, steps, blocks)
        pinned = (
            time_ours_pinned(cfg, steps, blocks, args.processes) if args.processes > 1 else None
        )
        ours = one if pinned is None else pinned
        reference = time_reference(cfg, steps, threads, torch_device) if with_reference else None  # type: ignore[arg-type]
        rows.append(
            {
                "config": name,
                "models": cfg.n_models,
                "steps": steps,
                "batch_blocks": blocks,
                "ours_device": device_name,
                "reference_device": torch_name,
                "processes": args.processes,
                "ours_one_process": one,
                "ours_pinned": pinned,
                "ours": ours,
                "reference": reference,
                "ratio": None if reference is None else ours / reference,
            }
        )

    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows, compile_s, threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
