"""Chunks over several devices (docs/devices.md): throughput and bit identity, as tables.

``scripts/devices-bench`` (scaling): model·steps/s of one experiment (default
``tms_phase_2d_small`` at 20,000 steps, so that training outweighs starting) with 1, 2, 4 devices
in one process (``sweep.executor=local``) against 1, 2, 4 Ray tasks, each a real
``toymodels-sweep`` in its own process. On the CPU the devices are JAX's forced host devices
(``--xla_force_host_platform_device_count``), a stand-in for the GPUs or TPU chips of a host: they
share the machine's cores. Each setting runs twice into fresh stores, the first filling a
compilation cache of the bench's own, and the second is timed: compiling is not what is measured.
Two rates: over the sweep's run (planning, Ray's start, storing included) and over its chunks
(the slowest chunk where they run at once, their sum where they run one after another).

``scripts/devices-bench --bits``: for one chunk of each job kind (fresh data, finite data, SAEs),
how many stored numbers differ from the one-device program of the chunk's width when the same
models run as narrower programs on one device, as ``sweep.sharding=exact`` slices over 2 and 4
devices, as ``sweep.sharding=mesh`` over 2 and 4 devices, and as the same-width program compiled
for two devices (replicated). On the CPU it forces 4 host devices itself.

``--platform gpu`` uses the machine's GPUs instead (``scripts/gpu-check`` runs both on one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"(\d+)/(\d+) models stored .* in ([\d.]+)s, ([\d,]+) model·steps/s")
FORCE = "--xla_force_host_platform_device_count"


# ---------------------------------------------------------------- scaling


def sweep_run(overrides: list[str], env: dict, log: Path) -> dict:
    """One ``toymodels-sweep`` in its own process: wall seconds, run seconds and model·steps/s."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=1800,
    )
    wall = time.perf_counter() - start
    log.write_text(
        f"$ toymodels-sweep {' '.join(overrides)}\n# exit {done.returncode}, {wall:.1f} s\n"
        f"{done.stdout}\n{done.stderr}"
    )
    match = SUMMARY.search(done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(
            f"toymodels-sweep {' '.join(overrides)} failed (exit {done.returncode}); see {log}"
        )
    return {
        "wall_s": round(wall, 1),
        "run_s": float(match.group(3)),
        "model_steps_per_s": int(match.group(4).replace(",", "")),
    }


def scaling(
    out: Path,
    experiment: str,
    counts: list[int],
    platform: str,
    extra: list[str],
    once: bool = False,
    places: tuple = ("process", "ray"),
) -> list[dict]:
    """Each count k: k devices in one process, then k Ray tasks; the second of two runs timed
    (``once``: the only run, compiling included)."""
    import pandas as pd

    rows = []
    base = dict(
        os.environ, TOYMODELS_COMPILE_CACHE=str(out / "compile-cache"), RAY_AUTH_MODE="disabled"
    )
    for k in counts:
        for where in places:
            env, overrides = dict(base), [f"experiment={experiment}", "wandb.mode=disabled", *extra]
            if where == "process":
                overrides.append("sweep.executor=local")
                if platform == "cpu":
                    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FORCE}={k}"
                    env["JAX_PLATFORMS"] = "cpu"
                else:
                    overrides.append(f"sweep.devices={k}")
            else:
                overrides += ["sweep.executor=ray", "sweep.devices=1"]
                if platform == "cpu":
                    env["JAX_PLATFORMS"] = "cpu"
                    overrides.append(f"ray.num_cpus={k}")
                else:
                    overrides += [f"ray.num_gpus={k}", "ray.gpus_per_task=1"]
            name = f"{where}-{k}"
            for attempt in ("timed",) if once else ("warm", "timed"):
                store = out / f"{name}-{attempt}"
                result = sweep_run(
                    [*overrides, f"sweep.out={store}"], env, out / f"{name}-{attempt}.log"
                )
            table = pd.read_parquet(store / "results.parquet")
            # each row carries its chunk's seconds / its models, so a chunk's rows sum to its seconds;
            # in one process chunks run one after another, on k Ray workers k at a time
            per_chunk = table.groupby("chunk")["train_seconds"].sum()
            if where == "process":
                slowest = float(per_chunk.sum())
            else:
                slowest = (
                    float(per_chunk.max()) if len(per_chunk) <= k else float(per_chunk.sum()) / k
                )
            model_steps = int(table["steps"].sum())
            rows.append(
                {
                    "where": where,
                    "count": k,
                    "chunks": int(table["chunk"].nunique()),
                    **result,
                    "chunks_s": round(slowest, 2),
                    "chunk_model_steps_per_s": round(model_steps / slowest),
                }
            )
            print(f"{name}: {result}", flush=True)
    return rows


def scaling_table(rows: list[dict], platform: str) -> list[str]:
    unit = "forced CPU devices, one process" if platform == "cpu" else "GPUs, one process"
    first: dict[str, float] = {}
    for r in rows:
        first.setdefault(r["where"], r["chunk_model_steps_per_s"])
    lines = [
        (
            "| where | devices or tasks | chunks | run s | model·steps/s (run) | chunks s | model·steps/s (chunks) "
            "| against 1 (chunks) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["where"] != "process", r["count"])):
        what = unit if r["where"] == "process" else "Ray tasks (one device each)"
        lines.append(
            f"| {what} | {r['count']} | {r['chunks']} | {r['run_s']} | {r['model_steps_per_s']:,} | "
            f"{r['chunks_s']} | {r['chunk_model_steps_per_s']:,} | "
            f"{r['chunk_model_steps_per_s'] / first[r['where']]:.2f}× |"
        )
    return lines


# ---------------------------------------------------------------- bit identity


def chunk_program(overrides: list[str]):
    """The first chunk of a config planned for one device, as (program, args, axes, width): what
    the chunk runner hands ``sweeps.jobs.devices.run_on_devices`` (its job kind's program)."""
    from sweeps.jobs import make_chunks
    from sweeps.plan import plan_sweep
    from sweeps.resources import Device
    from tests.helpers import compose_config

    chunk = make_chunks(
        plan_sweep(compose_config(overrides)), device=Device("cpu", 2**34, "one device")
    )[0]
    program = chunk.job.program(chunk)
    return program.fn, program.args, program.axes, chunk.pad_to


BIT_KINDS = {  # 8 models in one chunk each, at short but real sizes
    "fresh data (tms_phase_2d_small)": [
        "experiment=tms_phase_2d_small",
        "train.steps=300",
        "sweep.seeds=1",
        "sweep.chunk_size=8",
    ],
    "finite data (dd_cpu_small, T = 100)": [
        "experiment=dd_cpu_small",
        "train.steps=300",
        "train.warmup_steps=30",
        "sweep.grid.n_train=[100]",
        "sweep.grid.dataset_seed=[0,1,2,3]",
        "sweep.seeds=2",
        "sweep.chunk_size=8",
    ],
    "SAEs, plain (sae_pareto_small)": [
        "experiment=sae_pareto_small",
        "sae.steps=300",
        "sweep.grid.kind=[plain]",
        "sweep.seeds=8",
        "sweep.chunk_size=8",
    ],
    "SAEs, top-k (sae_pareto_small)": [
        "experiment=sae_pareto_small",
        "sae.steps=300",
        "sweep.grid.kind=[topk]",
        "sweep.seeds=8",
        "sweep.chunk_size=8",
    ],
}


def differing(a, b) -> tuple[int, int, float]:
    """(numbers that differ, numbers, largest difference) of two result pytrees (NaN equals NaN)."""
    import jax
    import numpy as np

    diff = total = 0
    largest = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        diff, total = diff + int((~same).sum()), total + x.size
        if x.dtype.kind == "f" and (~same).any():
            largest = max(largest, float(np.nanmax(np.abs(x.astype(np.float64) - y))))
    return diff, total, largest


def bits() -> list[dict]:
    """In this process: each kind's chunk as above (see the module docstring)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from sweeps.jobs.devices import Placement, run_on_devices

    devices = jax.local_devices()
    rows = []
    for kind, overrides in BIT_KINDS.items():
        program, args, axes, width = chunk_program(overrides)
        reference = jax.device_get(program(*args))
        narrow: dict = {}  # width -> the chunk as one-device programs of that width

        def add(what, result, w=None, kind=kind, reference=reference, narrow=narrow):
            d, total, largest = differing(reference, result)
            same = differing(narrow[w], result)[0] if w in narrow else None
            rows.append(
                {
                    "kind": kind,
                    "run": what,
                    "differing": d,
                    "of": total,
                    "max_abs": largest,
                    "differing_same_width": same,
                }
            )
            print(
                f"{kind}: {what}: {d} of {total} differ (max {largest:.2g}); from the same width: {same}",
                flush=True,
            )

        add(f"program of width {width} again", jax.device_get(program(*args)))
        for w in (width // 2, width // 4, 1):
            narrow[w] = run_on_devices(program, args, axes, w, Placement(devices=1))
            add(f"one device, programs of width {w}", narrow[w])
        for d in (2, 4):
            if d <= len(devices):
                w = width // d
                add(
                    f"exact, {d} devices (slices of {w})",
                    run_on_devices(program, args, axes, w, Placement(d)),
                    w,
                )
                add(
                    f"mesh, {d} devices (width {w} each)",
                    run_on_devices(program, args, axes, w, Placement(d, "mesh")),
                    w,
                )
        if len(devices) >= 2:  # the same width, compiled for two devices: XLA's SPMD pipeline alone
            mesh = Mesh(np.array(devices[:2]), ("models",))
            same = jax.device_put(args, NamedSharding(mesh, PartitionSpec()))
            add(
                f"program of width {width} compiled for 2 devices (replicated)",
                jax.device_get(program(*same)),
            )
    return rows


def bits_table(rows: list[dict]) -> list[str]:
    lines = [
        (
            "| job kind | run | numbers that differ from the one-device program of the chunk's width | largest "
            "difference | … from one-device programs of the same width |"
        ),
        "|---|---|---|---|---|",
    ]
    for r in rows:
        same = "" if r["differing_same_width"] is None else f"{r['differing_same_width']:,}"
        lines.append(
            f"| {r['kind']} | {r['run']} | {r['differing']:,} of {r['of']:,} | {r['max_abs']:.2g} | {same} |"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/devices-bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--bits", action="store_true", help="bit identity across widths and devices, not throughput"
    )
    parser.add_argument(
        "--out", default="runs/devices-bench", help="stores, logs, the compile cache and the JSON"
    )
    parser.add_argument("--experiment", default="tms_phase_2d_small")
    parser.add_argument(
        "--counts", type=int, nargs="*", default=[1, 2, 4], help="devices and Ray tasks"
    )
    parser.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument(
        "--once", action="store_true", help="one run per setting, compiling included (a smoke test)"
    )
    parser.add_argument(
        "--where",
        choices=["process", "ray", "both"],
        default="both",
        help="devices in one process, Ray tasks, or both (the default)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        default=["train.steps=20000"],
        help="toymodels-sweep overrides (default train.steps=20000)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.bits:
        if args.platform == "cpu" and FORCE not in os.environ.get(
            "XLA_FLAGS", ""
        ):  # JAX reads it when it starts
            env = dict(
                os.environ,
                XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FORCE}=4",
                JAX_PLATFORMS="cpu",
            )
            return subprocess.run(
                [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env=env
            ).returncode
        sys.path.insert(0, str(REPO))
        import jax

        rows = bits()
        (out / "bits.json").write_text(json.dumps(rows, indent=2))
        print(
            f"\n{len(jax.local_devices())} {jax.devices()[0].device_kind} device(s), JAX {jax.__version__}"
        )
        print("\n".join(bits_table(rows)))
        return 0
    places = ("process", "ray") if args.where == "both" else (args.where,)
    rows = scaling(
        out, args.experiment, args.counts, args.platform, args.overrides, args.once, places
    )
    (out / "scaling.json").write_text(json.dumps(rows, indent=2))
    print(
        f"\n{args.experiment} {' '.join(args.overrides)} ({args.platform}, {os.cpu_count()} cores)"
    )
    print("\n".join(scaling_table(rows, args.platform)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
