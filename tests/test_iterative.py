import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized import iterative
from meta_amortized.distributions import Bernoulli, DiagonalGaussian
from meta_amortized.networks import IterativeEncoder

STEP = 0.05  # below 2 / (largest posterior precision, about 17) for this model


def _gradient_ascent_encoder(x, posterior, features):
  """A hand-set iterative encoder: decode log|g| and sign(g), take a gradient step (gate closed)."""
  z = posterior.mean.shape[-1]
  def decode(block):
    return block[..., z:] * (jnp.exp(block[..., :z]) - 1e-5)
  grad_mean, grad_log_variance = decode(features[..., :2 * z]), decode(features[..., 2 * z:])
  closed = jnp.full_like(posterior.mean, -jnp.inf)
  return iterative.Update(posterior.mean + STEP * grad_mean, posterior.log_variance + STEP * grad_log_variance,
                          closed, closed)


def test_gradient_following_encoder_raises_the_elbo_at_every_step(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 6)
  run = jax.jit(lambda key: iterative.iterative_inference(
      key, x, encoder_fn=_gradient_ascent_encoder, log_likelihood_fn=functools.partial(model.log_likelihood, x),
      num_steps=30, latent_dim=3, num_samples=256))
  result = run(jax.random.key(1))
  exact = np.stack([model.exact_elbo(x, jax.tree.map(lambda p: p[t], result.posteriors)) for t in range(31)])
  log_px = model.log_evidence(x)
  assert np.all(np.diff(exact, axis=0) > 0), np.diff(exact, axis=0)
  assert np.all(exact < log_px)
  gap_start, gap_end = log_px - exact[0], log_px - exact[-1]
  assert np.all(gap_end < 0.1 * gap_start)
  # The Monte Carlo ELBOs it reports: noisy at the wide prior, close once the posterior is sharp.
  np.testing.assert_allclose(result.elbos, exact, rtol=0.1)
  np.testing.assert_allclose(result.elbos[-1], exact[-1], atol=0.3)


def test_scan_equals_unrolled_python_loop(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 4)
  ll = functools.partial(model.log_likelihood, x)
  encoder = IterativeEncoder(hidden=(16,), latent_dim=3)
  prior = DiagonalGaussian(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
  params = encoder.init(jax.random.key(2), x, prior, jnp.zeros((4, 12)))
  encoder_fn = functools.partial(encoder.apply, params)
  key = jax.random.key(3)
  result = jax.jit(lambda k: iterative.iterative_inference(
      k, x, encoder_fn=encoder_fn, log_likelihood_fn=ll, num_steps=4, latent_dim=3, num_samples=2))(key)
  # The same computation by hand: step t uses key t of split(key, T + 1).
  from meta_amortized.objectives import elbo
  keys = jax.random.split(key, 5)
  posterior, elbos = prior, []
  for t in range(4):
    value = elbo(keys[t], posterior, ll, num_samples=2)
    grads = jax.grad(lambda q: jnp.sum(elbo(keys[t], q, ll, num_samples=2)))(posterior)
    features = jnp.concatenate(
        [iterative.encode_gradients(grads.mean), iterative.encode_gradients(grads.log_variance)], -1)
    elbos.append(value)
    posterior = iterative.gated_update(posterior, encoder_fn(x, posterior, features))
    np.testing.assert_allclose(result.posteriors.mean[t + 1], posterior.mean, rtol=1e-4, atol=1e-5)
  elbos.append(elbo(keys[4], posterior, ll, num_samples=2))
  np.testing.assert_allclose(result.elbos, jnp.stack(elbos), rtol=1e-4, atol=1e-4)


def test_error_signal_and_context_conditioning():
  x = (jax.random.uniform(jax.random.key(0), (5, 8)) > 0.5).astype(jnp.float32)
  weight = jax.random.normal(jax.random.key(1), (3, 8))
  logits = lambda z: z @ weight
  encoder = IterativeEncoder(hidden=(16,), latent_dim=3)
  prior = DiagonalGaussian(jnp.zeros((5, 3)), jnp.zeros((5, 3)))
  context = jnp.ones((7,))
  params = encoder.init(jax.random.key(2), x, prior, jnp.zeros((5, 11)), context)
  run = lambda ctx: iterative.iterative_inference(
      jax.random.key(3), x, encoder_fn=lambda x, q, s: encoder.apply(params, x, q, s, ctx),
      log_likelihood_fn=lambda z: Bernoulli(logits(z)).log_prob(x),
      observation_mean_fn=lambda z: jax.nn.sigmoid(logits(z)),
      signal="error", num_steps=3, latent_dim=3)
  with_context, other_context = jax.jit(run)(context), jax.jit(run)(-context)
  assert with_context.elbos.shape == (4, 5) and np.all(np.isfinite(with_context.elbos))
  assert not np.allclose(with_context.posteriors.mean[-1], other_context.posteriors.mean[-1])
  with pytest.raises(ValueError, match="observation_mean_fn"):
    iterative.iterative_inference(jax.random.key(0), x, encoder_fn=None, log_likelihood_fn=None, num_steps=1,
                                  latent_dim=3, signal="error")


def test_gated_update_gates_clamps_and_stops_gradients():
  old = DiagonalGaussian(jnp.ones(2), jnp.zeros(2))
  update = iterative.Update(jnp.full(2, 5.0), jnp.full(2, 40.0), jnp.array([50.0, -50.0]), jnp.array([-50.0, -50.0]))
  new = iterative.gated_update(old, update)
  np.testing.assert_allclose(new.mean, [1.0, 5.0], atol=1e-5)
  np.testing.assert_allclose(new.log_variance, 15.0)  # clamped
  grad_old = lambda stop: jax.grad(lambda m: jnp.sum(iterative.gated_update(
      DiagonalGaussian(m, jnp.zeros(2)), update, stop_gradient=stop).mean))(jnp.ones(2))
  np.testing.assert_allclose(grad_old(True), 0.0)
  np.testing.assert_allclose(grad_old(False), [1.0, 0.0], atol=1e-5)


def test_encode_gradients():
  g = jnp.array([[-2.0, 0.0, 3.0]])
  expected = [[np.log(2 + 1e-5), np.log(1e-5), np.log(3 + 1e-5), -1, 0, 1]]
  np.testing.assert_allclose(iterative.encode_gradients(g), expected, rtol=1e-6)
  standardized = iterative.encode_gradients(g, method="standardize")
  np.testing.assert_allclose(standardized.mean(), 0.0, atol=1e-6)
  np.testing.assert_allclose(standardized.std(), 1.0, atol=1e-4)
  with pytest.raises(ValueError, match="unknown gradient encoding 'sign'"):
    iterative.encode_gradients(g, method="sign")


def test_iterative_loss_routes_the_two_losses_to_their_parameters(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 4)
  encoder = IterativeEncoder(hidden=(8,), latent_dim=3)
  prior = DiagonalGaussian(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
  enc_params = encoder.init(jax.random.key(1), x, prior, jnp.zeros((4, 12)))
  dec_params = jnp.asarray(model.weight, jnp.float32)

  def elbos_fn(enc, weight):
    ll = lambda z: DiagonalGaussian(z @ weight.T + model.bias, jnp.full_like(x, 2 * np.log(0.5))).log_prob(x)
    return iterative.iterative_inference(jax.random.key(2), x, encoder_fn=functools.partial(encoder.apply, enc),
                                         log_likelihood_fn=ll, num_steps=3, latent_dim=3).elbos

  (dec_loss, enc_loss), (enc_grads, dec_grads) = jax.jit(jax.value_and_grad(
      functools.partial(iterative.iterative_loss, elbos_fn), argnums=(0, 1), has_aux=True))(enc_params, dec_params)

  @jax.jit
  def expected(enc, dec):  # one compiled program: the unjitted scans would each compile their body again
    return (jax.grad(lambda e: -jnp.mean(elbos_fn(e, dec)[1:]))(enc),
            jax.grad(lambda w: -jnp.mean(elbos_fn(enc, w)[-1]))(dec), -jnp.mean(elbos_fn(enc, dec)[1:]))

  expected_enc, expected_dec, expected_enc_loss = expected(enc_params, dec_params)
  np.testing.assert_allclose(enc_loss, expected_enc_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(enc_grads), jax.tree.leaves(expected_enc), strict=False):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dec_grads, expected_dec, rtol=1e-4, atol=1e-5)
  assert np.isfinite(dec_loss)


def _shifted_log_likelihood(model, bias, x, z):
  """log p(x | z) of `model` with its bias replaced by `bias`: a per-distribution decoder."""
  mean = z @ model.weight.T + bias
  return DiagonalGaussian(mean, jnp.full_like(mean, 2 * np.log(model.noise_std))).log_prob(x)


def test_iterative_meta_inference_refines_each_distribution_with_its_own_decoder(linear_gaussian):
  """Two distributions, decoders differing in their bias: gradient-following refinement reaches each one's
  exact posterior, and the decoder_index decides whose."""
  model = linear_gaussian
  biases = jnp.stack([jnp.asarray(model.bias, jnp.float32), jnp.asarray(model.bias + 3.0, jnp.float32)])
  x = jnp.stack([model.sample_x(jax.random.key(0), 5)] * 2)  # the same queries under both decoders
  sets = jnp.zeros((2, 5, 4, model.data_dim))

  def run(decoder_index):
    return iterative.iterative_meta_inference(
        jax.random.key(1), x, sets, summary_fn=lambda d: jnp.mean(d, axis=-2),
        encoder_fn=lambda x, q, s, c: _gradient_ascent_encoder(x, q, s),
        decoder_log_likelihood_fn=functools.partial(_shifted_log_likelihood, model), decoder_params=biases,
        decoder_index=decoder_index, num_steps=40, latent_dim=3, num_samples=64)

  own, swapped = jax.jit(run)(None), jax.jit(run)(jnp.array([1, 0]))
  assert own.posteriors.mean.shape == (41, 2, 5, 3) and own.elbos.shape == (41, 2, 5)
  # Exact posterior mean under bias b: that of the model with its data shifted by (model.bias - b).
  exact = [model.posterior(x[0] + model.bias - b).mean for b in np.asarray(biases)]
  np.testing.assert_allclose(own.posteriors.mean[-1, 0], exact[0], atol=0.05)
  np.testing.assert_allclose(own.posteriors.mean[-1, 1], exact[1], atol=0.05)
  np.testing.assert_allclose(swapped.posteriors.mean[-1, 0], exact[1], atol=0.05)
  assert np.abs(exact[0] - exact[1]).max() > 1.0


def test_iterative_meta_inference_is_iterative_inference_per_distribution(linear_gaussian):
  """vmap over distributions = a loop of `iterative_inference`, each with its key, decoder and summary h(D)."""
  model = linear_gaussian
  encoder = IterativeEncoder(hidden=(8,), latent_dim=3)
  prior = DiagonalGaussian(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
  queries = jax.random.normal(jax.random.key(0), (3, 4, model.data_dim))
  sets = jax.random.normal(jax.random.key(1), (3, 4, 6, model.data_dim))
  params = encoder.init(jax.random.key(2), queries[0], prior, jnp.zeros((4, 12)), jnp.zeros((4, model.data_dim)))
  biases = jax.random.normal(jax.random.key(3), (2, model.data_dim))
  index = jnp.array([1, 0, 1])
  key = jax.random.key(4)
  summary_fn = lambda d: jnp.mean(jnp.tanh(d), axis=-2)
  refine = jax.jit(lambda k, num_steps: iterative.iterative_meta_inference(
      k, queries, sets, summary_fn=summary_fn, encoder_fn=functools.partial(encoder.apply, params),
      decoder_log_likelihood_fn=functools.partial(_shifted_log_likelihood, model), decoder_params=biases,
      decoder_index=index, num_steps=num_steps, latent_dim=3, num_samples=2), static_argnums=1)
  result = refine(key, 3)
  # Refining further does not change the first steps (their keys do not depend on the step count): the
  # evaluation reads the MetaELBO after T steps off a longer curve.
  np.testing.assert_array_equal(refine(key, 5).elbos[:4], result.elbos)
  for i, dist_key in enumerate(jax.random.split(key, 3)):
    one = iterative.iterative_inference(
        dist_key, queries[i], encoder_fn=lambda x, q, s, i=i: encoder.apply(params, x, q, s, summary_fn(sets[i])),
        log_likelihood_fn=functools.partial(_shifted_log_likelihood, model, biases[index[i]], queries[i]),
        num_steps=3, latent_dim=3, num_samples=2)
    np.testing.assert_allclose(result.posteriors.mean[:, i], one.posteriors.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.elbos[:, i], one.elbos, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match=r"sets must have a leading distribution axis of size 3"):
    iterative.iterative_meta_inference(key, queries, sets[:2], summary_fn=summary_fn,
                                       encoder_fn=functools.partial(encoder.apply, params),
                                       decoder_log_likelihood_fn=functools.partial(_shifted_log_likelihood, model),
                                       decoder_params=biases, decoder_index=index, num_steps=3, latent_dim=3)


def test_backprop_through_steps_changes_the_gradient_not_the_values(linear_gaussian):
  """With `backprop_through_steps` the encoder loss reaches earlier refinements through each step's input posterior:
  the ELBOs are the same, the encoder's gradient is not; with one step there is no earlier step, so it is the same."""
  x = linear_gaussian.sample_x(jax.random.key(0), 4)
  encoder = IterativeEncoder(hidden=(8,), latent_dim=3)
  prior = DiagonalGaussian(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
  params = encoder.init(jax.random.key(1), x, prior, jnp.zeros((4, 12)))
  ll = functools.partial(linear_gaussian.log_likelihood, x)

  @functools.partial(jax.jit, static_argnums=(1, 2))
  def elbos_and_grad(p, num_steps, backprop):
    elbos = lambda p: iterative.iterative_inference(
        jax.random.key(2), x, encoder_fn=functools.partial(encoder.apply, p), log_likelihood_fn=ll,
        num_steps=num_steps, latent_dim=3, backprop_through_steps=backprop).elbos
    return elbos(p), jax.grad(lambda p: -jnp.mean(elbos(p)[1:]))(p)

  for num_steps, differ in ((3, True), (1, False)):
    (stopped, stopped_grad), (through, through_grad) = (elbos_and_grad(params, num_steps, b) for b in (False, True))
    np.testing.assert_allclose(through, stopped, rtol=1e-6)
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(through_grad),
                                                              jax.tree.leaves(stopped_grad), strict=True))
    assert (gap > 1e-4) == differ, (num_steps, gap)
