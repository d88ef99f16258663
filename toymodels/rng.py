"""A counter-based generator written in plain jnp ops, so XLA fuses it with its consumers.

Threefry-2x32 with 20 rounds (Salmon et al. 2011, the generator behind ``jax.random``), applied to
(key, counter) pairs. On CPU, ``jax.random`` lowers Threefry as a rolled loop whose every round
trip goes through memory; this unrolled form compiles into the same fused loop as the sampling
arithmetic around it, which matters because random bits dominate the cost of training tiny models.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-20 of the counter pair (x0, x1) under ``key`` (uint32[2]); broadcasts."""
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _to_unit(bits: jax.Array) -> jax.Array:
    """23 random mantissa bits under exponent 0: a float in [1, 2), minus 1: U[0, 1) float32."""
    return (
        jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32)
        - 1.0
    )


def _counters(rows: int, cols: int, col_offset, row_stride: int | None) -> jax.Array:
    """Counter words of a rows × cols array, or of its column block at ``col_offset`` in a
    ``row_stride``-column array: entry (r, c) gets r·stride + offset + c."""
    stride = cols if row_stride is None else row_stride
    return (
        jnp.arange(rows, dtype=jnp.uint32)[:, None] * np.uint32(stride)
        + jnp.asarray(col_offset, jnp.uint32)
        + jnp.arange(cols, dtype=jnp.uint32)[None, :]
    )


def uniform(key: jax.Array, counter: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """U[0, 1) float32 of ``shape``, the stream numbered ``counter`` (a uint32 scalar) under ``key``.

    Entry j (row-major) is the first output word of Threefry at counter (counter, j). Keeping one
    word per entry lets XLA compute each entry in one fused pass (gathering both words into one
    array made it evaluate the rounds twice); ``uniform_pairs`` uses both words where its result is
    stored before use.
    """
    idx = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
    bits, _ = threefry2x32(key, jnp.full(idx.shape, counter, jnp.uint32), idx)
    return _to_unit(bits)


def uniform_pairs(
    key: jax.Array,
    counter: jax.Array,
    rows: int,
    cols: int,
    col_offset=0,
    row_stride: int | None = None,
) -> jax.Array:
    """The U[0, 1) ``rows`` × ``cols`` array of stream ``counter`` under ``key``, two entries per
    Threefry call, packed as complex64 ceil(rows/2) × cols (``unpack`` gives the array).

    Row r < h = ceil(rows/2) is the first word, and row h + r the second word, of Threefry at
    counter (``counter``, r·stride + c): rows r < h are ``uniform``'s, bit for bit. Both words of
    every call are used, halving the generator's cost, but only where the packed array is stored
    before it is read (a loop carry): XLA fuses an unstored generator into each reader of each
    half and evaluates the rounds twice. The complex packing keeps the two words one array, so
    one fused loop computes and stores them both.

    The array may be a column block of a wider one: entry (r, c) is then entry
    (r, ``col_offset`` + c) of a ``row_stride``-column array, bit for bit.
    """
    half = (rows + 1) // 2
    idx = _counters(half, cols, col_offset, row_stride)
    first, second = threefry2x32(key, jnp.full(idx.shape, counter, jnp.uint32), idx)
    return jax.lax.complex(_to_unit(first), _to_unit(second))


def unpack(packed: jax.Array, rows: int) -> jax.Array:
    """The ``rows`` × cols float32 array of ``uniform_pairs``' packed result."""
    return jnp.concatenate([jnp.real(packed), jnp.imag(packed)[: rows - packed.shape[0]]])


def unpack_rows(packed: jax.Array, rows: int) -> list:
    """``unpack`` as a list of its rows, never joined into one array."""
    half = packed.shape[0]
    return [jnp.real(packed[r]) for r in range(half)] + [
        jnp.imag(packed[r]) for r in range(rows - half)
    ]


def key_words(key: jax.Array) -> jax.Array:
    """Two uint32 words for ``threefry2x32`` drawn from a ``jax.random`` key."""
    return jax.random.bits(key, (2,), jnp.uint32)
