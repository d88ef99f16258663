"""Each of the user's kinds runs once on a tiny batch before any compute (issue 22 item 9): a wrong
shape, dtype or a value that is not finite is refused naming the kind and the F×B shape."""

import jax
import jax.numpy as jnp
import pytest

from tests.helpers import compose_config
from toymodels.data import DataKind, register_data
from toymodels.models import ModelKind, register_model
from toymodels.registry import ConfigError


def _value(v, p, spec):
    return v


def _transposed(u, density, spec):  # B×F instead of F×B
    return u.T


def _extra_rows(u, density, spec):  # (n + n/3)×B
    return jnp.concatenate([u, u[: u.shape[0] // 3]])


def _not_finite(v, p, spec):
    return jnp.log(v - v)


def _as_ints(u, density, spec):
    return (u[: density.shape[0]] * 10).astype(jnp.int32)


def _init(key, n, m, std, options):
    return {"W": std * jax.random.normal(key, (m, n)), "b": jnp.zeros((n,))}


def _forward(params, x, ops):
    h = ops.matmul(params["W"], x)
    return ops.add_bias(ops.matmul(params["W"].T, h), params["b"]), h


def _one_short(params, x, ops):
    out, h = _forward(params, x, ops)
    return out[:-1], h


def _contracts_wrongly(params, x, ops):
    return jnp.dot(params["W"], params["W"]), None


for kind in (
    DataKind(name="probe_transposed", batch=_transposed),
    DataKind(name="probe_extra_rows", batch=_extra_rows),
    DataKind(name="probe_not_finite", value=_not_finite),
    DataKind(name="probe_ints", batch=_as_ints),
    DataKind(name="probe_fine", value=_value),
):
    register_data(kind, origin="tests/probe")
for model_kind in (
    ModelKind(name="probe_one_short", init=_init, forward=_one_short),
    ModelKind(name="probe_contracts", init=_init, forward=_contracts_wrongly),
    ModelKind(name="probe_model_fine", init=_init, forward=_forward),
):
    register_model(model_kind, origin="tests/probe")

TINY, WIDE = (
    ["model.n_features=5", "model.n_hidden=2"],
    ["model.n_features=40", "model.n_hidden=10"],
)


@pytest.mark.parametrize(
    "args, expect",
    [
        (
            ["data.kind=probe_transposed", *TINY],
            r"data.kind: data kind 'probe_transposed' gives its batch as shape \(13, 5\)"  # noqa: ISC004
            r" .*expected 5×13 \(features × batch\)",
        ),
        (
            ["data.kind=probe_transposed", *WIDE],
            r"data kind 'probe_transposed' .* shape \(13, 40\) .*expected 40×13",
        ),
        (
            ["data.kind=probe_extra_rows", *TINY],
            r"data kind 'probe_extra_rows' gives its batch as shape \(6, 13\) .*5×13",
        ),
        (
            ["data.kind=probe_not_finite", *TINY],
            r"data kind 'probe_not_finite' gives batch with values that are not finite",
        ),
        (
            ["data.kind=probe_ints", *WIDE],
            r"data kind 'probe_ints' gives its batch as int32, not floating-point",
        ),
        (
            ["model.kind=probe_one_short", *TINY],
            r"model.kind: model kind 'probe_one_short' gives its outputs as 4 rows .*"  # noqa: ISC004
            r"expected 5×13 \(outputs × batch\)",
        ),
        (
            ["model.kind=probe_one_short", *WIDE],
            r"model kind 'probe_one_short' gives its outputs as shape \(39, 13\) .*40×13",
        ),
        (
            ["model.kind=probe_contracts", *TINY],
            r"model kind 'probe_contracts' fails for n_features=5, n_hidden=2 .*"  # noqa: ISC004
            r"dot_general",
        ),
    ],
)
def test_a_kind_with_the_wrong_outputs_is_refused_before_any_compute(args, expect):
    with pytest.raises(ConfigError, match=expect):
        compose_config(["experiment=tms_intro", *args])


def test_kinds_with_the_right_outputs_pass_in_both_forms():
    for shape in (TINY, WIDE):
        compose_config(
            ["experiment=tms_intro", "data.kind=probe_fine", "model.kind=probe_model_fine", *shape]
        )
