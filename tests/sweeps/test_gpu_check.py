"""scripts/gpu-check --smoke: every stage of the GPU checks, at tiny sizes, on the CPU."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import REPO


@pytest.mark.reproduction
def test_gpu_check_smoke_runs_every_stage_and_writes_its_numbers(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [str(REPO / "scripts" / "gpu-check"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu-check.json").read_text())
    tms, dd = results["tms_phase_2d"], results["dd_paper_subset"]
    assert tms["models"] == 64 and tms["training_s"] > 0 and tms["model_steps_per_s"] > 0
    assert tms["agreement_with_theory"]["cells"] > 0  # from toymodels-figures' printed notes
    assert set(dd["test_loss"]) == {"10", "30"} and dd["steps"] == 50 and "bump_T" in dd
    assert results["bench"]["rows"][0]["ours_device"] == "cpu"
    (probe,) = results["finite_probe"]
    assert probe["points_per_piece"] == 1000 and probe["ms_per_step"] > 0  # the CPU's default piece
    assert "| run | wall s | training s |" in done.stdout
    (scaling,) = results["devices"]["scaling"]  # stage 5, smoke: one device in one process
    assert (scaling["where"], scaling["count"], scaling["chunks"]) == ("process", 1, 1)
    assert (
        scaling["model_steps_per_s"] > 0
        and "`tms_phase_2d_small` in one process, 1 device(s)" in done.stdout
    )
