"""The kinds a config names, looked up in the core's registries (``toymodels.models.MODELS``,
``toymodels.data.DATA``): their checks before any compute, and the static specs the planner
builds from them. Nothing here knows a kind by name.
"""

from __future__ import annotations

import itertools

from toymodels.data import DATA, DataKind, DataSpec
from toymodels.data.base import spec_for
from toymodels.models import MODELS
from toymodels.registry import ConfigError, frozen_options


def _values(config, axis: str, scalar) -> list:
    from sweeps.config import expand_axis

    grid = config.sweep.grid
    return expand_axis(axis, grid[axis]) if axis in grid else [scalar]


def model_kinds(config) -> list[str]:
    """Every model kind the sweep trains (``model.kind``, or the values of a ``model`` axis)."""
    return _values(config, "model", config.model.kind)


def option_axes(config) -> tuple[str, ...]:
    """Static grid axes the model kinds add: their options (``sweep.grid.<option>``)."""
    names: dict[str, None] = {}
    for name in model_kinds(config):
        kind = MODELS.find(name)
        names.update(dict.fromkeys(kind.options if kind else ()))
    return tuple(names)


def model_options(config, kind_name: str, static: dict) -> tuple:
    """The kind's options for one grid point: defaults, then ``model.options``, then the point's
    option axes; as sorted (name, value) pairs (a static part of the TrainSpec)."""
    kind = MODELS.get(kind_name)
    given = {**kind.options, **dict(config.model.options)}
    given.update({k: v for k, v in static.items() if k in kind.options})
    return frozen_options({k: v for k, v in given.items() if k in kind.options})


def data_options(config, kind: DataKind) -> dict:
    """The data kind's options: ``data.<option>`` where the schema has that key (``set_size``,
    ``magnitude``), else ``data.options.<option>``, else the kind's default."""
    d = config.data
    return {
        name: d.options.get(name, getattr(d, name, default))
        for name, default in kind.options.items()
    }


def data_spec_of(config) -> DataSpec:
    kind = DATA.get(config.data.kind)
    return spec_for(kind, float(config.data.rest_scale), **data_options(config, kind))


def n_features_values(config) -> list:
    return _values(config, "n_features", config.model.n_features)


def check_kinds(config) -> None:
    """Refuse, naming the key, a kind that is not registered or a setting it cannot train."""
    d = config.data
    kind = DATA.get(d.kind)
    extra = sorted(set(d.options) - set(kind.options))
    if extra:
        raise ConfigError(
            f"data.options.{extra[0]}",
            f"data kind {kind.name!r} has no option {extra[0]!r}; its "
            f"options: {', '.join(kind.options) or 'none'}",
        )
    spec = data_spec_of(config)
    for n in n_features_values(config):
        if kind.check is not None and isinstance(n, int):
            kind.check(spec, n)
    if kind.sets:
        _check_sets(config, spec)
    hidden = _values(config, "n_hidden", config.model.n_hidden)
    for name in model_kinds(config):
        model = MODELS.get(name)
        if kind.weights is not None:  # per-entry loss weights are of the n features' outputs
            for n in n_features_values(config):
                outputs = (
                    model.n_outputs(n, {**model.options, **dict(config.model.options)})
                    if isinstance(n, int)
                    else n
                )
                if outputs != n:
                    raise ConfigError(
                        "data.kind",
                        f"{kind.name!r} weighs the loss of each feature's output; model "
                        f"kind {name!r} has {outputs} outputs for {n} features",
                    )
        unknown = sorted(set(config.model.options) - set(model.options))
        if unknown and "model" not in config.sweep.grid:
            raise ConfigError(
                f"model.options.{unknown[0]}",
                f"model kind {name!r} has no option {unknown[0]!r}; "
                f"its options: {', '.join(model.options) or 'none'}",
            )
        if model.check is None:
            continue
        axes = [a for a in model.options if a in config.sweep.grid]
        for n, m, *values in itertools.product(
            n_features_values(config), hidden, *(_values(config, a, None) for a in axes)
        ):
            model.check(n, m, dict(model_options(config, name, dict(zip(axes, values)))))
    probe_kinds(config)


def _check_sets(config, spec: DataSpec) -> None:
    d, size = config.data, spec.option("set_size")
    if isinstance(d.density, (list, tuple)):
        for start in range(0, len(d.density), size):
            if len(set(d.density[start : start + size])) > 1:
                raise ConfigError(
                    "data.density",
                    f"members of one {d.kind} set share one density; features "
                    f"{start}..{start + size - 1} differ",
                )
    for axis in ("density_last", "density_last_ratio"):
        if axis in config.sweep.grid and size > 1:
            raise ConfigError(
                f"sweep.grid.{axis}",
                f"would split the last {d.kind} set's density; sweep density instead",
            )


PROBE_BATCH = 13  # examples of the probe's batch: unlike any small n, so that B×F is told from F×B
PROBE_SHAPES = (
    64  # (n, m) combinations of a sweep whose shapes are traced (shapes only: no compute)
)


def _probe_batch_size(n: int) -> int:
    return PROBE_BATCH if n != PROBE_BATCH else PROBE_BATCH + 4


def probe_kinds(config) -> None:
    """Run each of the user's own kinds once on a tiny batch before any compute (issue 22 item 9):
    the data kind's batch must be F×B floating-point numbers (or F rows of B for the tiny models'
    unrolled form), the model kind's outputs and target O×B (O = its ``n_outputs``), every value
    finite. Shapes and dtypes are traced for the sweep's (n, m) combinations, values computed for
    the smallest and largest; built-in kinds are tested by the suite and not probed. A kind that
    fails is refused naming it and the shape it must give."""
    import jax
    import jax.numpy as jnp

    from toymodels.data.sample import from_uniforms, uniform_rows
    from toymodels.models import init_params, is_tiny, ops_for
    from toymodels.rng import unpack, unpack_rows

    data = DATA.get(config.data.kind)
    user_models = [name for name in model_kinds(config) if not MODELS.is_builtin(name)]
    if DATA.is_builtin(config.data.kind) and not user_models:
        return
    spec = data_spec_of(config)
    hidden = _values(config, "n_hidden", config.model.n_hidden)
    shapes = [
        (n, m)
        for n in n_features_values(config)
        for m in hidden
        if isinstance(n, int) and isinstance(m, int)
    ]
    shapes = sorted(set(shapes), key=lambda s: s[0] * s[1])
    if len(shapes) > PROBE_SHAPES:
        shapes = shapes[: PROBE_SHAPES // 2] + shapes[-PROBE_SHAPES // 2 :]
    computed = {shapes[0], shapes[-1]} if shapes else set()
    key = jax.random.key(0)

    def uniforms(n, B, tiny):
        rows = uniform_rows(spec, n)
        packed = jax.random.uniform(key, (-(-rows // 2), B)) + 1j * jax.random.uniform(
            jax.random.key(1), (-(-rows // 2), B)
        )
        return (unpack_rows if tiny else unpack)(packed.astype(jnp.complex64), rows)

    def batch(n, B, tiny):
        density = jnp.full((n,), 0.5, jnp.float32)
        return from_uniforms(spec, uniforms(n, B, tiny), density)

    for n, m in shapes:
        B = _probe_batch_size(n)
        tiny = is_tiny(n, m)
        run = (n, m) in computed
        for form in dict.fromkeys((False, tiny)):  # the array form always: the rows form slices it
            x = _probe(
                f"data kind {data.name!r}",
                "data.kind",
                lambda n=n, B=B, form=form: batch(n, B, form),
                (),
                run,
                f"for n_features={n} and a batch of {B}",
            )
            _check_form(
                x,
                n,
                B,
                form,
                run,
                "data.kind",
                f"data kind {data.name!r}",
                "batch",
                f"n_features={n}",
            )
        for name in user_models:
            model = MODELS.get(name)
            options = dict(model_options(config, name, {}))
            O = model.n_outputs(n, {**model.options, **options})
            ops = ops_for(n, m)

            def forward(x, n=n, m=m, name=name, model=model, options=options, ops=ops):
                params = init_params(key, n, m, 0.1, name, options)
                inputs = ops.batch(x)
                out, _ = model.forward(params, inputs, ops)
                target = model.target(inputs, jnp.ones((n,), jnp.float32), ops)
                return out, target, params

            out, target, params = _probe(
                f"model kind {name!r}",
                "model.kind",
                forward,
                (x,),
                run,
                f"for n_features={n}, n_hidden={m} and a batch of {B}",
            )
            for part, value in (("outputs", out), ("target", target)):
                _check_form(
                    value,
                    O,
                    B,
                    tiny,
                    run,
                    "model.kind",
                    f"model kind {name!r}",
                    part,
                    f"n_features={n}, n_hidden={m}",
                    rows_name="outputs",
                )
            for leaf_name, leaf in params.items():
                if not jnp.issubdtype(leaf.dtype, jnp.floating):
                    raise ConfigError(
                        "model.kind",
                        f"model kind {name!r}'s parameter {leaf_name!r} is {leaf.dtype}, "
                        "not floating-point numbers",
                    )


def _probe(what: str, key: str, fn, args: tuple, run: bool, where: str):
    """``fn(*args)`` computed (``run``) or traced for its shapes only; a failure refused naming
    the kind."""
    import jax

    try:
        return fn(*args) if run else jax.eval_shape(fn, *args)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001
        text = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(key, f"{what} fails {where} ({type(error).__name__}: {text})") from None


def _check_form(
    value,
    rows: int,
    B: int,
    tiny: bool,
    computed: bool,
    key: str,
    what: str,
    part: str,
    shape: str,
    rows_name: str = "features",
) -> None:
    """``value`` is what the trainer takes: an F×B array of floating-point numbers (O×B for a
    model's outputs), or in the unrolled form of tiny models a list of F rows of B; finite when
    computed."""
    import jax.numpy as jnp
    import numpy as np

    expected = f"{rows}×{B} ({rows_name} × batch)"
    if tiny and isinstance(value, (list, tuple)):
        shapes = [tuple(getattr(r, "shape", ())) for r in value]
        if len(value) != rows or any(s != (B,) for s in shapes):
            got = (
                f"{len(value)} rows of shape {shapes[0] if shapes else '()'}"
                if len(set(shapes)) <= 1
                else f"{len(value)} rows of shapes {sorted(set(shapes))}"
            )
            raise ConfigError(
                key,
                f"{what} gives its {part} as {got} for {shape}; expected {expected}, as "
                f"{rows} rows of ({B},) in the unrolled form of models with n·m ≤ 50",
            )
        leaves = list(value)
    else:
        got_shape = tuple(getattr(value, "shape", ()))
        if isinstance(value, (list, tuple)) or got_shape != (rows, B):
            got_text = (
                f"a list of {len(value)}"
                if isinstance(value, (list, tuple))
                else f"shape {got_shape}"
            )
            raise ConfigError(
                key,
                f"{what} gives its {part} as {got_text} for {shape} and a batch of {B}; "
                f"expected {expected}",
            )
        leaves = [value]
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ConfigError(
                key,
                f"{what} gives its {part} as {leaf.dtype}, not floating-point numbers "
                f"(expected {expected})",
            )
        if computed:  # noqa: SIM102
            if not np.isfinite(np.asarray(leaf)).all():
                raise ConfigError(
                    key,
                    f"{what} gives {part} with values that are not finite for {shape} and a batch "
                    f"of {B}",
                )
