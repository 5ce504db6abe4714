"""Sharded training over distributions on fake CPU devices, one process and two (jax.distributed on localhost)."""

import json
import os
import socket
import subprocess
import sys

import pytest
from jax.sharding import PartitionSpec as P

from meta_amortized import sharding


def _worker(devices, *args, timeout=300):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-m", "tests.sharding_worker", *map(str, args)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process, timeout=300):
  out, err = process.communicate(timeout=timeout)
  assert process.returncode == 0, err[-3000:]
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(("num_distributions", "batch_size", "data_spec", "batch_spec"),
                         [(8, 4, "P('data',)", "P('data',)"), (2, 8, "P()", "P(None, 'data')")],
                         ids=["over_distributions", "over_the_query_batch"])
def test_sharded_step_matches_the_single_device_step(num_distributions, batch_size, data_spec, batch_spec):
  result = _result(_worker(8, num_distributions, batch_size))
  assert result["devices"] == 8 and result["data_spec"] == data_spec and result["batch_spec"] == batch_spec
  assert result["params_replicated"]
  assert result["sharded_losses"] == pytest.approx(result["single_losses"], rel=1e-5)
  assert result["max_param_difference"] < 1e-5


def test_two_processes_train_together_with_jax_distributed():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  workers = [_worker(2, 4, 4, i, 2, port) for i in range(2)]
  results = [_result(w) for w in workers]
  for result in results:
    assert result["devices"] == 4 and result["processes"] == 2 and result["data_spec"] == "P('data',)"
    assert result["sharded_losses"] == pytest.approx(result["single_losses"], rel=1e-5)
    assert result["max_param_difference"] < 1e-5
  assert results[0]["sharded_losses"] == results[1]["sharded_losses"]


def test_batch_spec_splits_distributions_then_queries_and_names_a_bad_shape():
  assert sharding.batch_spec((8, 3, 5), 4) == P("data")
  assert sharding.batch_spec((2, 8, 5), 4) == P(None, "data")
  with pytest.raises(ValueError, match=r"shape \(3, 5\) over 4 devices.*distributions \(3\).*batch size \(5\)"):
    sharding.batch_spec((3, 5), 4)
