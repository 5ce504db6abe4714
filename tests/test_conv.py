"""Conv models over images (Small NORB): one trunk with batch norm under the MetaVAE and the baselines."""

import functools

import jax
import numpy as np
import optax
import pytest

from meta_amortized import objectives
from meta_amortized.conv import ConvModel
from meta_amortized.metavae import MetaVAE
from meta_amortized.networks import (
  ContextPosterior,
  ConvContextDecoder,
  ConvDecoder,
  ConvEncoder,
  LatentPosterior,
  LatentPrior,
  MetaInferenceNetwork,
)
from meta_amortized.statistician import NeuralStatistician, VariationalHomoencoder
from meta_amortized.training import init_train_state, make_train_step

WIDTHS = (2, 2, 2, 4, 4, 4, 4, 4, 4)
IMAGE = (32, 32, 1)


def _meta_vae():
  return ConvModel(ConvEncoder(WIDTHS), MetaVAE(MetaInferenceNetwork((8,), (8,), 3), ConvDecoder(WIDTHS)))


def _baseline(kind, num_pseudo_sets=0):
  networks = dict(context=ContextPosterior(8, 5), latent_posterior=LatentPosterior(8, 3),
                  latent_prior=LatentPrior((8,), 3), decoder=ConvContextDecoder(8, WIDTHS))
  if kind == "ns":
    return ConvModel(ConvEncoder(WIDTHS), NeuralStatistician(**networks))
  return ConvModel(ConvEncoder(WIDTHS), VariationalHomoencoder(**networks, num_pseudo_sets=num_pseudo_sets,
                                                               pseudo_set_size=2))


def _images(key, shape):
  return jax.random.uniform(key, shape + IMAGE)


def test_conv_meta_vae_bound_is_the_meta_elbo_of_the_composed_networks():
  """In evaluation mode the batched trunk + MetaVAE equals `objectives.meta_elbo` with g = head(trunk(.))."""
  model = _meta_vae()
  params, state = model.init(jax.random.key(0), 2)
  queries, sets = _images(jax.random.key(1), (2, 3)), _images(jax.random.key(2), (2, 3, 4))
  key = jax.random.key(3)
  got, _ = jax.jit(functools.partial(model.bound, train=False))(params, state, key, queries, sets)
  trunk = lambda x: model.trunk.apply({"params": params["trunk"], "batch_stats": state["trunk"]}, x, train=False)

  def g(d, x):
    d_features = trunk(d.reshape((-1,) + IMAGE)).reshape(d.shape[:2] + (-1,))
    return model.model.meta_inference.apply(params["meta_inference"], d_features, trunk(x))

  expected = jax.jit(lambda: objectives.meta_elbo(key, queries, sets, meta_inference_fn=g,
                                                  decoder_log_likelihood_fn=model.model.log_likelihood,
                                                  decoder_params=params["decoders"]))()
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("model", [_meta_vae(), _baseline("ns"), _baseline("vhe"), _baseline("vhe", 3)],
                         ids=["meta_vae", "ns", "vhe", "vhe_vampprior"])
def test_conv_models_train_and_update_the_batch_statistics(model):
  data = _images(jax.random.key(0), (2, 12)) ** 2
  optimizer = optax.adam(1e-3)
  params, model_state = model.init(jax.random.key(1), 2)
  state = init_train_state(params, optimizer, model_state)
  before = jax.tree.map(np.asarray, state)
  step = make_train_step(functools.partial(model.loss, batch_size=3, set_size=2), optimizer)
  state, metrics = step(state, jax.random.key(2), data)
  assert np.isfinite(float(metrics["loss"]))
  # Batch norm's running mean moved towards this batch's statistics; every parameter got a gradient step.
  for old, new in zip(jax.tree.leaves(before.model_state), jax.tree.leaves(state.model_state), strict=True):
    assert not np.allclose(old, new)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before.params, jax.tree.map(np.asarray, state.params))
  assert all(jax.tree.leaves(changed))


def test_conv_codes_use_running_averages_so_each_code_is_independent_of_its_batch():
  model = _meta_vae()
  params, state = model.init(jax.random.key(0), 2)
  state = jax.tree.map(lambda s: s + 0.3, state)  # non-trivial running statistics
  queries, sets = _images(jax.random.key(1), (5,)), _images(jax.random.key(2), (5, 4))
  encode = jax.jit(model.encode)
  codes = encode(params, state, jax.random.key(3), sets, queries)
  alone = encode(params, state, jax.random.key(3), sets[2:3], queries[2:3])
  np.testing.assert_allclose(codes[2:3], alone, rtol=1e-4, atol=1e-6)
  moved = encode(params, jax.tree.map(lambda s: s + 0.5, state), jax.random.key(3), sets, queries)
  assert not np.allclose(codes, moved)
