"""The MetaVAE (Wu et al.): a meta-inference network g(D, x) and one decoder per distribution; and the MetaVAE
whose meta-inference network is iterative (Marino et al.'s gradient-encoding refinement, also seeing h(D))."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meta_amortized import iterative, objectives
from meta_amortized.distributions import Bernoulli, DiagonalGaussian
from meta_amortized.iterative import IterativeEncoder, IterativeResult
from meta_amortized.networks import Decoder, MetaInferenceNetwork, QueryOnlyInference, SummaryNetwork, init_stacked
from meta_amortized.sampling import as_float, sample_meta_batch


class MetaVAE(NamedTuple):
  """The MetaVAE on flat observations with a Bernoulli likelihood (grey levels in [0, 1]).

  Parameters are `{"meta_inference": ..., "decoders": ...}`, the decoders stacked
  on a leading axis, one per training distribution. With `shared_decoder` (an ablation, in
  neither paper) the stack holds one decoder that every distribution uses; with a `QueryOnlyInference`
  as well, which ignores D, the model is a plain VAE trained on the pooled distributions.
  """

  meta_inference: MetaInferenceNetwork | QueryOnlyInference = MetaInferenceNetwork()
  decoder: Decoder = Decoder()
  shared_decoder: bool = False

  def init(self, key: jax.Array, num_distributions: int, data_dim: int = 784) -> dict[str, Any]:
    encoder_key, decoder_key = jax.random.split(key)
    example = jnp.zeros((1, data_dim))
    return {
        "meta_inference": self.meta_inference.init(encoder_key, example[None], example),
        "decoders": init_stacked(self.decoder, decoder_key, 1 if self.shared_decoder else num_distributions,
                                 jnp.zeros((1, self.meta_inference.latent_dim))),
    }

  def log_likelihood(self, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p_theta(x | z) of observations x (..., *event) (flat or images) given z (..., Z)."""
    return _bernoulli_log_likelihood(self.decoder, theta, x, z)

  def summarize(self, params: dict[str, Any], sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D): the summary network inside g(D, x)."""
    return self.meta_inference.apply(params["meta_inference"], sets, method="summarize")

  def meta_elbo(self, params: dict[str, Any], key: jax.Array, queries: jax.Array, sets: jax.Array,
                decoder_index: jax.Array | None = None,
                encoder_inputs: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """Per-query MetaELBO (K, B) of queries (K, B, *event) with their sets (K, B, N, *event), distribution k
    scored by decoder k, by `decoder_index[k]` where given, by the one decoder with `shared_decoder`.

    `encoder_inputs` = (query inputs (K, B, F), set inputs (K, B, N, F)) are what g(D, x) sees instead of
    the observations (the features of a conv trunk, `meta_amortized.conv`); the decoders score `queries`.
    """
    if encoder_inputs is None:
      encoder_inputs = (queries, sets)
    if self.shared_decoder and decoder_index is None:
      decoder_index = jnp.zeros(queries.shape[:1], jnp.int32)
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


def _bernoulli_log_likelihood(decoder, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
  logits = decoder.apply(theta, z)
  return Bernoulli(logits.astype(jnp.float32), event_ndims=logits.ndim - z.ndim + 1).log_prob(x)


class IterativeMetaVAE(NamedTuple):
  """The MetaVAE with an iterative meta-inference network, on flat observations with a Bernoulli likelihood.

  q(z | D, x) starts at the prior and is refined `num_refinements` times by an `IterativeEncoder` that sees x,
  h(D), the posterior and the gradients of the ELBO under the distribution's own decoder
  (`iterative.iterative_meta_inference`). Trained as Marino et al.'s iterative models: the summary network and
  the encoder on the mean over steps of -MetaELBO_t, the decoders on -MetaELBO_T (one forward pass,
  `iterative.iterative_gradients`). Parameters `{"meta_inference": {"summary": .., "encoder": ..},
  "decoders": ..}`, the decoders stacked, one per training distribution.

  The refinement needs a decoder: a distribution unseen in training has none of its own, so the caller passes
  the index of the one to use (`encode`, `meta_elbo`); the experiments take the training distribution whose
  mean summary h(D) is nearest.
  """

  summary: SummaryNetwork = SummaryNetwork()
  encoder: IterativeEncoder = IterativeEncoder((400, 400), 40)
  decoder: Decoder = Decoder()
  num_refinements: int = 5
  num_samples: int = 1
  gradient_encoding: iterative.GradientEncoding = "log_sign"

  @property
  def latent_dim(self) -> int:
    return self.encoder.latent_dim

  def init(self, key: jax.Array, num_distributions: int, data_dim: int = 784) -> dict[str, Any]:
    summary_key, encoder_key, decoder_key = jax.random.split(key, 3)
    x = jnp.zeros((1, data_dim))
    summary_params = self.summary.init(summary_key, x[None])
    q = DiagonalGaussian(jnp.zeros((1, self.latent_dim)), jnp.zeros((1, self.latent_dim)))
    signal = iterative.encode_gradients(jnp.zeros((1, 2 * self.latent_dim)), method=self.gradient_encoding)
    context = jnp.zeros((1, self.summary.features[-1]))
    return {
        "meta_inference": {"summary": summary_params,
                           "encoder": self.encoder.init(encoder_key, x, q, signal, context)},
        "decoders": init_stacked(self.decoder, decoder_key, num_distributions, jnp.zeros((1, self.latent_dim))),
    }

  def log_likelihood(self, theta: Any, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p_theta(x | z) of flat observations x (..., D) given z (..., Z)."""
    return _bernoulli_log_likelihood(self.decoder, theta, x, z)

  def summarize(self, params: dict[str, Any], sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D)."""
    return self.summary.apply(params["meta_inference"]["summary"], sets)

  def refine(self, meta_inference_params: dict[str, Any], decoder_params: Any, key: jax.Array,
             queries: jax.Array, sets: jax.Array, decoder_index: jax.Array | None = None,
             num_steps: int | None = None) -> IterativeResult:
    """Posteriors (T + 1, K, B, Z) and MetaELBOs (T + 1, K, B) of queries (K, B, D) with their sets
    (K, B, N, D), over `num_steps` refinements (`num_refinements` when None)."""
    return iterative.iterative_meta_inference(
        key, queries, sets,
        summary_fn=lambda d: self.summary.apply(meta_inference_params["summary"], d),
        encoder_fn=lambda x, q, s, c: self.encoder.apply(meta_inference_params["encoder"], x, q, s, c),
        log_likelihood_fn=self.log_likelihood, decoder_params=decoder_params, decoder_index=decoder_index,
        num_steps=self.num_refinements if num_steps is None else num_steps, latent_dim=self.latent_dim,
        gradient_encoding=self.gradient_encoding, num_samples=self.num_samples)

  def meta_elbo(self, params: dict[str, Any], key: jax.Array, queries: jax.Array, sets: jax.Array,
                decoder_index: jax.Array | None = None) -> jax.Array:
    """Per-query MetaELBO (K, B) after the T refinements."""
    return self.refine(params["meta_inference"], params["decoders"], key, queries, sets, decoder_index).elbos[-1]

  def encode(self, params: dict[str, Any], key: jax.Array, sets: jax.Array, queries: jax.Array, *,
             decoder_index: jax.Array) -> jax.Array:
    """The code of each query (B, D) with its set (B, N, D): the mean of the refined q(z | D, x), refined
    with the gradients of decoder `decoder_index` (a scalar)."""
    result = self.refine(params["meta_inference"], params["decoders"], key, queries[None], sets[None],
                         jnp.reshape(decoder_index, (1,)))
    return result.posteriors.mean[-1, 0]

  def loss_and_gradients(self, params: dict[str, Any], key: jax.Array, data: jax.Array, *, batch_size: int,
                         set_size: int) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
    """(-MetaELBO_T, metrics, gradients) of one training batch drawn on the device from `data` (K, M, D): the
    meta-inference network's gradients are those of the mean over steps of -MetaELBO_t, the decoders' those of
    -MetaELBO_T (`make_train_step(..., has_gradients=True)`)."""
    batch_key, elbo_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    queries, sets = as_float(queries), as_float(sets)
    elbos_fn = lambda inference, decoders: self.refine(inference, decoders, elbo_key, queries, sets).elbos
    (encoder_loss, decoder_loss), (encoder_grads, decoder_grads) = iterative.iterative_gradients(
        elbos_fn, params["meta_inference"], params["decoders"])
    metrics = {"meta_elbo": -decoder_loss, "encoder_loss": encoder_loss}
    return decoder_loss, metrics, {"meta_inference": encoder_grads, "decoders": decoder_grads}
