"""The MetaVAE (Wu et al.): a meta-inference network g(D, x) and one decoder per distribution."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meta_amortized import objectives
from meta_amortized.distributions import Bernoulli
from meta_amortized.networks import Decoder, MetaInferenceNetwork, init_stacked
from meta_amortized.sampling import as_float, sample_meta_batch


class MetaVAE(NamedTuple):
  """The MetaVAE on flat observations with a Bernoulli likelihood (grey levels in [0, 1]).

  Parameters are `{"meta_inference": ..., "decoders": ...}`, the decoders stacked
  on a leading axis, one per training distribution.
  """

  meta_inference: MetaInferenceNetwork = MetaInferenceNetwork()
  decoder: Decoder = Decoder()

  def init(self, key: jax.Array, num_distributions: int, data_dim: int = 784) -> dict[str, Any]:
    encoder_key, decoder_key = jax.random.split(key)
    example = jnp.zeros((1, data_dim))
    return {
        "meta_inference": self.meta_inference.init(encoder_key, example[None], example),
        "decoders": init_stacked(self.decoder, decoder_key, num_distributions,
                                 jnp.zeros((1, self.meta_inference.latent_dim))),
    }

  def log_likelihood(self, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p_theta(x | z) of observations x (..., *event) (flat or images) given z (..., Z)."""
    logits = self.decoder.apply(theta, z)
    return Bernoulli(logits.astype(jnp.float32), event_ndims=logits.ndim - z.ndim + 1).log_prob(x)

  def meta_elbo(self, params: dict[str, Any], key: jax.Array, queries: jax.Array, sets: jax.Array,
                decoder_index: jax.Array | None = None,
                encoder_inputs: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """Per-query MetaELBO (K, B) of queries (K, B, *event) with their sets (K, B, N, *event).

    `encoder_inputs` = (query inputs (K, B, F), set inputs (K, B, N, F)) are what g(D, x) sees instead of
    the observations (the features of a conv trunk, `meta_amortized.conv`); the decoders score `queries`.
    """
    if encoder_inputs is None:
      encoder_inputs = (queries, sets)
    return objectives.meta_elbo(
        key, queries, encoder_inputs,
        meta_inference_fn=lambda inputs, _: self.meta_inference.apply(params["meta_inference"], inputs[1],
                                                                        inputs[0]),
        log_likelihood_fn=self.log_likelihood,
        decoder_params=params["decoders"],
        decoder_index=decoder_index,
    )

  def encode(self, params: dict[str, Any], key: jax.Array, sets: jax.Array, queries: jax.Array) -> jax.Array:
    """The code of each query: the mean of q(z | D, x) (deterministic: `key` is unused, kept for a common
    signature with the baselines)."""
    del key
    return self.meta_inference.apply(params["meta_inference"], sets, queries).mean

  def loss(self, params: dict[str, Any], key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative MetaELBO of one training batch drawn on the device from `data` (K, M, D).

    The mean over queries of each distribution, then over the K distributions (the
    original's reduction); queries and sets come from `sample_meta_batch`.
    """
    batch_key, elbo_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    per_query = self.meta_elbo(params, elbo_key, as_float(queries), as_float(sets))
    loss = -jnp.mean(per_query)
    return loss, {"meta_elbo": -loss}
