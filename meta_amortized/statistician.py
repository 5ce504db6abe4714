"""The Neural Statistician and the Variational Homoencoder (with an optional VampPrior), the MetaVAE paper's
baselines (docs/design.md, "Baselines").

Both are built from the networks of `networks`: q(c | D), q(z | x, c), p(z | c), p(x | z, c), and follow their
own papers' bounds (`objectives.statistician_elbo`, `objectives.homoencoder_elbo`), not the original MetaVAE
code's variants. Parameters are `{"context": ..., "latent_posterior": ..., "latent_prior": ..., "decoder": ...}`
plus `"pseudo_inputs"` (P, N, *event) for the VampPrior (no `"latent_prior"` when p(z | c) is fixed to N(0, I)).
They have the interface of every model of the package (`training.Model`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from meta_amortized import objectives
from meta_amortized.distributions import Bernoulli
from meta_amortized.networks import (
  ContextPosterior,
  LatentPosterior,
  LatentPrior,
  StatisticianDecoder,
  reinitialize_dense,
)
from meta_amortized.sampling import as_float, sample_meta_batch

__all__ = ["NeuralStatistician", "VariationalHomoencoder"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _ContextLatentModel:
  """What the NS and the VHE share: their four networks, a Bernoulli likelihood over the observations, the
  parameters, and the linear-probe codes. `latent_prior` None fixes p(z | c) to N(0, I), ignoring c, as the
  MetaVAE's prior over z (an ablation, in neither paper)."""

  context: ContextPosterior = ContextPosterior()
  latent_posterior: LatentPosterior = LatentPosterior()
  latent_prior: LatentPrior | None = LatentPrior()
  decoder: StatisticianDecoder = StatisticianDecoder()
  # The original MetaVAE code's departures (docs/design.md section 2), off by default: the Bernoulli probabilities
  # clamped to [likelihood_clamp, 1 - likelihood_clamp] (1e-7 there), and every Dense kernel drawn from
  # `kernel_init` with zero biases (xavier_normal, gain sqrt 2, there) instead of Flax's defaults.
  likelihood_clamp: float = 0.0
  kernel_init: Callable[..., jax.Array] | None = None

  bound_name = "bound"
  num_pseudo_sets = 0

  def init(self, key: jax.Array, num_distributions: int = 1,
           observation_shape: tuple[int, ...] = (784,)) -> tuple[Params, dict]:
    """(params, state = {}) for flat observations (`num_distributions` is not used: one set of networks serves
    every distribution)."""
    return self.init_params(key, num_distributions, math.prod(observation_shape), observation_shape), {}

  def init_params(self, key: jax.Array, num_distributions: int, input_dim: int,
                  observation_shape: tuple[int, ...]) -> Params:
    """Parameters for encoder inputs of size `input_dim` (the observations, or a conv trunk's features) and
    pseudo-inputs shaped like the observations, `observation_shape`."""
    del num_distributions
    keys = jax.random.split(key, 5)
    x = jnp.zeros((1, input_dim))
    c = jnp.zeros((1, self.context.context_dim))
    z = jnp.zeros((1, self.latent_posterior.latent_dim))
    params = {
        "context": self.context.init(keys[0], x[None]),
        "latent_posterior": self.latent_posterior.init(keys[1], x, c),
        "decoder": self.decoder.init(keys[3], z, c),
    }
    if self.latent_prior is not None:
      params["latent_prior"] = self.latent_prior.init(keys[2], c)
    if self.kernel_init is not None:
      params = reinitialize_dense(params, jax.random.fold_in(key, 1), self.kernel_init)
    if self.num_pseudo_sets:
      # Initialised N(0.05, 0.01) and clipped to [0, 1], as the original.
      shape = (self.num_pseudo_sets, self.pseudo_set_size, *observation_shape)
      pseudo = 0.05 + 0.01 * jax.random.normal(keys[4], shape)
      params["pseudo_inputs"] = jnp.clip(pseudo, 0.0, 1.0)
    return params

  def log_likelihood(self, params: Params, x: jax.Array, z: jax.Array, c: jax.Array) -> jax.Array:
    """log p(x | z, c) of observations x (..., *event) (flat or images)."""
    logits = self.decoder.apply(params["decoder"], z, c)
    return Bernoulli(logits.astype(jnp.float32), event_ndims=logits.ndim - z.ndim + 1,
                     clamp=self.likelihood_clamp).log_prob(x)

  def bound_fns(self, params: Params, pseudo_inputs: jax.Array | None = None) -> dict[str, Any]:
    """The networks as the callables `statistician_elbo` / `homoencoder_elbo` take (all but the likelihood),
    bound to `params`. `pseudo_inputs`: what q(c | D) sees of the VampPrior's pseudo-sets, (P, N, F)."""
    fns = dict(
        context_posterior_fn=lambda sets: self.context.apply(params["context"], sets),
        latent_posterior_fn=lambda x, c: self.latent_posterior.apply(params["latent_posterior"], x, c),
        latent_prior_fn=(None if self.latent_prior is None
                         else lambda c: self.latent_prior.apply(params["latent_prior"], c)),
    )
    if pseudo_inputs is not None:
      pseudo_posteriors = self.context.apply(params["context"], pseudo_inputs)
      fns["context_prior"] = lambda c: objectives.vampprior_log_prob(c, pseudo_posteriors)
    return fns

  def encode(self, params: Params, state: dict, key: jax.Array, sets: jax.Array, queries: jax.Array) -> jax.Array:
    """Linear-probe codes: the mean of q(z | x, c), c ~ q(c | D). sets (B, N, D) or (N, D); queries (B, D)."""
    del state
    context = self.context.apply(params["context"], sets).sample(key)
    context = jnp.broadcast_to(context, queries.shape[:-1] + context.shape[-1:])
    return self.latent_posterior.apply(params["latent_posterior"], queries, context).mean

  def loss(self, params: Params, state: dict, key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict]]:
    """Negative bound per observation of one batch drawn on the device from data (K, M, D)."""
    batch_key, bound_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    bound = self.bound(params, bound_key, as_float(queries), as_float(sets))
    return -jnp.mean(bound), ({"bound": jnp.mean(bound)}, state)


@dataclasses.dataclass(frozen=True)
class NeuralStatistician(_ContextLatentModel):
  """The Neural Statistician (Edwards & Storkey 2017): the set of a distribution is its query batch itself, and
  its bound is the per-set `objectives.statistician_elbo`, reported per observation.

  Examples:
    >>> import jax
    >>> from meta_amortized.networks import ContextPosterior, LatentPosterior, LatentPrior, StatisticianDecoder
    >>> from meta_amortized.statistician import NeuralStatistician
    >>> model = NeuralStatistician(ContextPosterior(8, 3), LatentPosterior(8, 2), LatentPrior((8,), 2),
    ...                            StatisticianDecoder(8, 16, 6))
    >>> data = jax.random.uniform(jax.random.key(0), (3, 20, 6))
    >>> params, state = model.init(jax.random.key(1), num_distributions=3, observation_shape=(6,))
    >>> loss, (metrics, state) = model.loss(params, state, jax.random.key(2), data, batch_size=4, set_size=5)
    >>> sorted(metrics)
    ['bound']
  """

  def encoder_images(self, params: Params, queries: jax.Array, sets: jax.Array) -> tuple[jax.Array, ...]:
    """What the encoders read: the queries alone (each distribution's batch is its set)."""
    del params, sets
    return (queries,)

  def bound(self, params: Params, key: jax.Array, queries: jax.Array, sets: jax.Array | None = None, *,
            encoder_inputs: tuple[jax.Array, ...] | None = None) -> jax.Array:
    """The bound per observation, (K, B), of queries (K, B, *event), each distribution's batch its set (`sets`
    is not used). `encoder_inputs`: what the encoders see in place of `encoder_images` (a conv trunk's
    features); the decoder scores `queries`."""
    del sets
    (query_inputs,) = (queries,) if encoder_inputs is None else encoder_inputs
    fns = self.bound_fns(params)
    keys = jax.random.split(key, queries.shape[0])

    def per_set(k, x, inputs):
      likelihood = lambda z, c: self.log_likelihood(params, x[None], z, c)
      return objectives.statistician_elbo(k, inputs[None], context_log_likelihood_fn=likelihood, **fns)

    bound = jax.vmap(per_set)(keys, queries, query_inputs)
    return jnp.broadcast_to(bound / queries.shape[1], queries.shape[:2])


@dataclasses.dataclass(frozen=True)
class VariationalHomoencoder(_ContextLatentModel):
  """The Variational Homoencoder (Hewitt et al. 2018): each query has its own set of `set_size` examples of its
  distribution; the bound is `objectives.homoencoder_elbo`. Its pre-pool layer of q(c | D) has no nonlinearity
  (`ContextPosterior(pre_pool_activation=None)`, the default here).

  Attributes:
    num_pseudo_sets: P > 0 gives it a VampPrior over c of P learned pseudo-sets of `pseudo_set_size`.
    context_kl_weight: the weight on KL(q(c|D) || p(c)), >= 0; None means 1/|D|. The VHE paper's is 1/|X|, the
      size of the dataset a set is drawn from.

  Examples:
    >>> import jax
    >>> from meta_amortized.networks import ContextPosterior, LatentPosterior, LatentPrior, StatisticianDecoder
    >>> from meta_amortized.statistician import VariationalHomoencoder
    >>> model = VariationalHomoencoder(ContextPosterior(8, 3, None), LatentPosterior(8, 2), LatentPrior((8,), 2),
    ...                                StatisticianDecoder(8, 16, 6), num_pseudo_sets=4, context_kl_weight=1 / 20)
    >>> data = jax.random.uniform(jax.random.key(0), (3, 20, 6))
    >>> params, state = model.init(jax.random.key(1), num_distributions=3, observation_shape=(6,))
    >>> params["pseudo_inputs"].shape                                  # P pseudo-sets of pseudo_set_size
    (4, 10, 6)
    >>> loss, (metrics, state) = model.loss(params, state, jax.random.key(2), data, batch_size=4, set_size=5)
  """

  context: ContextPosterior = ContextPosterior(pre_pool_activation=None)
  num_pseudo_sets: int = 0
  pseudo_set_size: int = 10
  context_kl_weight: float | None = None

  def __post_init__(self):
    for name in ("num_pseudo_sets", "pseudo_set_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_pseudo_sets" else 1):
        raise ValueError(f"{name}={value!r} is not allowed; expected an integer >= "
                         f"{0 if name == 'num_pseudo_sets' else 1}")
    weight = self.context_kl_weight
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
      raise ValueError(f"context_kl_weight={weight!r} is not allowed; expected a finite number >= 0 (or None)")

  def pseudo_inputs(self, params: Params) -> jax.Array:
    """The VampPrior's pseudo-sets (P, N, *event). Pseudo-observations are grey levels: the parameters pass
    through a hard tanh onto [0, 1], as the original."""
    return jnp.clip(params["pseudo_inputs"], 0.0, 1.0)

  def encoder_images(self, params: Params, queries: jax.Array, sets: jax.Array) -> tuple[jax.Array, ...]:
    """What the encoders read: the queries, their sets, and the VampPrior's pseudo-sets if there are any."""
    return (queries, sets, self.pseudo_inputs(params)) if self.num_pseudo_sets else (queries, sets)

  def bound(self, params: Params, key: jax.Array, queries: jax.Array, sets: jax.Array, *,
            encoder_inputs: tuple[jax.Array, ...] | None = None) -> jax.Array:
    """The bound per query, (K, B), of queries (K, B, *event) with their sets (K, B, N, *event).
    `encoder_inputs`: what the encoders see in place of `encoder_images` (a conv trunk's features); the decoder
    scores `queries`."""
    inputs = self.encoder_images(params, queries, sets) if encoder_inputs is None else encoder_inputs
    query_inputs, set_inputs = inputs[:2]
    fns = self.bound_fns(params, inputs[2] if self.num_pseudo_sets else None)
    keys = jax.random.split(key, queries.shape[0])

    def per_query(k, x, query_inputs, set_inputs):
      likelihood = lambda z, c: self.log_likelihood(params, x, z, c)
      return objectives.homoencoder_elbo(k, query_inputs, set_inputs, context_kl_weight=self.context_kl_weight,
                                         context_log_likelihood_fn=likelihood, **fns)

    return jax.vmap(per_query)(keys, queries, query_inputs, set_inputs)
