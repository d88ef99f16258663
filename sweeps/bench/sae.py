"""``toymodels-bench sae``: our SAEs beside SAELens's on one world, scored by one evaluator, and
the training throughput of N = 1, 8, 64 SAEs (docs/results/sae-bench.md).

1. **One world.** With sae-lens installed, SAELens's own generator builds it from ``WORLD`` (256
   Zipf features in 32 dimensions at SAELens's defaults); SAELens trains on that generator and we
   on the same arrays (``sae.world.kind=saelens``'s source). Without sae-lens, our own world of
   the same recipe (random unit directions), ours only, and the table says so.
2. **Parity.** Every kind both libraries have (standard L1 = our ``plain``, gated, TopK,
   BatchTopK, JumpReLU, Matryoshka BatchTopK) at 3 sparsity coefficients, the same width,
   learning rate (Adam), batch and steps; each library's other settings at its own defaults (the
   table's notes name those that differ). Ours: one ``train_saes`` program per kind. SAELens:
   ``train_toy_sae`` per SAE, saved as its inference SAE.
3. **One evaluator.** Both are written as SAELens inference SAEs (ours with
   ``toymodels.sae.saelens.to_saelens``) and scored by the same code on the same ≥ 10⁵
   evaluation inputs of the world: L0, dead fraction (no firing on any of them), SAELens's MCC,
   uniqueness (distinct best-matched true features per latent), F1 and FVU
   (``toymodels.sae.metrics``).
4. **Throughput** of standard L1 SAEs of width 64 on d = 16 at batch 1,024: ours, N SAEs in one
   program (compile excluded, stated; the rate from the extra steps of a 3x longer program); SAELens, its training step for each
   SAE in a Python loop (torch at 1 thread and at its default, the faster counted). The bound: a step's matrix products (2·5·D·H·B flops per SAE) over the
   rate this machine runs exactly those products at (measured here, same program shape); ours
   as a fraction of it, and the per-SAE rate from N = 8 to 64.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

# The parity world: SAELens's SyntheticModelConfig at its defaults but for size and seed.
WORLD = {"num_features": 256, "hidden_dim": 32, "seed": 0}
KINDS = ("plain", "gated", "topk", "batchtopk", "jumprelu", "matryoshka")
COEFFICIENTS = {
    "plain": (0.03, 0.1, 0.3),
    "gated": (0.03, 0.1, 0.3),
    "jumprelu": (0.01, 0.1, 1.0),
    "topk": (2, 4, 8),
    "batchtopk": (2, 4, 8),
    "matryoshka": (2, 4, 8),
}
# The defaults in which the two sides differ on purpose (docs/saes/reference.md), printed with the table.
DEFAULTS_NOTE = (
    "defaults that differ: AuxK's α ours 1/32 (Gao et al. 2024), SAELens 1 (both: dead after 1,000 "
    "steps without firing, k_aux = d_in/2, on only past that many steps); ours clips the gradient "
    "of plain, gated and jumprelu only (SAELens: every kind)"
)
THROUGHPUT = dict(width=64, d=16, batch=1024, n_features=64)
EVAL_BATCH = 8192


def has_reference() -> bool:
    import importlib.util

    return importlib.util.find_spec("sae_lens") is not None


# --- the world -------------------------------------------------------------------------------


def our_world(n_features: int, d: int, seed: int = 0):
    """SAELens's default recipe built by our own code: Zipf (exponent 1, 0.3 down to 0.01)
    independent firing, unit random directions, magnitude 1, a bias of norm 1."""
    from toymodels.sae import saelens as core
    from toymodels.sae.build import zipf_probabilities

    r = np.random.default_rng(seed)
    F = r.normal(size=(n_features, d))
    bias = r.normal(size=d)
    arrays = core.SyntheticArrays(
        config={"num_features": n_features, "hidden_dim": d},
        feature_vectors_NxH=F / np.linalg.norm(F, axis=1, keepdims=True),
        bias_H=bias / np.linalg.norm(bias),
        firing_probabilities_N=zipf_probabilities(n_features, 1.0, 0.3, 0.01),
        mean_N=np.ones(n_features, np.float32),
        std_N=np.zeros(n_features, np.float32),
    )
    return core.build(arrays)


def evaluation_inputs(source, world, samples: int, seed: int = 12345):
    """(fires z > 0: F×B bool, h: H×B) of ``samples`` inputs, in batches of ``EVAL_BATCH``."""
    import jax

    from toymodels import rng

    words = rng.key_words(jax.random.key(seed))
    draw = jax.jit(lambda w, t: source.sample(w, words, t, EVAL_BATCH))
    out = []
    for t in range(-(-samples // EVAL_BATCH)):
        z, h = draw(world, t)
        out.append((np.asarray(z) > 0, np.asarray(h)))
    return out


# --- one evaluator ---------------------------------------------------------------------------


def uniqueness(W_dec_HxD, truth_HxF) -> float:
    """SAELens's uniqueness: distinct true features among the latents' best |cos| matches, over D."""
    from toymodels.sae.metrics import cosines

    best = np.argmax(np.abs(np.asarray(cosines(W_dec_HxD, truth_HxF))), axis=1)
    return len(np.unique(best)) / W_dec_HxD.shape[1]


def _add(sums, *batch):
    """``EvalSums.add`` of one batch, compiled once per shape."""
    import jax

    global _ADD
    if _ADD is None:
        _ADD = jax.jit(lambda s, *b: s.add(*b, 0.0))
    return _ADD(sums, *batch)


_ADD: Any = None


def score(cfg: dict, tensors: dict, source, world, inputs) -> dict:
    """Scores of one SAE in SAELens's inference format on the evaluation inputs."""
    from toymodels.sae import metrics
    from toymodels.sae import saelens as core

    W_dec_HxD = tensors["W_dec"].T.astype(np.float64)
    truth = np.asarray(source.truth(world), np.float64)
    represented = np.asarray(source.represented(world))
    match_D, latent_F = (np.asarray(a) for a in metrics.matches(truth, W_dec_HxD, represented))
    parents = np.asarray(source.parents(world)) if source.has_hierarchy else None
    sums = metrics.EvalSums.zeros(source.n_hidden, W_dec_HxD.shape[1], source.n_true)
    for fires_FxB, h_HxB in inputs:
        f_BxD = core.encode_saelens(cfg, tensors, h_HxB.T)
        hhat_BxH = f_BxD @ tensors["W_dec"] + tensors["b_dec"]
        sums = _add(sums, h_HxB, hhat_BxH.T, f_BxD.T, fires_FxB, match_D, latent_F, parents)
    s = metrics.scores(
        sums, len(inputs), W_dec_HxD, truth, represented, match_D, source.pairs(world)
    )
    return {
        "l0": float(s.l0),
        "dead": float(s.dead_fraction),
        "mcc": metrics.mcc(W_dec_HxD, truth, represented),
        "uniqueness": uniqueness(W_dec_HxD, truth[:, represented]),
        "f1": float(s.f1),
        "fvu": float(s.fvu),
    }


# --- training ----------------------------------------------------------------------------------


def matryoshka_widths(width: int) -> tuple[int, ...]:
    """Our default nested widths (D/64, D/16, D/4, D), given to SAELens too."""
    return tuple(sorted({width // f for f in (64, 16, 4) if width // f >= 1} | {width}))


def aux_k_at_defaults(sae_kind, steps: int, given: dict | None = None) -> bool:
    """Whether a sweep at the kind's defaults (but for ``given`` values) compiles AuxK in
    (``sweeps.sae.plan``'s rule): the kind declares its coefficient, above 0, and a latent can
    outlast the dead window in ``steps``. SAELens's TopK, BatchTopK and Matryoshka train with AuxK
    at their defaults too."""
    given = given or {}
    aux, window = sae_kind.hparam("aux_coefficient"), sae_kind.hparam("dead_window")
    if aux is None or window is None:
        return False
    alpha = given.get("aux_coefficient", aux.default)
    return alpha > 0 and steps > given.get("dead_window", window.default) + 1


def own_hparams(sae_kind, given: dict) -> dict:
    """The values of ``given`` (``--ours NAME=VALUE``) that ``sae_kind`` declares, cast."""
    return {
        name: sae_kind.hparam(name).cast(v)
        for name, v in given.items()
        if sae_kind.hparam(name) is not None
    }


def train_ours(
    kind: str,
    coefficients,
    source,
    world,
    width: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    given: dict | None = None,
    fold_b_dec: bool = True,
):
    """One program for the kind's 3 SAEs (same init and data: paired); their (cfg, tensors) and
    the seconds of the call (compile included). ``given``: hyperparameters set away from the
    kind's defaults (``--ours``; those the kind does not declare are ignored); ``fold_b_dec``:
    ``SaeSpec.fold_b_dec`` (``--fold-b-dec``)."""
    import jax

    from toymodels.registry import frozen_options
    from toymodels.sae import SAE_KINDS, SaeSpec, hparams, sae_keys, split_keys, train_saes
    from toymodels.sae import saelens as core

    sae_kind = SAE_KINDS.get(kind)
    top_k = sae_kind.top_k
    own = own_hparams(sae_kind, given or {})
    # a static hyperparameter (decoder, codes) sets the program's options, the rest are per SAE
    static = {h.name: h for h in sae_kind.hparams if not h.per_sae}
    options = {name: own.pop(name, h.default) for name, h in static.items()}
    n = len(coefficients)
    spec = SaeSpec(
        dict_size=width,
        kind=kind,
        steps=steps,
        batch_size=batch,
        k_max=max(coefficients) if top_k else 0,
        matryoshka_widths=matryoshka_widths(width) if kind == "matryoshka" else (),
        eval_batch=1024,
        aux_k=aux_k_at_defaults(sae_kind, steps, own),
        per_sae_source=False,
        shared_data=True,
        fold_b_dec=fold_b_dec,
        options=frozen_options(options),
    )
    hp = hparams(
        n, lr=lr, **own, **({"k": list(coefficients)} if top_k else {"l1": list(coefficients)})
    )
    init, data = split_keys(sae_keys(seed, [0] * n, [0] * n))
    start = time.perf_counter()
    result = jax.device_get(train_saes(spec, source, init, hp, world, data[0]))
    seconds = time.perf_counter() - start
    out = []
    for i, c in enumerate(coefficients):
        params = {name: np.asarray(v[i]) for name, v in result.params.items()}
        out.append(core.to_saelens(kind, params, int(c) if top_k else 0, options=options))
    return out, seconds


def parity(args, source, world, model, inputs) -> list[dict]:
    rows = []
    for kind in args.kinds:
        coefficients = COEFFICIENTS[kind]
        ours, seconds = train_ours(
            kind,
            coefficients,
            source,
            world,
            args.width,
            args.steps,
            args.batch,
            args.lr,
            args.seed,
            args.ours,
            args.fold_b_dec,
        )
        print(
            f"  ours {kind}: {seconds:.1f} s for {len(coefficients)} SAEs (compile included)",
            file=sys.stderr,
        )
        for c, (cfg, tensors) in zip(coefficients, ours):
            row = {
                "kind": kind,
                "coefficient": c,
                "ours": score(cfg, tensors, source, world, inputs),
                "saelens": None,
            }
            if model is not None:
                from sweeps.bench import reference_saelens

                cfg_r, tensors_r, sec = reference_saelens.train(
                    model,
                    kind,
                    args.width,
                    c,
                    args.steps,
                    args.batch,
                    args.lr,
                    args.seed,
                    widths=matryoshka_widths(args.width),
                )
                print(f"  SAELens {kind} {c}: {sec:.1f} s", file=sys.stderr)
                row["saelens"] = score(cfg_r, tensors_r, source, world, inputs)
            rows.append(row)
    return rows


# --- throughput -----------------------------------------------------------------------------


def time_ours(n: int, steps: int, lr: float, fold_b_dec: bool = True) -> tuple[float, float]:
    """(SAE·steps/s, compile seconds) of n SAEs in one program. Programs of ``steps`` and
    3·``steps`` steps are each called three times, the fastest of the last two calls kept: the rate
    is the extra steps over the extra seconds, so a call's fixed costs (its evaluation, dispatch)
    do not count (where load makes the difference meaningless, the long program's plain rate);
    compile is the first call at ``steps`` less the fastest."""
    import jax

    from toymodels.sae import SaeSpec, hparams, sae_keys, split_keys, train_saes

    t = THROUGHPUT
    source, world = our_world(t["n_features"], t["d"])
    init, data = split_keys(sae_keys(0, [0] * n, list(range(n))))
    hp = hparams(n, lr=lr, l1=0.1)
    first, best = {}, {}
    for length in (steps, 3 * steps):
        spec = SaeSpec(
            dict_size=t["width"],
            kind="plain",
            steps=length,
            batch_size=t["batch"],
            eval_batch=256,
            per_sae_source=False,
            shared_data=True,
            fold_b_dec=fold_b_dec,
        )
        calls = []
        for key in (data[0], data[1 % n], data[2 % n]):
            start = time.perf_counter()
            jax.block_until_ready(train_saes(spec, source, init, hp, world, key))
            calls.append(time.perf_counter() - start)
        first[length], best[length] = calls[0], min(calls[1:])
    extra = best[3 * steps] - best[steps]
    rate = (
        n * 2 * steps / extra if extra > 0.2 * best[3 * steps] else n * 3 * steps / best[3 * steps]
    )
    return rate, max(first[steps] - best[steps], 0.0)


def step_flops(width: int, d: int, batch: int) -> int:
    """Matrix-product flops of one SAE's training step: encode and decode forward, and the
    backward products (codes' gradient, decoder's, encoder's): 5 products of 2·D·H·B."""
    return 5 * 2 * width * d * batch


def time_bound(n: int, steps: int) -> float:
    """SAE·steps/s if a step cost only its matrix products, at the rate this machine runs them: the
    5 products of each of n SAEs (same shapes, grouped as train_saes groups them), timed in one
    compiled loop."""
    import jax
    import jax.numpy as jnp

    from toymodels.sae import SaeSpec
    from toymodels.sae.train import group_size

    t = THROUGHPUT
    D, H, B = t["width"], t["d"], t["batch"]
    g = group_size(SaeSpec(dict_size=D, batch_size=B), H, n)

    def products(W, V, h):  # one SAE: W D×H, V H×D, h H×B
        pre = W @ h
        r = V @ pre - h
        g_f = V.T @ r
        return W + 1e-9 * (g_f @ h.T), V + 1e-9 * (r @ pre.T)

    def run(W, V, h):
        def body(c, _):
            W, V = c
            W, V = jax.lax.map(lambda wv: jax.vmap(products, in_axes=(0, 0, None))(*wv, h), (W, V))  # type: ignore[call-arg]
            return (W, V), None

        return jax.lax.scan(body, (W, V), None, length=steps)[0]

    r = np.random.default_rng(0)
    W = jnp.asarray(r.normal(size=(n // g, g, D, H)), jnp.float32)
    V = jnp.asarray(r.normal(size=(n // g, g, H, D)), jnp.float32)
    h = jnp.asarray(r.normal(size=(H, B)), jnp.float32)
    f = jax.jit(run)
    jax.block_until_ready(f(W, V, h))
    start = time.perf_counter()
    jax.block_until_ready(f(W, V, h))
    return n * steps / (time.perf_counter() - start)


def throughput(args, with_reference: bool) -> list[dict]:
    t = THROUGHPUT
    flops = step_flops(t["width"], t["d"], t["batch"])
    rows = []
    for n in args.n_saes:
        ours, compile_s = time_ours(
            n, args.throughput_steps, args.lr, args.fold_b_dec
        )  # SAE·steps/s of all n together
        bound = time_bound(n, args.throughput_steps)
        ref = None
        if with_reference:
            from sweeps.bench import reference_saelens

            ref_steps = max(3, min(args.throughput_steps, 800 // n))
            # torch's threads: 1 and its default, the faster counted (on these sizes its default
            # 2 threads ran 30x slower than 1 on a loaded 2-core machine)
            ref, ref_threads = max(
                (
                    reference_saelens.time_loop(
                        n, t["d"], t["width"], ref_steps, t["batch"], args.lr, 0.1, threads
                    ),
                    threads,
                )
                for threads in sorted({1, reference_saelens.default_threads()})
            )
        rows.append(
            {
                "n": n,
                "ours": ours,
                "compile_s": compile_s,
                "bound": bound,
                "of_bound": ours / bound,
                "gflops": ours * flops / 1e9,
                "saelens": ref,
                "saelens_threads": None if ref is None else ref_threads,
                "ratio": None if ref is None else ours / ref,
            }
        )
        print(f"  N={n}: ours {ours:,.0f} SAE·steps/s, bound {bound:,.0f}", file=sys.stderr)
    return rows


# --- the table --------------------------------------------------------------------------------


def goal(o: dict, s: dict | None, front: Sequence[dict] = ()) -> str:
    """Whether ours' MCC >= SAELens's - 0.02 at matched L0: against SAELens at the same coefficient
    when its L0 is within 10%, else against SAELens's MCC interpolated (in log L0) between its two
    settings around ours' L0 ("~" marks it); "L0 off" when ours' L0 is outside SAELens's range."""
    if s is None:
        return "-"
    if abs(o["l0"] - s["l0"]) <= 0.1 * s["l0"]:
        return "yes" if o["mcc"] >= s["mcc"] - 0.02 else "no"
    points = sorted((p["l0"], p["mcc"]) for p in front if p["l0"] > 0)
    for (l0_a, mcc_a), (l0_b, mcc_b) in itertools.pairwise(points):
        if l0_a <= o["l0"] <= l0_b and o["l0"] > 0:
            w = (
                0.0
                if l0_b == l0_a
                else (np.log(o["l0"]) - np.log(l0_a)) / (np.log(l0_b) - np.log(l0_a))
            )
            return "~yes" if o["mcc"] >= mcc_a + w * (mcc_b - mcc_a) - 0.02 else "~no"
    return "L0 off"


def format_parity(rows: list[dict], world_note: str) -> str:
    cols = ("l0", "dead", "mcc", "uniqueness", "f1", "fvu")
    head = f"{'kind':<11} {'coef':>5} | " + " ".join(f"{c:>10}" for c in cols) + f" | {'goal':>6}"
    lines = [
        world_note,
        (
            "each cell: ours / SAELens; goal: ours' MCC >= SAELens's - 0.02 at L0 within 10% "
            "(~: against SAELens's MCC interpolated at ours' L0 between its settings)"
        ),
        head,
    ]
    for row in rows:
        o, s = row["ours"], row["saelens"]
        front = [
            r["saelens"] for r in rows if r["kind"] == row["kind"] and r["saelens"] is not None
        ]
        cells = [f"{o[c]:.3g}" + ("" if s is None else f"/{s[c]:.3g}") for c in cols]
        lines.append(
            f"{row['kind']:<11} {row['coefficient']:>5} | "
            + " ".join(f"{c:>10}" for c in cells)
            + f" | {goal(o, s, front):>6}"
        )
    return "\n".join(lines)


def format_throughput(rows: list[dict], steps: int, fold_b_dec: bool = True) -> str:
    t = THROUGHPUT
    at_8 = {r["n"]: r["ours"] for r in rows}.get(8)
    lines = [
        (
            f"throughput, SAE·steps/s: standard L1, width {t['width']}, d {t['d']}, batch {t['batch']}, "
            f"{steps} steps; bound = {step_flops(t['width'], t['d'], t['batch']) / 1e6:.1f} MFLOP of matrix "
            "products per SAE·step at the rate measured for them here"
            + ("" if fold_b_dec else "; ours with --no-fold-b-dec")
        ),
        (
            f"{'N':>4} {'ours':>9} {'vs N=8':>8} {'bound':>9} {'of bound':>8} {'GFLOP/s':>8} {'compile s':>9} "
            f"{'SAELens':>9} {'threads':>7} {'ratio':>7}"
        ),
    ]
    for r in rows:
        ref = "-" if r["saelens"] is None else f"{r['saelens']:,.0f}"
        threads = "-" if r["saelens"] is None else str(r["saelens_threads"])
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        vs8 = "-" if at_8 is None else f"{r['ours'] / at_8:.2f}"
        lines.append(
            f"{r['n']:>4} {r['ours']:>9,.0f} {vs8:>8} {r['bound']:>9,.0f} {r['of_bound']:>8.0%} "
            f"{r['gflops']:>8.1f} {r['compile_s']:>9.1f} {ref:>9} {threads:>7} {ratio:>7}"
        )
    return "\n".join(lines)


def parse_ours(parser, items: list[str], kinds: list[str]) -> dict:
    """``--ours NAME=VALUE`` items as {name: value}, each checked against the declaration of a
    kind among ``kinds`` that declares it (not the sparsity setting, which the bench sweeps)."""
    from toymodels.sae import SAE_KINDS

    given: dict = {}
    for item in items:
        name, sep, text = item.partition("=")
        declared = [h for h in (SAE_KINDS.get(k).hparam(name) for k in kinds) if h is not None]
        if not sep or not declared:
            parser.error(
                f"--ours: {item!r} is not NAME=VALUE with NAME a hyperparameter of "
                f"{', '.join(kinds)}"
            )
        if declared[0].sparsity:
            parser.error(f"--ours: {name} is the kinds' sparsity setting, which the bench sweeps")
        value: float | str
        try:
            value = float(text)
        except ValueError:
            value = text
        problem = declared[0].problem(value)
        if problem:
            parser.error(f"--ours: {name} {problem}")
        given[name] = declared[0].cast(value)
    return given


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="toymodels-bench sae", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=3000,
        help="training steps of every parity SAE (default %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=1024, help="batch (default %(default)s)")
    parser.add_argument(
        "--width", type=int, default=256, help="parity SAEs' width (default %(default)s)"
    )
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="Adam's learning rate (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=131_072,
        help="evaluation inputs, at least 100,000 (default %(default)s)",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated (default all six)"
    )
    parser.add_argument(
        "--n-saes", default="1,8,64", help="throughput's SAE counts (default %(default)s)"
    )
    parser.add_argument("--throughput-steps", type=int, default=200, help="(default %(default)s)")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--ours",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one of our kinds' hyperparameters away from its default, for every kind that "
        "declares it (repeatable; e.g. aux_coefficient=1, SAELens's α; codes=unscaled, "
        "BatchTopK's and Matryoshka's codes as before issue 21's follow-up)",
    )
    parser.add_argument(
        "--fold-b-dec",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ours encodes W_enc h - W_enc b_dec (SaeSpec.fold_b_dec, sae.fold_b_dec; the default); "
        "--no-fold-b-dec: W_enc (h - b_dec), the bits of before (other rounding)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="ours only, even where sae-lens is installed"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the tables"
    )
    args = parser.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in args.kinds if k not in KINDS]
    if bad:
        parser.error(f"--kinds: {bad[0]!r} is not one of {', '.join(KINDS)}")
    args.ours = parse_ours(parser, args.ours, args.kinds)
    try:
        args.n_saes = [int(v) for v in args.n_saes.split(",") if v]
    except ValueError:
        parser.error(f"--n-saes: expected comma-separated integers, got {args.n_saes!r}")
    for name in ("steps", "batch", "width", "throughput_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.n_saes or min(args.n_saes) < 1:
        parser.error("--n-saes: every count must be >= 1")
    if args.eval_samples < 100_000:
        parser.error("--eval-samples must be at least 100,000 (dead latents are counted on them)")
    if (
        max(
            (max(COEFFICIENTS[k]) for k in args.kinds if k in ("topk", "batchtopk", "matryoshka")),
            default=0,
        )
        > args.width
    ):
        parser.error("--width must be at least the largest k (8)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    with_reference = has_reference() and not args.no_reference
    out: dict = {
        "reference": "sae-lens" if with_reference else None,
        "ours_hparams": args.ours,
        "fold_b_dec": args.fold_b_dec,
    }
    if not with_reference:
        print(
            "toymodels-bench sae: SAELens is not installed (pip install -e '.[saelens]') or --no-reference: "
            "ours only",
            file=sys.stderr,
        )
    if not args.skip_parity:
        from toymodels.sae import saelens as core

        model = None
        if with_reference:
            from sae_lens.synthetic import SyntheticModel

            from sweeps.sae.saelens import _saelens_config, arrays_of_model

            model = SyntheticModel(_saelens_config(WORLD))
            source, world = core.build(arrays_of_model(model))
            note = (
                f"world: SAELens's generator, {WORLD} (SAELens defaults otherwise); both train on it, "
                f"width {args.width}, lr {args.lr}, batch {args.batch}, {args.steps} steps; scored on "
                f"{args.eval_samples:,} inputs"
            )
        else:
            source, world = our_world(WORLD["num_features"], WORLD["hidden_dim"], WORLD["seed"])
            note = (
                f"world: our build of SAELens's default recipe ({WORLD['num_features']} Zipf features in "
                f"{WORLD['hidden_dim']} dims; no SAELens installed: ours only), width {args.width}, lr {args.lr}, "
                f"batch {args.batch}, {args.steps} steps; scored on {args.eval_samples:,} inputs"
            )
        note += "\n" + DEFAULTS_NOTE
        if args.ours:
            note += "\nours away from its defaults: " + ", ".join(
                f"{k}={v}" for k, v in args.ours.items()
            )
        if not args.fold_b_dec:
            note += "\nours with --no-fold-b-dec (W_enc (h - b_dec), the bits of before)"
        inputs = evaluation_inputs(source, world, args.eval_samples)
        out["parity"] = parity(args, source, world, model, inputs)
        for row in out["parity"]:
            front = [
                r["saelens"]
                for r in out["parity"]
                if r["kind"] == row["kind"] and r["saelens"] is not None
            ]
            row["goal"] = goal(row["ours"], row["saelens"], front)
        out["parity_note"] = note
    if not args.skip_throughput:
        out["throughput"] = throughput(args, with_reference)
    if args.json:
        print(json.dumps(out))
        return 0
    if "parity" in out:
        print(format_parity(out["parity"], out["parity_note"]))
    if "throughput" in out:
        print(format_throughput(out["throughput"], args.throughput_steps, args.fold_b_dec))
    return 0
