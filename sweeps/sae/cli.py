"""``toymodels-sae DIR``: train sparse autoencoders on the hidden activations of a stored sweep's toy
models and score them against the true features (Sharkey et al. 2022; docs/science/index.md; issue 16).

    toymodels-sae runs/tms_intro --l1 0.03,0.1,0.3 --dict-sizes n,2n --kind both --seeds 2

A shortcut: its options become a ``+sae=toy sae.toy.sweep=DIR`` config (``sweep_overrides``; it
prints them) run by ``toymodels-sweep``, so the SAEs are stored as any SAE sweep's rows in
DIR/sae (``--out``), resumable, tracked, and drawn by ``toymodels-figures DIR/sae``. The options
are checked here first (exit 2 naming the option); the sweep checks the rest (naming the key).
``--models`` is a filter over the stored models' columns (``sweeps.store.query``), never run as
code; ``--plugins FILE`` trusts a plug-in file of the stored sweep's own kinds, checked against the
digest the store recorded (docs/security.md): the store's own files are never run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.sae.toy import load_sweep, select_models
from toymodels.registry import ConfigError
from toymodels.sae.hyperparams import BANDWIDTH

KIND_GROUPS = {"both": ("plain", "gated")}  # plus "all": every registered kind


class UsageError(ValueError):
    """A bad option: reported with the option's name and exit status 2, before any compute."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


def parse_numbers(text: str, option: str, kind=float) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            option, f"expected comma-separated positive numbers, got {text!r}"
        ) from None
    if not values:
        raise UsageError(option, "expected at least one positive number (e.g. 0.03,0.1,0.3)")
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise UsageError(option, f"every value must be a finite number > 0, got {text!r}")
    return values


def parse_kinds(text: str) -> list[str]:
    from toymodels.sae import SAE_KINDS

    if text == "all":
        return list(SAE_KINDS.names())
    kinds = list(KIND_GROUPS.get(text, [k.strip() for k in text.split(",") if k.strip()]))
    for kind in kinds:
        if kind not in SAE_KINDS:
            raise UsageError(
                "--kind", f"{kind!r} is not one of {', '.join(SAE_KINDS.names())}, both, all"
            )
    return kinds


def parse_dict_sizes(text: str) -> list[str]:
    """Dictionary sizes: integers ≥ 1, or multiples of the toy model's feature count (``n``, ``2n``)."""
    sizes = [v.strip() for v in text.split(",") if v.strip()]
    if not sizes:
        raise UsageError(
            "--dict-sizes", "expected at least one size: integers >= 1 or multiples of n (n, 2n)"
        )
    for size in sizes:
        match = re.fullmatch(r"(\d*)n|(\d+)", size)
        if not match or int(match.group(1) or match.group(2) or 1) < 1:
            raise UsageError(
                "--dict-sizes", f"{size!r} is not an integer >= 1 or a multiple of n (n, 2n, ...)"
            )
    return sizes


def resolve_dict_size(size: str, n_features: int) -> int:
    if size.endswith("n"):
        return int(size[:-1] or 1) * n_features
    return int(size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toymodels-sae",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sweep_dir", help="a finished sweep's output directory (holds results.parquet)"
    )
    parser.add_argument(
        "--l1",
        default="0.03,0.1,0.3",
        help="λ > 0 of the L1 kinds (L0 for jumprelu), comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--k", default="1,2", help="k of the top-k kinds, comma-separated (default %(default)s)"
    )
    parser.add_argument(
        "--dict-sizes",
        default="n,2n",
        help="dictionary sizes: integers >= 1, or multiples of the toy's n features "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--kind",
        default="both",
        help="SAE kinds, comma-separated, or both (plain,gated) or all (default %(default)s)",
    )
    parser.add_argument(
        "--steps", type=int, default=3000, help="training steps per SAE (default %(default)s)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1024,
        help="activations per step, drawn fresh (default %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="SAE seeds per (toy model, λ or k) (default %(default)s)",
    )
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="Adam learning rate (default %(default)s)"
    )
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=BANDWIDTH.default,
        help="JumpReLU's ε (default %(default)s)",
    )
    parser.add_argument(
        "--ortho",
        type=float,
        default=0.0,
        help="decoder orthogonality weight λ_o >= 0 (default %(default)s: off)",
    )
    parser.add_argument(
        "--resample-every",
        type=int,
        default=0,
        help="resample latents dead over this many steps (default %(default)s: never)",
    )
    parser.add_argument(
        "--eval-batch", type=int, default=8192, help="fixed evaluation inputs (default %(default)s)"
    )
    parser.add_argument(
        "--base-seed", type=int, default=0, help="root of every SAE's key (default %(default)s)"
    )
    parser.add_argument(
        "--models",
        help="a filter selecting toy models, e.g. 'seed == 0 and density < 0.5': "
        "comparisons of the store's columns joined by and / or / not (docs/security.md)",
    )
    parser.add_argument(
        "--plugins",
        action="append",
        default=[],
        metavar="FILE",
        help="a plug-in file of the stored sweep's own kinds to run (repeat for several): checked "
        "against the digest the store recorded; the store's own files are never run",
    )
    parser.add_argument("--out", help="the SAE sweep's sweep.out (default SWEEP_DIR/sae)")
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="sweep.executor (default %(default)s: in this process)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="more toymodels-sweep overrides (e.g. wandb.mode=disabled)"
    )
    return parser


def check_args(args) -> None:
    args.l1 = parse_numbers(args.l1, "--l1")
    args.k = parse_numbers(args.k, "--k", int)
    args.dict_sizes = parse_dict_sizes(args.dict_sizes)
    args.kinds = parse_kinds(args.kind)
    for option in ("steps", "batch", "seeds", "eval_batch"):
        if getattr(args, option) < 1:
            raise UsageError(
                "--" + option.replace("_", "-"),
                f"must be an integer >= 1, got {getattr(args, option)}",
            )
    for option in ("lr", "bandwidth"):
        if not np.isfinite(getattr(args, option)) or getattr(args, option) <= 0:
            raise UsageError(
                f"--{option}", f"must be a finite number > 0, got {getattr(args, option)}"
            )
    if not np.isfinite(args.ortho) or args.ortho < 0:
        raise UsageError("--ortho", f"must be a finite number >= 0, got {args.ortho}")
    if args.resample_every < 0:
        raise UsageError("--resample-every", f"must be an integer >= 0, got {args.resample_every}")


def check_sizes(args, table: pd.DataFrame) -> None:
    """k of the top-k kinds within every dictionary size, before any compute (as --k)."""
    from toymodels.sae import SAE_KINDS

    if not any(SAE_KINDS.get(kind).top_k for kind in args.kinds):
        return
    for n in sorted(set(select_models(table, args.models, "--models")["n_features"])):
        smallest = min(resolve_dict_size(size, int(n)) for size in args.dict_sizes)
        if max(args.k) > smallest:
            raise UsageError("--k", f"k={max(args.k)} exceeds dictionary size {smallest} (n={n})")


def _list(values) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sweep_overrides(args) -> list[str]:
    """The ``toymodels-sweep`` overrides of these options: a ``+sae=toy`` sweep on the stored
    sweep's models, written to ``--out`` (default SWEEP_DIR/sae)."""
    root = Path(args.sweep_dir)
    out = Path(args.out) if args.out else root / "sae"
    # ~experiment: no default experiment's toy grid; the SAE grid is these options'
    overrides = [
        "~experiment",
        "+sae=toy",
        f"sae.toy.sweep={_quoted(str(root))}",
        f"name=sae_{root.name}",
        f"sweep.out={_quoted(str(out))}",
        f"sweep.executor={args.executor}",
        f"sweep.seeds={args.seeds}",
        f"sweep.base_seed={args.base_seed}",
        f"+sweep.grid.kind={_list(args.kinds)}",
        f"+sweep.grid.dict_size={_list(args.dict_sizes)}",
        f"+sweep.grid.l1={_list(args.l1)}",
        f"+sweep.grid.k={_list(args.k)}",
        f"sae.steps={args.steps}",
        f"sae.batch_size={args.batch}",
        f"sae.eval_batch={args.eval_batch}",
        f"sae.lr={args.lr}",
        f"sae.bandwidth={args.bandwidth}",
        f"sae.ortho={args.ortho}",
        f"sae.resample_every={args.resample_every}",
    ]
    if args.models:
        overrides.append(f"sae.toy.models={_quoted(args.models)}")
    if args.plugins:
        overrides.append(f"plugins={_list(_quoted(p) for p in plugin_files(args))}")
    return overrides + list(args.overrides)


def plugin_files(args) -> list[str]:
    """``--plugins`` (repeated, or comma-separated) as a list of files."""
    return [p for given in args.plugins for p in given.split(",") if p]


def main(argv=None) -> None:
    args = build_parser().parse_intermixed_args(argv)
    root = Path(args.sweep_dir)
    try:
        check_args(args)
        table, config = load_sweep(root, "sweep_dir")
        from sweeps.store import require_kinds, trust_plugins

        if args.plugins:  # checked against the store's record, then run (the sweep runs them again)
            trust_plugins(root, config, plugin_files(args), "--plugins")
        require_kinds(root, config, "sweep_dir", "pass --plugins FILE")
        select_models(
            table, args.models, "--models"
        )  # a bad --models query: named here, before the sweep
        check_sizes(args, table)
    except (UsageError, ConfigError) as error:
        print(f"toymodels-sae: error: {error}", file=sys.stderr)
        sys.exit(2)
    from sweeps.cli import main as sweep_main

    overrides = sweep_overrides(args)
    print("toymodels-sweep " + " ".join(overrides), flush=True)
    sys.argv = ["toymodels-sweep", *overrides]
    sweep_main()


if __name__ == "__main__":
    main()
