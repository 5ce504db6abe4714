"""The linear probe of the transformation-invariance experiments (Wu et al., Figure 7 and Table 2).

Multinomial logistic regression with an L2 penalty on the weights (C = 1, the
intercept unpenalised, as scikit-learn's LogisticRegression fits it), fitted to
convergence with L-BFGS (optax, zoom line search) inside a `lax.while_loop`.
Objective, scaled by 1 / (C n) for conditioning (same minimiser):
    mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n).
Stopping rule: the gradient's L2 norm below `tolerance`, or `max_iterations`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu


class ProbeFit(NamedTuple):
  """A fitted probe, the L-BFGS iterations it took and the norm of its objective's gradient at the end."""

  weights: jax.Array  # (D, C)
  bias: jax.Array  # (C,)
  iterations: jax.Array
  gradient_norm: jax.Array


def _check_features(features: jax.Array, labels: jax.Array) -> None:
  if features.ndim != 2 or labels.shape != features.shape[:1]:
    raise ValueError(f"features must be (N, D) and labels (N,); got {features.shape} and {labels.shape}")


def probe_objective(params: dict, features: jax.Array, labels: jax.Array, *, inverse_l2: float) -> jax.Array:
  """Mean cross-entropy plus |W|^2 / (2 C N): scikit-learn's L2 logistic regression divided by N (bias unpenalised)."""
  logits = features @ params["weights"] + params["bias"]
  cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return cross_entropy + jnp.sum(params["weights"] ** 2) / (2.0 * inverse_l2 * features.shape[0])


@functools.partial(jax.jit, static_argnames=("num_classes", "inverse_l2", "tolerance", "max_iterations"))
def fit_linear_probe(features: jax.Array, labels: jax.Array, *, num_classes: int, inverse_l2: float = 1.0,
                     tolerance: float = 1e-5, max_iterations: int = 1000) -> ProbeFit:
  """Fits the probe to (N, D) features and (N,) integer labels; `inverse_l2` is scikit-learn's C.

  Jitted (the hyperparameters static): every fit of the same shapes in a process reuses one compiled program.

  Example:
    >>> fit = fit_linear_probe(train_codes, train_labels, num_classes=10)      # (N, D), (N,)
    >>> accuracy = probe_accuracy(fit, test_codes, test_labels)
  """
  _check_features(features, labels)
  params = {"weights": jnp.zeros((features.shape[1], num_classes), features.dtype),
            "bias": jnp.zeros((num_classes,), features.dtype)}
  objective = lambda p: probe_objective(p, features, labels, inverse_l2=inverse_l2)
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(p, updates), state

  def running(carry):
    _, state = carry
    count = otu.tree_get(state, "count")
    return (count == 0) | ((count < max_iterations) & (otu.tree_norm(otu.tree_get(state, "grad")) >= tolerance))

  params, state = jax.lax.while_loop(running, step, (params, solver.init(params)))
  gradient_norm = otu.tree_norm(jax.grad(objective)(params))
  return ProbeFit(params["weights"], params["bias"], otu.tree_get(state, "count"), gradient_norm)


@jax.jit
def probe_accuracy(fit: ProbeFit, features: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of (N, D) features whose predicted class equals the label."""
  return jnp.mean(jnp.argmax(features @ fit.weights + fit.bias, axis=-1) == labels)


class CodeGeometry(NamedTuple):
  """How the classes lie in a set of codes: what the probe's accuracy reads, as two numbers."""

  class_separation: jax.Array  # between-class over within-class variance
  participation_ratio: jax.Array  # effective number of dimensions the codes spread over


@functools.partial(jax.jit, static_argnames=("num_classes",))
def code_geometry(features: jax.Array, labels: jax.Array, *, num_classes: int) -> CodeGeometry:
  """The class separation and the participation ratio of (N, D) features with (N,) integer labels.

  class_separation = sum_c n_c ||m_c - m||^2 / sum_i ||x_i - m_{y_i}||^2 (m_c the class means, m the overall mean):
  how much of the features' spread is between the classes. participation_ratio = tr(S)^2 / tr(S^2) of their
  covariance S: D for isotropic features, 1 for features on a line. Within-class variation added along new
  directions lowers the first and raises the second. Labels must lie in [0, num_classes) (not checked: traced).

  Example:
    >>> geometry = code_geometry(test_codes, test_labels, num_classes=10)      # (N, D), (N,)
  """
  _check_features(features, labels)
  centred = features - jnp.mean(features, axis=0)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)  # (N, C)
  class_means = (one_hot.T @ centred) / jnp.maximum(jnp.sum(one_hot, axis=0), 1.0)[:, None]  # (C, D)
  own_class_means = one_hot @ class_means  # (N, D): each feature's class mean
  between = jnp.sum(own_class_means**2)
  within = jnp.sum((centred - own_class_means) ** 2)
  covariance = centred.T @ centred / features.shape[0]
  return CodeGeometry(between / within, jnp.trace(covariance) ** 2 / jnp.sum(covariance**2))
