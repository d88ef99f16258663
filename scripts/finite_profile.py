#!/usr/bin/env python
"""Where a finite-data training step's time goes (docs/gpus.md, "Finite data, profiled"): one model
of n features on T points, timed part by part on the default device.

    python scripts/finite_profile.py                        # n = 10⁴, T = 10⁵, m = 2 (dd_paper's largest)
    python scripts/finite_profile.py --n 2000 --T 20000 --pieces 4096,0 --out /tmp/fp

Per piece size: sampling the training set; the loss and gradient over all points
(``dataset_loss_and_grad``) fused, unfused, and fused with the dense error computed again for the
row sums (``recompute``: the candidate fix for the GPU, docs/gpus.md); the loss alone; the whole training step from two
runs of ``train_finite_many`` (steps s and 2s: the difference over s steps leaves out sampling,
compile and the final measures). With ``--out`` it writes the timings as JSON and the compiled
program of the loss and gradient as text (XLA's fusions, to see which arrays are stored).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toymodels import finite as F
from toymodels.finite_loss import dataset_loss, dataset_loss_and_grad


def timed(fn, *args, reps: int) -> tuple[float, float]:
    """(seconds of the first call, including compile; median seconds of ``reps`` later calls)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def big_buffers(hlo: str, min_elements: int) -> list[str]:
    """Shapes of the compiled program's values with at least ``min_elements`` elements."""
    found = []
    for shape in re.findall(r"f32\[([0-9,]+)\]", hlo):
        dims = [int(d) for d in shape.split(",") if d]
        size = 1
        for d in dims:
            size *= d
        if size >= min_elements:
            found.append(shape)
    return sorted(set(found))


def hparams(n: int, density: float) -> F.FiniteHParams:
    return F.FiniteHParams(
        jnp.full((1,), density),
        jnp.ones((1, n)),
        jnp.full((1,), 1e-3),
        jnp.full((1,), 1e-2),
        jnp.zeros((1,), jnp.uint32),
    )


def probe_spec(n: int, T: int, m: int, piece: int, steps: int) -> F.FiniteSpec:
    """One model of n features on T points at density 10/n (dd_paper's largest when n = 10⁴), K
    sized for the T points and the held-out set, one snapshot (also scripts/gpu_check.py's probe)."""
    density = 10.0 / n
    return F.FiniteSpec(
        n_features=n,
        n_hidden=m,
        n_train=T,
        steps=steps,
        warmup_steps=max(steps // 20, 1),
        max_active=F.max_active_for(n, density, T + 10_000),
        piece_size=piece,
        n_test=min(10_000, T),
        snapshot_every=steps,
    )


def profile(n: int, T: int, m: int, piece: int, steps: int, reps: int, out: Path | None) -> dict:
    density = 10.0 / n
    spec = probe_spec(n, T, m, piece, steps)
    K = spec.max_active
    B, P = F.piece_layout(T, piece)
    row: dict = {"n": n, "T": T, "m": m, "K": K, "piece_size": piece, "B": B, "pieces": P}
    sample = jax.jit(lambda d, s: F.training_set(spec, d, s))
    first, med = timed(sample, jnp.asarray(density), jnp.asarray(0, jnp.uint32), reps=3)
    row["sample_ms"] = round(1e3 * med, 3)
    points, _ = sample(jnp.asarray(density), jnp.asarray(0, jnp.uint32))
    key = jax.random.key(1)
    params = F.FiniteParams(W_HxF=0.3 * jax.random.normal(key, (m, n)), b_F=jnp.full((n,), -0.01))
    imp = jnp.ones((n,))
    forms = {"fused": (True, False), "unfused": (False, False), "recompute": (True, True)}
    for name, (fused, again) in forms.items():
        fn = jax.jit(
            lambda p, f=fused, a=again: dataset_loss_and_grad(p, points, imp, T, spec, f, a)
        )
        first, med = timed(fn, params, reps=reps)
        row[f"grad_{name}_ms"] = round(1e3 * med, 3)
        row[f"grad_{name}_compile_s"] = round(first - med, 2)
        compiled = fn.lower(params).compile()
        hlo = compiled.as_text() or ""
        row[f"grad_{name}_fusions"] = len(re.findall(r"^\s*\S+ = .*fusion\(", hlo, re.MULTILINE))
        row[f"grad_{name}_big_arrays"] = big_buffers(hlo, B * n // 4)
        memory = compiled.memory_analysis()
        if memory is not None:
            row[f"grad_{name}_temp_MB"] = round(memory.temp_size_in_bytes / 1e6, 1)
        if out is not None:
            (out / f"grad-{name}-piece{piece}.hlo.txt").write_text(hlo)
    loss = jax.jit(lambda p: dataset_loss(p, points, imp, T, spec))
    _, med = timed(loss, params, reps=reps)
    row["loss_ms"] = round(1e3 * med, 3)
    keys = jax.random.key(0)[None]
    runs = {}
    for s in (steps, 2 * steps):
        longer = F.FiniteSpec(**{**spec.__dict__, "steps": s, "snapshot_every": s})
        train = lambda k, h, longer=longer: F.train_finite_many(longer, k, h)
        first, runs[s] = timed(train, keys, hparams(n, density), reps=3)
        row[f"train_{s}_first_s"] = round(first, 2)
    # Medians of 3 runs each; at tiny sizes (tests) their noise can exceed s steps' time, and a
    # difference below 0 says exactly that.
    row["step_ms"] = round(1e3 * (runs[2 * steps] - runs[steps]) / steps, 3)
    row["device"] = jax.devices()[0].device_kind
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--T", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=2)
    parser.add_argument(
        "--pieces", default="8192,32768,0", help="piece sizes, 0: the device's default"
    )
    parser.add_argument("--steps", type=int, default=100, help="(default %(default)s)")
    parser.add_argument("--reps", type=int, default=10, help="(default %(default)s)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if min(args.n, args.T, args.m, args.steps, args.reps) < 1:
        parser.error("--n, --T, --m, --steps and --reps must be ≥ 1")
    try:
        pieces = [int(v) for v in args.pieces.split(",") if v]
    except ValueError:
        parser.error(f"--pieces: expected comma-separated integers, got {args.pieces!r}")
    if not pieces or min(pieces) < 0:
        parser.error("--pieces: at least one size, each ≥ 0")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for piece in pieces:
        rows.append(profile(args.n, args.T, args.m, piece, args.steps, args.reps, args.out))
        print(json.dumps(rows[-1]), flush=True)
        if args.out is not None:
            (args.out / "finite-profile.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
