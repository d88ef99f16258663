"""The fused Threefry generator: known answers, uniformity, and stream independence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels import rng


@pytest.mark.parametrize(
    "key,counter,expected",
    [  # Random123's known-answer vectors for Threefry-2x32-20
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry_known_answers(key, counter, expected):
    out = rng.threefry2x32(
        jnp.asarray(key, jnp.uint32), jnp.uint32(counter[0]), jnp.uint32(counter[1])
    )
    assert (int(out[0]), int(out[1])) == expected


def test_uniform_is_uniform_and_streams_differ():
    words = rng.key_words(jax.random.key(0))
    u = np.asarray(rng.uniform(words, 0, (100_000, 3)))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.005)
    assert u.var() == pytest.approx(1 / 12, abs=0.002)
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    chi2 = ((counts - u.size / 10) ** 2 / (u.size / 10)).sum()
    assert chi2 < 30  # 9 degrees of freedom: p < 0.001 above 27.9
    v = np.asarray(rng.uniform(words, 1, (100_000, 3)))
    assert abs(np.corrcoef(u.ravel(), v.ravel())[0, 1]) < 0.01
    other = np.asarray(rng.uniform(rng.key_words(jax.random.key(1)), 0, (100_000, 3)))
    assert abs(np.corrcoef(u.ravel(), other.ravel())[0, 1]) < 0.01
    np.testing.assert_array_equal(u, np.asarray(rng.uniform(words, 0, (100_000, 3))))


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_uniform_pairs_use_both_words_of_each_call(rows):
    words = rng.key_words(jax.random.key(3))
    u = np.asarray(rng.unpack(rng.uniform_pairs(words, 7, rows, 50_000), rows))
    half = (rows + 1) // 2
    assert u.shape == (rows, 50_000)
    # the first words are uniform()'s rows; the second words fill the rest
    np.testing.assert_array_equal(u[:half], np.asarray(rng.uniform(words, 7, (half, 50_000))))
    idx = jnp.arange(half * 50_000, dtype=jnp.uint32).reshape(half, 50_000)[: rows - half]
    _, second = rng.threefry2x32(words, jnp.full(idx.shape, 7, jnp.uint32), idx)
    np.testing.assert_array_equal(u[half:], np.asarray(rng._to_unit(second)))
    assert u.min() >= 0.0 and u.max() < 1.0 and u.mean() == pytest.approx(0.5, abs=0.005)
    if rows > 1:
        assert (
            abs(np.corrcoef(u[0], u[half])[0, 1]) < 0.02
        )  # the two words of a call are independent
    block = rng.unpack(
        rng.uniform_pairs(words, 7, rows, 1000, col_offset=2000, row_stride=50_000), rows
    )
    np.testing.assert_array_equal(np.asarray(block), u[:, 2000:3000])
