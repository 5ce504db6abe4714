"""Run by tests/test_sharding.py in fresh processes (the device count is fixed when JAX starts).

    JAX_NUM_CPU_DEVICES=8 python -m tests.sharding_worker K B [PROCESS_ID NUM_PROCESSES PORT]

Trains a small MetaVAE for a few steps with the sharded step over every device (all processes) and
with the plain single-device step, and prints one JSON line comparing them.
"""

import functools
import json
import sys

import jax
import numpy as np
import optax

from meta_amortized import sharding
from meta_amortized.metavae import MetaVAE
from meta_amortized.networks import Decoder, MetaInferenceNetwork
from meta_amortized.training import init_train_state, make_train_step

STEPS = 3


def main(num_distributions: int, batch_size: int) -> dict:
  model = MetaVAE(MetaInferenceNetwork((8,), (8,), 3), Decoder((8,), 6))
  data = np.asarray(jax.random.uniform(jax.random.key(0), (num_distributions, 40, 6)))
  optimizer = optax.adam(1e-2)
  loss_fn = functools.partial(model.loss, batch_size=batch_size, set_size=3)
  keys = jax.random.split(jax.random.key(2), STEPS)

  def train(step, state, data):
    losses = []
    for key in keys:
      state, metrics = step(state, key, data)
      losses.append(float(metrics["loss"]))
    return state, losses

  initial = lambda: init_train_state(model.init(jax.random.key(1), num_distributions, (6,))[0], optimizer)
  single, single_losses = train(make_train_step(loss_fn, optimizer), initial(), data)
  mesh = sharding.data_mesh()
  state = sharding.replicate(mesh, initial())
  sharded_data = sharding.shard_distributions(mesh, data)
  sharded, sharded_losses = train(make_train_step(loss_fn, optimizer, mesh=mesh), state, sharded_data)
  gathered = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), sharded.params)
  difference = max(float(np.max(np.abs(a - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(gathered), jax.tree.leaves(single.params), strict=True))
  return {"devices": jax.device_count(), "processes": jax.process_count(),
          "data_spec": str(sharded_data.sharding.spec), "batch_spec": str(sharding.batch_spec(
              (num_distributions, batch_size), jax.device_count())),
          "params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded.params)),
          "single_losses": single_losses, "sharded_losses": sharded_losses, "max_param_difference": difference}


if __name__ == "__main__":
  if len(sys.argv) > 3:
    process_id, num_processes, port = (int(a) for a in sys.argv[3:6])
    sharding.initialize_distributed(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                                    process_id=process_id)
  print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
