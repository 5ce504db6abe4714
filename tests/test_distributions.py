import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized.distributions import Bernoulli, Categorical, DiagonalGaussian, kl_divergence, standard_normal_like


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
  rng = np.random.default_rng(0)
  mq, mp = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  lq, lp = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  q = DiagonalGaussian(jnp.asarray(mq, jnp.float32), jnp.asarray(lq, jnp.float32))
  p = DiagonalGaussian(jnp.asarray(mp, jnp.float32), jnp.asarray(lp, jnp.float32))
  sq, sp = np.exp(lq / 2), np.exp(lp / 2)
  closed = np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5, axis=-1)
  np.testing.assert_allclose(kl_divergence(q, p), closed, rtol=1e-5, atol=1e-5)
  z = q.sample(jax.random.key(0), (200_000,))
  monte_carlo = jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)
  np.testing.assert_allclose(monte_carlo, closed, atol=0.03)
  np.testing.assert_allclose(jax.jit(kl_divergence)(q, p), closed, rtol=1e-5, atol=1e-5)


def test_gaussian_kl_stable_for_tiny_variances():
  q = DiagonalGaussian(jnp.array([0.0, 1e-3]), jnp.array([-80.0, -60.0]))
  p = DiagonalGaussian(jnp.zeros(2), jnp.array([-79.0, -60.0]))
  kl = kl_divergence(q, p)
  # Per dimension 0.5 (e^-1 + 1 - 1) and 0.5 * (1e-3)^2 / e^-60: finite, exact.
  expected = 0.5 * (np.exp(-1.0) - 1 + 1) + 0.5 * (1e-6 / np.exp(-60.0))
  assert np.isfinite(kl)
  np.testing.assert_allclose(kl, expected, rtol=1e-4)
  assert np.isfinite(q.log_prob(q.mean)) and np.isfinite(q.log_prob(jnp.ones(2)))


def test_gaussian_log_prob_sample_and_pytree_transforms():
  q = DiagonalGaussian(jnp.array([[1.0, -2.0]]), jnp.log(jnp.array([[0.25, 4.0]])))
  value = jnp.array([[0.5, 0.0]])
  expected = sum(-0.5 * np.log(2 * np.pi * v) - 0.5 * (x - m) ** 2 / v
                 for x, m, v in [(0.5, 1.0, 0.25), (0.0, -2.0, 4.0)])
  np.testing.assert_allclose(q.log_prob(value), [expected], rtol=1e-6)
  z = q.sample(jax.random.key(1), (100_000,))
  np.testing.assert_allclose(z.mean(0), q.mean, atol=0.02)
  np.testing.assert_allclose(z.var(0), jnp.exp(q.log_variance), rtol=0.02)
  batched = DiagonalGaussian(jnp.ones((5, 2)), jnp.zeros((5, 2)))
  vmapped = jax.vmap(lambda d, v: d.log_prob(v))(batched, jnp.zeros((5, 2)))
  np.testing.assert_allclose(vmapped, jax.jit(lambda d: d.log_prob(jnp.zeros((5, 2))))(batched), rtol=1e-6)
  assert kl_divergence(q, standard_normal_like(q)).shape == (1,)


def test_bernoulli_log_prob_exact_and_finite_for_large_logits():
  logits = jnp.array([[-3.0, 0.0, 2.0]])
  x = jnp.array([[0.0, 1.0, 0.3]])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  expected = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p))
  np.testing.assert_allclose(Bernoulli(logits).log_prob(x), [expected], rtol=1e-6)
  extreme = Bernoulli(jnp.array([1e4, -1e4]))
  np.testing.assert_allclose(extreme.log_prob(jnp.array([1.0, 0.0])), 0.0, atol=1e-6)
  np.testing.assert_allclose(extreme.log_prob(jnp.array([0.0, 1.0])), -2e4, rtol=1e-6)
  grad = jax.grad(lambda logits: Bernoulli(logits).log_prob(jnp.array([0.0, 1.0])))(jnp.array([1e4, -1e4]))
  assert np.all(np.isfinite(grad))
  images = Bernoulli(jnp.zeros((2, 4, 4)), event_ndims=2)
  np.testing.assert_allclose(images.log_prob(jnp.ones((2, 4, 4))), 16 * np.log(0.5), rtol=1e-6)
  samples = Bernoulli(jnp.full((50_000,), 1.0)).sample(jax.random.key(0))
  np.testing.assert_allclose(samples.mean(), 1 / (1 + np.exp(-1.0)), atol=0.01)


def test_categorical():
  logits = jnp.array([[0.0, 1.0, 2.0], [5.0, -5.0, 0.0]])
  cat = Categorical(logits)
  np.testing.assert_allclose(jnp.exp(cat.log_probs).sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(cat.log_prob(jnp.array([2, 0])),
                             [jax.nn.log_softmax(logits[0])[2], jax.nn.log_softmax(logits[1])[0]], rtol=1e-6)
  other = Categorical(jnp.zeros((2, 3)))
  explicit = np.sum(cat.probs * (cat.log_probs - np.log(1 / 3)), axis=-1)
  np.testing.assert_allclose(kl_divergence(cat, other), explicit, rtol=1e-5)
  counts = np.bincount(np.asarray(Categorical(logits[0]).sample(jax.random.key(0), (60_000,))), minlength=3)
  np.testing.assert_allclose(counts / 60_000, cat.probs[0], atol=0.01)


def test_kl_of_unsupported_pair_raises():
  with pytest.raises(NotImplementedError, match="DiagonalGaussian and Bernoulli"):
    kl_divergence(DiagonalGaussian(jnp.zeros(1), jnp.zeros(1)), Bernoulli(jnp.zeros(1)))


def test_a_clamped_bernoulli_floors_each_log_probability_and_stops_its_gradient():
  logits, x = jnp.array([-30.0, 0.3, 30.0]), jnp.array([1.0, 0.5, 0.0])
  clamped = lambda logit: Bernoulli(logit, clamp=1e-7).log_prob(x)
  exact_middle = 0.5 * jax.nn.log_sigmoid(0.3) + 0.5 * jax.nn.log_sigmoid(-0.3)
  # In float32, as the original's: 1 - 1e-7 rounds to 1 - 1.19e-7, the floor of the x = 0 pixel.
  floors = np.log(1e-7) + np.log1p(-np.float32(1.0 - 1e-7))
  np.testing.assert_allclose(clamped(logits), floors + exact_middle, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(clamped)(logits), [0.0, 0.5 - jax.nn.sigmoid(0.3), 0.0], atol=1e-6)
  assert float(Bernoulli(logits).log_prob(x)) < float(clamped(logits))  # unclamped: -30 nats for each
  with pytest.raises(ValueError, match="clamp=0.5 is not allowed"):
    Bernoulli(logits, clamp=0.5)
