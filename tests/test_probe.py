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
  with pytest.raises(ValueError, match=r"features must be \(N, D\) and labels \(N,\); got \(5, 3\) and \(4,\)"):
    probe.fit_linear_probe(jnp.zeros((5, 3)), jnp.zeros((4,), jnp.int32), num_classes=2)
