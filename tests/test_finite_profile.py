"""scripts/finite_profile.py (docs/gpus.md, "Finite data, profiled"): refuses bad input before any
compute, and at a tiny size writes every timing and the compiled program it promises."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))
import finite_profile


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "--n, --T, --m, --steps and --reps must be ≥ 1"),
        (["--pieces", "8,x"], "--pieces: expected comma-separated integers, got '8,x'"),
        (["--pieces", "-1"], "--pieces: at least one size, each ≥ 0"),
    ],
)
def test_bad_input_is_refused_before_any_compute(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        finite_profile.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # compiles five programs, ~10 s of CPU
def test_a_tiny_profile_writes_its_timings_and_program(tmp_path, capsys):
    args = ["--n", "24", "--T", "40", "--pieces", "16", "--steps", "2", "--reps", "1"]
    assert finite_profile.main([*args, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "finite-profile.json").read_text())
    assert (row["B"], row["pieces"]) == (16, 3)
    for key in ("sample_ms", "grad_fused_ms", "grad_unfused_ms", "grad_recompute_ms", "loss_ms"):
        assert row[key] >= 0, key
    # a difference of two timed runs: at this size noise, so only a number
    assert math.isfinite(row["step_ms"])
    # the program's dense error of a piece (B × n) is among the arrays it reports
    assert "16,24" in row["grad_unfused_big_arrays"]
    assert "fusion" in (tmp_path / "grad-fused-piece16.hlo.txt").read_text()
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == row
