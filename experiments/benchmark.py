"""Times the jitted MetaVAE training step at the original code's MNIST setting.

    python -m experiments.benchmark            # K = 5, B = 100, N = 10, random data
    python -m experiments.benchmark --json     # one JSON object

Prints seconds per step, examples per second, the step's model FLOPs (XLA's
count for the compiled step, nearly all of it the matrix products of the
forward and backward passes) and the achieved GFLOP/s next to the machine's own dense float32
matrix-product GFLOP/s, measured in the same run, alternating with the steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from meta_amortized.metavae import MetaVAE
from meta_amortized.training import init_train_state, make_train_step


def _seconds(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def benchmark_metavae(*, num_distributions: int, batch_size: int, set_size: int, num_examples: int,
                      steps: int, matmul_size: int, seed: int = 0) -> dict:
  """Times the MetaVAE step and a dense matmul in alternation, so both see the same machine state."""
  model = MetaVAE()
  key = jax.random.key(seed)
  data = jax.random.uniform(key, (num_distributions, num_examples, 784))
  params = model.init(jax.random.key(seed + 1), num_distributions)
  optimizer = optax.adam(2e-4)
  step = make_train_step(functools.partial(model.loss, batch_size=batch_size, set_size=set_size), optimizer)
  state = init_train_state(params, optimizer)

  start = time.perf_counter()
  compiled = step.lower(state, key, data).compile()
  compile_seconds = time.perf_counter() - start
  # XLA's count for the whole step: the matrix products of the forward and backward
  # passes (elementwise work and the optimizer add well under 1 %).
  flops = compiled.cost_analysis()["flops"]

  a, b = (jax.random.uniform(jax.random.key(i), (matmul_size, matmul_size)) for i in (2, 3))
  matmul = jax.jit(jnp.matmul)
  holder = {"state": state}

  def run_step(step_key):
    holder["state"], holder["metrics"] = step(holder["state"], step_key, data)
    return holder["state"]

  keys = jax.random.split(key, steps + 3)
  for warm_key in keys[:3]:
    _seconds(lambda: run_step(warm_key))
  _seconds(lambda: matmul(a, b))
  step_times, matmul_times = [], []
  for step_key in keys[3:]:
    step_times.append(_seconds(lambda: run_step(step_key)))
    matmul_times.append(_seconds(lambda: matmul(a, b)))
  seconds = statistics.median(step_times)
  return {
      "model": "meta_vae",
      "num_distributions": num_distributions,
      "batch_size": batch_size,
      "set_size": set_size,
      "parameters": sum(x.size for x in jax.tree.leaves(params)),
      "compile_seconds": compile_seconds,
      "sec_per_step": seconds,
      "examples_per_sec": num_distributions * batch_size / seconds,
      "model_gflop_per_step": flops / 1e9,
      "achieved_gflops": flops / 1e9 / seconds,
      "matmul_gflops": 2 * matmul_size**3 / 1e9 / statistics.median(matmul_times),
      "final_loss": float(holder["metrics"]["loss"]),
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num-distributions", type=int, default=5, help="K")
  parser.add_argument("--batch-size", type=int, default=100, help="B")
  parser.add_argument("--set-size", type=int, default=10, help="N")
  parser.add_argument("--num-examples", type=int, default=60000, help="examples per distribution")
  parser.add_argument("--steps", type=int, default=30, help="timed steps after 3 warm-up steps")
  parser.add_argument("--matmul-size", type=int, default=2048, help="side of the reference square matmul")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  args = parser.parse_args(argv)

  result = benchmark_metavae(num_distributions=args.num_distributions, batch_size=args.batch_size,
                             set_size=args.set_size, num_examples=args.num_examples, steps=args.steps,
                             matmul_size=args.matmul_size)
  result["fraction_of_matmul"] = result["achieved_gflops"] / result["matmul_gflops"]
  processor = platform.processor() or platform.machine()
  result["device"] = f"{jax.devices()[0].device_kind} x{jax.device_count()} ({processor})"
  result["jax_version"] = jax.__version__
  if args.json:
    print(json.dumps(result))
    return
  print(f"MetaVAE step, K={result['num_distributions']} B={result['batch_size']} N={result['set_size']}, "
        f"{result['parameters'] / 1e6:.2f} M parameters, on {result['device']}")
  print(f"  {result['sec_per_step']:.4f} s/step, {result['examples_per_sec']:.0f} examples/s "
        f"(compiled in {result['compile_seconds']:.1f} s)")
  print(f"  {result['model_gflop_per_step']:.2f} GFLOP/step (matrix products), "
        f"{result['achieved_gflops']:.1f} GFLOP/s achieved")
  print(f"  dense float32 matmul on this machine: {result['matmul_gflops']:.1f} GFLOP/s; "
        f"the step runs at {100 * result['fraction_of_matmul']:.0f} % of it")


if __name__ == "__main__":
  main()
