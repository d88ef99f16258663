"""Grid planning: config -> one ModelPoint per model -> chunks of same-shaped models.

Data flows one way: the planner builds plain numpy/dataclass payloads that any executor (in
process, Ray) can ship; it never trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import zlib
from dataclasses import dataclass

import numpy as np

from sweeps import resources
from sweeps.config import STATIC_AXES, Config, expand_axis, is_finite
from sweeps.config_kinds import data_spec_of, model_options, option_axes
from toymodels.data import importance_profile
from toymodels.finite import FiniteSpec, max_active_for, piece_layout
from toymodels.train import TrainSpec



@dataclass(frozen=True)
class ModelPoint:
    """One model: its grid coordinates, seed and the per-model values that follow from them."""

    coords: tuple[tuple[str, object], ...]  # (axis, value) in grid order
    seed: int
    uid: int  # stable 31-bit id: the model's PRNG stream is fold_in(base_seed, uid)
    density_F: tuple[float, ...]
    importance_F: tuple[float, ...]
    lr: float
    weight_decay: float
    order: int  # position in the full plan, for a stable row order in the store
    l1_hidden: float = 0.0
    capacity_feature: int = -1  # -1: no feature's capacity is held
    capacity_target: float = 1.0
    capacity_penalty: float = 0.0
    dataset_seed: int = 0  # finite data: the training set is a function of this alone
    mono_penalty: float = 0.0  # μ of μ·Σ_i C_i(1 − C_i)
    mono_start: int = 0  # the step from which that term is on


@dataclass(frozen=True)
class Chunk:
    """Same-shaped models trained by one compiled program; identified by a hash of its content."""

    id: str
    spec: TrainSpec | FiniteSpec
    base_seed: int
    points: tuple[ModelPoint, ...]
    pad_to: int  # train this many (repeating the last model) so every chunk of a shape compiles once
    # The user's own kinds (not built in) the chunk trains, carried to workers that never loaded
    # their plugin file (sweeps.plugins); not part of the chunk's id.
    kinds: tuple = ()

    @property
    def n_models(self) -> int:
        return len(self.points)


def grid_axes(config: Config) -> dict[str, list]:
    return {name: expand_axis(name, spec) for name, spec in config.sweep.grid.items()}


def model_uid(coords, seed: int) -> int:
    text = json.dumps({"coords": [[k, v] for k, v in coords], "seed": seed}, sort_keys=True)
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _uses(config: Config, axis: str, default_on: bool) -> bool:
    """Whether an optional loss term is on for some model: its config value or a grid axis."""
    return default_on or axis in config.sweep.grid


def _finite_spec_for(config: Config, static: dict) -> FiniteSpec:
    m, t, d = config.model, config.train, config.data
    n, T = static.get("n_features", m.n_features), static.get("n_train", d.n_train)
    n_test = t.eval_samples
    densities = expand_axis("density", config.sweep.grid["density"]) if "density" in config.sweep.grid else [d.density]
    # One K for the whole config, from its largest density (a static value per chunk must not
    # depend on which models share the chunk); a point overflows with probability < 1e-6.
    K = d.max_active or max_active_for(n, max(densities), T + n_test)
    return FiniteSpec(
        n_features=n, n_hidden=static.get("n_hidden", m.n_hidden), n_train=T,
        steps=static.get("steps", t.steps), warmup_steps=t.warmup_steps, b1=t.b1, b2=t.b2, eps=t.eps,
        model=static.get("model", m.kind), max_active=K, piece_size=t.piece_size, n_test=n_test,
        repeats=static.get("repeats", d.repeats), n_repeated=d.n_repeated, snapshot_every=t.snapshot_every,
        init=m.init, init_instances=m.init_instances, test_seed=t.eval_seed,
    )


def _spec_for(config: Config, static: dict) -> TrainSpec | FiniteSpec:
    if is_finite(config):
        return _finite_spec_for(config, static)
    m, t, d = config.model, config.train, config.data
    kind = static.get("model", m.kind)
    return TrainSpec(
        n_features=static.get("n_features", m.n_features),
        n_hidden=static.get("n_hidden", m.n_hidden),
        model=kind,
        model_options=model_options(config, kind, static),
        data=data_spec_of(config),
        batch_blocks=t.batch_blocks,
        shared_streams=d.streams == "seed",
        hidden_l1=_uses(config, "l1_hidden", t.l1_hidden > 0),
        capacity_penalty=any(_uses(config, axis, on) for axis, on in (
            ("capacity_feature", t.capacity_feature >= 0), ("capacity_penalty", t.capacity_penalty > 0))),
        mono_penalty=_uses(config, "mono_penalty", t.mono_penalty > 0),
        steps=static.get("steps", t.steps),
        batch_size=static.get("batch_size", t.batch_size),
        schedule=t.schedule,
        warmup_steps=t.warmup_steps,
        b1=t.b1,
        b2=t.b2,
        eps=t.eps,
        init=m.init,
        init_instances=m.init_instances,
        snapshot_every=t.snapshot_every,
        eval_samples=t.eval_samples,
        eval_seed=t.eval_seed,
    )


def _point(config: Config, coords: tuple, seed: int, n_features: int, order: int) -> ModelPoint:
    values = dict(coords)
    d, imp = config.data, config.data.importance
    density = values.get("density", d.density)
    density_F = [float(p) for p in density] if isinstance(density, (list, tuple)) else [float(density)] * n_features
    if "density_last" in values:  # the last feature's density, the others as configured
        density_F[-1] = float(values["density_last"])
    if "density_last_ratio" in values:  # the last feature's density as a multiple of its own
        density_F[-1] = float(values["density_last_ratio"]) * density_F[-1]
    importance_F = importance_profile(
        n_features, imp.kind, float(values.get("importance_decay", imp.decay)), imp.ratio, tuple(imp.values)
    )
    if "importance_last" in values:  # the last feature's importance relative to the profile's first
        importance_F[-1] = float(values["importance_last"])
    return ModelPoint(
        coords=coords,
        seed=seed,
        uid=model_uid(coords, seed),
        density_F=tuple(density_F),
        importance_F=tuple(float(v) for v in importance_F),
        lr=float(values.get("lr", config.train.lr)),
        weight_decay=float(values.get("weight_decay", config.train.weight_decay)),
        order=order,
        l1_hidden=float(values.get("l1_hidden", config.train.l1_hidden)),
        capacity_feature=int(values.get("capacity_feature", config.train.capacity_feature)),
        capacity_target=float(values.get("capacity_target", config.train.capacity_target)),
        capacity_penalty=float(values.get("capacity_penalty", config.train.capacity_penalty)),
        dataset_seed=int(values.get("dataset_seed", config.data.dataset_seed)),
        mono_penalty=float(values.get("mono_penalty", config.train.mono_penalty)),
        mono_start=int(values.get("mono_start", config.train.mono_start)),
    )


def plan_models(config: Config, device: resources.Device | None = None) -> list[tuple[TrainSpec, ModelPoint]]:
    """The grid product × seeds, in grid order (last axis fastest, then seed). Refuses, before
    building any model, a plan too large for the driver or a shape that cannot fit ``device``
    (default: where ``config``'s chunks run, ``resources.chunk_device``)."""
    if config.sae is not None:  # an SAE sweep: its points are SAEs (sweeps.sae.plan)
        from sweeps.sae.plan import plan_saes

        return plan_saes(config)
    axes = grid_axes(config)
    resources.check_plan_size(config, {name: len(values) for name, values in axes.items()})
    device = device or resources.chunk_device(config)
    names = list(axes)
    static_axes = STATIC_AXES + option_axes(config)
    out = []
    seen: dict[int, tuple] = {}
    checked: set = set()
    for values in itertools.product(*axes.values()):
        coords = tuple(zip(names, values))
        static = {k: v for k, v in coords if k in static_axes}
        spec = _spec_for(config, static)
        if spec not in checked:
            resources.check_spec(spec, device)
            checked.add(spec)
        for seed in range(config.sweep.seeds):
            point = _point(config, coords, seed, spec.n_features, len(out))
            if point.uid in seen:
                raise ValueError(f"model id collision between {seen[point.uid]} and {(coords, seed)}")
            seen[point.uid] = (coords, seed)
            out.append((spec, point))
    return out


# CPU chunks: working-set budget of one chunk (bytes) and most models per chunk when
# sweep.chunk_size is 0 (GPU chunks: resources.auto_chunk_size, from the card's memory).
CHUNK_MEMORY_BUDGET = 256 * 2**20
MAX_AUTO_CHUNK = 4096


def auto_chunk_size(spec: TrainSpec | FiniteSpec, device: resources.Device | None = None) -> int:
    """Most models per chunk when sweep.chunk_size is 0: on a GPU as many as fill its memory
    share; on a CPU (or ``device`` None) as many as keep a step's working set near the caches."""
    if device is not None and device.is_gpu:
        return resources.auto_chunk_size(spec, device)
    if isinstance(spec, FiniteSpec):
        # Per model: a piece's dense outputs and their gradients, and the sparse datasets.
        B, _ = piece_layout(spec.n_train, spec.piece_size, "cpu")
        per_model = 4 * 6 * B * spec.n_features + 8 * (spec.n_train + spec.n_test) * spec.K
        return int(max(1, min(MAX_AUTO_CHUNK, CHUNK_MEMORY_BUDGET // per_model)))
    # Per model and step: uniforms, inputs, outputs and their gradients (~6 batch×n float32 arrays),
    # and the evaluation batch.
    per_model = 4 * 6 * max(spec.batch_size, 4096) * spec.n_features
    return int(max(1, min(MAX_AUTO_CHUNK, CHUNK_MEMORY_BUDGET // per_model)))


def chunk_id(spec: TrainSpec, base_seed: int, points) -> str:
    payload = json.dumps(
        {"spec": dataclasses.asdict(spec), "base_seed": base_seed, "points": [dataclasses.asdict(p) for p in points]},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_chunks(config: Config, models, min_chunks: int = 1, device: resources.Device | None = None) -> list[Chunk]:
    """Split models into chunks of one TrainSpec each, balanced in size.

    ``min_chunks`` asks for at least that many chunks per shape (so that every worker has one),
    as long as chunks stay non-empty. Chunk sizes (sweep.chunk_size 0) are chosen for ``device``
    (default: where ``config``'s chunks run): on a GPU, few large chunks, one per worker when they fit.
    """
    from toymodels.plugins import kinds_used

    if config.sae is not None:  # chunks of same-shaped SAEs (sweeps.sae.plan)
        from sweeps.sae.plan import make_sae_chunks

        return make_sae_chunks(config, models, min_chunks)
    by_spec: dict[TrainSpec, list[ModelPoint]] = {}
    for spec, point in models:
        by_spec.setdefault(spec, []).append(point)
    device = device or resources.chunk_device(config)
    chunks = []
    for spec, points in by_spec.items():
        kinds = kinds_used([spec.model], [spec.data.kind] if isinstance(spec, TrainSpec) else [])
        cap = config.sweep.chunk_size or auto_chunk_size(spec, device)
        n_chunks = min(len(points), max(-(-len(points) // cap), min_chunks))
        size = -(-len(points) // n_chunks)
        if config.sweep.chunk_size:
            resources.check_chunk(spec, size, device)
        for start in range(0, len(points), size):
            part = tuple(points[start : start + size])
            chunks.append(Chunk(chunk_id(spec, config.sweep.base_seed, part), spec, config.sweep.base_seed, part, size,
                                kinds))
    return chunks


def hparams_arrays(chunk: Chunk) -> dict[str, np.ndarray]:
    """The chunk's per-model values as arrays, padded to ``pad_to`` by repeating the last model."""
    points = list(chunk.points) + [chunk.points[-1]] * (chunk.pad_to - len(chunk.points))
    return {
        "uid": np.array([p.uid for p in points], np.uint32),
        "seed": np.array([p.seed for p in points], np.uint32),
        "density_F": np.array([p.density_F for p in points], np.float32),
        "importance_F": np.array([p.importance_F for p in points], np.float32),
        "lr": np.array([p.lr for p in points], np.float32),
        "weight_decay": np.array([p.weight_decay for p in points], np.float32),
        "l1_hidden": np.array([p.l1_hidden for p in points], np.float32),
        # a held feature as a one-hot row (all zeros: none held)
        "capacity_onehot_F": np.array([np.arange(len(p.density_F)) == p.capacity_feature for p in points], np.float32),
        "capacity_target": np.array([p.capacity_target for p in points], np.float32),
        "capacity_penalty": np.array([p.capacity_penalty for p in points], np.float32),
        "dataset_seed": np.array([p.dataset_seed for p in points], np.uint32),
        "mono_penalty": np.array([p.mono_penalty for p in points], np.float32),
        "mono_start": np.array([p.mono_start for p in points], np.uint32),
    }

