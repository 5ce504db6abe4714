"""Times the jitted training steps of the MetaVAE and its three baselines at the MNIST setting.

    python -m experiments.benchmark                      # the four models, K = 5, B = 100, N = 10
    python -m experiments.benchmark --models meta_vae --json
    python -m experiments.benchmark --record results/benchmark/cpu.json  # the performance page's data
    python -m experiments.benchmark --scaling --out DIR  # step time against K, N and B: table, log-log plot
    python -m experiments.benchmark --devices 1,2,4,8    # throughput per device (fake CPU devices on a CPU)
    python -m experiments.benchmark --compute-dtype bfloat16  # mixed precision (GPU/TPU): bfloat16 products
    python -m experiments.benchmark --models vhe --scaling --sweep set_size=40,80,160,320 --out DIR  # other sizes

For each model: seconds per step (the median of steps timed one at a time, and the median over blocks of 4 steps run
back to back, as a training loop runs them, alternating with them), the step's FLOPs (XLA's count for the step's program
before optimisation, the same on every backend, nearly all of it the matrix products of the forward and backward
passes), the achieved GFLOP/s next to the machine's own dense matrix-product GFLOP/s (in the step's compute dtype, at
JAX's default matmul precision: TF32 for float32 on recent NVIDIA GPUs, set JAX_DEFAULT_MATMUL_PRECISION=highest for
true float32) measured in the same run, alternating with the steps, and the original PyTorch code's seconds per step on
the project's 2-core machine (docs/design.md section 8). With --scaling the sizes of each swept axis are all compiled
first and then timed in rounds, one step of each size in turn, so that a drift in the machine's speed falls on every
size alike.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import variants
from experiments.configs import mnist_rotate
from experiments.plotting import figure
from meta_amortized import sharding
from meta_amortized.networks import CONTEXT_MERGES
from meta_amortized.training import init_train_state, make_train_step, mixed_precision

MODELS = ("meta_vae", "ns", "vhe", "vhe_vampprior")
# The original code's s/step at K = 5, B = 100, N = 10 on the project's 2-core machine (docs/design.md section 8).
ORIGINAL_SECONDS = {"meta_vae": 0.54, "ns": 0.105, "vhe": 0.54, "vhe_vampprior": 1.99}
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
BACK_TO_BACK_BLOCK = 4  # steps dispatched back to back per timed block
SCALING = {"num_distributions": (2, 4, 8, 16), "set_size": (5, 10, 20, 40), "batch_size": (25, 50, 100, 200)}


def _seconds(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


class _PreparedStep(NamedTuple):
  """One model's compiled training step with its state and data, ready to time, and what is known of it untimed."""

  run_step: Callable[[jax.Array], Any]  # key -> the new state (not waited for)
  last_loss: Callable[[], float]  # the loss of the last step run
  key: jax.Array  # split into the keys of its warm-up, single and back-to-back steps
  row: dict  # the model, sizes, dtype, parameters, compile time and FLOPs of the step


def _prepare_step(model_name: str, *, num_distributions: int, batch_size: int, set_size: int, num_examples: int,
                  num_devices: int = 1, seed: int = 0, model_sizes: str = "mnist", compute_dtype: str = "float32",
                  context_merge: str = "sum") -> _PreparedStep:
  """Builds and compiles one model's step, sharded over the first `num_devices` devices (see `benchmark_step`)."""
  config = mnist_rotate.get_config("quick" if model_sizes == "quick" else None)
  config.model = model_name
  if model_name != "meta_vae":
    config.context_merge = context_merge
  model = variants.build_model(config, num_examples)
  key = jax.random.key(seed)
  params, model_state = model.init(jax.random.key(seed + 1), num_distributions, (784,))
  optimizer = optax.adam(2e-4)
  mesh = sharding.data_mesh(jax.devices()[:num_devices])
  dtype = COMPUTE_DTYPES[compute_dtype]
  # As training holds it: under mixed precision the population is cast once, not inside every step.
  data = sharding.shard_distributions(mesh, jax.random.uniform(key, (num_distributions, num_examples, 784), dtype))
  state = sharding.replicate(mesh, init_train_state(params, optimizer, model_state))
  loss_fn = functools.partial(model.loss, batch_size=batch_size, set_size=set_size)
  if dtype != jnp.float32:
    loss_fn = mixed_precision(loss_fn, dtype)
  step = make_train_step(loss_fn, optimizer, mesh=mesh)

  start = time.perf_counter()
  lowered = step.lower(state, key, data)
  compiled = lowered.compile()  # the steps run this program: calling `step` itself would compile it again
  compile_seconds = time.perf_counter() - start
  # Counted before XLA's optimisations: the compiled program's count depends on the backend (on an H100 it read
  # 2.7 GFLOP for the MetaVAE step's 30.1, its matrix products being library calls), the program's work does not.
  cost = lowered.cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  holder = {"state": state}

  def run_step(step_key):
    holder["state"], holder["metrics"] = compiled(holder["state"], step_key, data)
    return holder["state"]

  row = {
      "model": model_name,
      "model_sizes": model_sizes,
      "compute_dtype": compute_dtype,
      "context_merge": variants.options(config).get("context_merge"),  # None for the MetaVAE
      "num_distributions": num_distributions,
      "batch_size": batch_size,
      "set_size": batch_size if model_name == "ns" else set_size,
      "num_devices": num_devices,
      "parameters": sum(x.size for x in jax.tree.leaves(params)),
      "compile_seconds": compile_seconds,
      "model_gflop_per_step": flops / 1e9,
  }
  return _PreparedStep(run_step, lambda: float(holder["metrics"]["loss"]), key, row)


def _time_in_rounds(prepared: Sequence[_PreparedStep], *, steps: int, matmul_size: int) -> list[dict]:
  """Times prepared steps and a dense matmul in alternation, in rounds (one step of each prepared step, each followed
  by the matmul, in the steps' compute dtype), so that every step and the matmul see the same machine states: a drift
  in the machine's speed lands on all of them alike instead of on whichever was timed while it lasted. Returns each
  step's full row."""
  dtypes = sorted({p.row["compute_dtype"] for p in prepared})
  if len(dtypes) != 1:
    raise ValueError(f"steps timed in rounds share one matmul and so one compute dtype; got compute_dtype={dtypes}")
  (compute_dtype,) = dtypes
  a, b = (jax.random.uniform(jax.random.key(i), (matmul_size, matmul_size), COMPUTE_DTYPES[compute_dtype])
          for i in (2, 3))
  matmul = jax.jit(jnp.matmul)
  keys = [jax.random.split(p.key, 3 + 2 * steps) for p in prepared]
  warm_keys, timed_keys, block_keys = zip(*[(k[:3], k[3:3 + steps], k[3 + steps:]) for k in keys], strict=True)
  for p, warm in zip(prepared, warm_keys, strict=True):
    for warm_key in warm:
      _seconds(lambda: p.run_step(warm_key))
  _seconds(lambda: matmul(a, b))
  # As the training loop runs them (it waits only at the end of each logged window), steps are also dispatched back
  # to back in blocks, timed to each block's last step; on an accelerator the host then queues a step while the last
  # one runs. The blocks alternate with the steps timed one at a time, so both medians see the same machine states.
  block = min(BACK_TO_BACK_BLOCK, steps)

  def run_block(p, chunk):
    for block_key in chunk:
      state = p.run_step(block_key)
    return state

  step_times, matmul_times, block_times = ([[] for _ in prepared] for _ in range(3))
  for i in range(1, steps + 1):
    for j, p in enumerate(prepared):
      step_times[j].append(_seconds(lambda: p.run_step(timed_keys[j][i - 1])))
      matmul_times[j].append(_seconds(lambda: matmul(a, b)))
    if i % block == 0:
      for j, p in enumerate(prepared):
        block_times[j].append(_seconds(lambda: run_block(p, block_keys[j][i - block:i])) / block)
  rows = []
  for p, times, matmuls, blocks in zip(prepared, step_times, matmul_times, block_times, strict=True):
    row = dict(p.row)
    seconds = statistics.median(times)
    examples = row["num_distributions"] * row["batch_size"]
    matmul_gflops = 2 * matmul_size**3 / 1e9 / statistics.median(matmuls)
    row.update(sec_per_step=seconds, sec_per_step_back_to_back=statistics.median(blocks),
               examples_per_sec=examples / seconds, examples_per_sec_per_device=examples / seconds / row["num_devices"],
               achieved_gflops=row["model_gflop_per_step"] / seconds, matmul_gflops=matmul_gflops,
               fraction_of_matmul=row["model_gflop_per_step"] / seconds / matmul_gflops, final_loss=p.last_loss())
    rows.append(row)
  return rows


def benchmark_step(model_name: str, *, steps: int, matmul_size: int, **setting) -> dict:
  """Times one model's step (sharded over the first `num_devices` devices) and a dense matmul in alternation,
  so both see the same machine state. `setting`: num_distributions, batch_size, set_size, num_examples, and
  optionally num_devices, seed, model_sizes, compute_dtype, context_merge. The model has the sizes of the MNIST
  experiments (`model_sizes="quick"`: those of their quick config, which compile in seconds, for the tests);
  `compute_dtype="bfloat16"` runs its matrix products (and the reference matmul) in bfloat16, as
  `--config.compute_dtype=bfloat16` trains; `context_merge="concat"` gives the NS and the VHEs the original code's
  concatenation (`--config.context_merge`)."""
  (row,) = _time_in_rounds([_prepare_step(model_name, **setting)], steps=steps, matmul_size=matmul_size)
  return row


def fitted_exponent(sizes, seconds) -> float:
  """The slope of log(seconds) against log(size) over the three largest sizes (past the fixed overhead)."""
  return float(np.polyfit(np.log(sizes[-3:]), np.log(seconds[-3:]), 1)[0])


def exponent_past_overhead(sizes, seconds) -> tuple[float, float]:
  """(p, a) of seconds = a + b * size^p with a fixed overhead a >= 0 and b > 0, fitted by relative least squares
  (exact in a and b for each p of a grid of step 0.005 over [0.2, 3]): how the time grows once past the overhead."""
  sizes, seconds = np.asarray(sizes, float), np.asarray(seconds, float)
  best = (np.inf, 0.0, 0.0)
  for p in np.arange(0.2, 3.0001, 0.005):
    design = np.stack([np.ones_like(sizes), sizes**p], axis=1) / seconds[:, None]
    coef = np.linalg.lstsq(design, np.ones_like(sizes), rcond=None)[0]
    if coef[0] < 0:  # no negative overhead: the pure power law
      coef = np.array([0.0, np.sum(design[:, 1]) / np.sum(design[:, 1] ** 2)])
    residual = float(np.sum((design @ coef - 1) ** 2))
    if coef[1] > 0 and residual < best[0]:
      best = (residual, float(p), float(coef[0]))
  return best[1], best[2]


def scaling(models, defaults: dict, out: pathlib.Path, sweeps: dict[str, tuple[int, ...]] = SCALING, *,
            steps: int, matmul_size: int, **setting) -> dict:
  """Step time against each swept size (`sweeps`: {axis: sizes}; by default K, N and B over SCALING), the others at
  `defaults`, for each model: DIR/scaling.json, DIR/scaling.md (a table with the fitted exponents of the time and of
  the FLOPs) and DIR/scaling.png (log-log)."""
  out.mkdir(parents=True, exist_ok=True)
  results = {}
  for axis, sizes in sweeps.items():
    for model in models:
      if model == "ns" and axis == "set_size":
        continue  # the NS's set is its batch
      # Every size is compiled first and the sizes are then timed in rounds (`_time_in_rounds`), so that the
      # machine's drift does not fall on some sizes and not others; their data are held together meanwhile.
      prepared = [_prepare_step(model, **{**defaults, axis: size}, **setting) for size in sizes]
      rows = _time_in_rounds(prepared, steps=steps, matmul_size=matmul_size)
      seconds = [r["sec_per_step"] for r in rows]
      # The machine's speed drifts between the sizes' runs: each time is also expressed in units of the matmul
      # timed beside it (seconds x matmul GFLOP/s = the GFLOP the matmul would do meanwhile), and fitted so.
      normalised = [r["sec_per_step"] * r["matmul_gflops"] for r in rows]
      # The work itself (XLA's FLOP count of each step's program), fitted the same way: where it grows as a fixed part
      # plus a part linear in the size while the time grows faster, the difference is the machine, not the step.
      gflops = [r["model_gflop_per_step"] for r in rows]
      p_seconds, a_seconds = exponent_past_overhead(sizes, seconds)
      p_flops, a_flops = exponent_past_overhead(sizes, gflops)
      results[f"{axis}/{model}"] = {"sizes": list(sizes), "sec_per_step": seconds,
                                    "sec_per_step_back_to_back": [r["sec_per_step_back_to_back"] for r in rows],
                                    "exponent": fitted_exponent(sizes, seconds),
                                    "matmul_gflop_per_step": normalised,
                                    "normalised_exponent": fitted_exponent(sizes, normalised),
                                    "exponent_past_overhead": p_seconds, "overhead_seconds": a_seconds,
                                    "gflop_per_step": gflops,
                                    "flop_exponent_past_overhead": p_flops, "overhead_gflop": a_flops}
  (out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
  lines = ["| axis | model | sizes | s/step | s/step back to back | exponent (3 largest) "
           "| exponent of the matmul-normalised time | exponent past the overhead a (a + b size^p) | GFLOP/step "
           "| FLOP exponent past the overhead |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, r in results.items():
    axis, model = name.split("/")
    lines.append(f"| {axis} | {model} | " + ", ".join(str(s) for s in r["sizes"]) + " | "
                 + ", ".join(f"{s:.4g}" for s in r["sec_per_step"]) + " | "
                 + ", ".join(f"{s:.4g}" for s in r["sec_per_step_back_to_back"])
                 + f" | {r['exponent']:.2f} | {r['normalised_exponent']:.2f} "
                 + f"| {r['exponent_past_overhead']:.2f} (a = {r['overhead_seconds']:.3f} s) | "
                 + ", ".join(f"{g:.3g}" for g in r["gflop_per_step"])
                 + f" | {r['flop_exponent_past_overhead']:.2f} (a = {r['overhead_gflop']:.2f} GFLOP) |")
  (out / "scaling.md").write_text("\n".join(lines) + "\n")
  with figure(out / "scaling.png", 1, len(sweeps), figsize=(4.2 * len(sweeps), 3.2), squeeze=False) as (_, axes):
    for ax, axis in zip(axes[0], sweeps, strict=True):
      for name, r in results.items():
        if name.startswith(axis + "/"):
          ax.loglog(r["sizes"], r["sec_per_step"], "o-", label=f"{name.split('/')[1]} (slope {r['exponent']:.2f})")
      ax.set_xlabel(axis)
      ax.set_ylabel("s/step")
      ax.legend(fontsize=7)
  return results


def _sweeps(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, tuple[int, ...]]:
  """{axis: sizes} from --sweep AXIS=S1,S2,... (at least three increasing positive sizes, for the fitted exponent)."""
  sweeps = {}
  for spec in specs:
    axis, _, sizes = spec.partition("=")
    if axis not in SCALING:
      parser.error(f"--sweep {spec!r}: unknown axis {axis!r}; expected one of {list(SCALING)}")
    try:
      values = tuple(int(v) for v in sizes.split(","))
    except ValueError:
      parser.error(f"--sweep {spec!r}: the sizes must be comma-separated integers")
    if len(values) < 3 or values[0] < 1 or list(values) != sorted(set(values)):
      parser.error(f"--sweep {spec!r}: expected at least three increasing positive sizes")
    sweeps[axis] = values
  return sweeps


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {MODELS}")
  parser.add_argument("--num-distributions", type=int, default=5, help="K")
  parser.add_argument("--batch-size", type=int, default=100, help="B (the NS: its set too)")
  parser.add_argument("--set-size", type=int, default=10, help="N")
  parser.add_argument("--num-examples", type=int, default=60000, help="examples per distribution")
  parser.add_argument("--steps", type=int, default=20, help="timed steps after 3 warm-up steps")
  parser.add_argument("--matmul-size", type=int, default=None,
                      help="side of the reference square matmul (default 2048 on a CPU, 8192 on an accelerator)")
  parser.add_argument("--scaling", action="store_true", help=f"sweep K, N and B over {SCALING}")
  parser.add_argument("--sweep", action="append", default=[], metavar="AXIS=S1,S2,...",
                      help=f"with --scaling: sweep only these axes (of {list(SCALING)}) over these sizes; repeatable")
  parser.add_argument("--devices", default=None, help="e.g. 1,2,4,8: time the step sharded over that many devices")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("workdirs/benchmark"), help="for --scaling")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--record", type=pathlib.Path, default=None, metavar="FILE",
                      help="also write the JSON object, with the commit and the machine, to FILE (e.g. "
                           "results/benchmark/cpu.json, which `python -m experiments.report tables` turns into the "
                           "performance page)")
  parser.add_argument("--model-sizes", choices=("mnist", "quick"), default="mnist",
                      help="the models' sizes: the MNIST experiments', or their quick config's (compiles fast)")
  parser.add_argument("--compute-dtype", choices=tuple(COMPUTE_DTYPES), default="float32",
                      help="the matrix products' dtype (bfloat16: mixed precision, float32 parameters and losses)")
  parser.add_argument("--context-merge", choices=CONTEXT_MERGES, default="sum",
                      help="how the NS and the VHEs join x (or z) and c: summed, or concatenated as the original code")
  args = parser.parse_args(argv)
  models = args.models.split(",")
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    parser.error(f"--models: unknown {unknown}; expected some of {list(MODELS)}")
  device_counts = [int(n) for n in args.devices.split(",")] if args.devices else [1]
  if args.devices and "JAX_NUM_CPU_DEVICES" not in os.environ and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
    jax.config.update("jax_num_cpu_devices", max(device_counts))  # fake CPU devices; before JAX starts a backend
  if max(device_counts) > jax.device_count():
    parser.error(f"--devices {args.devices}: only {jax.device_count()} devices are available")
  defaults = {"num_distributions": args.num_distributions, "batch_size": args.batch_size, "set_size": args.set_size}
  matmul_size = args.matmul_size or (2048 if jax.default_backend() == "cpu" else 8192)
  timing = {"num_examples": args.num_examples, "steps": args.steps, "matmul_size": matmul_size,
            "model_sizes": args.model_sizes, "compute_dtype": args.compute_dtype, "context_merge": args.context_merge}
  processor = platform.processor() or platform.machine()
  header = {"device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({processor})",
            "jax_version": jax.__version__, "compute_dtype": args.compute_dtype,
            "default_matmul_precision": jax.config.jax_default_matmul_precision}

  if args.scaling:
    results = scaling(models, defaults, args.out, _sweeps(parser, args.sweep) or SCALING, **timing)
    if args.json:
      print(json.dumps({**header, "scaling": results}))
    else:
      print((args.out / "scaling.md").read_text())
    return

  rows = [benchmark_step(model, **defaults, **timing, num_devices=n) for n in device_counts for model in models]
  for row in rows:
    row["original_sec_per_step"] = ORIGINAL_SECONDS[row["model"]] if args.model_sizes == "mnist" else None
  if args.record is not None:
    from experiments import rundir

    args.record.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(args.record, json.dumps({**header, "rows": rows, "provenance": rundir.provenance(),
                                                      "arguments": vars(args) | {"record": str(args.record)}},
                                                     indent=1, default=str) + "\n")
  if args.json:
    print(json.dumps({**header, "rows": rows}))
    return
  print(f"Training steps at K={args.num_distributions} B={args.batch_size} N={args.set_size} on {header['device']}, "
        f"JAX {jax.__version__}, {args.compute_dtype} products (default matmul precision "
        f"{header['default_matmul_precision']}), reference matmul {matmul_size}, NS / VHE context {args.context_merge}")
  print("| model | devices | parameters | s/step | s/step back to back | examples/s/device | GFLOP/step | GFLOP/s "
        "| matmul GFLOP/s | of matmul | original s/step |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['num_devices']} | {r['parameters'] / 1e6:.2f} M | {r['sec_per_step']:.4f} | "
          f"{r['sec_per_step_back_to_back']:.4f} | "
          f"{r['examples_per_sec_per_device']:.0f} | {r['model_gflop_per_step']:.2f} | {r['achieved_gflops']:.1f} | "
          f"{r['matmul_gflops']:.1f} | {100 * r['fraction_of_matmul']:.0f} % | {r['original_sec_per_step']} |")


if __name__ == "__main__":
  main()
