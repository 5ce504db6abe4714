"""Neural Statistician and Variational Homoencoder baselines (REFERENCE.md section 2), with a VampPrior option.

Both share the networks of `networks`: q(c | D), q(z | x, c), p(z | c), p(x | z, c),
and follow their own papers' bounds (see `objectives.statistician_elbo` and
`objectives.homoencoder_elbo`), not the original MetaVAE code's variants.
Parameters are `{"context": ..., "latent_posterior": ..., "latent_prior": ...,
"decoder": ...}` plus `"pseudo_inputs"` (P, N, D) for the VampPrior (no `"latent_prior"` when p(z | c) is
fixed to N(0, I)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meta_amortized import objectives
from meta_amortized.distributions import Bernoulli
from meta_amortized.networks import ContextPosterior, LatentPosterior, LatentPrior, StatisticianDecoder
from meta_amortized.sampling import as_float, sample_meta_batch


class ContextLatentModel(NamedTuple):
  """The networks of the NS / VHE with a Bernoulli likelihood over flat observations.

  Attributes:
    kind: "ns" (one set = a minibatch of one distribution, per-set bound) or "vhe" (a set of
      `set_size` per query).
    num_pseudo_sets: P > 0 gives the VHE a VampPrior over c of P pseudo-sets.
    latent_prior: p(z | c); None fixes it to N(0, I), ignoring c, as the MetaVAE's prior over z (an
      ablation, not in either paper).
    context_kl_weight: the VHE's weight on KL(q(c|D) || p(c)); None means 1/|D|.
  """

  kind: str = "vhe"
  context: ContextPosterior = ContextPosterior()
  latent_posterior: LatentPosterior = LatentPosterior()
  latent_prior: LatentPrior | None = LatentPrior()
  decoder: StatisticianDecoder = StatisticianDecoder()
  num_pseudo_sets: int = 0
  pseudo_set_size: int = 10
  context_kl_weight: float | None = None

  def init(self, key: jax.Array, data_dim: int = 784,
           observation_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Parameters for encoder inputs of size `data_dim` and pseudo-inputs shaped like the observations,
    `observation_shape` ((data_dim,) when None; images under a conv trunk, `meta_amortized.conv`)."""
    if self.kind not in ("ns", "vhe"):
      raise ValueError(f"unknown model kind {self.kind!r}; expected 'ns' or 'vhe'")
    keys = jax.random.split(key, 5)
    x = jnp.zeros((1, data_dim))
    c = jnp.zeros((1, self.context.context_dim))
    z = jnp.zeros((1, self.latent_posterior.latent_dim))
    params = {
        "context": self.context.init(keys[0], x[None]),
        "latent_posterior": self.latent_posterior.init(keys[1], x, c),
        "decoder": self.decoder.init(keys[3], z, c),
    }
    if self.latent_prior is not None:
      params["latent_prior"] = self.latent_prior.init(keys[2], c)
    if self.num_pseudo_sets:
      # Initialised N(0.05, 0.01) and clipped to [0, 1], as the original.
      shape = (self.num_pseudo_sets, self.pseudo_set_size) + (observation_shape or (data_dim,))
      pseudo = 0.05 + 0.01 * jax.random.normal(keys[4], shape)
      params["pseudo_inputs"] = jnp.clip(pseudo, 0.0, 1.0)
    return params

  def log_likelihood(self, params: dict[str, Any], x: jax.Array, z: jax.Array, c: jax.Array) -> jax.Array:
    """log p(x | z, c) of observations x (..., *event) (flat or images)."""
    logits = self.decoder.apply(params["decoder"], z, c)
    return Bernoulli(logits.astype(jnp.float32), event_ndims=logits.ndim - z.ndim + 1).log_prob(x)

  def pseudo_inputs(self, params: dict[str, Any]) -> jax.Array:
    """The VampPrior's pseudo-sets (P, N, *event). Pseudo-observations are grey levels: the parameters pass
    through a hard tanh onto [0, 1], as the original."""
    return jnp.clip(params["pseudo_inputs"], 0.0, 1.0)

  def bound_fns(self, params: dict[str, Any], pseudo_inputs: jax.Array | None = None) -> dict[str, Any]:
    """The callables `statistician_elbo` / `homoencoder_elbo` take (without the likelihood), bound to `params`.

    `pseudo_inputs`: what q(c | D) sees of the VampPrior's pseudo-sets, (P, N, F); `self.pseudo_inputs(params)`
    when None.
    """
    fns = dict(
        context_posterior_fn=lambda sets: self.context.apply(params["context"], sets),
        latent_posterior_fn=lambda x, c: self.latent_posterior.apply(params["latent_posterior"], x, c),
        latent_prior_fn=(None if self.latent_prior is None
                         else lambda c: self.latent_prior.apply(params["latent_prior"], c)),
    )
    if self.num_pseudo_sets:
      pseudo = self.pseudo_inputs(params) if pseudo_inputs is None else pseudo_inputs
      pseudo_posteriors = self.context.apply(params["context"], pseudo)
      fns["context_prior"] = lambda c: objectives.vampprior_log_prob(c, pseudo_posteriors)
    return fns

  def per_element_bound(self, params: dict[str, Any], key: jax.Array, queries: jax.Array, sets: jax.Array | None,
                        *, encoder_inputs: tuple[jax.Array, jax.Array | None] | None = None,
                        pseudo_inputs: jax.Array | None = None) -> jax.Array:
    """The bound per observation, (K, B): queries (K, B, *event); sets (K, B, N, *event) for the VHE (NS
    uses none: its set is the distribution's query batch itself).

    `encoder_inputs` = (query inputs (K, B, F), set inputs (K, B, N, F) or None for NS) are what the
    encoders see instead of the observations (the features of a conv trunk, `meta_amortized.conv`), and
    `pseudo_inputs` (P, N, F) likewise for the VampPrior; the decoder scores `queries`.
    """
    query_inputs, set_inputs = (queries, sets) if encoder_inputs is None else encoder_inputs
    fns = self.bound_fns(params, pseudo_inputs)
    keys = jax.random.split(key, queries.shape[0])
    if self.kind == "ns":
      def per_set(k, x, inputs):
        likelihood = lambda _, z, c: self.log_likelihood(params, x[None], z, c)
        return objectives.statistician_elbo(k, inputs[None], log_likelihood_fn=likelihood, **fns)
      bound = jax.vmap(per_set)(keys, queries, query_inputs)
      return jnp.broadcast_to(bound / queries.shape[1], queries.shape[:2])

    def per_query(k, x, inputs, set_inputs):
      likelihood = lambda _, z, c: self.log_likelihood(params, x, z, c)
      return objectives.homoencoder_elbo(k, inputs, set_inputs, context_kl_weight=self.context_kl_weight,
                                         log_likelihood_fn=likelihood, **fns)
    return jax.vmap(per_query)(keys, queries, query_inputs, set_inputs)

  def encode(self, params: dict[str, Any], key: jax.Array, sets: jax.Array, queries: jax.Array) -> jax.Array:
    """Linear-probe codes: the mean of q(z | x, c), c ~ q(c | D). sets (B, N, D) or (N, D); queries (B, D)."""
    context = self.context.apply(params["context"], sets).sample(key)
    context = jnp.broadcast_to(context, queries.shape[:-1] + context.shape[-1:])
    return self.latent_posterior.apply(params["latent_posterior"], queries, context).mean

  def loss(self, params: dict[str, Any], key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative bound per observation of one batch drawn on the device from data (K, M, D)."""
    batch_key, bound_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    bound = self.per_element_bound(params, bound_key, as_float(queries), as_float(sets))
    return -jnp.mean(bound), {"bound": jnp.mean(bound)}


def neural_statistician() -> ContextLatentModel:
  """The Neural Statistician: one set per minibatch of a distribution, its bound per set (`statistician_elbo`)."""
  return ContextLatentModel(kind="ns")


def homoencoder(*, context_kl_weight: float | None = None, num_pseudo_sets: int = 0) -> ContextLatentModel:
  """The VHE; its pre-pool layer of q(c | D) has no nonlinearity (REFERENCE.md section 2)."""
  return ContextLatentModel(kind="vhe", context=ContextPosterior(pre_pool_activation=None),
                            num_pseudo_sets=num_pseudo_sets, context_kl_weight=context_kl_weight)

