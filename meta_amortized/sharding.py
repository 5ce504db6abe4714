"""Data parallelism over distributions: one `('data',)` mesh over every device, no code change between
CPU, one GPU and a TPU slice.

The training data (K, M, *event) is sharded over its K distributions when the mesh divides K; the
batches drawn inside a step (`sampling.sample_meta_batch`) are constrained to the same layout, or, where
there are fewer distributions than devices, to a sharding of the query batch. Parameters and optimiser
state are replicated; XLA partitions the vmapped computation and inserts the gradient all-reduce.

    mesh = data_mesh()
    state = replicate(mesh, state)
    data = shard_distributions(mesh, data)
    step = make_train_step(loss_fn, optimizer, mesh=mesh)

Multi-host: call `jax.distributed.initialize()` first (`initialize_distributed`); every process then builds
the same mesh over all devices and `shard_distributions` takes from each process only the shards of its
own devices.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "batch_spec", "constrain_batch", "data_mesh", "initialize_distributed", "replicate",
           "shard_distributions"]

AXIS = "data"


def data_mesh(devices: Any = None) -> Mesh:
  """A one-axis mesh named 'data' over `devices` (all devices of all processes when None).

  Examples:
    >>> from meta_amortized.sharding import data_mesh
    >>> data_mesh().axis_names
    ('data',)
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def initialize_distributed(**kwargs: Any) -> None:
  """`jax.distributed.initialize(**kwargs)` (on Cloud TPU and SLURM the arguments are found automatically);
   on CPU the processes exchange collectives through gloo.

  Examples:
    >>> from meta_amortized.sharding import initialize_distributed
    >>> # on every host of a multi-host run, before any other JAX call:
    >>> # initialize_distributed(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=0)
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only CPU devices' collectives use it
  jax.distributed.initialize(**kwargs)


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
  """x laid out by `sharding`; with several processes each one supplies only its own devices' shards."""
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  return jax.make_array_from_callback(np.shape(x), sharding, lambda index: np.asarray(x[index]))


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Every leaf of `tree` replicated on every device of `mesh`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.sharding import data_mesh, replicate
    >>> replicate(data_mesh(), {"w": jnp.zeros(3)})["w"].sharding.is_fully_replicated
    True
  """
  return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, P())), tree)


def batch_spec(shape: tuple[int, ...], num_devices: int) -> P:
  """The layout of a (K, B, ...) batch on `num_devices`: over K if they divide it, else over B.

  Raises:
    ValueError: neither K nor B is a multiple of the number of devices.

  Examples:
    >>> from jax.sharding import PartitionSpec
    >>> from meta_amortized.sharding import batch_spec
    >>> batch_spec((8, 100, 784), 4) == PartitionSpec("data")           # over K
    True
    >>> batch_spec((5, 100, 784), 4) == PartitionSpec(None, "data")     # else over B
    True
  """
  if shape[0] % num_devices == 0:
    return P(AXIS)
  if len(shape) > 1 and shape[1] % num_devices == 0:
    return P(None, AXIS)
  raise ValueError(f"cannot shard a batch of shape {shape} over {num_devices} devices: neither the number of "
                   f"distributions ({shape[0]}) nor the batch size ({shape[1] if len(shape) > 1 else None}) is a "
                   "multiple of it")


def shard_distributions(mesh: Mesh, data: Any) -> Any:
  """The training distributions (K, M, *event) on `mesh`: split over K when the mesh divides it, replicated
  otherwise (the query batch is split inside the step instead). Each process reads only its devices' shards.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.sharding import data_mesh, shard_distributions
    >>> shard_distributions(data_mesh(), jnp.zeros((4, 10, 6))).shape
    (4, 10, 6)
  """
  num = mesh.shape[AXIS]

  def put(x):
    return _put(x, NamedSharding(mesh, P(AXIS) if np.ndim(x) and np.shape(x)[0] % num == 0 else P()))

  return jax.tree.map(put, data)


def constrain_batch(x: jax.Array) -> jax.Array:
  """Inside a step traced under `jax.set_mesh` with a 'data' axis: x (K, B, ...) laid out by `batch_spec`.
  Without such a mesh (plain single-device use), x unchanged.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.sharding import constrain_batch
    >>> constrain_batch(jnp.zeros((2, 3))).shape                      # outside a mesh: unchanged
    (2, 3)
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or AXIS not in mesh.axis_names or mesh.shape[AXIS] == 1:
    return x
  return jax.lax.with_sharding_constraint(x, batch_spec(x.shape, mesh.shape[AXIS]))
