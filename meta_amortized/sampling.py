"""On-device sampling of query batches and summary sets, for use inside `jax.jit`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meta_amortized.sharding import constrain_batch

__all__ = ["as_float", "sample_meta_batch", "sample_without_replacement"]


def sample_without_replacement(key: jax.Array, population_size: int, num: int,
                               shape: tuple[int, ...] = ()) -> jax.Array:
  """Draws `num` distinct indices from range(population_size), independently for each of `shape`.

  Robert Floyd's algorithm: every subset of size `num` is equally likely, at a cost
  of O(num^2) comparisons and no sort of the population, so 5000 sets of 10 out of
  60,000 images take microseconds. The order within a subset is not uniform, which
  does not matter to a permutation-invariant summary network.

  Returns:
    int32 indices of shape shape + (num,).

  Raises:
    ValueError: num is not in [1, population_size].

  Examples:
    >>> import jax
    >>> from meta_amortized.sampling import sample_without_replacement
    >>> index = sample_without_replacement(jax.random.key(0), 10, 4, (2,))   # two sets of 4 of range(10)
    >>> index.shape, [len(set(row)) for row in index.tolist()]
    ((2, 4), [4, 4])
  """
  if not 0 < num <= population_size:
    raise ValueError(f"cannot draw num={num} distinct indices from a population of {population_size}: "
                     f"num must lie in [1, {population_size}]")
  # Step j draws from range(population_size - num + j + 1); a draw already taken is
  # replaced by the step's new largest value, which no earlier step could have drawn.
  upper = population_size - num + 1 + jnp.arange(num)
  draws = jax.random.randint(key, shape + (num,), 0, upper)
  earlier = jnp.arange(num)

  def step(j, chosen):
    draw = draws[..., j]
    taken = jnp.any((chosen == draw[..., None]) & (earlier < j), axis=-1)
    return chosen.at[..., j].set(jnp.where(taken, upper[j] - 1, draw))

  return jax.lax.fori_loop(0, num, step, jnp.zeros(shape + (num,), jnp.int32))


def sample_meta_batch(key: jax.Array, data: jax.Array, *, batch_size: int,
                      set_size: int) -> tuple[jax.Array, jax.Array]:
  """Queries and per-query summary sets from K stacked distributions, as the MetaVAE trains.

  The query batch holds the same `batch_size` example indices in every distribution
  (for transformed MNIST: the same digits under each transformation); each query gets
  its own set of `set_size` examples drawn without replacement from its distribution
  (the query itself may be among them).

  Args:
    key: PRNG key.
    data: (K, M, *event): M examples of each of K distributions.
    batch_size: B.
    set_size: N.

  Returns:
    queries (K, B, *event) and sets (K, B, N, *event); inside a step traced under a 'data' mesh, split
    over the devices by `sharding.constrain_batch`.

  Raises:
    ValueError: batch_size < 1, or set_size not in [1, M].

  Examples:
    >>> import jax
    >>> from meta_amortized.sampling import sample_meta_batch
    >>> data = jax.random.uniform(jax.random.key(0), (3, 50, 6))       # K = 3 distributions of M = 50
    >>> queries, sets = sample_meta_batch(jax.random.key(1), data, batch_size=4, set_size=10)
    >>> queries.shape, sets.shape
    ((3, 4, 6), (3, 4, 10, 6))
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} is not allowed; expected an integer >= 1")
  num_distributions, num_examples = data.shape[:2]
  query_key, set_key = jax.random.split(key)
  query_index = jax.random.randint(query_key, (batch_size,), 0, num_examples)
  set_index = sample_without_replacement(set_key, num_examples, set_size,
                                         (num_distributions, batch_size))
  queries = data[:, query_index]
  sets = jnp.take_along_axis(data, set_index.reshape(num_distributions, -1, *[1] * (data.ndim - 2)), axis=1)
  sets = sets.reshape(num_distributions, batch_size, set_size, *data.shape[2:])
  return constrain_batch(queries), constrain_batch(sets)


def as_float(x: jax.Array) -> jax.Array:
  """Observations for a likelihood: floating data (float32, or bfloat16 under mixed precision) as is, boolean
  (binarised) data as float32.

  Raises:
    TypeError: integer data, such as uint8 pixels in 0..255, which a Bernoulli likelihood of grey levels in
      [0, 1] would score without complaint; scale them first (`x / 255`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.sampling import as_float
    >>> as_float(jnp.array([True, False])).tolist()
    [1.0, 0.0]
  """
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x
  if x.dtype == jnp.bool_:
    return x.astype(jnp.float32)
  raise TypeError(f"observations must be floating (grey levels in [0, 1]) or boolean; got dtype {x.dtype}")
