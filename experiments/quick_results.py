"""Records the results.json of every experiment's quick config, and compares two such records.

A refactor must not change what the experiments compute. Record before the change, record after it, compare:

    python -m experiments.quick_results record --out workdirs/quick_before
    ... change the code ...
    python -m experiments.quick_results record --out workdirs/quick_after
    python -m experiments.quick_results compare workdirs/quick_before workdirs/quick_after

`record` runs each quick config (the demonstrations, iterative MNIST, the MNIST invariance experiment for every
model and every ablation switch, Small NORB's conv models on a small generated dataset) in a fresh workdir under
--out and keeps its results.json as <name>.json there; `compare` names every run whose results differ, field by
field, and exits 1 if any does. The MNIST runs prepare MNIST offline from --mnist_manual_dir (../shared/data/mnist
by default). `--only NAME[,NAME]` records some runs alone.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time
from collections.abc import Callable

import ml_collections

# (name, experiment module, config module, overrides of the quick config)
RUNS: list[tuple[str, str, str, dict]] = [
    ("clustering", "clustering", "clustering", {}),
    ("physics", "physics", "physics", {}),
    ("expfam", "expfam", "expfam", {}),
    ("iterative_mnist", "iterative_mnist", "iterative_mnist", {}),
    *[(f"rotate_{model}", "invariance", "mnist_rotate", {"model": model})
      for model in ("meta_vae", "ns", "vhe", "vhe_vampprior", "meta_vae_iterative", "vae")],
    ("rotate_meta_vae_shared_decoder", "invariance", "mnist_rotate", {"decoders": "shared"}),
    ("rotate_meta_vae_elu", "invariance", "mnist_rotate", {"activation": "elu"}),
    ("rotate_meta_vae_best_bound", "invariance", "mnist_rotate", {"unseen_decoder": "best_bound"}),
    ("rotate_meta_vae_fixed_set", "invariance", "mnist_rotate", {"fixed_set_probe": "per_split"}),
    ("rotate_vhe_standard_prior", "invariance", "mnist_rotate", {"model": "vhe", "latent_prior": "standard"}),
    ("rotate_vhe_decoder_z", "invariance", "mnist_rotate", {"model": "vhe", "decoder_input": "z"}),
    ("rotate_vhe_encoder_x", "invariance", "mnist_rotate", {"model": "vhe", "encoder_input": "x"}),
    ("rotate_vhe_concat", "invariance", "mnist_rotate", {"model": "vhe", "context_merge": "concat"}),
    ("rotate_iterative_standardize", "invariance", "mnist_rotate",
     {"model": "meta_vae_iterative", "gradient_encoding": "standardize"}),
    ("scale_meta_vae", "invariance", "mnist_scale", {}),
    ("shear_vhe", "invariance", "mnist_shear", {"model": "vhe"}),
    # Small NORB's conv models, on a small dataset generated in its format (`smallnorb.generated_lighting_data`).
    *[(f"norb_lighting_{model}", "invariance", "norb_lighting", {"model": model})
      for model in ("meta_vae", "ns", "vhe", "vhe_vampprior")],
]


def _run_one(name: str, experiment: str, config_module: str, overrides: dict, out: pathlib.Path,
             mnist_manual_dir: str) -> float:
  import importlib

  run: Callable = importlib.import_module(f"experiments.{experiment}").run
  configs = importlib.import_module(f"experiments.configs.{config_module}")
  config: ml_collections.ConfigDict = configs.get_config("quick")
  config.update_from_flattened_dict(overrides)
  if config_module.startswith("norb"):
    config.data.manual_dir, config.data.data_dir = _generated_norb(out)
  elif "data" in config and "manual_dir" in config.data:
    config.data.manual_dir = mnist_manual_dir
    config.data.data_dir = str(out / "tensorflow_datasets")
  workdir = out / "runs" / name
  shutil.rmtree(workdir, ignore_errors=True)
  started = time.monotonic()
  run(config, workdir)
  (out / f"{name}.json").write_text((workdir / "results.json").read_text())
  return time.monotonic() - started


def _generated_norb(out: pathlib.Path) -> tuple[str, str]:
  """(manual_dir, data_dir) of the generated Small NORB, written and prepared under `out` once."""
  from experiments.data import smallnorb

  manual_dir, data_dir = out / "norb_files", out / "norb_tensorflow_datasets"
  if not data_dir.exists():
    smallnorb.prepare_generated(manual_dir, data_dir, smallnorb.generated_lighting_data())
  return str(manual_dir), str(data_dir)


def record(out: pathlib.Path, only: set[str] | None, mnist_manual_dir: str) -> None:
  import jax

  jax.config.update("jax_disable_most_optimizations", True)  # as the quick configs and the tests
  out.mkdir(parents=True, exist_ok=True)
  for name, experiment, config_module, overrides in RUNS:
    if only and name not in only:
      continue
    seconds = _run_one(name, experiment, config_module, overrides, out, mnist_manual_dir)
    print(f"{name}: {seconds:.1f} s", flush=True)


def _differences(before, after, path: str = "") -> list[str]:
  if isinstance(before, dict) and isinstance(after, dict):
    found = [f"{path}.{k}: only in {'before' if k in before else 'after'}"
             for k in sorted(before.keys() ^ after.keys())]
    for k in sorted(before.keys() & after.keys()):
      found += _differences(before[k], after[k], f"{path}.{k}")
    return found
  if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
    return [d for i, (b, a) in enumerate(zip(before, after)) for d in _differences(b, a, f"{path}[{i}]")]
  return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def compare(before_dir: pathlib.Path, after_dir: pathlib.Path) -> int:
  """Prints every difference between the records in two directories; returns the number of runs that differ."""
  names = sorted({p.stem for p in before_dir.glob("*.json")} | {p.stem for p in after_dir.glob("*.json")})
  differing = 0
  for name in names:
    before, after = before_dir / f"{name}.json", after_dir / f"{name}.json"
    if not (before.exists() and after.exists()):
      print(f"{name}: only in {before_dir if before.exists() else after_dir}")
      differing += 1
      continue
    found = _differences(json.loads(before.read_text()), json.loads(after.read_text()))
    print(f"{name}: {'identical' if not found else f'{len(found)} differences'}")
    for line in found:
      print(f"  {line}")
    differing += bool(found)
  return differing


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  record_parser = commands.add_parser("record", help="run every quick config and keep its results.json")
  record_parser.add_argument("--out", type=pathlib.Path, required=True)
  record_parser.add_argument("--only", help="comma-separated run names", default=None)
  record_parser.add_argument("--mnist_manual_dir", default="../shared/data/mnist")
  compare_parser = commands.add_parser("compare", help="compare two records")
  compare_parser.add_argument("before", type=pathlib.Path)
  compare_parser.add_argument("after", type=pathlib.Path)
  args = parser.parse_args(argv)
  if args.command == "record":
    unknown = set(args.only.split(",")) - {r[0] for r in RUNS} if args.only else set()
    if unknown:
      parser.error(f"unknown run names {sorted(unknown)}; known: {[r[0] for r in RUNS]}")
    record(args.out, set(args.only.split(",")) if args.only else None, args.mnist_manual_dir)
    return 0
  return 1 if compare(args.before, args.after) else 0


if __name__ == "__main__":
  sys.exit(main())
