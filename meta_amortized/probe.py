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
  if features.ndim != 2 or labels.shape != features.shape[:1]:
    raise ValueError(f"features must be (N, D) and labels (N,); got {features.shape} and {labels.shape}")
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
