"""scripts/spd-bench (docs/results/spd.md, Speed). Its count of a whole SPD step takes the compiled
program's count as initialisation + one step + evaluation, which holds only while XLA's cost
analysis counts a scan's body once, whatever its length: checked here on a tiny scan (compiling
the SPD program itself costs ~20 s a time, so the bench's run is its own check)."""

from __future__ import annotations

import importlib.util
from importlib.machinery import SourceFileLoader

import jax
import jax.numpy as jnp

from tests.helpers import REPO

_loader = SourceFileLoader("spd_bench", str(REPO / "scripts" / "spd-bench"))
_spec = importlib.util.spec_from_loader("spd_bench", _loader)
assert _spec is not None
bench = importlib.util.module_from_spec(_spec)
_loader.exec_module(bench)


def test_xla_counts_a_scan_body_once():
    def counts(steps):
        def run(x):
            body = lambda c, t: (jnp.tanh(c @ c.T) + t, None)
            return jax.lax.scan(body, x, jnp.arange(steps, dtype=jnp.float32))[0]

        return bench._counts(jax.jit(run).lower(jnp.ones((8, 8))).compile().cost_analysis())

    one, many = counts(2), counts(50)
    assert one["flops"] > 8 * 8 * 8  # at least one step's product
    assert many["flops"] == one["flops"]  # 25x the steps, the same count
    assert many["bytes accessed"] < 1.5 * one["bytes accessed"]  # (the steps' index array grows)


def test_bad_input_is_refused_before_any_compute(capsys):
    assert bench.main(["--decompositions", "0"]) == 2
    assert bench.main(["--variants", "tms,cc"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "spd-bench: --decompositions: must be >= 1, got 0",
        "spd-bench: --variants: choose from tms, tms_id, got 'tms,cc'",
    ]
