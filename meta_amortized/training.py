"""A generic, pure, jitted optimisation step shared by every model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """step, parameters, optimiser state, and the model's non-trained state (batch-norm statistics; {} if none)."""

  step: jax.Array
  params: Any
  opt_state: optax.OptState
  model_state: Any = {}


def init_train_state(params: Any, optimizer: optax.GradientTransformation, model_state: Any = None) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    model_state={} if model_state is None else model_state)


LossFn = Callable[..., tuple[jax.Array, Any]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    stateful: bool = False) -> Callable[..., tuple[TrainState, dict]]:
  """Returns `step(state, key, *batch) -> (state, metrics)`, jitted, donating `state`.

  Args:
    loss_fn: `loss_fn(params, key, *batch) -> (scalar loss, dict of scalar metrics)`; with `stateful`,
      `loss_fn(params, model_state, key, *batch) -> (scalar loss, (metrics, new model_state))`, for models
      with batch norm. All sampling happens inside it with `key`, so the whole step is one XLA program.
    optimizer: an optax transformation.
    stateful: whether the loss reads and updates `TrainState.model_state`.

  The returned metrics hold `loss` plus whatever `loss_fn` reports.
  """

  def step(state: TrainState, key: jax.Array, *batch: Any) -> tuple[TrainState, dict]:
    if stateful:
      (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, state.model_state, key, *batch)
    else:
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, key, *batch)
      model_state = state.model_state
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state, model_state), {"loss": loss, **metrics}

  return jax.jit(step, donate_argnums=0)
