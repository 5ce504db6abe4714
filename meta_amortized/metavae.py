"""The MetaVAE (Wu et al.): a meta-inference network g(D, x) and one decoder per distribution; and the MetaVAE
whose meta-inference network is iterative (Marino et al.'s gradient-encoding refinement, also seeing h(D)).

Every model of the package has one interface (`training.Model`):

    params, state = model.init(key, num_distributions, observation_shape)
    loss, (metrics, state) = model.loss(params, state, key, data, batch_size=B, set_size=N)
    codes = model.encode(params, state, key, sets, queries)

so that `training.make_train_step`, the trainer and the benchmark treat every model alike. The MLP models have no
state (`{}`); the conv models (`conv.ConvModel`) keep their batch-norm statistics there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from meta_amortized import iterative, objectives
from meta_amortized.distributions import Bernoulli, DiagonalGaussian
from meta_amortized.iterative import IterativeResult
from meta_amortized.networks import (
  Decoder,
  IterativeEncoder,
  MetaInferenceNetwork,
  QueryOnlyInference,
  SummaryNetwork,
  init_stacked,
)
from meta_amortized.sampling import as_float, sample_meta_batch

__all__ = ["IterativeMetaVAE", "MetaVAE"]

Params = dict[str, Any]


def _bernoulli_log_likelihood(decoder, theta: Any, x: jax.Array, z: jax.Array, clamp: float = 0.0) -> jax.Array:
  logits = decoder.apply(theta, z)
  return Bernoulli(logits.astype(jnp.float32), event_ndims=logits.ndim - z.ndim + 1, clamp=clamp).log_prob(x)


@dataclasses.dataclass(frozen=True)
class MetaVAE:
  """The MetaVAE on flat observations with a Bernoulli likelihood (grey levels in [0, 1]).

  Parameters are `{"meta_inference": ..., "decoders": ...}`, the decoders stacked
  on a leading axis, one per training distribution. With `shared_decoder` (an ablation, in
  neither paper) the stack holds one decoder that every distribution uses; with a `QueryOnlyInference`
  as well, which ignores D, the model is a plain VAE trained on the pooled distributions.

  Examples:
    >>> import jax
    >>> from meta_amortized.metavae import MetaVAE
    >>> from meta_amortized.networks import Decoder, MetaInferenceNetwork
    >>> model = MetaVAE(MetaInferenceNetwork((8,), (8,), latent_dim=2), Decoder((8,), output_dim=6))
    >>> data = jax.random.uniform(jax.random.key(0), (3, 20, 6))       # K = 3 distributions of 20 examples
    >>> params, state = model.init(jax.random.key(1), num_distributions=3, observation_shape=(6,))
    >>> loss, (metrics, state) = model.loss(params, state, jax.random.key(2), data, batch_size=4, set_size=5)
    >>> sorted(metrics)
    ['meta_elbo']
  """

  meta_inference: MetaInferenceNetwork | QueryOnlyInference = MetaInferenceNetwork()
  decoder: Decoder = Decoder()
  shared_decoder: bool = False
  # The original code's Bernoulli probabilities clamped to [likelihood_clamp, 1 - likelihood_clamp] (1e-7 there).
  likelihood_clamp: float = 0.0

  bound_name = "meta_elbo"

  def init(self, key: jax.Array, num_distributions: int,
           observation_shape: tuple[int, ...] = (784,)) -> tuple[Params, dict]:
    """(params, state = {}) for `num_distributions` training distributions of flat observations."""
    return self.init_params(key, num_distributions, math.prod(observation_shape)), {}

  def init_params(self, key: jax.Array, num_distributions: int, input_dim: int,
                  observation_shape: tuple[int, ...] | None = None) -> Params:
    """The parameters for encoder inputs of size `input_dim` (the observations, or a conv trunk's features)."""
    del observation_shape  # the decoders map z to the observation whatever its shape
    encoder_key, decoder_key = jax.random.split(key)
    example = jnp.zeros((1, input_dim))
    return {
        "meta_inference": self.meta_inference.init(encoder_key, example[None], example),
        "decoders": init_stacked(self.decoder, decoder_key, 1 if self.shared_decoder else num_distributions,
                                 jnp.zeros((1, self.meta_inference.latent_dim))),
    }

  def log_likelihood(self, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p_theta(x | z) of observations x (..., *event) (flat or images) given z (..., Z)."""
    return _bernoulli_log_likelihood(self.decoder, theta, x, z, self.likelihood_clamp)

  def summarize(self, params: Params, sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D): the summary network inside g(D, x)."""
    return self.meta_inference.apply(params["meta_inference"], sets, method="summarize")

  def encoder_images(self, params: Params, queries: jax.Array, sets: jax.Array) -> tuple[jax.Array, ...]:
    """What g(D, x) reads: the queries and their sets (what a conv trunk embeds for it, `conv.ConvModel`)."""
    del params
    return queries, sets

  def bound(self, params: Params, key: jax.Array, queries: jax.Array, sets: jax.Array,
            decoder_index: jax.Array | None = None, *,
            encoder_inputs: tuple[jax.Array, ...] | None = None) -> jax.Array:
    """Per-query MetaELBO (K, B) of queries (K, B, *event) with their sets (K, B, N, *event), distribution k
    scored by decoder k, by `decoder_index[k]` where given, by the one decoder with `shared_decoder`.

    `encoder_inputs`: what g(D, x) sees in place of `encoder_images` (a conv trunk's features); the decoders
    score `queries`.
    """
    query_inputs, set_inputs = (queries, sets) if encoder_inputs is None else encoder_inputs
    if self.shared_decoder and decoder_index is None:
      decoder_index = jnp.zeros(queries.shape[:1], jnp.int32)
    return objectives.meta_elbo(
        key, queries, (query_inputs, set_inputs),
        meta_inference_fn=lambda inputs, _: self.meta_inference.apply(params["meta_inference"], inputs[1],
                                                                        inputs[0]),
        decoder_log_likelihood_fn=self.log_likelihood,
        decoder_params=params["decoders"],
        decoder_index=decoder_index,
    )


  def encode(self, params: Params, state: dict, key: jax.Array, sets: jax.Array, queries: jax.Array) -> jax.Array:
    """The code of each query (B, D) with its set (B, N, D) or a shared one (N, D): the mean of q(z | D, x)
    (deterministic: `state` and `key` are unused, kept for the common interface)."""
    del state, key
    return self.meta_inference.apply(params["meta_inference"], sets, queries).mean

  def loss(self, params: Params, state: dict, key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict]]:
    """Negative MetaELBO of one training batch drawn on the device from `data` (K, M, D).

    The mean over queries of each distribution, then over the K distributions (the
    original's reduction); queries and sets come from `sample_meta_batch`.
    """
    batch_key, elbo_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    per_query = self.bound(params, elbo_key, as_float(queries), as_float(sets))
    loss = -jnp.mean(per_query)
    return loss, ({"meta_elbo": -loss}, state)


@dataclasses.dataclass(frozen=True)
class IterativeMetaVAE:
  """The MetaVAE with an iterative meta-inference network, on flat observations with a Bernoulli likelihood.

  q(z | D, x) starts at the prior and is refined `num_refinements` times by an `IterativeEncoder` that sees x,
  h(D), the posterior and the gradients of the ELBO under the distribution's own decoder
  (`iterative.iterative_meta_inference`). Trained as Marino et al.'s iterative models: the summary network and
  the encoder on the mean over steps of -MetaELBO_t, the decoders on -MetaELBO_T (`iterative.iterative_loss`,
  one forward pass). Parameters `{"meta_inference": {"summary": .., "encoder": ..}, "decoders": ..}`, the
  decoders stacked, one per training distribution.

  The refinement needs a decoder: a distribution unseen in training has none of its own, so the caller passes
  the index of the one to use (`encode`, `bound`); the experiments take the training distribution whose
  mean summary h(D) is nearest.

  Examples:
    >>> import jax
    >>> from meta_amortized.metavae import IterativeMetaVAE
    >>> from meta_amortized.networks import Decoder, IterativeEncoder, SummaryNetwork
    >>> model = IterativeMetaVAE(SummaryNetwork((8,)), IterativeEncoder((8,), 2), Decoder((8,), 6), num_refinements=2)
    >>> data = jax.random.uniform(jax.random.key(0), (3, 20, 6))
    >>> params, state = model.init(jax.random.key(1), num_distributions=3, observation_shape=(6,))
    >>> loss, (metrics, state) = model.loss(params, state, jax.random.key(2), data, batch_size=4, set_size=5)
    >>> sorted(metrics)
    ['encoder_loss', 'meta_elbo']
  """

  summary: SummaryNetwork = SummaryNetwork()
  encoder: IterativeEncoder = IterativeEncoder((400, 400), 40)
  decoder: Decoder = Decoder()
  num_refinements: int = 5
  num_samples: int = 1
  gradient_encoding: iterative.GradientEncoding = "log_sign"

  bound_name = "meta_elbo"

  @property
  def latent_dim(self) -> int:
    return self.encoder.latent_dim

  def init(self, key: jax.Array, num_distributions: int,
           observation_shape: tuple[int, ...] = (784,)) -> tuple[Params, dict]:
    """(params, state = {}) for `num_distributions` training distributions of flat observations."""
    summary_key, encoder_key, decoder_key = jax.random.split(key, 3)
    x = jnp.zeros((1, math.prod(observation_shape)))
    summary_params = self.summary.init(summary_key, x[None])
    q = DiagonalGaussian(jnp.zeros((1, self.latent_dim)), jnp.zeros((1, self.latent_dim)))
    signal = iterative.encode_gradients(jnp.zeros((1, 2 * self.latent_dim)), method=self.gradient_encoding)
    context = jnp.zeros((1, self.summary.features[-1]))
    params = {
        "meta_inference": {"summary": summary_params,
                           "encoder": self.encoder.init(encoder_key, x, q, signal, context)},
        "decoders": init_stacked(self.decoder, decoder_key, num_distributions, jnp.zeros((1, self.latent_dim))),
    }
    return params, {}

  def log_likelihood(self, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p_theta(x | z) of flat observations x (..., D) given z (..., Z)."""
    return _bernoulli_log_likelihood(self.decoder, theta, x, z)

  def summarize(self, params: Params, sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D)."""
    return self.summary.apply(params["meta_inference"]["summary"], sets)

  def refine(self, meta_inference_params: Params, decoder_params: Any, key: jax.Array,
             queries: jax.Array, sets: jax.Array, decoder_index: jax.Array | None = None,
             num_steps: int | None = None) -> IterativeResult:
    """Posteriors (T + 1, K, B, Z) and MetaELBOs (T + 1, K, B) of queries (K, B, D) with their sets
    (K, B, N, D), over `num_steps` refinements (`num_refinements` when None)."""
    return iterative.iterative_meta_inference(
        key, queries, sets,
        summary_fn=lambda d: self.summary.apply(meta_inference_params["summary"], d),
        encoder_fn=lambda x, q, s, c: self.encoder.apply(meta_inference_params["encoder"], x, q, s, c),
        decoder_log_likelihood_fn=self.log_likelihood, decoder_params=decoder_params,
        decoder_index=decoder_index, num_steps=self.num_refinements if num_steps is None else num_steps,
        latent_dim=self.latent_dim, gradient_encoding=self.gradient_encoding, num_samples=self.num_samples)

  def bound(self, params: Params, key: jax.Array, queries: jax.Array, sets: jax.Array,
            decoder_index: jax.Array | None = None) -> jax.Array:
    """Per-query MetaELBO (K, B) after the T refinements."""
    return self.refine(params["meta_inference"], params["decoders"], key, queries, sets, decoder_index).elbos[-1]


  def encode(self, params: Params, state: dict, key: jax.Array, sets: jax.Array, queries: jax.Array, *,
             decoder_index: jax.Array) -> jax.Array:
    """The code of each query (B, D) with its set (B, N, D): the mean of the refined q(z | D, x), refined
    with the gradients of decoder `decoder_index` (a scalar)."""
    del state
    result = self.refine(params["meta_inference"], params["decoders"], key, queries[None], sets[None],
                         jnp.reshape(decoder_index, (1,)))
    return result.posteriors.mean[-1, 0]

  def loss(self, params: Params, state: dict, key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict]]:
    """-MetaELBO_T of one training batch drawn on the device from `data` (K, M, D), with the gradient routed
    by `iterative.iterative_loss`: the meta-inference network's is that of the mean over steps of
    -MetaELBO_t, the decoders' that of -MetaELBO_T."""
    batch_key, elbo_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    queries, sets = as_float(queries), as_float(sets)
    elbos_fn = lambda inference, decoders: self.refine(inference, decoders, elbo_key, queries, sets).elbos
    decoder_loss, encoder_loss = iterative.iterative_loss(elbos_fn, params["meta_inference"], params["decoders"])
    return decoder_loss, ({"meta_elbo": -decoder_loss, "encoder_loss": encoder_loss}, state)
