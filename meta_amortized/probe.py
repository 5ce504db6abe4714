"""The linear probe of the transformation-invariance experiments (Wu et al., Figure 7 and Table 2).

Multinomial logistic regression with an L2 penalty on the weights (C = 1, the
intercept unpenalised, as scikit-learn's LogisticRegression fits it), fitted to
convergence with L-BFGS (optax, zoom line search) inside a `lax.while_loop`.
Objective, scaled by 1 / (C n) for conditioning (same minimiser):
    mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n).
Stopping rule: the gradient's L2 norm below `tolerance`, or `max_iterations`.
Needs Optax (the `models` extra).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized._extras import require

optax = require("optax", needed_by=__name__)
otu = require("optax.tree_utils", needed_by=__name__)

__all__ = ["CodeGeometry", "ProbeFit", "code_geometry", "fit_linear_probe", "probe_accuracy", "probe_objective"]


class ProbeFit(NamedTuple):
  """A fitted probe, the L-BFGS iterations it took and the norm of its objective's gradient at the end.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.probe import ProbeFit, probe_accuracy
    >>> fit = ProbeFit(jnp.eye(2), jnp.zeros(2), jnp.array(0), jnp.array(0.0))   # predicts the larger feature
    >>> float(probe_accuracy(fit, jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])))
    0.5
  """

  weights: jax.Array  # (D, C)
  bias: jax.Array  # (C,)
  iterations: jax.Array
  gradient_norm: jax.Array


def _check_features(features: jax.Array, labels: jax.Array, num_classes: int | None = None) -> None:
  """Shapes always; with concrete arrays also the values: labels in [0, num_classes), finite features."""
  if features.ndim != 2 or labels.shape != features.shape[:1] or features.shape[0] == 0:
    raise ValueError(f"features must be (N, D) and labels (N,) with N >= 1; got {features.shape} and {labels.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integers; got dtype {labels.dtype}")
  if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                  or num_classes < 1):
    raise ValueError(f"num_classes={num_classes!r} is not allowed; expected an integer >= 1")
  if isinstance(labels, jax.core.Tracer) or isinstance(features, jax.core.Tracer):
    return
  labels = np.asarray(labels)
  outside = labels[(labels < 0) | (labels >= num_classes)] if num_classes is not None else labels[labels < 0]
  if outside.size:
    raise ValueError(f"labels must lie in [0, num_classes={num_classes}); got {np.unique(outside)[:10].tolist()}")
  bad = ~np.isfinite(np.asarray(features))
  if bad.any():
    rows = np.flatnonzero(bad.any(axis=1))
    raise ValueError(f"features must be finite; rows {rows[:10].tolist()} (of {rows.size}) hold NaN or inf")


def probe_objective(params: dict, features: jax.Array, labels: jax.Array, *, inverse_l2: float) -> jax.Array:
  """Mean cross-entropy plus |W|^2 / (2 C N): scikit-learn's L2 logistic regression divided by N (bias unpenalised).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.probe import probe_objective
    >>> params = {"weights": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}  # uniform predictions: log 2 per example
    >>> round(float(probe_objective(params, jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]), inverse_l2=1.0)), 4)
    0.6931
  """
  logits = features @ params["weights"] + params["bias"]
  cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return cross_entropy + jnp.sum(params["weights"] ** 2) / (2.0 * inverse_l2 * features.shape[0])


def fit_linear_probe(features: jax.Array, labels: jax.Array, *, num_classes: int, inverse_l2: float = 1.0,
                     tolerance: float = 1e-5, max_iterations: int = 1000) -> ProbeFit:
  """Fits the probe to (N, D) features and (N,) integer labels; `inverse_l2` is scikit-learn's C.

  The fit is jitted (the hyperparameters static): every fit of the same shapes in a process reuses one compiled
  program. Called with concrete arrays it first checks them: labels outside [0, num_classes) and non-finite
  features are a ValueError naming them (inside a caller's `jit` only the shapes can be checked).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.probe import fit_linear_probe, probe_accuracy
    >>> codes, labels = jnp.array([[-2.0], [-1.0], [1.0], [2.0]]), jnp.array([0, 0, 1, 1])
    >>> fit = fit_linear_probe(codes, labels, num_classes=2)
    >>> float(probe_accuracy(fit, codes, labels))
    1.0
  """
  _check_features(features, labels, num_classes)
  for name, value in (("inverse_l2", inverse_l2), ("tolerance", tolerance)):
    if not (float(value) > 0 and np.isfinite(value)):
      raise ValueError(f"{name}={value!r} is not allowed; expected a finite number > 0")
  if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
    raise ValueError(f"max_iterations={max_iterations!r} is not allowed; expected an integer >= 1")
  return _fit_linear_probe(features, labels, num_classes=num_classes, inverse_l2=inverse_l2, tolerance=tolerance,
                           max_iterations=max_iterations)


@functools.partial(jax.jit, static_argnames=("num_classes", "inverse_l2", "tolerance", "max_iterations"))
def _fit_linear_probe(features: jax.Array, labels: jax.Array, *, num_classes: int, inverse_l2: float,
                      tolerance: float, max_iterations: int) -> ProbeFit:
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
  """Fraction of (N, D) features whose predicted class equals the label.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.probe import ProbeFit, probe_accuracy
    >>> fit = ProbeFit(jnp.array([[1.0, -1.0]]), jnp.zeros(2), jnp.array(0), jnp.array(0.0))
    >>> float(probe_accuracy(fit, jnp.array([[1.0], [-1.0]]), jnp.array([0, 1])))
    1.0
  """
  return jnp.mean(jnp.argmax(features @ fit.weights + fit.bias, axis=-1) == labels)


class CodeGeometry(NamedTuple):
  """How the classes lie in a set of codes: what the probe's accuracy reads, as two numbers.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.probe import code_geometry
    >>> geometry = code_geometry(jnp.array([[0.0, 0.0], [0.0, 1.0], [4.0, 0.0], [4.0, 1.0]]), jnp.array([0, 0, 1, 1]),
    ...                          num_classes=2)
    >>> round(float(geometry.class_separation), 3)                    # 4 x 2^2 between, 4 x 0.5^2 within
    16.0
  """

  class_separation: jax.Array  # between-class over within-class variance
  participation_ratio: jax.Array  # effective number of dimensions the codes spread over


def code_geometry(features: jax.Array, labels: jax.Array, *, num_classes: int) -> CodeGeometry:
  """The class separation and the participation ratio of (N, D) features with (N,) integer labels.

  class_separation = sum_c n_c ||m_c - m||^2 / sum_i ||x_i - m_{y_i}||^2 (m_c the class means, m the overall mean):
  how much of the features' spread is between the classes. participation_ratio = tr(S)^2 / tr(S^2) of their
  covariance S: D for isotropic features, 1 for features on a line. Within-class variation added along new
  directions lowers the first and raises the second. Concrete labels outside [0, num_classes) and non-finite
  features are a ValueError.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.probe import code_geometry
    >>> codes = jax.random.normal(jax.random.key(0), (1000, 3))       # isotropic: about 3 dimensions
    >>> round(float(code_geometry(codes, jnp.zeros(1000, int), num_classes=2).participation_ratio))
    3
  """
  _check_features(features, labels, num_classes)
  return _code_geometry(features, labels, num_classes=num_classes)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _code_geometry(features: jax.Array, labels: jax.Array, *, num_classes: int) -> CodeGeometry:
  centred = features - jnp.mean(features, axis=0)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)  # (N, C)
  class_means = (one_hot.T @ centred) / jnp.maximum(jnp.sum(one_hot, axis=0), 1.0)[:, None]  # (C, D)
  own_class_means = one_hot @ class_means  # (N, D): each feature's class mean
  between = jnp.sum(own_class_means**2)
  within = jnp.sum((centred - own_class_means) ** 2)
  covariance = centred.T @ centred / features.shape[0]
  return CodeGeometry(between / within, jnp.trace(covariance) ** 2 / jnp.sum(covariance**2))
