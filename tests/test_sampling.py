import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized.sampling import as_float, sample_meta_batch, sample_without_replacement


def test_sample_without_replacement_distinct_in_range_and_uniform():
  draws = np.asarray(jax.jit(lambda k: sample_without_replacement(k, 60000, 10, (500, 7)))(jax.random.key(0)))
  assert draws.shape == (500, 7, 10) and draws.min() >= 0 and draws.max() < 60000
  assert all(len(set(row)) == 10 for row in draws.reshape(-1, 10))
  small = np.asarray(sample_without_replacement(jax.random.key(1), 5, 2, (40_000,)))
  counts = {pair: 0 for pair in itertools.combinations(range(5), 2)}
  for a, b in small:
    counts[tuple(sorted((int(a), int(b))))] += 1
  frequencies = np.array(list(counts.values())) / len(small)
  np.testing.assert_allclose(frequencies, 0.1, atol=0.006)  # 10 subsets, each 1/10
  full = np.asarray(sample_without_replacement(jax.random.key(2), 6, 6, (100,)))
  assert all(sorted(row) == list(range(6)) for row in full)


def test_sample_without_replacement_rejects_impossible_requests():
  with pytest.raises(ValueError, match="num=11 distinct indices from a population of 10"):
    sample_without_replacement(jax.random.key(0), 10, 11)


def test_meta_batch_shares_queries_and_draws_sets_within_each_distribution():
  k, m = 3, 50
  # data[i, j] = [i, j]: every example records its distribution and index.
  data = jnp.stack(jnp.meshgrid(jnp.arange(k), jnp.arange(m), indexing="ij"), axis=-1).astype(jnp.float32)
  queries, sets = jax.jit(lambda key: sample_meta_batch(key, data, batch_size=8, set_size=6))(jax.random.key(0))
  assert queries.shape == (3, 8, 2) and sets.shape == (3, 8, 6, 2)
  np.testing.assert_array_equal(queries[..., 0], np.arange(3)[:, None] * np.ones(8))
  np.testing.assert_array_equal(queries[0, :, 1], queries[2, :, 1])  # same examples in each distribution
  np.testing.assert_array_equal(sets[..., 0], np.arange(3)[:, None, None] * np.ones((8, 6)))
  assert all(len(set(np.asarray(s))) == 6 for s in sets[..., 1].reshape(-1, 6))
  assert not np.array_equal(sets[0, ..., 1], sets[1, ..., 1])  # independent sets per distribution


def test_as_float_keeps_floats_casts_booleans_and_refuses_integer_pixels():
  grey = jnp.array([0.0, 0.5, 1.0], jnp.bfloat16)
  assert as_float(grey).dtype == jnp.bfloat16
  np.testing.assert_array_equal(as_float(jnp.array([True, False])), [1.0, 0.0])
  with pytest.raises(TypeError, match="got dtype uint8"):
    as_float(jnp.array([0, 128, 255], jnp.uint8))
