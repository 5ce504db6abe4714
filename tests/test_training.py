import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_amortized import MetaVAE
from meta_amortized.networks import Decoder, MetaInferenceNetwork
from meta_amortized.training import init_train_state, make_train_step, mixed_precision

SMALL = MetaVAE(MetaInferenceNetwork(summary_features=(16, 8), hidden=(16,), latent_dim=4),
                Decoder(hidden=(16,), output_dim=12))


def _train(seed, steps=30):
  data = jax.random.uniform(jax.random.key(100), (3, 40, 12)) ** 3
  optimizer = optax.adam(3e-3)
  state = init_train_state(*SMALL.init(jax.random.key(seed), 3, (12,))[:1], optimizer)
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


def test_mixed_precision_multiplies_in_bfloat16_and_keeps_the_loss_and_gradients_float32():
  model = MetaVAE(MetaInferenceNetwork((32, 32), (32,), 4), Decoder((32,), 64))
  params, state = model.init(jax.random.key(0), 3, (64,))
  data = jax.random.uniform(jax.random.key(1), (3, 50, 64))
  loss_fn = functools.partial(model.loss, batch_size=16, set_size=5)
  mixed = mixed_precision(loss_fn)
  key = jax.random.key(2)
  (full, _), full_grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, state, key, data)
  (half, _), half_grads = jax.jit(jax.value_and_grad(mixed, has_aux=True))(params, state, key, data)
  assert half.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(half_grads))
  assert float(half) != float(full)  # the products did change precision ...
  np.testing.assert_allclose(half, full, rtol=1e-2)  # ... and the loss stays close to float32
  cosine = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(full_grads), jax.tree.leaves(half_grads), strict=True))
  norms = [jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree.leaves(t))) for t in (full_grads, half_grads)]
  assert float(cosine / (norms[0] * norms[1])) > 0.99

  def bf16_products(fn):
    lines = jax.jit(fn).lower(params, state, key, data).as_text().splitlines()
    return [line for line in lines if "dot_general" in line and "bf16>" in line]

  assert bf16_products(mixed) and not bf16_products(loss_fn)
  # A population cast to bfloat16 once, before training (as the experiments do), gives the same step.
  (precast, _), precast_grads = jax.jit(jax.value_and_grad(mixed, has_aux=True))(params, state, key,
                                                                                 data.astype(jnp.bfloat16))
  jax.tree.map(np.testing.assert_array_equal, (precast, precast_grads), (half, half_grads))
