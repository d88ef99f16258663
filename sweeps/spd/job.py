"""The SPD job kind: Stochastic Parameter Decomposition (``toymodels.spd``; docs/spd.md) of a stored toy
sweep's models, a config with an ``spd:`` section (``sweeps.spd.config``).

Its units are decompositions: every selected toy model × every SPD grid point × ``sweep.seeds``
decomposition seeds. A chunk is one ``toymodels.spd.decompose_many`` program over decompositions
that share an ``SpdSpec`` and a target shape (model kind, n, m, identity layer, data); the toy
model's weights, the learning rate and the loss coefficients are per-decomposition arrays. Its
rows are scored against the toy model's ground truth (MMCS, ML2R, whether every feature is
recovered). Ids, chunking, padding, running on Ray or here, the non-finite check and the store
are the machinery every job kind shares (``sweeps.jobs``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sweeps.jobs.chunks import identity_columns, model_uid
from sweeps.jobs.kind import Chunk, ChunkProgram, JobKind
from sweeps.spd.config import SPD_PER_AXES, SPD_STATIC_AXES, spd_values, validate_spd
from toymodels.data import DataSpec
from toymodels.registry import ConfigError

if TYPE_CHECKING:
    from toymodels.spd import SpdSpec

# Toy model kinds SPD has a target for (``toymodels.spd.target``).
KINDS = ("relu", "residual_mlp")
# Stored toy columns copied beside each decomposition's scores (as toy_<name>); a toy grid axis is
# copied under its own name unless an SPD column has it (then toy_<axis>).
TOY_VALUES = ("seed", "loss", "model", "data_kind", "n_features", "n_hidden")
SCORES = (
    "mmcs",
    "ml2r",
    "recovered",
    "exact",
    "probe_ci",
    "loss",
    "faithfulness_loss",
    "recon_loss",
    "layerwise_loss",
    "minimality_loss",
    "recon_ci",
    "recon_unmasked",
)


@dataclass(frozen=True)
class TargetShape:
    """What ``toymodels.spd.target`` needs to build a toy model's ``Target``: hashable, so that
    decompositions of one shape share a chunk and a compiled program."""

    model: str
    n_features: int
    n_hidden: int
    identity: bool = False
    layers: int = 1
    data: DataSpec = DataSpec()


@functools.cache
def target_of(shape: TargetShape):
    """One ``Target`` object per shape and process (``decompose_many`` compiles once per target)."""
    from toymodels.spd import residual_mlp, tms

    if shape.model == "relu":
        return tms(shape.n_features, shape.n_hidden, shape.identity, data=shape.data)
    return residual_mlp(shape.n_features, shape.n_hidden, shape.layers, data=shape.data)


@dataclass(frozen=True)
class SpdGroup:
    """What the decompositions of one chunk share: the compiled program's static values."""

    spec: SpdSpec
    target: TargetShape

    @property
    def steps(self) -> int:
        return self.spec.steps


@dataclass(frozen=True)
class SpdPoint:
    """One decomposition: its SPD grid coordinates, seed, the toy model's uid and stored values, and
    its per-decomposition hyperparameters."""

    coords: tuple[tuple[str, object], ...]
    seed: int
    uid: int
    order: int
    source_uid: int  # the toy model decomposed
    lr: float
    faithfulness: float
    recon: float
    layerwise: float
    minimality: float
    p: float
    source: tuple[tuple[str, object], ...]  # the toy model's grid coordinates and stored values


def _read(coords: tuple, config, axis: str):
    return dict(coords).get(axis, spd_values(config, axis)[0])


def _grid(config) -> list[tuple]:
    from sweeps.config import expand_axis

    axes = {name: expand_axis(name, spec) for name, spec in config.sweep.grid.items()}
    return [tuple(zip(axes, values)) for values in itertools.product(*axes.values())]


def _layers(row: pd.Series, stored: dict) -> int:
    if "layers" in row and not pd.isna(row["layers"]):
        return int(row["layers"])
    return int(stored.get("model", {}).get("options", {}).get("layers", 1))


def toy_models(config) -> list[tuple[pd.Series, TargetShape, tuple]]:
    """(stored row, target shape without the identity layer, values copied to the rows) of every
    selected toy model; a model kind SPD has no target for is a ConfigError naming spd.toy.models."""
    from sweeps.sae.toy import stored_toys

    models, stored, data = stored_toys(config, "spd")
    bad = sorted(set(models["model"]) - set(KINDS))
    if bad:
        raise ConfigError(
            "spd.toy.models",
            f"SPD has no target for model kind {bad[0]!r}; kinds with one: "
            f"{', '.join(KINDS)} (select them, e.g. \"model == 'relu'\")",
        )
    axes = list(stored.get("sweep", {}).get("grid", {}))
    taken = set(SPD_PER_AXES + SPD_STATIC_AXES + SCORES + TOY_VALUES) | {
        "target",
        "gate_hidden",
        "mmcs_chance",
    }
    out = []
    for _, row in models.iterrows():
        copied = {("toy_" + a if a in taken else a): row[a] for a in axes if a in row}
        copied.update({f"toy_{name}": row[name] for name in TOY_VALUES})
        info = tuple((k, v.item() if isinstance(v, np.generic) else v) for k, v in copied.items())
        shape = TargetShape(
            str(row["model"]),
            int(row["n_features"]),
            int(row["n_hidden"]),
            layers=_layers(row, stored) if row["model"] == "residual_mlp" else 1,
            data=data,
        )
        out.append((row, shape, info))
    return out


def _spec(config, coords: tuple):
    from toymodels.spd import SpdSpec

    s = config.spd
    return SpdSpec(
        C=int(_read(coords, config, "C")),
        gate_hidden=s.gate_hidden,
        steps=int(_read(coords, config, "steps")),
        batch_size=int(_read(coords, config, "batch_size")),
        schedule=s.schedule,
        mask_samples=s.mask_samples,
        approximate_gelu=s.approximate_gelu,
        per_target=True,
        tied_updates=s.tied_updates,
        batch_blocks=s.batch_blocks,
        eval_batch=s.eval_batch,
    )


def plan_spd(config, device=None) -> tuple[list[tuple[SpdGroup, SpdPoint]], dict]:
    """Every decomposition: grid point × toy model × seed (the last fastest), in that order; and
    what chunks carry: each toy model's arrays by its uid."""
    from sweeps.config import expand_axis
    from sweeps.resources import check_plan_size
    from sweeps.sae.toy import toy_carry

    check_plan_size(config, {a: len(expand_axis(a, v)) for a, v in config.sweep.grid.items()})
    toys = toy_models(config)
    out: list[tuple[SpdGroup, SpdPoint]] = []
    for coords in _grid(config):
        identity = bool(_read(coords, config, "identity"))
        spec = _spec(config, coords)
        values = {name: float(_read(coords, config, name)) for name in SPD_PER_AXES}
        for row, shape, info in toys:
            if identity and shape.model != "relu":
                raise ConfigError(
                    "spd.identity",
                    f"the identity layer (TMS+ID) applies to relu models only, not "
                    f"{shape.model!r}; select relu models with spd.toy.models",
                )
            group = SpdGroup(spec, dataclasses.replace(shape, identity=identity))
            at = coords + (("toy_uid", int(row["uid"])),)
            for seed in range(config.sweep.seeds):
                out.append(
                    (
                        group,
                        SpdPoint(
                            coords,
                            seed,
                            model_uid(at, seed),
                            len(out),
                            int(row["uid"]),
                            **values,
                            source=info,
                        ),
                    )
                )
    return out, toy_carry(config, "spd")


def working_set(group: SpdGroup) -> int:
    """Per decomposition and step: the gates' C×d_gate×B intermediates and their gradients (~4
    float32 arrays per site, the batch in ``batch_blocks`` blocks), and the masked forward passes."""
    spec, target = group.spec, target_of(group.target)
    width = spec.batch_size // spec.batch_blocks
    sites = len(target.sites)
    return 4 * width * sites * spec.C * (4 * spec.gate_hidden + 2 * (1 + sites))


def program(chunk: Chunk[SpdGroup, SpdPoint]) -> ChunkProgram:
    """Every decomposition of ``chunk`` (padded) in one compiled program; ``context``: the toy
    models' arrays."""
    from sweeps.sae.toy import toy_source_arrays
    from toymodels.spd import decompose_many, hparams, spd_keys

    points = chunk.padded()
    arrays = toy_source_arrays(chunk.carry, points)
    init, data = spd_keys(chunk.base_seed, [p.source_uid for p in points], [p.seed for p in points])
    hp = hparams(len(points), **{name: [getattr(p, name) for p in points] for name in SPD_PER_AXES})
    fn = functools.partial(decompose_many, chunk.spec.spec, target_of(chunk.spec.target))
    return ChunkProgram(fn, (init, hp, arrays, data), (0, 0, 0, 0), context=arrays)


def _blob(params: dict, i: int) -> bytes:
    """One decomposition's subcomponents and importance MLPs as safetensors bytes (names joined by
    '/')."""
    from safetensors.numpy import save

    flat = {}

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}/{k}" if path else str(k))
        else:
            flat[path] = np.array(np.asarray(node)[i], np.float32, order="C")

    walk(params, "")
    return save(flat)


def rows(
    chunk: Chunk[SpdGroup, SpdPoint], program: ChunkProgram, result, seconds: float
) -> pd.DataFrame:
    from toymodels.spd.metrics import chance_mmcs

    spec, shape = chunk.spec.spec, chunk.spec.target
    target = target_of(shape)
    s = result.scores
    scored = [target.site(name) for name in target.scored]
    chance = float(np.mean([chance_mmcs(site.d_out, spec.C) for site in scored]))
    every = max(spec.steps // spec.curve_points, 1)
    out = []
    for i, p in enumerate(chunk.points):
        curve = {name: np.asarray(v[i], np.float64) for name, v in result.curve.items()}
        total = (
            p.faithfulness * curve["faithfulness"]
            + p.recon * curve["recon"]
            + p.minimality * curve["minimality"]
            + p.layerwise * curve.get("layerwise", 0.0)
        )
        row = identity_columns(chunk, p, between=p.source)
        row.update(
            source_uid=p.source_uid,
            target=target.name,
            identity=shape.identity,
            C=spec.C,
            gate_hidden=spec.gate_hidden,
            steps=spec.steps,
            batch_size=spec.batch_size,
            **{name: getattr(p, name) for name in SPD_PER_AXES},
            mmcs=float(np.mean(s.mmcs_P[i])),
            ml2r=float(np.mean(s.ml2r_P[i])),
            mmcs_chance=chance,
            recovered=bool(s.recovered[i]),
            exact=bool(np.all(s.exact_P[i])),
            probe_ci=float(np.mean(s.probe_ci_P[i])),
            loss=float(s.loss[i]),
            faithfulness_loss=float(s.faithfulness[i]),
            recon_loss=float(s.recon[i]),
            layerwise_loss=float(s.layerwise[i]),
            minimality_loss=float(s.minimality[i]),
            recon_ci=float(s.recon_ci[i]),
            recon_unmasked=float(s.recon_unmasked[i]),
            sites=",".join(site.name for site in target.sites),
            scored=",".join(target.scored),
            n_alive=np.asarray(s.n_alive_S[i]).astype(int).tolist(),
            l0=np.asarray(s.l0_S[i]).tolist(),
            mmcs_sites=np.asarray(s.mmcs_P[i]).tolist(),
            ml2r_sites=np.asarray(s.ml2r_P[i]).tolist(),
            best=np.asarray(s.best_PxF[i]).astype(int).tolist(),
            params=_blob(result.params, i),
            snap_step=[every * (j + 1) for j in range(len(total))],
            snap_loss=total.tolist(),
            train_seconds=seconds / chunk.n_models,
        )
        out.append(row)
    return pd.DataFrame(out)


def _id_fields(group: SpdGroup) -> dict:
    return {"spec": dataclasses.asdict(group.spec), "target": repr(group.target)}


def _user_kinds(group: SpdGroup) -> tuple:
    from toymodels.plugins import kinds_used

    return kinds_used([group.target.model], [group.target.data.kind])


def _carry(carry, points) -> dict:
    wanted = {p.source_uid for p in points}
    return {uid: arrays for uid, arrays in carry.items() if uid in wanted}


SPD: JobKind[SpdGroup, SpdPoint] = JobKind(
    name="spd",
    # What every stored decomposition must have (a chunk without them is set aside and retrained).
    columns={"target": "text", "C": "integer", "loss": "finite", "mmcs": "finite"},
    applies=lambda config: getattr(config, "spd", None) is not None,
    validate=validate_spd,
    plan=plan_spd,
    working_set=working_set,
    model_bytes=None,  # sized by the working set on every device
    pad_to_one_worker=True,
    program=program,
    checked=lambda result: (result.scores.loss, result.params),
    rows=rows,
    id_fields=_id_fields,
    user_kinds=_user_kinds,
    carry=_carry,
    noun="decomposition",
    doc="Stochastic Parameter Decomposition of stored toy models, scored against their features "
    "(toymodels.spd.decompose_many)",
)
