"""Every bound and every model's loss on fixed inputs, against values recorded before the library's API changed.

The values in regression_values.json were written by `python -m tests.test_regression` (which runs `_compute`)
on the code as it stood before the interface was reworked (the models then took `kind="ns"|"vhe"`, the objectives
`log_likelihood_fn` of every signature); this test recomputes them with today's code and names. Under
`jax_disable_most_optimizations` (as the tests run), on one machine and JAX version, they agree to the last bit;
the tolerance admits XLA's reassociation on another CPU or JAX version (the gradient checksums of the conv models
moved by up to 1.2e-5 relative under the dependency floors).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized import objectives
from meta_amortized.conv import ConvModel
from meta_amortized.distributions import Bernoulli, Categorical, DiagonalGaussian
from meta_amortized.iterative import iterative_inference, iterative_meta_inference
from meta_amortized.metavae import IterativeMetaVAE, MetaVAE
from meta_amortized.networks import (
  ContextPosterior,
  ConvContextDecoder,
  ConvDecoder,
  ConvEncoder,
  Decoder,
  IterativeEncoder,
  LatentPosterior,
  LatentPrior,
  MetaInferenceNetwork,
  StatisticianDecoder,
  SummaryNetwork,
)
from meta_amortized.statistician import NeuralStatistician, VariationalHomoencoder

VALUES = pathlib.Path(__file__).with_name("regression_values.json")
K, B, N, D, Z, C = 3, 4, 5, 6, 2, 3


def _inputs():
  keys = jax.random.split(jax.random.key(1234), 8)
  weight = jax.random.normal(keys[0], (Z, D))
  x = jax.random.uniform(keys[1], (B, D))
  q = DiagonalGaussian(jax.random.normal(keys[2], (B, Z)), 0.3 * jax.random.normal(keys[3], (B, Z)))
  queries = jax.random.uniform(keys[4], (K, B, D))
  sets = jax.random.uniform(keys[5], (K, B, N, D))
  return weight, x, q, queries, sets, keys[6]


def _bounds():
  weight, x, q, queries, sets, key = _inputs()
  log_lik = lambda z: Bernoulli(z @ weight).log_prob(x)
  prior = DiagonalGaussian(jnp.full((B, Z), 0.5), jnp.full((B, Z), -0.2))
  out = {
      "elbo": objectives.elbo(key, q, log_lik, num_samples=3),
      "elbo_gaussian_prior": objectives.elbo(key, q, log_lik, prior=prior, num_samples=3),
      "elbo_callable_prior": objectives.elbo(key, q, log_lik, prior=prior.log_prob, num_samples=3),
      "iwae_20_chunk_10": objectives.iwae_bound(key, q, log_lik, num_samples=20, chunk_size=10),
      "iwae_100": objectives.iwae_bound(key, q, log_lik, num_samples=100),
      "enumerated_elbo": objectives.enumerated_elbo(Categorical(x[:, :3]), -x[:, 3:] ** 2),
  }
  decoders = {"w": jax.random.normal(jax.random.key(7), (K, Z, D))}
  g = lambda d, xq: DiagonalGaussian(jnp.mean(d, axis=-2)[..., :Z] + xq[..., :Z], xq[..., Z:2 * Z])
  ll = lambda theta, xq, z: Bernoulli(z @ theta["w"]).log_prob(xq)
  out["meta_elbo"] = objectives.meta_elbo(key, queries, sets, meta_inference_fn=g, decoder_log_likelihood_fn=ll,
                                          decoder_params=decoders, num_samples=2)
  out["meta_elbo_index"] = objectives.meta_elbo(key, queries, sets, meta_inference_fn=g,
                                                decoder_log_likelihood_fn=ll, decoder_params=decoders,
                                                decoder_index=jnp.array([2, 0, 0]))
  pseudo = DiagonalGaussian(jax.random.normal(jax.random.key(8), (7, C)), jax.random.normal(jax.random.key(9), (7, C)))
  out["vampprior"] = objectives.vampprior_log_prob(x[:, :C], pseudo)
  fns = dict(
      context_posterior_fn=lambda s: DiagonalGaussian(jnp.mean(s, -2)[..., :C], jnp.mean(s, -2)[..., C:2 * C]),
      latent_posterior_fn=lambda xs, c: DiagonalGaussian(xs[..., :Z] + c[..., :Z], 0.5 * xs[..., Z:2 * Z]),
      latent_prior_fn=lambda c: DiagonalGaussian(0.1 * c[..., :Z], 0.1 * c[..., 1:]))
  ll_of = lambda xs: lambda z, c: Bernoulli(z @ weight + c[..., :1]).log_prob(xs)
  out["statistician"] = objectives.statistician_elbo(key, sets[0], context_log_likelihood_fn=ll_of(sets[0]),
                                                     num_samples=2, **fns)
  out["statistician_vamp"] = objectives.statistician_elbo(
      key, sets[0], context_log_likelihood_fn=ll_of(sets[0]),
      context_prior=lambda c: objectives.vampprior_log_prob(c, pseudo), **fns)
  out["homoencoder"] = objectives.homoencoder_elbo(key, queries[0], sets[0],
                                                   context_log_likelihood_fn=ll_of(queries[0]), **fns)
  out["homoencoder_standard"] = objectives.homoencoder_elbo(
      key, queries[0], sets[0], context_log_likelihood_fn=ll_of(queries[0]), context_kl_weight=0.3,
      **{**fns, "latent_prior_fn": None})
  encoder = IterativeEncoder((8,), Z)
  signal = jnp.zeros((B, 4 * Z))
  enc_params = encoder.init(jax.random.key(10), x, q, signal)
  encoder_fn = lambda xs, qq, s: encoder.apply(enc_params, xs, qq, s)
  for name, kwargs in {"gradient": {}, "error": {"signal": "error", "observation_mean_fn": lambda z: z @ weight},
                       "backprop": {"backprop_through_steps": True}}.items():
    result = iterative_inference(key, x, encoder_fn=encoder_fn, log_likelihood_fn=log_lik, num_steps=3,
                                 latent_dim=Z, num_samples=2, **kwargs)
    out[f"iterative_{name}"] = result.elbos
  context_encoder = IterativeEncoder((8,), Z)
  ctx_params = context_encoder.init(jax.random.key(11), x, q, signal, jnp.zeros((B, 2)))
  result = iterative_meta_inference(
      key, queries, sets, summary_fn=lambda d: jnp.mean(d, -2)[..., :2],
      encoder_fn=lambda xs, qq, s, h: context_encoder.apply(ctx_params, xs, qq, s, h), decoder_log_likelihood_fn=ll,
      decoder_params=decoders, num_steps=2, latent_dim=Z)
  out["iterative_meta"] = result.elbos
  return out


def _checksum(tree):
  return sum(float(jnp.sum(jnp.abs(leaf))) for leaf in jax.tree.leaves(tree))


def _models():
  _, _, _, queries, sets, key = _inputs()
  data = jax.random.uniform(jax.random.key(20), (K, 30, D))
  out = {}

  def record(name, loss_fn, params):
    (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    out[name] = [float(loss), _checksum(grads)]

  meta_vae = MetaVAE(MetaInferenceNetwork((8, 8), (8,), Z), Decoder((8,), D))
  params, state = meta_vae.init(jax.random.key(21), K, (D,))
  record("meta_vae", lambda p: meta_vae.loss(p, state, key, data, batch_size=B, set_size=N), params)
  iterative = IterativeMetaVAE(SummaryNetwork((8, 8)), IterativeEncoder((8,), Z), Decoder((8,), D), num_refinements=2)
  params, state = iterative.init(jax.random.key(22), K, (D,))
  (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(
      lambda p: iterative.loss(p, state, key, data, batch_size=B, set_size=N), has_aux=True))(params)
  out["meta_vae_iterative"] = [float(loss), float(metrics["encoder_loss"]), _checksum(grads)]
  networks = dict(context=ContextPosterior(8, C), latent_posterior=LatentPosterior(8, Z),
                  latent_prior=LatentPrior((8,), Z), decoder=StatisticianDecoder(8, 16, D))
  for name, model in {"ns": NeuralStatistician(**networks),
                      "vhe": VariationalHomoencoder(**networks, context_kl_weight=0.1),
                      "vhe_vampprior": VariationalHomoencoder(**networks, num_pseudo_sets=3,
                                                              pseudo_set_size=2)}.items():
    params, state = model.init(jax.random.key(23), 1, (D,))
    record(name, lambda p, m=model, s=state: m.loss(p, s, key, data, batch_size=B, set_size=N), params)
  widths = (2, 2, 2, 4, 4, 4, 4, 4, 4)
  images = jax.random.uniform(jax.random.key(24), (2, 12, 32, 32, 1))
  conv_models = {
      "conv_meta_vae": ConvModel(ConvEncoder(widths),
                                 MetaVAE(MetaInferenceNetwork((8,), (8,), Z), ConvDecoder(widths))),
      "conv_vhe": ConvModel(ConvEncoder(widths), VariationalHomoencoder(
          context=ContextPosterior(8, C), latent_posterior=LatentPosterior(8, Z),
          latent_prior=LatentPrior((8,), Z), decoder=ConvContextDecoder(8, widths), num_pseudo_sets=2,
          pseudo_set_size=2)),
      "conv_ns": ConvModel(ConvEncoder(widths), NeuralStatistician(
          context=ContextPosterior(8, C), latent_posterior=LatentPosterior(8, Z),
          latent_prior=LatentPrior((8,), Z), decoder=ConvContextDecoder(8, widths))),
  }
  for name, model in conv_models.items():
    params, state = model.init(jax.random.key(25), 2)
    (loss, (_, new_state)), grads = jax.jit(jax.value_and_grad(
        lambda p, m=model, s=state: m.loss(p, s, key, images, batch_size=3, set_size=2), has_aux=True))(params)
    out[name] = [float(loss), _checksum(grads), _checksum(new_state)]
  return out


def _compute():
  return {**{k: np.asarray(v).tolist() for k, v in jax.jit(_bounds)().items()}, **_models()}


def test_bounds_and_losses_match_the_recorded_values():
  recorded = json.loads(VALUES.read_text())
  computed = _compute()
  assert computed.keys() == recorded.keys()
  for name in recorded:
    np.testing.assert_allclose(computed[name], recorded[name], rtol=5e-5, atol=1e-5, err_msg=name)


if __name__ == "__main__":
  jax.config.update("jax_disable_most_optimizations", True)
  VALUES.write_text(json.dumps(_compute(), indent=1) + "\n")
