"""A generic, pure, jitted optimisation step shared by every model (the `models` extra: it needs Optax).

Every model of the package has one interface, `Model`; every loss the step takes has one signature, `LossFn`:

    loss_fn(params, state, key, *batch) -> (scalar loss, (metrics, new state))

`state` is what the model carries besides its trained parameters (batch-norm statistics; `{}` if nothing).
A model's `loss` with its batch and set sizes bound (`functools.partial`) is such a function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from meta_amortized._extras import require

optax = require("optax", needed_by=__name__)

__all__ = ["LossFn", "Model", "TrainState", "init_train_state", "make_train_step", "mixed_precision"]


class Model(Protocol):
  """The interface of every model of the package (`MetaVAE`, `IterativeMetaVAE`, `NeuralStatistician`,
  `VariationalHomoencoder`, `ConvModel`): what the training step, the trainer and the benchmark rely on.

  Examples:
    >>> from meta_amortized.metavae import MetaVAE
    >>> from meta_amortized.training import Model
    >>> model: Model = MetaVAE()                                          # so is every model of the package
    >>> callable(model.init) and callable(model.loss) and callable(model.encode)
    True
  """

  def init(self, key: jax.Array, num_distributions: int,
           observation_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """(params, state) for `num_distributions` training distributions of observations of `observation_shape`."""

  def loss(self, params: Any, state: Any, key: jax.Array, data: jax.Array, *, batch_size: int,
           set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """(loss, (metrics, new state)) of one batch of queries and sets drawn with `key` from data (K, M, *event)."""

  def encode(self, params: Any, state: Any, key: jax.Array, sets: jax.Array, queries: jax.Array) -> jax.Array:
    """The codes (B, Z) of queries (B, *event) given their sets (B, N, *event), or one shared set (N, *event)."""


class TrainState(NamedTuple):
  """step, parameters, optimiser state, and the model's non-trained state (batch-norm statistics; {} if none).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from meta_amortized.training import init_train_state
    >>> state = init_train_state({"w": jnp.zeros(3)}, optax.adam(1e-3))
    >>> int(state.step), state.model_state
    (0, {})
  """

  step: jax.Array
  params: Any
  opt_state: optax.OptState
  model_state: Any = {}


def init_train_state(params: Any, optimizer: optax.GradientTransformation, model_state: Any = None) -> TrainState:
  """The state at step 0: `params`, the optimiser's initial state, and `model_state` ({} when None).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from meta_amortized.training import init_train_state
    >>> init_train_state({"w": jnp.zeros(3)}, optax.sgd(0.1), model_state={"mean": jnp.zeros(3)}).model_state
    {'mean': Array([0., 0., 0.], dtype=float32)}
  """
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    model_state={} if model_state is None else model_state)


LossFn = Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, dict]]:
  """Returns `step(state, key, *batch) -> (state, metrics)`, jitted, donating `state`.

  Args:
    loss_fn: `loss_fn(params, model_state, key, *batch) -> (scalar loss, (dict of scalar metrics, new
      model_state))`, e.g. `functools.partial(model.loss, batch_size=B, set_size=N)`. All sampling happens
      inside it with `key`, so the whole step is one XLA program. Models whose parts follow different losses
      route their gradients inside the loss (`iterative.iterative_loss`).
    optimizer: an optax transformation.
    mesh: a `sharding.data_mesh`: the step is traced under it (batches drawn inside are split over its
      devices, `sharding.constrain_batch`) and returns the state and metrics replicated. The state and
      data should be placed with `sharding.replicate` and `sharding.shard_distributions`.

  The returned metrics hold `loss` plus whatever `loss_fn` reports.

  Examples:
    >>> import functools, jax, optax
    >>> from meta_amortized.metavae import MetaVAE
    >>> from meta_amortized.networks import Decoder, MetaInferenceNetwork
    >>> from meta_amortized.training import init_train_state, make_train_step
    >>> model = MetaVAE(MetaInferenceNetwork((8,), (8,), 2), Decoder((8,), 6))
    >>> data = jax.random.uniform(jax.random.key(0), (3, 20, 6))       # K = 3 distributions: (K, M, *event)
    >>> params, model_state = model.init(jax.random.key(1), 3, (6,))
    >>> state = init_train_state(params, optax.adam(1e-3), model_state)
    >>> step = make_train_step(functools.partial(model.loss, batch_size=4, set_size=5), optax.adam(1e-3))
    >>> state, metrics = step(state, jax.random.key(2), data)
    >>> int(state.step), sorted(metrics)
    (1, ['loss', 'meta_elbo'])
  """

  def step(state: TrainState, key: jax.Array, *batch: Any) -> tuple[TrainState, dict]:
    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.model_state, key, *batch)
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


def mixed_precision(loss_fn: LossFn, compute_dtype: Any = jnp.bfloat16) -> LossFn:
  """`loss_fn` with its matrix products in `compute_dtype` (bfloat16 on GPU/TPU), for `make_train_step`.

  The float32 parameters and the floating arrays of the batch are cast to `compute_dtype` on the way in
  (gradients flow back to the float32 parameters, which the optimiser updates in float32); the networks
  hand their outputs to the bounds in float32 (`networks.gaussian_from_params`, the models' likelihoods),
  so the bounds, the loss and the metrics are float32. The model state (batch-norm statistics) stays float32.
  A large array of the batch that the loss samples from (a whole population of images) is best cast to
  `compute_dtype` once, before training: the cast here is then the identity, where it would otherwise convert
  the whole array in every step.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.training import mixed_precision
    >>> loss_fn = lambda params, state, key, x: (jnp.sum(params @ x).astype(jnp.float32), ({"dtype": 0}, state))
    >>> loss, _ = mixed_precision(loss_fn, jnp.bfloat16)(jnp.ones((2, 3)), {}, jax.random.key(0), jnp.ones(3))
    >>> loss.dtype
    dtype('float32')
  """

  def cast(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

  return lambda params, model_state, key, *batch: loss_fn(cast(params), model_state, key, *cast(batch))
