"""Variational objectives as pure functions: ELBO, IWAE, MetaELBO and the baselines.

Every objective takes a PRNG key first, arrays, distribution pytrees and
callables, and returns *unreduced* per-example (or per-set) values; the caller
reduces. Hyperparameters are keyword-only. Nothing here imports Flax, Optax or a
config, so any JAX model can use these under `jit`, `vmap` and `grad`.

The log-likelihood callables have one name per signature:

- `log_likelihood_fn(z) -> log p(x | z)`, per example: `elbo`, `iwae_bound`,
  `iterative.iterative_inference` (x is closed over);
- `decoder_log_likelihood_fn(theta, x, z) -> log p_theta(x | z)`: `meta_elbo` and
  `iterative.iterative_meta_inference`, which pick distribution i's decoder theta_i and queries x_i;
- `context_log_likelihood_fn(z, c) -> log p(x | z, c)`: `statistician_elbo`,
  `homoencoder_elbo` (x, the sets or the queries, is closed over).

A prior over z is either a `DiagonalGaussian` of the posterior's shape (the KL is
then analytic) or a callable returning the log-density of z summed over its event
axis (the KL is then the single-sample Monte Carlo estimate log q(z) - log p(z)).

Bad arguments are a ValueError naming the argument and its value (TypeError for a
wrong type), raised while tracing, before any value is computed.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from meta_amortized import objectives
  >>> from meta_amortized.distributions import Bernoulli, DiagonalGaussian
  >>> x = jnp.ones((4, 6))                                          # 4 binary observations
  >>> q = DiagonalGaussian(jnp.zeros((4, 2)), jnp.zeros((4, 2)))    # q(z | x), Z = 2
  >>> decoder = lambda z: jnp.tile(z, 3)                            # logits (4, 6)
  >>> per_example = objectives.elbo(jax.random.key(0), q, lambda z: Bernoulli(decoder(z)).log_prob(x))
  >>> per_example.shape
  (4,)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized.distributions import (
  Categorical,
  DiagonalGaussian,
  has_analytic_kl,
  kl_divergence,
  standard_normal_like,
)

__all__ = [
    "DecoderLogLikelihoodFn",
    "LogLikelihoodFn",
    "Prior",
    "elbo",
    "enumerated_elbo",
    "homoencoder_elbo",
    "iwae_bound",
    "meta_elbo",
    "statistician_elbo",
    "vampprior_log_prob",
]

Prior = DiagonalGaussian | Callable[[jax.Array], jax.Array]
LogLikelihoodFn = Callable[[jax.Array], jax.Array]
DecoderLogLikelihoodFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
ContextLogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]


# --- Argument checks, all made while tracing -------------------------------------------------------------------


def _check_count(name: str, value: Any) -> None:
  """`value` must be an integer >= 1 (a number of samples, a chunk size)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{name} must be an integer >= 1; got {value!r} of type {type(value).__name__}")
  if value < 1:
    raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def _check_weight(name: str, value: Any) -> None:
  """`value` must be a finite number >= 0 (a KL weight); traced values are not checked."""
  if isinstance(value, jax.core.Tracer):
    return
  if not math.isfinite(float(value)) or float(value) < 0:
    raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


def _check_shape(what: str, values: jax.Array, expected: tuple[int, ...]) -> None:
  if jnp.shape(values) != tuple(expected):
    raise ValueError(f"{what} must have shape {tuple(expected)}; got shape {jnp.shape(values)}")


def _batch_shape(posterior: DiagonalGaussian) -> tuple[int, ...]:
  shape = jnp.shape(posterior.mean)
  return shape[: len(shape) - posterior.event_ndims]


def _check_prior(prior: Prior, posterior: DiagonalGaussian, name: str = "prior") -> None:
  if isinstance(prior, DiagonalGaussian) and jnp.shape(prior.mean) != jnp.shape(posterior.mean):
    raise ValueError(f"{name} has shape {jnp.shape(prior.mean)} but the posterior has shape "
                     f"{jnp.shape(posterior.mean)}; a prior over another latent size, or another batch shape, "
                     "cannot score its samples")
  if not (isinstance(prior, DiagonalGaussian) or callable(prior)):
    raise TypeError(f"{name} must be a DiagonalGaussian or a callable z -> log p(z); got {type(prior).__name__}")


def _log_prior(prior: Prior, z: jax.Array) -> jax.Array:
  return prior.log_prob(z) if isinstance(prior, DiagonalGaussian) else prior(z)


def _check_meta_batch(queries: jax.Array, sets: Any) -> None:
  """`queries` must be (K, B, *event) and every leaf of `sets` must have the leading K axis."""
  if jnp.ndim(queries) < 3:
    raise ValueError(f"queries must be (K, B, *event) with at least one event axis; got shape {jnp.shape(queries)}")
  num_distributions, batch_size = queries.shape[:2]
  if num_distributions == 0 or batch_size == 0:
    raise ValueError(f"queries must hold at least one distribution and one query; got shape {queries.shape}")
  for leaf in jax.tree_util.tree_leaves(sets):
    if leaf.ndim == 0 or leaf.shape[0] != num_distributions:
      raise ValueError(
          f"sets must have a leading distribution axis of size {num_distributions} "
          f"(from queries of shape {queries.shape}); got an array of shape {leaf.shape}")
    if 0 in leaf.shape:
      raise ValueError(f"sets must not be empty; got an array of shape {leaf.shape}")


def _select_decoders(decoder_params: Any, decoder_index: Any, num_distributions: int) -> tuple[Any, jax.Array | None]:
  """(the decoder parameters of each of `num_distributions` distributions, a (K,) mask of valid indices or None).

  Decoder `decoder_index[i]` for distribution i, or all of them in order when `decoder_index` is None. A concrete
  index out of [0, num_decoders) is a ValueError; a traced one cannot raise, so the mask marks it and the caller
  makes that distribution's values NaN (JAX would otherwise clamp it to the last decoder, or wrap a negative one).
  """
  leaves = jax.tree_util.tree_leaves(decoder_params)
  if not leaves:
    raise ValueError("decoder_params has no arrays")
  sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError("decoder_params leaves must share a leading decoder axis; "
                     f"got leading sizes {sorted(map(str, sizes))}")
  (num_decoders,) = sizes
  if decoder_index is None:
    if num_decoders != num_distributions:
      raise ValueError(
          f"decoder_params holds {num_decoders} decoders but queries has {num_distributions} "
          "distributions; pass decoder_index to choose a decoder per distribution")
    return decoder_params, None
  if not jnp.issubdtype(jnp.result_type(decoder_index), jnp.integer):
    raise TypeError(f"decoder_index must hold integers; got dtype {jnp.result_type(decoder_index)}")
  _check_shape("decoder_index (one decoder per distribution of queries)", decoder_index, (num_distributions,))
  if not isinstance(decoder_index, jax.core.Tracer):
    index = np.asarray(decoder_index)
    if np.any((index < 0) | (index >= num_decoders)):
      raise ValueError(f"decoder_index={index.tolist()} is out of range for {num_decoders} decoders: "
                       f"every index must lie in [0, {num_decoders})")
  decoder_index = jnp.asarray(decoder_index)
  valid = (decoder_index >= 0) & (decoder_index < num_decoders)
  selected = jax.tree_util.tree_map(lambda leaf: leaf[jnp.clip(decoder_index, 0, num_decoders - 1)], decoder_params)
  return selected, valid


def _nan_where_invalid(values: jax.Array, valid: jax.Array | None) -> jax.Array:
  """`values` (K, ...) with the rows of distributions whose decoder index was out of range set to NaN."""
  if valid is None:
    return values
  return jnp.where(valid.reshape((-1,) + (1,) * (values.ndim - 1)), values, jnp.nan)


# --- Single-distribution bounds ---------------------------------------------------------------------------------


def elbo(
    key: jax.Array,
    posterior: DiagonalGaussian,
    log_likelihood_fn: LogLikelihoodFn,
    *,
    prior: Prior | None = None,
    num_samples: int = 1,
) -> jax.Array:
  """Per-example evidence lower bound, E_q[log p(x|z)] - KL(q(z|x) || p(z)) (Wu et al. eq. 5).

  Args:
    key: PRNG key for the reparameterised samples.
    posterior: q(z | x) with batch shape (B,) (or any batch shape) and latent event axis.
    log_likelihood_fn: maps z of the posterior's shape (B, Z) to log p(x | z) of shape (B,).
    prior: p(z): a `DiagonalGaussian` of the posterior's shape, or a callable z -> log p(z); N(0, I) when None.
    num_samples: reparameterised samples averaged in the expectation, >= 1.

  Returns:
    The ELBO of shape (B,). The KL is analytic when prior and posterior are diagonal
    Gaussians and a Monte Carlo estimate with the same samples otherwise.

  Raises:
    ValueError: num_samples < 1, a prior of another shape, or a log-likelihood of another shape than (B,).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.objectives import elbo
    >>> q = DiagonalGaussian(jnp.zeros((3, 2)), jnp.zeros((3, 2)))    # q = p = N(0, I): the KL is 0
    >>> elbo(jax.random.key(0), q, lambda z: jnp.zeros(3)).tolist()
    [0.0, 0.0, 0.0]
  """
  _check_count("num_samples", num_samples)
  prior = standard_normal_like(posterior) if prior is None else prior
  _check_prior(prior, posterior)
  batch_shape = _batch_shape(posterior)
  z = posterior.sample(key, (num_samples,))
  log_likelihood = jax.vmap(log_likelihood_fn)(z)
  _check_shape(f"log_likelihood_fn's value (one per example, for z of shape {z.shape[1:]})",
               log_likelihood, (num_samples,) + batch_shape)
  if isinstance(prior, DiagonalGaussian) and has_analytic_kl(posterior, prior):
    return jnp.mean(log_likelihood, axis=0) - kl_divergence(posterior, prior)
  log_weights = log_likelihood + jax.vmap(lambda zs: _log_prior(prior, zs))(z) - posterior.log_prob(z)
  return jnp.mean(log_weights, axis=0)


def enumerated_elbo(posterior: Categorical, log_likelihoods: jax.Array, *,
                    prior: Categorical | None = None) -> jax.Array:
  """Exact ELBO of a discrete latent: sum_c q(c) log p(x | c) - KL(q || p), no sampling.

  Args:
    posterior: q(z | x), batch shape (B,), over C values.
    log_likelihoods: (B, C): log p(x | z = c) for every value c.
    prior: p(z); uniform over the C values when None.

  Returns:
    The ELBO, shape (B,).

  Raises:
    ValueError: `log_likelihoods` is not of the posterior's shape (B, C).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import Categorical
    >>> from meta_amortized.objectives import enumerated_elbo
    >>> log_likelihoods = jnp.log(jnp.array([[0.2, 0.6]]))              # log p(x | c), c in {0, 1}
    >>> exact = Categorical(jnp.log(jnp.array([[0.25, 0.75]])))         # the true posterior
    >>> round(float(enumerated_elbo(exact, log_likelihoods)[0]), 4)     # log p(x) = log(0.4): the bound is tight
    -0.9163
  """
  _check_shape("log_likelihoods (log p(x | z = c) for every value c of the posterior)", log_likelihoods,
               jnp.shape(posterior.logits))
  prior = Categorical(jnp.zeros_like(posterior.logits)) if prior is None else prior
  return jnp.sum(posterior.probs * log_likelihoods, axis=-1) - kl_divergence(posterior, prior)


def iwae_bound(
    key: jax.Array,
    posterior: DiagonalGaussian,
    log_likelihood_fn: LogLikelihoodFn,
    *,
    prior: Prior | None = None,
    num_samples: int,
    chunk_size: int | None = None,
) -> jax.Array:
  """Importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q (Burda et al.).

  Also the standard estimate of log p(x) (K = 5000 for test NLLs). The samples are
  drawn in chunks of `chunk_size` inside a `lax.scan` (the last chunk holds what is
  left when `chunk_size` does not divide K), so memory grows with the chunk, not
  with K: K = 5000 on 100 MNIST images with chunks of 100 needs a few hundred MiB.

  Args:
    key: PRNG key.
    posterior: the proposal q(z | x), batch shape (B,).
    log_likelihood_fn: z of shape (B, Z) -> log p(x | z) of shape (B,).
    prior: p(z): a `DiagonalGaussian` of the posterior's shape, or a callable; N(0, I) when None.
    num_samples: K >= 1, the number of importance samples.
    chunk_size: samples per chunk, >= 1; min(K, 100) when None.

  Returns:
    The bound, of shape (B,). It increases with K towards log p(x).

  Raises:
    ValueError: num_samples or chunk_size < 1, a prior of another shape, or a log-likelihood of another shape.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.objectives import iwae_bound
    >>> q = DiagonalGaussian(jnp.zeros((2, 3)), jnp.zeros((2, 3)))    # the prior as proposal
    >>> iwae_bound(jax.random.key(0), q, lambda z: jnp.zeros(2), num_samples=150).tolist()  # log p(x) = 0
    [0.0, 0.0]
  """
  _check_count("num_samples", num_samples)
  chunk_size = min(num_samples, 100) if chunk_size is None else chunk_size
  _check_count("chunk_size", chunk_size)
  chunk_size = min(chunk_size, num_samples)
  prior = standard_normal_like(posterior) if prior is None else prior
  _check_prior(prior, posterior)
  batch_shape = _batch_shape(posterior)

  def chunk_logsumexp(chunk_key, size):
    z = posterior.sample(chunk_key, (size,))
    log_likelihood = jax.vmap(log_likelihood_fn)(z)
    _check_shape(f"log_likelihood_fn's value (one per example, for z of shape {z.shape[1:]})",
                 log_likelihood, (size,) + batch_shape)
    log_weights = log_likelihood + jax.vmap(lambda zs: _log_prior(prior, zs))(z) - posterior.log_prob(z)
    return jax.nn.logsumexp(log_weights, axis=0)

  num_chunks, remainder = divmod(num_samples, chunk_size)
  keys = jax.random.split(key, num_chunks + (remainder > 0))
  _, per_chunk = jax.lax.scan(lambda _, k: (None, chunk_logsumexp(k, chunk_size)), None, keys[:num_chunks])
  if remainder:
    per_chunk = jnp.concatenate([per_chunk, chunk_logsumexp(keys[-1], remainder)[None]])
  return jax.nn.logsumexp(per_chunk, axis=0) - math.log(num_samples)


# --- The MetaELBO -----------------------------------------------------------------------------------------------


def meta_elbo(
    key: jax.Array,
    queries: jax.Array,
    sets: Any,
    *,
    meta_inference_fn: Callable[[Any, jax.Array], DiagonalGaussian],
    decoder_log_likelihood_fn: DecoderLogLikelihoodFn,
    decoder_params: Any,
    decoder_index: jax.Array | None = None,
    prior: Prior | None = None,
    num_samples: int = 1,
) -> jax.Array:
  """The MetaELBO (Wu et al. eq. 11, with the sample set D_i standing for p_Di, eq. 12).

  For each distribution i of the batch, and each query x of that distribution:
    E_{q(z | D_i, x)} [log p_theta_i(x | z)] - KL(q(z | D_i, x) || p(z)),
  with q(z | D_i, x) = g(D_i, x) shared by all distributions and one decoder theta_i
  per distribution. Distributions are a leading array axis, computed with `jax.vmap`.
  With one distribution and a g that ignores D this is exactly `elbo`.

  Args:
    key: PRNG key; distribution i uses `jax.random.split(key, K)[i]`.
    queries: (K, B, *event): B queries from each of K distributions.
    sets: a pytree of arrays with leading axis K: the sample sets D_i, e.g. (K, N, *event)
      for one set per distribution, or (K, B, N, *event) for one set per query.
    meta_inference_fn: g(D_i, x_i) -> DiagonalGaussian of batch shape (B,), called with
      `sets[i]` and `queries[i]`.
    decoder_log_likelihood_fn: (theta_i, x_i, z) -> log p_theta_i(x_i | z) of shape (B,), z of shape (B, Z).
    decoder_params: pytree whose leaves stack the decoders on a leading axis.
    decoder_index: (K,) integers in [0, number of decoders): the decoder of each distribution; `arange(K)` when
      None. A concrete index out of range is a ValueError. Under `jit` no exception can be raised: the MetaELBO of
      a distribution whose traced index is out of range is NaN (never another decoder's value).
    prior: p(z): a `DiagonalGaussian` of the posterior's shape, or a callable; N(0, I) when None.
    num_samples: reparameterised samples per query, >= 1.

  Returns:
    The per-query MetaELBO, shape (K, B).

  Raises:
    ValueError: shapes that do not fit (named), an empty set or batch, num_samples < 1, a decoder index out of
      range.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli, DiagonalGaussian
    >>> from meta_amortized.objectives import meta_elbo
    >>> K, B, N, D, Z = 3, 4, 5, 6, 2
    >>> queries, sets = jnp.ones((K, B, D)), jnp.ones((K, B, N, D))  # one set of N per query
    >>> g = lambda d, x: DiagonalGaussian(jnp.mean(d, -2)[:, :Z] + x[:, :Z], jnp.zeros((B, Z)))
    >>> decoders = {"w": jnp.zeros((K, Z, D))}                          # one linear decoder per distribution
    >>> log_lik = lambda theta, x, z: Bernoulli(z @ theta["w"]).log_prob(x)
    >>> meta_elbo(jax.random.key(0), queries, sets, meta_inference_fn=g, decoder_log_likelihood_fn=log_lik,
    ...           decoder_params=decoders).shape
    (3, 4)
  """
  _check_count("num_samples", num_samples)
  _check_meta_batch(queries, sets)
  num_distributions, batch_size = queries.shape[:2]
  params, valid = _select_decoders(decoder_params, decoder_index, num_distributions)

  def one_distribution(dist_key, theta, x, d):
    posterior = meta_inference_fn(d, x)
    if not isinstance(posterior, DiagonalGaussian) or jnp.ndim(posterior.mean) < 2 or \
        posterior.mean.shape[0] != batch_size:
      raise ValueError(f"meta_inference_fn must return a DiagonalGaussian of batch shape ({batch_size},); got "
                       f"{type(posterior).__name__} of shape {jnp.shape(getattr(posterior, 'mean', None))}")
    return elbo(dist_key, posterior, lambda z: decoder_log_likelihood_fn(theta, x, z), prior=prior,
                num_samples=num_samples)

  keys = jax.random.split(key, num_distributions)
  return _nan_where_invalid(jax.vmap(one_distribution)(keys, params, queries, sets), valid)


# --- The Neural Statistician and the Variational Homoencoder ----------------------------------------------------


def vampprior_log_prob(value: jax.Array, pseudo_posteriors: DiagonalGaussian) -> jax.Array:
  """log p(c) for the VampPrior p(c) = (1/P) sum_p q(c | u_p) (Tomczak & Welling 2018).

  Args:
    value: (..., C).
    pseudo_posteriors: the posteriors at the P pseudo-inputs, batch shape (P,), event (C,).

  Returns:
    (...,) log-densities.

  Raises:
    ValueError: `pseudo_posteriors` is not (P, C) with P >= 1, or `value` does not end with C.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.objectives import vampprior_log_prob
    >>> one = DiagonalGaussian(jnp.zeros((1, 2)), jnp.zeros((1, 2)))   # P = 1: the prior is N(0, I)
    >>> round(float(vampprior_log_prob(jnp.zeros(2), one)), 4)          # -log(2 pi)
    -1.8379
  """
  if jnp.ndim(pseudo_posteriors.mean) != 2 or pseudo_posteriors.mean.shape[0] == 0:
    raise ValueError(f"pseudo_posteriors must have shape (P, C) with P >= 1; got {jnp.shape(pseudo_posteriors.mean)}")
  if jnp.ndim(value) == 0 or jnp.shape(value)[-1] != pseudo_posteriors.mean.shape[-1]:
    raise ValueError(f"value of shape {jnp.shape(value)} must end with the pseudo-posteriors' event size "
                     f"{pseudo_posteriors.mean.shape[-1]}")
  # sum_d (c_d - m_pd)^2 / v_pd expanded into two (..., C) x (C, P) matrix products, rather than a
  # (..., P, C) array of differences: the same FLOPs, at matrix-product speed and memory.
  precision = jnp.exp(-pseudo_posteriors.log_variance)  # (P, C)
  mean, highest = pseudo_posteriors.mean, jax.lax.Precision.HIGHEST
  quadratic = (jnp.matmul(jnp.square(value), precision.T, precision=highest)
               - 2.0 * jnp.matmul(value, (mean * precision).T, precision=highest)
               + jnp.sum(jnp.square(mean) * precision, axis=-1))
  per_component = -0.5 * (mean.shape[-1] * math.log(2.0 * math.pi)
                          + jnp.sum(pseudo_posteriors.log_variance, axis=-1) + quadratic)
  return jax.nn.logsumexp(per_component, axis=-1) - math.log(mean.shape[0])


def _context_terms(key, sets, context_posterior_fn, context_prior):
  """Samples c ~ q(c | D) and returns (c, KL(q(c|D) || p(c)))."""
  context_posterior = context_posterior_fn(sets)
  prior = standard_normal_like(context_posterior) if context_prior is None else context_prior
  _check_prior(prior, context_posterior, "context_prior")
  c = context_posterior.sample(key)
  if isinstance(prior, DiagonalGaussian):
    return c, kl_divergence(context_posterior, prior)
  return c, context_posterior.log_prob(c) - prior(c)


def _element_bound(key, c, latent_posterior_fn, latent_prior_fn, log_likelihood_fn, x, expected_shape):
  """E_{q(z|x,c)} log p(x | z, c) - KL(q(z | x, c) || p(z | c)) for every element x, of `expected_shape`;
  p(z | c) = N(0, I) when `latent_prior_fn` is None."""
  latent_posterior = latent_posterior_fn(x, c)
  if latent_prior_fn is None:
    latent_prior = standard_normal_like(latent_posterior)
  else:
    latent_prior = latent_prior_fn(c)
    _check_prior(latent_prior, latent_posterior, "latent_prior_fn's p(z | c)")
  z = latent_posterior.sample(key)
  log_likelihood = log_likelihood_fn(z, c)
  _check_shape("context_log_likelihood_fn's value (one per element)", log_likelihood, expected_shape)
  kl = kl_divergence(latent_posterior, latent_prior)
  _check_shape("the latent posterior's KL (one per element)", kl, expected_shape)
  return log_likelihood - kl


def _check_sets(sets: jax.Array, min_rank: int = 3) -> None:
  if jnp.ndim(sets) < min_rank:
    raise ValueError(f"sets must be (S, N, *event) with at least one event axis; got shape {jnp.shape(sets)}")
  if 0 in sets.shape[:2]:
    raise ValueError(f"sets must hold at least one set of at least one element; got shape {sets.shape}")


def statistician_elbo(
    key: jax.Array,
    sets: jax.Array,
    *,
    context_posterior_fn: Callable[[jax.Array], DiagonalGaussian],
    latent_posterior_fn: Callable[[jax.Array, jax.Array], DiagonalGaussian],
    context_log_likelihood_fn: ContextLogLikelihoodFn,
    latent_prior_fn: Callable[[jax.Array], DiagonalGaussian] | None = None,
    context_prior: Prior | None = None,
    num_samples: int = 1,
) -> jax.Array:
  """Neural Statistician bound per set (Edwards & Storkey 2017, eq. 7 there).

  For a set D = {x_1..x_N}:
    E_{q(c|D)} [ sum_n ( E_{q(z|x_n,c)} log p(x_n | z, c) - KL(q(z | x_n, c) || p(z | c)) ) ]
      - KL(q(c | D) || p(c)).

  Args:
    key: PRNG key.
    sets: (S, N, *event): S sets of N >= 1 elements.
    context_posterior_fn: sets (S, N, *event) -> q(c | D), batch (S,), event (C,).
    latent_posterior_fn: (x, c) -> q(z | x, c); x is (S, N, *event), c is (S, N, C).
    context_log_likelihood_fn: (z (S, N, Z), c (S, N, C)) -> log p(x | z, c) of the set elements, (S, N).
    latent_prior_fn: c (S, N, C) -> p(z | c) of the posterior's shape (S, N, Z); N(0, I) when None.
    context_prior: p(c): a `DiagonalGaussian` of q(c | D)'s shape or a log-density such as a VampPrior; N(0, I)
      when None.
    num_samples: joint samples of (c, z) averaged, >= 1.

  Returns:
    The bound of each set, shape (S,). Divide by N for a per-element value.

  Raises:
    ValueError: empty sets, num_samples < 1, or a callable's value of another shape than stated (named).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli, DiagonalGaussian
    >>> from meta_amortized.objectives import statistician_elbo
    >>> sets = jnp.ones((2, 5, 6))                                      # S = 2 sets of N = 5
    >>> q_c = lambda d: DiagonalGaussian(jnp.mean(d, -2)[:, :3], jnp.zeros((2, 3)))
    >>> q_z = lambda x, c: DiagonalGaussian(x[..., :2] + c[..., :2], jnp.zeros(x.shape[:-1] + (2,)))
    >>> log_lik = lambda z, c: Bernoulli(jnp.tile(z, 3) + c[..., :1]).log_prob(sets)
    >>> per_set = statistician_elbo(jax.random.key(0), sets, context_posterior_fn=q_c, latent_posterior_fn=q_z,
    ...                             context_log_likelihood_fn=log_lik)
    >>> per_set.shape
    (2,)
  """
  _check_count("num_samples", num_samples)
  _check_sets(sets)
  set_size = sets.shape[1]

  def one_sample(sample_key):
    context_key, latent_key = jax.random.split(sample_key)
    c, context_kl = _context_terms(context_key, sets, context_posterior_fn, context_prior)
    c_per_element = jnp.broadcast_to(c[:, None, :], (c.shape[0], set_size, c.shape[-1]))
    elements = _element_bound(latent_key, c_per_element, latent_posterior_fn, latent_prior_fn,
                              context_log_likelihood_fn, sets, sets.shape[:2])
    return jnp.sum(elements, axis=1) - context_kl

  return jnp.mean(jax.vmap(one_sample)(jax.random.split(key, num_samples)), axis=0)


def homoencoder_elbo(
    key: jax.Array,
    queries: jax.Array,
    sets: jax.Array,
    *,
    context_posterior_fn: Callable[[jax.Array], DiagonalGaussian],
    latent_posterior_fn: Callable[[jax.Array, jax.Array], DiagonalGaussian],
    context_log_likelihood_fn: ContextLogLikelihoodFn,
    latent_prior_fn: Callable[[jax.Array], DiagonalGaussian] | None = None,
    context_prior: Prior | None = None,
    context_kl_weight: float | None = None,
    num_samples: int = 1,
) -> jax.Array:
  """Variational Homoencoder bound per query (Hewitt et al. 2018; Wu et al. eq. 13).

  Each query x has its own small set D (from the same distribution):
    E_{q(c|D)} [ E_{q(z|x,c)} log p(x | z, c) - KL(q(z | x, c) || p(z | c)) ]
      - w KL(q(c | D) || p(c)).

  Args:
    key: PRNG key.
    queries: (B, *event).
    sets: (B, N, *event): the set D of each query, N >= 1.
    context_posterior_fn: sets (B, N, *event) -> q(c | D), batch (B,), event (C,).
    latent_posterior_fn: (x (B, *event), c (B, C)) -> q(z | x, c).
    context_log_likelihood_fn: (z (B, Z), c (B, C)) -> log p(x | z, c) of the queries, (B,).
    latent_prior_fn: c (B, C) -> p(z | c) of the posterior's shape (B, Z); N(0, I) when None.
    context_prior: p(c); standard normal when None, or a log-density such as a VampPrior.
    context_kl_weight: w >= 0. Defaults to 1/|D| = 1/N, the set size. The VHE paper's bound
      uses 1/|X| for the whole dataset X the set is drawn from: pass 1/len(X) for that;
      the original MetaVAE code uses 1.
    num_samples: joint samples of (c, z) averaged, >= 1.

  Returns:
    The per-query bound, shape (B,).

  Raises:
    ValueError: shapes that do not fit, empty sets, a negative or non-finite weight, num_samples < 1.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli, DiagonalGaussian
    >>> from meta_amortized.objectives import homoencoder_elbo
    >>> queries, sets = jnp.ones((4, 6)), jnp.ones((4, 5, 6))          # a set of 5 per query
    >>> q_c = lambda d: DiagonalGaussian(jnp.mean(d, -2)[:, :3], jnp.zeros((4, 3)))
    >>> q_z = lambda x, c: DiagonalGaussian(x[:, :2] + c[:, :2], jnp.zeros((4, 2)))
    >>> log_lik = lambda z, c: Bernoulli(jnp.tile(z, 3) + c[:, :1]).log_prob(queries)
    >>> homoencoder_elbo(jax.random.key(0), queries, sets, context_posterior_fn=q_c, latent_posterior_fn=q_z,
    ...                  context_log_likelihood_fn=log_lik, context_kl_weight=1 / 60000).shape  # the VHE's 1/|X|
    (4,)
  """
  _check_count("num_samples", num_samples)
  if jnp.ndim(queries) < 2:
    raise ValueError(f"queries must be (B, *event); got shape {jnp.shape(queries)}")
  _check_sets(sets)
  if sets.shape[0] != queries.shape[0] or sets.shape[2:] != queries.shape[1:]:
    raise ValueError(f"sets must be (B, N, *event) for queries of shape (B, *event) = {queries.shape}; "
                     f"got sets of shape {sets.shape}")
  weight = 1.0 / sets.shape[1] if context_kl_weight is None else context_kl_weight
  _check_weight("context_kl_weight", weight)

  def one_sample(sample_key):
    context_key, latent_key = jax.random.split(sample_key)
    c, context_kl = _context_terms(context_key, sets, context_posterior_fn, context_prior)
    elements = _element_bound(latent_key, c, latent_posterior_fn, latent_prior_fn, context_log_likelihood_fn,
                              queries, queries.shape[:1])
    return elements - weight * context_kl

  return jnp.mean(jax.vmap(one_sample)(jax.random.split(key, num_samples)), axis=0)
