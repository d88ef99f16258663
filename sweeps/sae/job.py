"""The SAE job kind: sparse autoencoders on a synthetic world's or a stored toy sweep's activations
(a config with an ``sae:`` section, ``sweeps.sae.config``). Its planner is ``sweeps.sae.plan``,
its program and rows ``sweeps.sae.execute``; ids, chunking, padding, the memory budget, running and
storing a chunk are the machinery every job kind shares (``sweeps.jobs``)."""

from __future__ import annotations

import dataclasses

from sweeps.jobs.kind import JobKind
from sweeps.sae import execute, plan
from sweeps.sae.config import row_axes, validate_sae
from sweeps.sae.plan import SaeGroup, SaePoint
from toymodels.sae.hyperparams import CODES

# SaeSpec fields added after the stores they would re-id: left out of a chunk id at these values
# (the bits those stores were trained with)
LATER_SPEC_FIELDS = {"fold_b_dec": False}
# A kind's static hyperparameters added after the stores they would re-id, likewise left out of
# SaeSpec.options in a chunk id at these values (BatchTopK's and Matryoshka's codes: stores of
# aab1d17 and before coded unscaled)
LATER_OPTIONS = {"codes": CODES.neutral}


def _id_fields(group: SaeGroup) -> dict:
    spec = dataclasses.asdict(group.spec)
    for name, value in LATER_SPEC_FIELDS.items():
        if spec.get(name) == value:
            del spec[name]
    spec["options"] = tuple(
        (name, value)
        for name, value in spec["options"]
        if name not in LATER_OPTIONS or LATER_OPTIONS[name] != value
    )
    return {
        "spec": spec,
        "source": repr(group.source),
        "world": group.world,
    }


def _user_kinds(group: SaeGroup) -> tuple:
    from sweeps.sae.toy import toy_kinds

    return toy_kinds(group.source, group.spec.kind)


def _carry(carry, points) -> dict:
    """The chunk's toy models' arrays, by uid ({} for worlds)."""
    wanted = {p.source_uid for p in points}
    return {uid: arrays for uid, arrays in carry.items() if uid in wanted}


SAE: JobKind[SaeGroup, SaePoint] = JobKind(
    name="sae",
    applies=lambda config: config.sae is not None,
    validate=validate_sae,
    plan=plan.plan_saes,
    working_set=plan.working_set,
    model_bytes=None,  # SAE chunks are sized by their working set on every device
    pad_to_one_worker=True,
    program=execute.program,
    checked=lambda result: (result.scores.loss, result.params),
    rows=execute.rows,
    id_fields=_id_fields,
    user_kinds=_user_kinds,
    carry=_carry,
    noun="SAE",
    columns={
        "kind": "text",
        "dict_size": "integer",
        "n_hidden": "integer",
        "W_dec": "matrix n_hidden×dict_size",
    },
    row_axes=row_axes,
    doc="sparse autoencoders on a world's or stored toy models' activations (toymodels.sae.train_saes)",
)
