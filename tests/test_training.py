import functools

import jax
import numpy as np
import optax

from meta_amortized import MetaVAE
from meta_amortized.networks import Decoder, MetaInferenceNetwork
from meta_amortized.training import init_train_state, make_train_step

SMALL = MetaVAE(MetaInferenceNetwork(summary_features=(16, 8), hidden=(16,), latent_dim=4),
                Decoder(hidden=(16,), output_dim=12))


def _train(seed, steps=30):
  data = jax.random.uniform(jax.random.key(100), (3, 40, 12)) ** 3
  optimizer = optax.adam(3e-3)
  state = init_train_state(SMALL.init(jax.random.key(seed), 3, 12), optimizer)
  step = make_train_step(functools.partial(SMALL.loss, batch_size=8, set_size=4), optimizer)
  losses = []
  for key in jax.random.split(jax.random.key(seed), steps):
    state, metrics = step(state, key, data)
    losses.append(float(metrics["loss"]))
  return state, losses


def test_metavae_step_learns_and_is_deterministic():
  state, losses = _train(0)
  assert int(state.step) == 30
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
  again, losses_again = _train(0)
  assert losses_again == losses
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params), strict=False):
    np.testing.assert_array_equal(a, b)
