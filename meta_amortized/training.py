"""A generic, pure, jitted optimisation step shared by every model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  step: jax.Array
  params: Any
  opt_state: optax.OptState


def init_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable[..., tuple[TrainState, dict]]:
  """Returns `step(state, key, *batch) -> (state, metrics)`, jitted, donating `state`.

  Args:
    loss_fn: `loss_fn(params, key, *batch) -> (scalar loss, dict of scalar metrics)`.
      All sampling happens inside it with `key`, so the whole step is one XLA program.
    optimizer: an optax transformation.

  The returned metrics hold `loss` plus whatever `loss_fn` reports.
  """

  def step(state: TrainState, key: jax.Array, *batch: Any) -> tuple[TrainState, dict]:
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, key, *batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state), {"loss": loss, **metrics}

  return jax.jit(step, donate_argnums=0)
