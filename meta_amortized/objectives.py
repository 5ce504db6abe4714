"""Variational objectives as pure functions: ELBO, IWAE, MetaELBO and the baselines.

Every objective takes a PRNG key first, arrays, distribution pytrees and
callables, and returns *unreduced* per-example (or per-set) values; the caller
reduces. Nothing here depends on Flax or on a config, so any JAX model can use
these under `jit`, `vmap` and `grad`:

  >>> from meta_amortized import objectives
  >>> per_example = objectives.elbo(key, posterior, lambda z: decoder_log_lik(x, z))
  >>> loss = -per_example.mean()

A prior is either a `DiagonalGaussian` (the KL is then analytic) or a callable
returning the log-density of z summed over its event axis (the KL is then the
single-sample Monte Carlo estimate log q(z) - log p(z) at the reparameterised z).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp

from meta_amortized.distributions import (
  Categorical,
  DiagonalGaussian,
  has_analytic_kl,
  kl_divergence,
  standard_normal_like,
)

Prior = DiagonalGaussian | Callable[[jax.Array], jax.Array]
LogLikelihoodFn = Callable[[jax.Array], jax.Array]


def _batch_shape(posterior: DiagonalGaussian) -> tuple[int, ...]:
  shape = jnp.shape(posterior.mean)
  return shape[: len(shape) - posterior.event_ndims]


def _check_batch(name: str, values: jax.Array, batch_shape: tuple[int, ...]) -> None:
  chex.assert_shape(
      values, batch_shape,
      custom_message=f"`{name}` must return one value per example, of the posterior's batch shape {batch_shape}",
  )


def _log_prior(prior: Prior, z: jax.Array) -> jax.Array:
  return prior.log_prob(z) if isinstance(prior, DiagonalGaussian) else prior(z)


def elbo(
    key: jax.Array,
    posterior: DiagonalGaussian,
    log_likelihood_fn: LogLikelihoodFn,
    prior: Prior | None = None,
    *,
    num_samples: int = 1,
) -> jax.Array:
  """Per-example evidence lower bound, E_q[log p(x|z)] - KL(q(z|x) || p(z)) (Wu et al. eq. 5).

  Args:
    key: PRNG key for the reparameterised samples.
    posterior: q(z | x) with batch shape (B,) (or any batch shape) and latent event axis.
    log_likelihood_fn: maps z of the posterior's shape (B, Z) to log p(x | z) of shape (B,).
    prior: p(z); the standard normal when None.
    num_samples: reparameterised samples averaged in the expectation.

  Returns:
    The ELBO of shape (B,). The KL is analytic when prior and posterior are diagonal
    Gaussians and a Monte Carlo estimate with the same samples otherwise.

  Example:
    >>> q = DiagonalGaussian(mean, log_variance)                      # (B, Z)
    >>> bound = elbo(key, q, lambda z: Bernoulli(decode(z)).log_prob(x))
  """
  prior = standard_normal_like(posterior) if prior is None else prior
  batch_shape = _batch_shape(posterior)
  z = posterior.sample(key, (num_samples,))
  log_likelihood = jax.vmap(log_likelihood_fn)(z)
  chex.assert_shape(
      log_likelihood, (num_samples,) + batch_shape,
      custom_message=f"`log_likelihood_fn` must map z of shape {z.shape[1:]} to one value per example {batch_shape}",
  )
  if isinstance(prior, DiagonalGaussian) and has_analytic_kl(posterior, prior):
    return jnp.mean(log_likelihood, axis=0) - kl_divergence(posterior, prior)
  log_weights = log_likelihood + jax.vmap(lambda zs: _log_prior(prior, zs))(z) - posterior.log_prob(z)
  return jnp.mean(log_weights, axis=0)


def enumerated_elbo(posterior: Categorical, log_likelihoods: jax.Array, prior: Categorical | None = None) -> jax.Array:
  """Exact ELBO of a discrete latent: sum_c q(c) log p(x | c) - KL(q || p), no sampling.

  Args:
    posterior: q(z | x), batch shape (B,), over C values.
    log_likelihoods: (B, C): log p(x | z = c) for every value c.
    prior: p(z); uniform over the C values when None.

  Returns:
    The ELBO, shape (B,).

  Example:
    >>> q = Categorical(cluster_logits)                               # (B, C)
    >>> bound = enumerated_elbo(q, component_log_prob(x))             # log p(x | c) for every c: (B, C)
  """
  chex.assert_equal_shape(
      [posterior.logits, log_likelihoods],
      custom_message="`log_likelihoods` must hold log p(x | z = c) for every value c of the posterior")
  prior = Categorical(jnp.zeros_like(posterior.logits)) if prior is None else prior
  return jnp.sum(posterior.probs * log_likelihoods, axis=-1) - kl_divergence(posterior, prior)


def iwae_bound(
    key: jax.Array,
    posterior: DiagonalGaussian,
    log_likelihood_fn: LogLikelihoodFn,
    prior: Prior | None = None,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> jax.Array:
  """Importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q (Burda et al.).

  Also the standard estimate of log p(x) (K = 5000 for test NLLs). The samples are
  drawn in chunks of `chunk_size` inside a `lax.scan`, so memory grows with the
  chunk, not with K: K = 5000 on 100 MNIST images with chunks of 100 needs a few
  hundred MiB.

  Args:
    key: PRNG key.
    posterior: the proposal q(z | x), batch shape (B,).
    log_likelihood_fn: z of shape (B, Z) -> log p(x | z) of shape (B,).
    prior: p(z); the standard normal when None.
    num_samples: K, the number of importance samples.
    chunk_size: samples per chunk; must divide K. Defaults to min(K, 100).

  Returns:
    The bound, of shape (B,). It increases with K towards log p(x).

  Example:
    >>> nll = -iwae_bound(key, q, lambda z: Bernoulli(decode(z)).log_prob(x), num_samples=5000)
  """
  prior = standard_normal_like(posterior) if prior is None else prior
  chunk_size = min(num_samples, 100) if chunk_size is None else chunk_size
  if num_samples % chunk_size:
    raise ValueError(f"num_samples={num_samples} is not a multiple of chunk_size={chunk_size}")
  batch_shape = _batch_shape(posterior)

  def chunk_logsumexp(_, chunk_key):
    z = posterior.sample(chunk_key, (chunk_size,))
    log_likelihood = jax.vmap(log_likelihood_fn)(z)
    chex.assert_shape(log_likelihood, (chunk_size,) + batch_shape,
                      custom_message="`log_likelihood_fn` must return one value per example")
    log_weights = log_likelihood + jax.vmap(lambda zs: _log_prior(prior, zs))(z) - posterior.log_prob(z)
    return None, jax.nn.logsumexp(log_weights, axis=0)

  keys = jax.random.split(key, num_samples // chunk_size)
  _, per_chunk = jax.lax.scan(chunk_logsumexp, None, keys)
  return jax.nn.logsumexp(per_chunk, axis=0) - math.log(num_samples)


def check_meta_batch(queries: jax.Array, sets: Any) -> None:
  """Raises a ValueError unless `queries` is (K, B, *event) and every leaf of `sets` has the leading K axis."""
  chex.assert_rank(queries, {2, 3, 4, 5}, custom_message="`queries` must be (K, B, *event)")
  num_distributions = queries.shape[0]
  for leaf in jax.tree_util.tree_leaves(sets):
    if leaf.ndim == 0 or leaf.shape[0] != num_distributions:
      raise ValueError(
          f"`sets` must have a leading distribution axis of size {num_distributions} "
          f"(from `queries` of shape {queries.shape}); got an array of shape {leaf.shape}")


def select_decoders(decoder_params: Any, decoder_index: jax.Array | None, num_distributions: int) -> Any:
  """The decoder parameters (stacked on a leading axis) of each of `num_distributions` distributions:
  decoder `decoder_index[i]` for distribution i, or all of them in order when `decoder_index` is None."""
  leaves = jax.tree_util.tree_leaves(decoder_params)
  if not leaves:
    raise ValueError("`decoder_params` has no arrays")
  sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError("`decoder_params` leaves must share a leading decoder axis; "
                     f"got leading sizes {sorted(map(str, sizes))}")
  (num_decoders,) = sizes
  if decoder_index is None:
    if num_decoders != num_distributions:
      raise ValueError(
          f"`decoder_params` holds {num_decoders} decoders but `queries` has {num_distributions} "
          "distributions; pass `decoder_index` to choose a decoder per distribution")
    return decoder_params
  chex.assert_shape(decoder_index, (num_distributions,),
                    custom_message="`decoder_index` needs one decoder index per distribution of `queries`")
  return jax.tree_util.tree_map(lambda leaf: leaf[decoder_index], decoder_params)


def meta_elbo(
    key: jax.Array,
    queries: jax.Array,
    sets: Any,
    *,
    meta_inference_fn: Callable[[Any, jax.Array], DiagonalGaussian],
    log_likelihood_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
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
    log_likelihood_fn: (theta_i, x_i, z) -> log p_theta_i(x_i | z) of shape (B,), z of shape (B, Z).
    decoder_params: pytree whose leaves stack the decoders on a leading axis.
    decoder_index: (K,) int: the decoder of each distribution; `arange(K)` when None.
    prior: p(z); the standard normal when None.
    num_samples: reparameterised samples per query.

  Returns:
    The per-query MetaELBO, shape (K, B).

  Example:
    >>> g = lambda d, x: encoder.apply(enc_params, d, x)
    >>> ll = lambda theta, x, z: Bernoulli(decoder.apply(theta, z)).log_prob(x)
    >>> loss = -meta_elbo(key, x, d, meta_inference_fn=g, log_likelihood_fn=ll,
    ...                   decoder_params=stacked_params).mean()
  """
  check_meta_batch(queries, sets)
  num_distributions, batch_size = queries.shape[:2]
  params = select_decoders(decoder_params, decoder_index, num_distributions)

  def one_distribution(dist_key, theta, x, d):
    posterior = meta_inference_fn(d, x)
    chex.assert_shape(posterior.mean, (batch_size, None),
                      custom_message="`meta_inference_fn` must return a posterior of batch shape (B,)")
    return elbo(dist_key, posterior, lambda z: log_likelihood_fn(theta, x, z), prior, num_samples=num_samples)

  keys = jax.random.split(key, num_distributions)
  return jax.vmap(one_distribution)(keys, params, queries, sets)


def vampprior_log_prob(value: jax.Array, pseudo_posteriors: DiagonalGaussian) -> jax.Array:
  """log p(c) for the VampPrior p(c) = (1/P) sum_p q(c | u_p) (Tomczak & Welling 2018).

  Args:
    value: (..., C).
    pseudo_posteriors: the posteriors at the P pseudo-inputs, batch shape (P,), event (C,).

  Returns:
    (...,) log-densities.

  Example:
    >>> pseudo = context_posterior_fn(pseudo_sets)                    # (P, C), from learned pseudo-sets
    >>> bound = homoencoder_elbo(..., context_prior=lambda c: vampprior_log_prob(c, pseudo))
  """
  chex.assert_rank(pseudo_posteriors.mean, 2, custom_message="`pseudo_posteriors` must have shape (P, C)")
  chex.assert_axis_dimension(value, -1, pseudo_posteriors.mean.shape[-1],
                             custom_message="`value` must end with the pseudo-posteriors' event size")
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
  c = context_posterior.sample(key)
  if isinstance(prior, DiagonalGaussian):
    return c, kl_divergence(context_posterior, prior)
  return c, context_posterior.log_prob(c) - prior(c)


def _element_bound(key, x, c, latent_posterior_fn, latent_prior_fn, log_likelihood_fn):
  """E_{q(z|x,c)} log p(x | z, c) - KL(q(z | x, c) || p(z | c)) for every element x; p(z | c) = N(0, I) when
  `latent_prior_fn` is None."""
  latent_posterior = latent_posterior_fn(x, c)
  if latent_prior_fn is None:
    latent_prior = standard_normal_like(latent_posterior)
  else:
    latent_prior = latent_prior_fn(c)
    latent_prior = DiagonalGaussian(
        jnp.broadcast_to(latent_prior.mean, latent_posterior.mean.shape),
        jnp.broadcast_to(latent_prior.log_variance, latent_posterior.mean.shape))
  z = latent_posterior.sample(key)
  return log_likelihood_fn(x, z, c) - kl_divergence(latent_posterior, latent_prior)


def statistician_elbo(
    key: jax.Array,
    sets: jax.Array,
    *,
    context_posterior_fn: Callable[[jax.Array], DiagonalGaussian],
    latent_posterior_fn: Callable[[jax.Array, jax.Array], DiagonalGaussian],
    latent_prior_fn: Callable[[jax.Array], DiagonalGaussian] | None,
    log_likelihood_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    context_prior: Prior | None = None,
    num_samples: int = 1,
) -> jax.Array:
  """Neural Statistician bound per set (Edwards & Storkey 2017, eq. 7 there).

  For a set D = {x_1..x_N}:
    E_{q(c|D)} [ sum_n ( E_{q(z|x_n,c)} log p(x_n | z, c) - KL(q(z | x_n, c) || p(z | c)) ) ]
      - KL(q(c | D) || p(c)).

  Args:
    key: PRNG key.
    sets: (S, N, *event): S sets of N elements.
    context_posterior_fn: sets (S, N, *event) -> q(c | D), batch (S,), event (C,).
    latent_posterior_fn: (x, c) -> q(z | x, c); x is (S, N, *event), c is (S, N, C).
    latent_prior_fn: c -> p(z | c), broadcastable to the posterior's shape; None for N(0, I).
    log_likelihood_fn: (x, z, c) -> log p(x | z, c) of shape (S, N).
    context_prior: p(c); standard normal when None, or a log-density such as a VampPrior.
    num_samples: joint samples of (c, z) averaged.

  Returns:
    The bound of each set, shape (S,). Divide by N for a per-element value.

  Example:
    >>> per_set = statistician_elbo(key, sets, context_posterior_fn=q_c, latent_posterior_fn=q_z,
    ...                             latent_prior_fn=p_z, log_likelihood_fn=log_lik)
    >>> loss = -per_set.mean() / sets.shape[1]                        # per element
  """
  chex.assert_rank(sets, {3, 4, 5}, custom_message="`sets` must be (S, N, *event)")
  set_size = sets.shape[1]

  def one_sample(sample_key):
    context_key, latent_key = jax.random.split(sample_key)
    c, context_kl = _context_terms(context_key, sets, context_posterior_fn, context_prior)
    c_per_element = jnp.broadcast_to(c[:, None, :], (c.shape[0], set_size, c.shape[-1]))
    elements = _element_bound(latent_key, sets, c_per_element, latent_posterior_fn, latent_prior_fn,
                              log_likelihood_fn)
    chex.assert_shape(elements, sets.shape[:2],
                      custom_message="the per-element bound must have shape (S, N)")
    return jnp.sum(elements, axis=1) - context_kl

  return jnp.mean(jax.vmap(one_sample)(jax.random.split(key, num_samples)), axis=0)


def homoencoder_elbo(
    key: jax.Array,
    queries: jax.Array,
    sets: jax.Array,
    *,
    context_posterior_fn: Callable[[jax.Array], DiagonalGaussian],
    latent_posterior_fn: Callable[[jax.Array, jax.Array], DiagonalGaussian],
    latent_prior_fn: Callable[[jax.Array], DiagonalGaussian] | None,
    log_likelihood_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
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
    sets: (B, N, *event): the set D of each query.
    context_posterior_fn: sets (B, N, *event) -> q(c | D), batch (B,), event (C,).
    latent_posterior_fn: (x (B, *event), c (B, C)) -> q(z | x, c).
    latent_prior_fn: c -> p(z | c); None for N(0, I).
    log_likelihood_fn: (x, z, c) -> (B,).
    context_prior: p(c); standard normal when None, or a log-density such as a VampPrior.
    context_kl_weight: w. Defaults to 1/|D| = 1/N, the set size. The VHE paper's bound
      uses 1/|X| for the whole dataset X the set is drawn from: pass 1/len(X) for that;
      the original MetaVAE code uses 1.
    num_samples: joint samples of (c, z) averaged.

  Returns:
    The per-query bound, shape (B,).

  Example:
    >>> per_query = homoencoder_elbo(key, x, sets, context_posterior_fn=q_c, latent_posterior_fn=q_z,
    ...                              latent_prior_fn=p_z, log_likelihood_fn=log_lik,
    ...                              context_kl_weight=1 / 60000)    # the VHE paper's 1/|X|
  """
  chex.assert_rank(queries, {2, 3, 4}, custom_message="`queries` must be (B, *event)")
  chex.assert_rank(sets, queries.ndim + 1, custom_message="`sets` must be (B, N, *event)")
  chex.assert_equal_shape_prefix([queries, sets], 1,
                                 custom_message="`queries` and `sets` need the same batch size B")
  if sets.shape[2:] != queries.shape[1:]:
    raise ValueError(f"`sets` elements have shape {sets.shape[2:]} but `queries` elements {queries.shape[1:]}")
  weight = 1.0 / sets.shape[1] if context_kl_weight is None else context_kl_weight

  def one_sample(sample_key):
    context_key, latent_key = jax.random.split(sample_key)
    c, context_kl = _context_terms(context_key, sets, context_posterior_fn, context_prior)
    elements = _element_bound(latent_key, queries, c, latent_posterior_fn, latent_prior_fn, log_likelihood_fn)
    chex.assert_shape(elements, queries.shape[:1], custom_message="the per-query bound must have shape (B,)")
    return elements - weight * context_kl

  return jnp.mean(jax.vmap(one_sample)(jax.random.split(key, num_samples)), axis=0)
