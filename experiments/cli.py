"""Command-line entry shared by the experiments.

    python -m experiments.<name> --config experiments/configs/<name>.py[:quick] --workdir DIR \
        [--config.field=value ...]

The config file defaults to the experiment's own, the workdir to workdirs/<name>.
`--help` lists the config's fields with their defaults.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections.abc import Callable

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import rundir, trainer
from meta_amortized import sharding

CONFIG_DIR = pathlib.Path(__file__).parent / "configs"


def _describe(config: ml_collections.ConfigDict, prefix: str = "config.") -> list[str]:
  lines = []
  for key, value in sorted(config.items()):
    if isinstance(value, ml_collections.ConfigDict):
      lines += _describe(value, f"{prefix}{key}.")
    else:
      lines.append(f"  --{prefix}{key}={value!r}")
  return lines


def _load_config(path: pathlib.Path) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(path.stem + "_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(name: str, run: Callable[[ml_collections.ConfigDict, pathlib.Path], dict]) -> None:
  """Defines the flags of experiment `name` and runs `run(config, workdir)` under absl."""
  default_config = CONFIG_DIR / f"{name}.py"
  config_flag = config_flags.DEFINE_config_file(
      "config", str(default_config), "the experiment's config file; append :quick for the quick one")
  workdir_flag = flags.DEFINE_string("workdir", f"workdirs/{name}", "where checkpoints, metrics and results go")

  if any(arg in ("--help", "-h", "--helpshort") for arg in sys.argv[1:]):
    print(f"python -m experiments.{name} [--config CONFIG_FILE[:quick]] [--workdir DIR] [--config.FIELD=VALUE ...]\n")
    print(f"  --config: default {default_config}; ':quick' selects the quick config (seconds, for tests)")
    print(f"  --workdir: default workdirs/{name}\n\nConfig fields, with the defaults of {default_config.name}:")
    print("\n".join(_describe(_load_config(default_config))))
    sys.exit(0)

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    config = config_flag.value
    jax.config.update("jax_disable_most_optimizations", bool(config.get("fast_compile", False)))
    if config.get("distributed", False):
      sharding.initialize_distributed()
    try:
      run(config, pathlib.Path(workdir_flag.value))
    except trainer.RunInterrupted as stop:  # a checkpoint of the current step is saved: no traceback
      print(stop, file=sys.stderr)
      sys.exit(128 + stop.signal_number)
    except rundir.WorkdirBusy as busy:
      print(busy, file=sys.stderr)
      sys.exit(75)  # EX_TEMPFAIL: try again when the other run is done

  app.run(absl_main)
