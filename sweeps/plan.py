"""Config → the typed ``Plan``, once, at the edge: which job kind a config is, and its models.

``JOB_KINDS`` is the table of job kinds (``sweeps.jobs.kind.JobKind``): a config is planned by
the first kind that applies to it. Everything after the plan (``sweeps.jobs.make_chunks``, the
executors, ``run_chunk``, the rows) reads the plan and its chunks, never the config.

A new job kind is one file defining a ``JobKind`` (docs/architecture.md) and one line below; its
config section is one field of ``sweeps.config.Config`` (None when absent, which the config hash
leaves out, so that no stored sweep's hash changes).
"""

from __future__ import annotations

from typing import Any

from sweeps import resources
from sweeps.config import Config
from sweeps.jobs import Plan
from sweeps.jobs.devices import Placement
from sweeps.jobs.finite import FINITE
from sweeps.jobs.kind import JobKind
from sweeps.jobs.toy import FRESH
from sweeps.sae.job import SAE
from sweeps.spd.job import SPD

JOB_KINDS: tuple[JobKind[Any, Any], ...] = (SPD, SAE, FINITE, FRESH)


def job_kind_of(config: Config) -> JobKind[Any, Any]:
    """The job kind of ``config``: the first of ``JOB_KINDS`` that applies to it."""
    return next(kind for kind in JOB_KINDS if kind.applies(config))


def plan_sweep(config: Config, device: resources.Device | None = None) -> Plan[Any, Any]:
    """Every model of ``config`` as typed values. ``device``: where its chunks run (default: what
    ``config`` asks for, ``resources.chunk_device``), which sets chunk sizes and what cannot fit.
    Refuses, before building any model, a plan too large for the driver or a model that cannot fit
    its device (a ConfigError naming the key)."""
    job = job_kind_of(config)
    device = device or resources.chunk_device(config)
    units, carry = job.plan(config, device)
    return Plan(
        job=job,
        units=tuple(units),
        base_seed=config.sweep.base_seed,
        chunk_size=config.sweep.chunk_size,
        device=device,
        carry=carry,
        placement=Placement(config.sweep.devices, config.sweep.sharding),
    )
