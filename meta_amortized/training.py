"""A generic, pure, jitted optimisation step shared by every model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class TrainState(NamedTuple):
  """step, parameters, optimiser state, and the model's non-trained state (batch-norm statistics; {} if none)."""

  step: jax.Array
  params: Any
  opt_state: optax.OptState
  model_state: Any = {}


def init_train_state(params: Any, optimizer: optax.GradientTransformation, model_state: Any = None) -> TrainState:
  """The state at step 0: `params`, the optimiser's initial state, and `model_state` ({} when None)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    model_state={} if model_state is None else model_state)


LossFn = Callable[..., tuple[jax.Array, Any]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, stateful: bool = False,
                    has_gradients: bool = False, mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, dict]]:
  """Returns `step(state, key, *batch) -> (state, metrics)`, jitted, donating `state`.

  Args:
    loss_fn: `loss_fn(params, key, *batch) -> (scalar loss, dict of scalar metrics)`; with `stateful`,
      `loss_fn(params, model_state, key, *batch) -> (scalar loss, (metrics, new model_state))`, for models
      with batch norm. All sampling happens inside it with `key`, so the whole step is one XLA program.
    optimizer: an optax transformation.
    stateful: whether the loss reads and updates `TrainState.model_state`.
    has_gradients: `loss_fn(params, key, *batch) -> (loss, metrics, gradients)` computes its own gradients
      (models whose parts follow different losses, such as `iterative.iterative_gradients`).
    mesh: a `sharding.data_mesh`: the step is traced under it (batches drawn inside are split over its
      devices, `sharding.constrain_batch`) and returns the state and metrics replicated. The state and
      data should be placed with `sharding.replicate` and `sharding.shard_distributions`.

  The returned metrics hold `loss` plus whatever `loss_fn` reports.

  Example:
    >>> step = make_train_step(partial(model.loss, batch_size=100, set_size=10), optax.adam(1e-3))
    >>> state = init_train_state(model.init(key, num_distributions), optax.adam(1e-3))
    >>> state, metrics = step(state, jax.random.fold_in(key, 0), data)   # data: (K, M, *event)
  """

  def step(state: TrainState, key: jax.Array, *batch: Any) -> tuple[TrainState, dict]:
    if has_gradients:
      loss, metrics, grads = loss_fn(state.params, key, *batch)
      model_state = state.model_state
    elif stateful:
      (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, state.model_state, key, *batch)
    else:
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, key, *batch)
      model_state = state.model_state
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state, model_state), {"loss": loss, **metrics}

  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  replicated = NamedSharding(mesh, PartitionSpec())
  jitted = jax.jit(step, donate_argnums=0, out_shardings=(replicated, replicated))

  def sharded_step(state: TrainState, key: jax.Array, *batch: Any) -> tuple[TrainState, dict]:
    with jax.set_mesh(mesh):
      return jitted(state, key, *batch)

  def lower(*args: Any) -> Any:
    with jax.set_mesh(mesh):
      return jitted.lower(*args)

  sharded_step.lower = lower  # as a jitted function has, for ahead-of-time compilation and cost analysis
  return sharded_step


def mixed_precision(loss_fn: LossFn, compute_dtype: Any = jnp.bfloat16, *, stateful: bool = False) -> LossFn:
  """`loss_fn` with its matrix products in `compute_dtype` (bfloat16 on GPU/TPU), for `make_train_step`.

  The float32 parameters and the floating arrays of the batch are cast to `compute_dtype` on the way in
  (gradients flow back to the float32 parameters, which the optimiser updates in float32); the networks
  hand their outputs to the bounds in float32 (`networks.gaussian_from_params`, the models' likelihoods),
  so the bounds, the loss and the metrics are float32. A stateful model's state (batch-norm statistics)
  stays float32. A large array of the batch that the loss samples from (a whole population of images) is best
  cast to `compute_dtype` once, before training: the cast here is then the identity, where it would otherwise
  convert the whole array in every step.

  Example:
    >>> step = make_train_step(mixed_precision(loss_fn, jnp.bfloat16), optax.adam(1e-3))
  """

  def cast(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

  if stateful:
    return lambda params, model_state, key, *batch: loss_fn(cast(params), model_state, key, *cast(batch))
  return lambda params, key, *batch: loss_fn(cast(params), key, *cast(batch))
