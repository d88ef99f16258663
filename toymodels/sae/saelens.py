"""SAELens interop without SAELens: its synthetic worlds as a source of activations, and our SAEs
in its on-disk format (docs/saes/interop.md).

**Worlds.** A SAELens synthetic model (``sae_lens.synthetic.SyntheticModel``, 6.54) is saved as a
directory: ``synthetic_model_config.json`` (its ``SyntheticModelConfig``),
``synthetic_model.safetensors`` (``feature_vectors`` N×H, ``bias`` H, ``firing_probabilities`` N
after the hierarchy's compensation, and ``correlation_factor`` N×R, ``correlation_diag`` N when
correlated) and ``hierarchy.json`` (its forest). The magnitudes are not saved: SAELens
regenerates them from the config (a constant, a linear or exponential ramp, or a folded normal
drawn by torch from seed + 1 and seed + 2). ``read_synthetic_model`` reads such a directory with
``safetensors.numpy`` and ``json`` alone: every array bit for bit, the ramps computed as torch
computes them; only folded-normal magnitudes need torch (``NeedsReference``).

Per input SAELens samples, and ``SaelensSource`` draws from the same distribution (with our own
random streams, so the same distribution, not the same samples):

1. **Firing.** Independent Bernoulli(p_i), or a Gaussian copula g = Φ r + √d ⊙ η (Φ the
   correlation factor, d its diagonal) firing where g_i > Φ⁻¹(1 − p_i): ``worlds.firing``.
2. **Magnitudes.** ReLU(μ_i + σ_i·N(0, 1)): ``worlds.magnitudes``'s ``normal``.
3. **Hierarchy**, level by level from the roots: a child whose parent is silent (value 0) is
   silenced, or with ``scale_children_by_parent`` multiplied by its parent's value over the
   parent's μ; among the firing children of a mutually exclusive parent one, chosen uniformly,
   survives (the choice made before the children are gated, as SAELens does; equivalent, since a
   firing child of a firing parent is never silenced by the gate). Trees may be irregular (random
   branching), organisational nodes without a feature are skipped to their feature ancestor, and
   exclusion and rescaling are per parent: ``apply_forest``.
4. h = F x + b.

**SAEs.** SAELens saves an SAE as ``cfg.json`` (its ``SAEConfig.to_dict()``, with
``architecture``) and ``sae_weights.safetensors`` (W_enc d_in×d_sae, W_dec d_sae×d_in, b_dec and
the architecture's own tensors); ``to_saelens`` maps each of our kinds to the inference
architecture that encodes exactly as ours does at evaluation (``EXPORTS``).

No torch, no sae-lens here: numpy, safetensors' numpy API and JAX.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from toymodels import rng
from toymodels.sae.hyperparams import CODES
from toymodels.sae.worlds import World, WorldSource, firing, magnitudes, uniform_rows

CONFIG_FILE = "synthetic_model_config.json"
WEIGHTS_FILE = "synthetic_model.safetensors"
HIERARCHY_FILE = "hierarchy.json"
SAE_CFG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
# The SAELens version whose formats this module reads and writes.
SAELENS_FORMAT = "6.54.0"


class NeedsReference(ValueError):
    """What a world needs that only torch or sae-lens can compute (the ``saelens`` extra)."""


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticArrays:
    """Everything that fixes a SAELens synthetic model's distribution, as numpy arrays."""

    config: dict  # its SyntheticModelConfig.to_dict()
    feature_vectors_NxH: np.ndarray
    bias_H: np.ndarray
    firing_probabilities_N: np.ndarray  # after the hierarchy's compensation (what it samples with)
    mean_N: np.ndarray  # mean firing magnitudes μ
    std_N: np.ndarray  # their spread σ
    correlation_factor_NxR: np.ndarray | None = None
    correlation_diag_N: np.ndarray | None = None
    hierarchy: dict | None = None  # {"roots": [node dicts]}, as hierarchy.json


# --- reading a saved synthetic model ----------------------------------------------------------


def is_saved_model(path) -> bool:
    path = Path(path).expanduser()
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_synthetic_model(path, draw=None) -> SyntheticArrays:
    """A saved SAELens synthetic model directory, read with ``safetensors.numpy`` and ``json``.
    Magnitudes that SAELens draws at random (folded normal) come from ``draw(value, n, seed)``;
    without it they raise ``NeedsReference``."""
    from safetensors.numpy import load_file

    path = Path(path).expanduser()
    config = json.loads((path / CONFIG_FILE).read_text())
    weights = load_file(str(path / WEIGHTS_FILE))
    n = int(config["num_features"])
    hierarchy_path = path / HIERARCHY_FILE
    hierarchy = json.loads(hierarchy_path.read_text()) if hierarchy_path.is_file() else None
    base_seed = config.get("seed")
    return SyntheticArrays(
        config=config,
        feature_vectors_NxH=weights["feature_vectors"],
        bias_H=weights["bias"],
        firing_probabilities_N=weights["firing_probabilities"],
        mean_N=magnitudes_of(
            config.get("mean_firing_magnitudes", 1.0),
            n,
            "mean_firing_magnitudes",
            None if base_seed is None else base_seed + 2,
            draw,
        ),
        std_N=magnitudes_of(
            config.get("std_firing_magnitudes", 0.0),
            n,
            "std_firing_magnitudes",
            None if base_seed is None else base_seed + 1,
            draw,
        ),
        correlation_factor_NxR=weights.get("correlation_factor"),
        correlation_diag_N=weights.get("correlation_diag"),
        hierarchy=hierarchy,
    )


def _linspace32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 on the CPU: start + i·step for the first half, end − (n−1−i)·step
    for the rest, step = (end − start)/(n − 1), all in float32."""
    start32, end32 = np.float32(start), np.float32(end)
    step = np.float32((end32 - start32) / np.float32(steps - 1))
    i = np.arange(steps)
    half = steps // 2
    low = start32 + step * i.astype(np.float32)
    high = end32 - step * (steps - 1 - i).astype(np.float32)
    return np.where(i < half, low, high).astype(np.float32)


def magnitudes_of(value, n: int, key: str, seed: int | None, draw=None) -> np.ndarray:
    """SAELens's per-feature magnitudes (``generate_magnitudes``, seeded by the model's seed + 2 for
    the means and + 1 for the spreads): a number, ``constant``, ``linear`` (torch.linspace) or
    ``exponential`` (start·(end/start)^t) here; a ``folded_normal`` by ``draw(value, n, seed)``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.full(n, value, np.float32)
    if not isinstance(value, dict) or "generator_name" not in value:
        raise ValueError(
            f"{key}: expected a number or a magnitude config with generator_name, got {value!r}"
        )
    name = value["generator_name"]
    if name == "constant":
        return np.full(n, value.get("value", 1.0), np.float32)
    if name in ("linear", "exponential"):
        start, end = float(value["start"]), float(value["end"])
        if n == 1:
            return np.array([start], np.float32)
        if name == "linear":
            return _linspace32(start, end, n)
        t = _linspace32(0.0, 1.0, n)
        return (np.float32(start) * np.power(np.float32(end / start), t, dtype=np.float32)).astype(
            np.float32
        )
    if name == "folded_normal":
        if draw is not None:
            return np.asarray(draw(value, n, seed), np.float32)
        raise NeedsReference(
            f"{key} is a folded normal, which SAELens draws with torch's generator from seed "
            f"{seed} and does not save; reading it needs the saelens extra "
            "(pip install -e '.[saelens]')"
        )
    raise ValueError(
        f"{key}: unknown magnitude generator {name!r} (constant, linear, exponential, folded_normal)"
    )


# --- the hierarchy as arrays -------------------------------------------------------------------


def forest_arrays(hierarchy: dict | None, n: int) -> dict[str, np.ndarray]:
    """SAELens's forest (``hierarchy.json``) as per-feature arrays, walked breadth-first as SAELens
    does: ``parent_N`` the nearest ancestor with a feature (−1: none), ``level_N`` the node's depth
    (organisational nodes count), ``group_N`` the mutually exclusive sibling group (−1: none),
    ``rescale_N`` whether the node's parent scales it by the parent's value over its mean."""
    parent, level = np.full(n, -1, np.int32), np.zeros(n, np.int32)
    group, rescale = np.full(n, -1, np.int32), np.zeros(n, bool)
    if not hierarchy or not hierarchy.get("roots"):
        return dict(parent_N=parent, level_N=level, group_N=group, rescale_N=rescale)
    seen, n_groups = set(), 0
    queue = deque((root, -1, 0, False, -1) for root in hierarchy["roots"])
    while queue:
        node, ancestor, depth, scaled, group_id = queue.popleft()
        feature = node.get("feature_index")
        children = node.get("children") or []
        if feature is not None:
            if not 0 <= feature < n or feature in seen:
                raise ValueError(
                    f"hierarchy: feature_index {feature} is outside 0..{n - 1} or appears twice"
                )
            seen.add(feature)
            parent[feature], level[feature], rescale[feature], group[feature] = (
                ancestor,
                depth,
                scaled,
                group_id,
            )
        child_group = -1
        if (
            node.get("mutually_exclusive_children")
            and sum(c.get("feature_index") is not None for c in children) >= 2
        ):
            child_group, n_groups = n_groups, n_groups + 1
        for child in children:
            queue.append(
                (
                    child,
                    feature if feature is not None else ancestor,
                    depth + 1,
                    bool(node.get("scale_children_by_parent")),
                    child_group,
                )
            )
    return dict(parent_N=parent, level_N=level, group_N=group, rescale_N=rescale)


# --- the world as a source of activations ------------------------------------------------------


@struct.dataclass
class SaelensWorld:
    base: (
        World  # directions, bias, probabilities, copula, magnitudes (μ: scale_N, σ: std_N), parents
    )
    level_N: jax.Array  # int32
    group_N: jax.Array  # int32
    rescale_N: jax.Array  # bool


@dataclasses.dataclass(frozen=True)
class SaelensSource:
    """The static part of a SAELens world: shapes, whether it is correlated, how deep its forest is
    and which of exclusion and rescaling it uses (the compiled program's branches)."""

    n_features: int
    n_hidden: int
    correlated: bool = False
    levels: int = 0  # the forest's depth below the roots (0: no hierarchy)
    exclusive: bool = False
    rescale: bool = False

    @property
    def base(self) -> WorldSource:
        return WorldSource(
            self.n_features,
            self.n_hidden,
            firing="correlated" if self.correlated else "independent",
            magnitude="normal",
        )

    @property
    def n_true(self) -> int:
        return self.n_features

    @property
    def has_hierarchy(self) -> bool:
        return self.levels > 0

    def stream(self, key: jax.Array) -> jax.Array:
        return rng.key_words(key)

    def draw(self, world: SaelensWorld, words: jax.Array, t, batch_size: int) -> jax.Array:
        rows = sum(uniform_rows(self.base, world.base.factor_NxR.shape[1]).values())
        return rng.uniform_pairs(words, jnp.asarray(t, jnp.uint32), rows, batch_size)

    def inputs(self, world: SaelensWorld, packed: jax.Array) -> tuple[jax.Array, jax.Array]:
        base, w = self.base, world.base
        rows = uniform_rows(base, w.factor_NxR.shape[1])
        u_RxB = rng.unpack(packed, sum(rows.values()))
        n = self.n_features
        fire_NxB, score_NxB = firing(base, w, u_RxB[:n], u_RxB[2 * n :])
        x_NxB = jnp.where(fire_NxB, magnitudes(base, w, u_RxB[n : 2 * n]), 0.0)
        if self.levels:
            x_NxB = apply_forest(self, world, x_NxB, score_NxB)
        return x_NxB, w.F_HxN @ x_NxB + w.bias_H[:, None]

    def sample(self, world, words, t, batch_size: int):
        return self.inputs(world, self.draw(world, words, t, batch_size))

    def truth(self, world: SaelensWorld) -> jax.Array:
        return world.base.F_HxN

    def represented(self, world: SaelensWorld) -> jax.Array:
        return jnp.linalg.norm(world.base.F_HxN, axis=0) > 0

    def parents(self, world: SaelensWorld) -> jax.Array:
        return world.base.parent_N

    def pairs(self, world: SaelensWorld) -> jax.Array:
        return world.base.pairs_Px2


def apply_forest(
    source: SaelensSource, world: SaelensWorld, x_NxB: jax.Array, score_NxB: jax.Array
) -> jax.Array:
    """The hierarchy of any SAELens forest (module docstring, step 3), one level at a time so that
    a child sees its parent's final value. Exclusive siblings keep the one with the largest score
    (given that it fires, U[0, 1) and independent of its siblings: a uniform choice)."""
    w = world.base
    n = source.n_features
    has_parent_N = w.parent_N >= 0
    parent_N = jnp.maximum(w.parent_N, 0)
    in_group_N = world.group_N >= 0
    group_N = jnp.maximum(world.group_N, 0)
    for level in range(1, source.levels + 1):
        at_Nx1 = (world.level_N == level)[:, None]
        parent_NxB = x_NxB[parent_N]
        alive_NxB = at_Nx1 & (x_NxB > 0) & (~has_parent_N[:, None] | (parent_NxB > 0))
        if source.exclusive:
            score = jnp.where(alive_NxB & in_group_N[:, None], score_NxB, -1.0)
            best_GxB = jax.ops.segment_max(score, group_N, num_segments=n)
            alive_NxB = alive_NxB & (~in_group_N[:, None] | (score >= best_GxB[group_N]))
        value_NxB = x_NxB
        if source.rescale:
            scaled_Nx1 = (world.rescale_N & has_parent_N)[:, None]
            value_NxB = jnp.where(
                scaled_Nx1, x_NxB * parent_NxB / w.scale_N[parent_N][:, None], x_NxB
            )
        x_NxB = jnp.where(at_Nx1, jnp.where(alive_NxB, value_NxB, 0.0), x_NxB)
    return x_NxB


def _threshold(p_N: np.ndarray) -> np.ndarray:
    """Φ⁻¹(1 − p) (SAELens: √2·erfinv(1 − 2p) in float32), computed in float64: ±inf at p = 0, 1."""
    from scipy.special import ndtri

    with np.errstate(divide="ignore"):
        return ndtri(1.0 - np.asarray(p_N, np.float64))


def build(arrays: SyntheticArrays) -> tuple[SaelensSource, SaelensWorld]:
    """The source and world arrays of a SAELens synthetic model."""
    config = arrays.config
    if config.get("dtype", "float32") != "float32":
        raise ValueError(
            f"dtype {config.get('dtype')!r}: only float32 SAELens models are read (we train in float32)"
        )
    F_NxH = np.asarray(arrays.feature_vectors_NxH, np.float32)
    n, m = F_NxH.shape
    p_N = np.asarray(arrays.firing_probabilities_N, np.float32)
    forest = forest_arrays(arrays.hierarchy, n)
    rescaled_parents = forest["parent_N"][forest["rescale_N"] & (forest["parent_N"] >= 0)]
    if rescaled_parents.size and not (arrays.mean_N[rescaled_parents] > 0).all():
        raise ValueError(
            "mean_firing_magnitudes must be > 0 for parents with scale_children_by_parent (as SAELens)"
        )
    correlated = arrays.correlation_factor_NxR is not None
    factor = np.asarray(
        arrays.correlation_factor_NxR if correlated else np.zeros((n, 0)), np.float32
    )
    diag_sqrt = (
        np.sqrt(np.asarray(arrays.correlation_diag_N, np.float32))
        if correlated
        else np.ones(n, np.float32)
    )
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    base = World(
        F_HxN=f32(F_NxH.T),
        bias_H=f32(arrays.bias_H),
        p_N=f32(p_N),
        threshold_N=f32(_threshold(p_N)),
        factor_NxR=f32(factor),
        diag_sqrt_N=f32(diag_sqrt),
        scale_N=f32(arrays.mean_N),
        low_N=jnp.zeros((n,), jnp.float32),
        std_N=f32(arrays.std_N),
        parent_N=jnp.asarray(forest["parent_N"]),
        patterns_PxN=jnp.zeros((0, n), bool),
        pattern_p_P=jnp.zeros((0,), jnp.float32),
        pairs_Px2=jnp.zeros((0, 2), jnp.int32),
    )
    world = SaelensWorld(
        base=base,
        level_N=jnp.asarray(forest["level_N"]),
        group_N=jnp.asarray(forest["group_N"]),
        rescale_N=jnp.asarray(forest["rescale_N"]),
    )
    has_children = forest["level_N"].max(initial=0) > 0
    source = SaelensSource(
        n,
        m,
        correlated=correlated,
        levels=int(forest["level_N"].max(initial=0)),
        exclusive=bool(has_children and (forest["group_N"] >= 0).any()),
        rescale=bool(has_children and forest["rescale_N"].any()),
    )
    return source, world


# --- our SAEs in SAELens's format --------------------------------------------------------------


def _np(params: dict, name: str) -> np.ndarray:
    return np.asarray(params[name], np.float32)


def _common(params: dict) -> dict[str, np.ndarray]:
    V_HxD = _np(params, "V_HxD")
    W_dec_DxH = (V_HxD / np.linalg.norm(V_HxD, axis=0, keepdims=True)).T
    return {
        "W_enc": np.ascontiguousarray(_np(params, "W_enc_DxH").T),
        "W_dec": np.ascontiguousarray(W_dec_DxH),
        "b_dec": _np(params, "b_dec_H"),
    }


def _free_norms(params: dict, options: dict) -> np.ndarray | None:
    """‖v_j‖ when the SAE trained a free-norm decoder (``decoder=free``): its codes are ‖v_j‖
    times SAELens's, and SAELens's file holds the unit-norm W_dec, so latent j's encoder row and
    biases are scaled by ‖v_j‖ > 0 (as SAELens's ``fold_W_dec_norm``); None for unit columns."""
    if options.get("decoder", "unit") != "free":
        return None
    return np.linalg.norm(_np(params, "V_HxD"), axis=0)


def _scaled_encoder(tensors: dict, scale_D) -> dict:
    return {**tensors, "W_enc": np.ascontiguousarray(tensors["W_enc"] * scale_D[None, :])}


def _standard(params, k, options):
    """ReLU codes; with a free-norm decoder ‖v‖ ReLU(pre) = ReLU(‖v‖ pre)."""
    tensors = {**_common(params), "b_enc": _np(params, "b_enc_D")}
    scale_D = _free_norms(params, options)
    if scale_D is not None:
        tensors = {**_scaled_encoder(tensors, scale_D), "b_enc": tensors["b_enc"] * scale_D}
    return "standard", tensors, {}


def _rescaled(params, k, options):
    """e^r ⊙ ReLU(pre) = ReLU(e^r ⊙ pre): a standard SAE with its encoder rows and bias scaled."""
    scale_D = np.exp(_np(params, "r_mag_D"))
    tensors = _common(params)
    tensors["W_enc"] = np.ascontiguousarray(tensors["W_enc"] * scale_D[None, :])
    return "standard", {**tensors, "b_enc": _np(params, "b_enc_D") * scale_D}, {}


def _gated(params, k, options):
    """With a free-norm decoder both paths scale by ‖v_j‖: the gate keeps its sign, the magnitude
    ReLU(‖v‖(e^r proj + b_mag)); r_mag as it is (SAELens's ``fold_W_dec_norm``)."""
    tensors = {
        **_common(params),
        "b_gate": _np(params, "b_enc_D"),
        "r_mag": _np(params, "r_mag_D"),
        "b_mag": _np(params, "b_mag_D"),
    }
    scale_D = _free_norms(params, options)
    if scale_D is not None:
        tensors = {
            **_scaled_encoder(tensors, scale_D),
            "b_gate": tensors["b_gate"] * scale_D,
            "b_mag": tensors["b_mag"] * scale_D,
        }
    return "gated", tensors, {}


def _topk(params, k, options):
    return (
        "topk",
        {**_common(params), "b_enc": _np(params, "b_enc_D")},
        {"k": int(k), "rescale_acts_by_decoder_norm": False},
    )


def _batch_threshold(params, k, options):
    """At evaluation BatchTopK and Matryoshka keep c > θ (θ ≥ 0, one for all latents): SAELens's
    JumpReLU, ReLU(pre)·1[pre > θ_j], with θ_j = θ (as SAELens saves its own BatchTopK SAEs). With
    ``codes=scaled`` c = ‖v_j‖·pre and θ is tracked on those codes, so latent j's encoder row and
    bias are scaled by ‖v_j‖ (SAELens's fold of the decoder norms when it saves such an SAE) and θ
    stays as it is; ``unscaled`` (and rows trained before the setting): c = pre, as it is."""
    d = _np(params, "b_enc_D").shape[0]
    tensors = {
        **_common(params),
        "b_enc": _np(params, "b_enc_D"),
        "threshold": np.full(
            d, np.asarray(params["threshold"], np.float32).reshape(()), np.float32
        ),
    }
    if options.get("codes", CODES.neutral) == "scaled":
        scale_D = np.linalg.norm(_np(params, "V_HxD"), axis=0)
        tensors = {**_scaled_encoder(tensors, scale_D), "b_enc": tensors["b_enc"] * scale_D}
    return "jumprelu", tensors, {}


def jumprelu_threshold(params: dict) -> np.ndarray:
    """Each latent's θ, whichever way the kind stores it (θ itself, or log θ in stores written
    before issue 21)."""
    for name in ("threshold_D", "theta_D"):
        if name in params:
            return _np(params, name)
    return np.exp(_np(params, "log_threshold_D"))


def _jumprelu(params, k, options):
    """pre·H(pre − θ) with θ ≥ 0 is ReLU(pre)·1[pre > θ]. Our JumpReLU (θ itself, ``threshold_D``)
    codes f_j = ‖v_j‖ z_j H(z_j − θ_j) through a free-norm decoder V (docs/saes/reference.md,
    "JumpReLU"), and SAELens's file holds the unit-norm W_dec: so latent j's encoder row, bias and
    threshold are scaled by ‖v_j‖ > 0, which keeps the gate (‖v‖z > ‖v‖θ iff z > θ) and gives
    the same codes and reconstruction. The log θ kind of older stores coded z H(z − θ): as is."""
    tensors = {
        **_common(params),
        "b_enc": _np(params, "b_enc_D"),
        "threshold": jumprelu_threshold(params),
    }
    if "log_threshold_D" not in params:
        scale_D = np.linalg.norm(_np(params, "V_HxD"), axis=0)
        tensors.update(
            W_enc=np.ascontiguousarray(tensors["W_enc"] * scale_D[None, :]),
            b_enc=tensors["b_enc"] * scale_D,
            threshold=tensors["threshold"] * scale_D,
        )
    return "jumprelu", tensors, {}


# Our kind -> SAELens inference architecture that encodes as it does at evaluation.
EXPORTS = {
    "plain": _standard,
    "rescaled": _rescaled,
    "gated": _gated,
    "topk": _topk,
    "batchtopk": _batch_threshold,
    "matryoshka": _batch_threshold,
    "jumprelu": _jumprelu,
}


def to_saelens(
    kind: str,
    params: dict,
    k: int = 0,
    metadata: dict | None = None,
    options: dict | None = None,
) -> tuple[dict, dict]:
    """(cfg.json's dict, the safetensors tensors) of one SAE of ``kind`` with ``params`` (numpy).
    ``options``: the kind's static hyperparameters it trained with (``decoder``: free or unit;
    ``codes``: scaled or unscaled); None: the kind's declared defaults (a stored row says its own:
    rows without a ``decoder`` column were trained with unit-norm columns, without ``codes`` with
    unscaled codes)."""
    if kind not in EXPORTS:
        raise ValueError(
            f"no SAELens architecture for SAE kind {kind!r}; exported kinds: {', '.join(EXPORTS)}"
        )
    if options is None:
        from toymodels.sae import SAE_KINDS

        declared = SAE_KINDS.get(kind).hparams if kind in SAE_KINDS else ()
        options = {h.name: h.default for h in declared if not h.per_sae}
    architecture, tensors, extra = EXPORTS[kind](params, k, options)
    d_sae, d_in = tensors["W_dec"].shape
    cfg = {
        "architecture": architecture,
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **extra,
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT,
            "model_name": "toymodels",
            **(metadata or {}),
        },
    }
    return cfg, {name: np.ascontiguousarray(t, np.float32) for name, t in tensors.items()}


def write_sae(path, cfg: dict, tensors: dict) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into the directory ``path``."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / SAE_WEIGHTS_FILE))
    (path / SAE_CFG_FILE).write_text(json.dumps(cfg, indent=1))
    return path


def read_sae(path) -> tuple[dict, dict]:
    from safetensors.numpy import load_file

    path = Path(path)
    return json.loads((path / SAE_CFG_FILE).read_text()), load_file(str(path / SAE_WEIGHTS_FILE))


def encode_saelens(cfg: dict, tensors: dict, h_BxH: np.ndarray) -> np.ndarray:
    """SAELens's inference encode of each architecture we write (``SAE.encode`` in 6.54), in numpy:
    what a file in this format means, for checking it without SAELens."""
    x = np.asarray(h_BxH, np.float32) - tensors["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    arch = cfg["architecture"]
    if arch == "gated":
        gate = (x @ tensors["W_enc"] + tensors["b_gate"]) > 0
        return gate * np.maximum(
            x @ (tensors["W_enc"] * np.exp(tensors["r_mag"])) + tensors["b_mag"], 0.0
        )
    pre = x @ tensors["W_enc"] + tensors["b_enc"]
    if arch == "standard":
        return np.maximum(pre, 0.0)
    if arch == "jumprelu":
        return np.maximum(pre, 0.0) * (pre > tensors["threshold"])
    if arch == "topk":
        kth = -np.partition(-pre, cfg["k"] - 1, axis=1)[:, cfg["k"] - 1 : cfg["k"]]
        return np.where(pre >= kth, np.maximum(pre, 0.0), 0.0)
    raise ValueError(f"architecture {arch!r} is not one this module writes")


def params_blob(params: dict) -> bytes:
    """One SAE's parameters as safetensors bytes (a stored row's ``params``)."""
    from safetensors.numpy import save

    return save({name: np.array(v, np.float32, order="C") for name, v in params.items()})


def params_of_blob(blob: bytes | bytearray) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return load(bytes(blob))
