import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized import probe


def _blobs(key, n, dim=6, classes=4, spread=1.0):
  centre_key, label_key, noise_key = jax.random.split(key, 3)
  centres = 3.0 * jax.random.normal(centre_key, (classes, dim))
  labels = jax.random.randint(label_key, (n,), 0, classes)
  return centres[labels] + spread * jax.random.normal(noise_key, (n, dim)), labels


def test_probe_converges_to_the_penalised_optimum():
  features, labels = _blobs(jax.random.key(0), 400, spread=2.0)
  fit = probe.fit_linear_probe(features, labels, num_classes=4)
  assert float(fit.gradient_norm) < 1e-5 and int(fit.iterations) < 1000
  # First-order optimality: for the mean cross-entropy plus ||W||^2 / (2 n), the softmax residuals
  # balance the penalty, X^T (p - onehot) / n + W / n = 0, and sum_i (p - onehot) = 0 for the bias.
  residual = jax.nn.softmax(features @ fit.weights + fit.bias) - jax.nn.one_hot(labels, 4)
  np.testing.assert_allclose(features.T @ residual / 400 + fit.weights / 400, 0.0, atol=2e-5)
  np.testing.assert_allclose(residual.mean(0), 0.0, atol=2e-5)
  # A stronger penalty (smaller C) shrinks the weights.
  strong = probe.fit_linear_probe(features, labels, num_classes=4, inverse_l2=0.01)
  assert float(jnp.sum(strong.weights**2)) < float(jnp.sum(fit.weights**2))


def test_probe_accuracy_on_separable_and_random_labels():
  features, labels = _blobs(jax.random.key(1), 600, spread=0.3)
  fit = probe.fit_linear_probe(features[:400], labels[:400], num_classes=4)
  assert float(probe.probe_accuracy(fit, features[400:], labels[400:])) > 0.97
  shuffled = jax.random.permutation(jax.random.key(2), labels)
  chance = probe.fit_linear_probe(features[:400], shuffled[:400], num_classes=4)
  assert float(probe.probe_accuracy(chance, features[400:], shuffled[400:])) < 0.45


def test_probe_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match=r"features must be \(N, D\) and labels \(N,\) with N >= 1; got \(5, 3\) and "):
    probe.fit_linear_probe(jnp.zeros((5, 3)), jnp.zeros((4,), jnp.int32), num_classes=2)


def test_code_geometry_matches_its_closed_forms():
  # Class c at centre 3 c e_0 plus the points +-s e_j for every axis j: class means exactly the centres, each point
  # s^2 from its class mean, so between / within = mean_c ||3 c e_0 - 4.5 e_0||^2 / s^2 = 11.25 / s^2 (four classes).
  dim, s = 5, 0.5
  offsets = jnp.concatenate([s * jnp.eye(dim), -s * jnp.eye(dim)])  # (2D, D)
  centres = 3.0 * jnp.arange(4.0)[:, None] * jnp.eye(dim)[0]
  features = (centres[:, None, :] + offsets).reshape(-1, dim)
  labels = jnp.repeat(jnp.arange(4), 2 * dim)
  geometry = probe.code_geometry(features, labels, num_classes=4)
  assert float(geometry.class_separation) == pytest.approx(11.25 / s**2, rel=1e-5)
  # Covariance: s^2 / D on every axis, plus the centres' variance 11.25 on axis 0.
  variances = jnp.full(dim, s**2 / dim).at[0].add(11.25)
  assert float(geometry.participation_ratio) == pytest.approx(float(variances.sum() ** 2 / jnp.sum(variances**2)),
                                                              rel=1e-5)
  isotropic = probe.code_geometry(offsets, jnp.zeros(2 * dim, jnp.int32), num_classes=1)
  assert float(isotropic.participation_ratio) == pytest.approx(dim, rel=1e-5)
  assert float(isotropic.class_separation) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match=r"features must be \(N, D\) and labels \(N,\) with N >= 1; got \(5,\) and "):
    probe.code_geometry(jnp.zeros(5), jnp.zeros(5, jnp.int32), num_classes=2)
