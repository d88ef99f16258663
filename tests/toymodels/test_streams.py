"""Shared random streams (data.streams = seed): each model's data is exactly its own stream's batch,
models of one stream see the same uniforms, and results do not depend on how models are chunked."""

import jax.numpy as jnp
import numpy as np
import pytest

from sweeps.config import ConfigError
from sweeps.jobs import make_chunks
from sweeps.jobs.models import hparams_arrays
from sweeps.plan import plan_sweep
from tests.helpers import compose_config
from toymodels import HParams, TrainSpec, model_keys, rng, stream_key_words, train_many
from toymodels.data import data_spec, draw_shared, from_uniforms, sample_batch, uniform_rows

WORDS_Sx2 = stream_key_words(0, [0, 1, 2])


@pytest.mark.parametrize("kind", ["sparse", "signed", "correlated", "anticorrelated", "kurtosis"])
def test_a_shared_draw_gives_each_stream_its_own_batch_bit_for_bit(kind):
    spec = data_spec(kind, **({"set_size": 2} if kind in ("correlated", "anticorrelated") else {}))
    density = jnp.asarray([0.3, 0.3, 0.7, 0.7])
    rows = uniform_rows(spec, 4)
    shared = draw_shared(spec, WORDS_Sx2, jnp.uint32(5), 4, 64)
    blocks = [
        draw_shared(spec, WORDS_Sx2, jnp.uint32(5), 4, 64, (jnp.uint32(j), 4)) for j in range(4)
    ]
    for s in range(3):
        own = sample_batch(spec, WORDS_Sx2[s], jnp.uint32(5), density, 64)
        np.testing.assert_array_equal(
            from_uniforms(spec, rng.unpack(shared[s], rows), density), own
        )
        whole = np.concatenate(
            [from_uniforms(spec, rng.unpack(b[s], rows), density) for b in blocks], axis=1
        )
        np.testing.assert_array_equal(whole, own)


def _hp(streams, density):
    n = len(streams)
    return HParams(
        density_F=jnp.asarray(np.broadcast_to(np.asarray(density, np.float32)[:, None], (n, 5))),
        importance_F=jnp.ones((n, 5)),
        lr=jnp.full((n,), 1e-2),
        weight_decay=jnp.zeros(n),
        stream=jnp.asarray(streams, jnp.int32),
    )


SPEC = TrainSpec(
    5,
    2,
    steps=80,
    batch_size=128,
    snapshot_every=40,
    eval_samples=1024,
    shared_streams=True,
    batch_blocks=2,
)


def test_models_of_one_stream_share_data_and_other_streams_differ():
    # Same init key for all: models 0 and 2 share stream and density, so they train identically;
    # model 1 has another stream; model 3 shares model 0's stream at another density.
    keys = model_keys(0, [7, 7, 7, 7])
    result = train_many(SPEC, keys, _hp([0, 1, 0, 0], [0.3, 0.3, 0.3, 0.6]), WORDS_Sx2[:2])
    W = np.asarray(result.params["W"])
    np.testing.assert_array_equal(W[0], W[2])
    assert not np.allclose(W[0], W[1], atol=1e-3)
    assert not np.allclose(W[0], W[3], atol=1e-3)
    # a model alone in its chunk (its stream the only one) trains the same
    alone = train_many(SPEC, keys[:1], _hp([0], [0.3]), WORDS_Sx2[1:2])
    np.testing.assert_allclose(alone.params["W"][0], W[1], rtol=1e-5, atol=1e-6)


def test_shared_streams_need_their_words():
    with pytest.raises(ValueError, match="stream_words"):
        train_many(SPEC, model_keys(0, [1]), _hp([0], [0.3]))


def test_streams_config_is_validated_before_compute():
    with pytest.raises(ConfigError, match=r"data\.streams.*model, seed"):
        compose_config(["experiment=tms_intro", "data.streams=grid"])
    with pytest.raises(ConfigError, match=r"data\.streams"):
        compose_config(["experiment=dd_cpu_small", "data.streams=seed"])


def test_stream_is_the_seed_index_whatever_the_chunking():
    config = compose_config(
        ["experiment=tms_phase_2d_small", "data.streams=seed", "sweep.chunk_size=50"]
    )
    chunks = make_chunks(plan_sweep(config))
    assert all(chunk.spec.shared_streams for chunk in chunks)
    seeds = np.concatenate([hparams_arrays(chunk)["seed"][: chunk.n_models] for chunk in chunks])
    assert sorted(set(seeds.tolist())) == [0, 1, 2]
