"""The GPU checks of issues 14 and 25 as one script (``scripts/gpu-check``), within about 11 minutes on one GPU.

1. ``tms_phase_2d`` in full (16,000 models × 10,000 steps) through a local Ray, one GPU per task
   (one chunk), as the experiment file sets it and with ``train.batch_blocks=1``; theory agreement
   from ``toymodels-figures``.
2. ``toymodels-bench`` with the PyTorch reference on the same GPU (without it when torch is absent).
3. A finite-data probe at paper scale (n = 10⁴, T = 10⁵, m = 2, one model): start-up (sampling and
   compile) and ms per step at several piece sizes.
4. A ``dd_paper`` subset: T ∈ {10³, 10⁴, 10⁵}, one dataset seed, 50,000 steps when the probe says
   they fit the time left, else fewer (printed); the test-loss peak from ``toymodels-figures``.
5. Chunks over the machine's GPUs (``scripts/devices-bench``, docs/devices.md): ``tms_phase_2d_small``
   in one process over 1, 2, 4… of its GPUs against as many Ray tasks of one GPU each (with one
   GPU: the in-process path, whose chunk sizes come from JAX's ``memory_stats()``, against one Ray
   task), and ``--bits``: whether a narrower program, slices over the GPUs or a mesh change the
   stored bits on this GPU (with one GPU: the widths only).

It prints the rows docs/gpus.md's table needs and writes them all to OUT/gpu-check.json.
``--smoke`` runs every stage at tiny sizes on whatever device there is (a test runs it on the CPU).
Each stage runs the real commands in their own processes, as a user would.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 480  # stages 1-4 on one GPU (stage 5, devices, adds about 3 minutes)
SUMMARY = re.compile(r"(\d+)/(\d+) models stored .* in ([\d.]+)s, ([\d,]+) model·steps/s")


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run(cmd: list[str], log: Path, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``, its output kept in ``log``; (the finished process, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    log.write_text(
        f"$ {' '.join(cmd)}\n# exit {done.returncode}, {wall:.1f} s\n{done.stdout}\n{done.stderr}"
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[2:4])}… failed (exit {done.returncode}); see {log}:\n{done.stderr[-3000:]}"
        )
    return done, wall


def figure_notes(store: Path, log: Path) -> dict:
    """The numbers ``toymodels-figures`` prints after drawing (agreement with theory, bump_T)."""
    done, wall = run(command("analysis.cli", str(store)), log, timeout=900)
    notes = {"figures_s": round(wall, 1)}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key in ("agreement_with_theory", "bump_T"):
            notes[key] = ast.literal_eval(value) if value[:1] in "{[" else float(value)
    return notes


def sweep(name: str, overrides: list[str], out: Path, timeout: float) -> dict:
    """Run ``toymodels-sweep`` and read its store: wall, training seconds, throughput."""
    import pandas as pd

    store = out / name
    done, wall = run(
        command("sweeps.cli", *overrides, f"sweep.out={store}", "wandb.mode=disabled"),
        out / f"{name}.log",
        timeout,
    )
    table = pd.read_parquet(store / "results.parquet")
    model_steps = int(table["steps"].sum())
    training = float(table["train_seconds"].sum())  # each row: its chunk's seconds / its models
    match = SUMMARY.search(done.stdout)
    result = {
        "command": "toymodels-sweep " + " ".join(overrides),
        "models": len(table),
        "chunks": int(table["chunk"].nunique()),
        "wall_s": round(wall, 1),
        "run_s": float(match.group(3)) if match else None,
        "training_s": round(training, 1),
        "model_steps_per_s": round(model_steps / training),
        "store": str(store),
    }
    if "n_train" in table:
        by_T = table.groupby("n_train")
        result["test_loss"] = {int(T): float(v) for T, v in by_T["test_loss"].mean().items()}
        result["train_loss"] = {int(T): float(v) for T, v in by_T["train_loss"].mean().items()}
        result["ms_per_step"] = {
            int(T): round(
                1e3 * float((g["train_seconds"] * len(g)).iloc[0]) / int(g["steps"].iloc[0]), 3
            )
            for T, g in by_T
        }
    return result


def bench(out: Path, smoke: bool, timeout: float) -> dict:
    import importlib.util

    args = ["--json"] + (
        ["--steps", "10", "--configs", "n5m2", "--processes", "1"] if smoke else []
    )
    reference = importlib.util.find_spec("torch") is not None
    if not reference:
        args.append("--no-reference")
    done, wall = run(command("sweeps.bench.cli", *args), out / "bench.log", timeout)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "rows": rows,
        "wall_s": round(wall, 1),
        "reference": "ran"
        if reference
        else "skipped: torch is not installed (pip install -e '.[bench]')",
    }


def probe_finite(n: int, T: int, pieces: list[int], steps: int) -> list[dict]:
    """In this process: one model of n features on T points; start-up (first call: sampling,
    compile, the steps) minus the second call's time, and ms per step of the second call."""
    import jax
    from finite_profile import hparams, probe_spec  # scripts/, beside this file

    from toymodels import finite as F

    rows = []
    for piece in pieces:
        spec = probe_spec(n, T, 2, piece, steps)
        keys = jax.random.key(0)[None]
        hp = hparams(n, 10.0 / n)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            jax.block_until_ready(F.train_finite_many(spec, keys, hp))
            times.append(time.perf_counter() - start)
        B, P = F.piece_layout(T, piece)
        rows.append(
            {
                "n_features": n,
                "n_train": T,
                "piece_size": piece,
                "points_per_piece": B,
                "pieces": P,
                "startup_s": round(times[0] - times[1], 2),
                "ms_per_step": round(1e3 * times[1] / steps, 3),
                "device": jax.devices()[0].device_kind,
            }
        )
    return rows


def probe(out: Path, smoke: bool, timeout: float) -> list[dict]:
    n, T, pieces, steps = (
        (200, 1000, [0], 5) if smoke else (10_000, 100_000, [8192, 0, 131_072], 200)
    )
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import gpu_check; "
        f"print(json.dumps(gpu_check.probe_finite({n}, {T}, {pieces}, {steps})))"
    )
    done, _ = run([sys.executable, "-c", code], out / "probe.log", timeout)
    return json.loads(done.stdout.strip().splitlines()[-1])


def dd_steps(probe_rows: list[dict], seconds_left: float, smoke: bool) -> int:
    """50,000 steps (the paper's) when T = 10³, 10⁴, 10⁵ fit the time left at the probe's speed
    (the default piece, T = 10⁵ and about a fifth of it for the smaller two), else what fits."""
    if smoke:
        return 50
    ms = next(r["ms_per_step"] for r in probe_rows if r["piece_size"] == 0)
    fits = int(seconds_left / (1.3 * ms * 1e-3) // 1000 * 1000)
    return max(1000, min(50_000, fits))


def table_lines(results: dict) -> list[str]:
    """Markdown rows for the table of docs/gpus.md."""
    lines = [
        f"device: {results['device']}",
        "",
        "| run | wall s | training s | model·steps/s | notes |",
        "|---|---|---|---|---|",
    ]
    for key in ("tms_phase_2d", "tms_phase_2d_blocks1", "dd_paper_subset"):
        r = results.get(key)
        if not r:
            continue
        notes = []
        if r.get("run_s") is not None:  # before the executor ran: imports, planning, Ray's start
            notes.append(
                f"before the run (imports, plan, Ray's start) {r['wall_s'] - r['run_s']:.1f} s; run "
                f"{r['run_s']} s, of which chunks (compile and training) {r['training_s']} s"
            )
        if "agreement_with_theory" in r:
            a = r["agreement_with_theory"]
            notes.append(f"{a['agree']}/{a['cells']} cells agree with theory")
        if "ms_per_step" in r:
            notes.append(
                "ms/step by T: " + ", ".join(f"{T}: {v}" for T, v in r["ms_per_step"].items())
            )
        if "bump_T" in r:
            notes.append(f"test-loss peak T = {r['bump_T']}")
        lines.append(
            f"| `{r['command']}` | {r['wall_s']} | {r['training_s']} | {r['model_steps_per_s']:,} | "
            + "; ".join([f"{r['chunks']} chunk(s)", *notes])
            + " |"
        )
    for row in results.get("bench", {}).get("rows", []):
        ref = (
            "-"
            if row["reference"] is None
            else f"{row['reference']:,.0f} ({row['reference_device']})"
        )
        lines.append(
            f"| bench {row['config']} ×{row['models']} | | | {row['ours']:,.0f} ({row['ours_device']}) | "
            f"reference {ref} |"
        )
    for row in results.get("devices", {}).get("scaling", []):
        where = "in one process" if row["where"] == "process" else "as Ray tasks of one device"
        lines.append(
            f"| `tms_phase_2d_small` {where}, {row['count']} device(s) | {row['wall_s']} | | "
            f"{row['model_steps_per_s']:,} | {row['chunks']} chunk(s), run {row['run_s']} s |"
        )
    for row in results.get("devices", {}).get("bits", []):
        same = (
            ""
            if row.get("differing_same_width") is None
            else f"; {row['differing_same_width']:,} from the same width"
        )
        lines.append(
            f"| bits: {row['kind']}, {row['run']} | | | | {row['differing']:,} of {row['of']:,} differ "
            f"(largest {row['max_abs']:.2g}){same} |"
        )
    for row in results.get("finite_probe", []):
        lines.append(
            f"| finite n={row['n_features']:,} T={row['n_train']:,} piece {row['points_per_piece']} "
            f"({row['pieces']} pieces) | | | | "
            f"{row['ms_per_step']} ms/step, start-up {row['startup_s']} s |"
        )
    return lines


def devices(out: Path, smoke: bool, timeout: float) -> dict:
    """Stage 5: ``scripts/devices-bench`` scaling (and, on a GPU, ``--bits``), read from its JSON."""
    script = str(Path(__file__).parent / "devices_bench.py")
    gpus = len(nvidia_smi_gpus()) or 1
    counts = [k for k in (1, 2, 4, 8) if k <= gpus] + ([gpus] if gpus not in (1, 2, 4, 8) else [])
    where = out / "devices"
    args = (
        [
            "--platform",
            "cpu",
            "--once",
            "--counts",
            "1",
            "--where",
            "process",
            "train.steps=50",
            "sweep.seeds=1",
        ]
        if smoke
        else ["--platform", "gpu", "--counts", *map(str, counts)]
    )
    _, wall = run(
        [sys.executable, script, "--out", str(where), *args], out / "devices.log", timeout
    )
    result = {"scaling": json.loads((where / "scaling.json").read_text()), "wall_s": round(wall, 1)}
    if not smoke:
        run(
            [sys.executable, script, "--bits", "--platform", "gpu", "--out", str(where)],
            out / "devices-bits.log",
            timeout,
        )
        result["bits"] = json.loads((where / "bits.json").read_text())
    return result


def nvidia_smi_gpus() -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines() if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return (
            out.stdout.strip().splitlines()[0]
            if out.returncode == 0 and out.stdout.strip()
            else "no GPU"
        )
    except (OSError, subprocess.SubprocessError):
        return "no GPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu-check", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", default="runs/gpu-check", help="where stores, logs and gpu-check.json go"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every stage at tiny sizes (CPU is fine)"
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["tms", "bench", "probe", "dd", "figures", "devices"],
        help="stages to leave out",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=BUDGET_S,
        metavar="SECONDS",
        help=f"seconds for stages 1-4 from this command's start; the dd subset's steps are sized "
        f"to what is left of them (default {BUDGET_S:g})",
    )
    parser.add_argument(
        "--gpus-per-task",
        type=float,
        default=1.0,
        help="ray.gpus_per_task of the sweeps (default 1: one large chunk per card)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    results: dict = {"device": gpu_name(), "smoke": args.smoke}
    where = ["sweep.executor=local"] if args.smoke else [f"ray.gpus_per_task={args.gpus_per_task}"]

    def save() -> None:
        results["total_s"] = round(time.perf_counter() - start, 1)
        (out / "gpu-check.json").write_text(json.dumps(results, indent=2))

    if "tms" not in args.skip:
        base = (
            ["experiment=tms_phase_2d_small", "train.steps=50", "sweep.seeds=1"]
            if args.smoke
            else ["experiment=tms_phase_2d"]
        )
        variants: list[tuple[str, list[str]]] = [("tms_phase_2d", [])] + (
            [] if args.smoke else [("tms_phase_2d_blocks1", ["train.batch_blocks=1"])]
        )
        for key, extra in variants:
            results[key] = sweep(key, base + extra + where, out, timeout=600)
            print(
                f"{key}: {results[key]['wall_s']} s wall, {results[key]['training_s']} s training",
                flush=True,
            )
        if "figures" not in args.skip:
            results["tms_phase_2d"].update(
                figure_notes(out / "tms_phase_2d", out / "figures_tms.log")
            )
        save()
    if "bench" not in args.skip:
        results["bench"] = bench(out, args.smoke, timeout=900)
        print(f"bench: {results['bench']['wall_s']} s", flush=True)
        save()
    if "probe" not in args.skip:
        results["finite_probe"] = probe(out, args.smoke, timeout=600)
        print(f"finite probe: {results['finite_probe']}", flush=True)
        save()
    if "dd" not in args.skip:
        left = args.budget - (time.perf_counter() - start) - 60
        steps = dd_steps(
            results.get("finite_probe", [{"piece_size": 0, "ms_per_step": 2.0}]), left, args.smoke
        )
        overrides = (
            ["experiment=dd_cpu_small", "sweep.grid.n_train=[10,30]"]
            if args.smoke
            else ["experiment=dd_paper", "sweep.grid.n_train=[1000,10000,100000]"]
        )
        overrides += [
            "sweep.grid.dataset_seed=[0]",
            f"train.steps={steps}",
            f"train.warmup_steps={max(steps // 20, 1)}",
            f"train.snapshot_every={max(steps // 50, 1)}",
        ]
        results["dd_paper_subset"] = sweep("dd_paper_subset", overrides + where, out, timeout=900)
        results["dd_paper_subset"]["steps"] = steps
        if "figures" not in args.skip:
            results["dd_paper_subset"].update(
                figure_notes(out / "dd_paper_subset", out / "figures_dd.log")
            )
        save()
    if "devices" not in args.skip:
        results["devices"] = devices(out, args.smoke, timeout=600)
        print(f"devices: {results['devices']['wall_s']} s", flush=True)
        save()
    save()
    print("\n".join(table_lines(results)))
    print(f"total {results['total_s']} s; all numbers in {out / 'gpu-check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
