"""The training loop every experiment shares: jitted steps, metrics, checkpoints, resume.

`fit` trains one model and is resumable: each step's PRNG key is
`fold_in(key(seed), step)`, the whole `TrainState` is checkpointed with Orbax,
and `metrics.jsonl` is cut back to the restored step, so a run that is killed
and rerun ends with the same parameters and metrics as one that was not.
The wall-clock seconds of each logged window go to `wall_times.jsonl` beside it
(cut back the same way), apart from the metrics so that those stay reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import pathlib
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from experiments.rundir import MetricsLog, atomic_write_text
from meta_amortized.sharding import data_mesh, replicate, shard_distributions
from meta_amortized.training import LossFn, TrainState, init_train_state, make_train_step


class ConfigError(ValueError):
  """A config field has a value the experiment does not accept."""


def check_choice(config: ml_collections.ConfigDict, field: str, allowed: Sequence[Any]) -> None:
  """Raises ConfigError naming `field` and the allowed values unless config.<field> is one of them."""
  value = config[field]
  if value not in allowed:
    raise ConfigError(f"config.{field}={value!r} is not allowed; expected one of {list(allowed)}")


def check_positive(config: ml_collections.ConfigDict, *fields: str, allow_zero: bool = False) -> None:
  """Raises ConfigError naming the first of `fields` (a number, or a non-empty sequence of them) that is not a
  finite number > 0 (>= 0 with `allow_zero`)."""
  for field in fields:
    value = config[field]
    values = value if isinstance(value, (tuple, list)) else (value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
                         or (v == 0 and not allow_zero) for v in values):
      bound = ">= 0" if allow_zero else "> 0"
      raise ConfigError(f"config.{field}={value!r} is not allowed; expected finite numbers {bound}")


def check_count(config: ml_collections.ConfigDict, field: str, limit: int) -> None:
  """Raises ConfigError naming `field` (dotted for nested fields) unless it is an integer in [1, limit]."""
  value = functools.reduce(getattr, field.split("."), config)
  if not isinstance(value, int) or not 0 < value <= limit:
    raise ConfigError(f"config.{field}={value!r} is not allowed; expected an integer in [1, {limit}]")


# Fields that only set the optimiser: `resume_overrides` may name them to resume a run with new values (after a
# NaN, say), deliberately; no other trained field can change under a checkpoint.
OPTIMIZER_FIELDS = ("learning_rate", "decoder_learning_rate")


def check_training(config: ml_collections.ConfigDict) -> None:
  """Validates the fields every `fit` call reads."""
  check_positive(config, "num_steps", "learning_rate", "log_every")
  check_positive(config, "checkpoint_every_seconds", allow_zero=True)
  if not isinstance(config.seed, int):
    raise ConfigError(f"config.seed={config.seed!r} is not allowed; expected an integer")
  overrides = tuple(config.get("resume_overrides", ()))
  wrong = [field for field in overrides if field not in OPTIMIZER_FIELDS or field not in config]
  if wrong:
    raise ConfigError(f"config.resume_overrides={overrides!r} is not allowed: {wrong} are not optimiser fields of "
                      f"this config; expected some of {[f for f in OPTIMIZER_FIELDS if f in config]}")


# Fields that say how long and how a run is carried out, not what it trains: a run may resume with others.
RESUMABLE_FIELDS = ("num_steps", "log_every", "checkpoint_every_seconds", "fast_compile", "distributed",
                    "resume_overrides", "data.data_dir", "data.manual_dir")


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
  """{dotted name: value} of the leaves of a nested dict."""
  flat = {}
  for name, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{name}."))
    else:
      flat[f"{prefix}{name}"] = value
  return flat


def trained_fields(config: ml_collections.ConfigDict, evaluation_fields: Sequence[str] = ()) -> dict[str, Any]:
  """{dotted field: value} of the fields that define what a run trains: every field of `config` but
  RESUMABLE_FIELDS and the experiment's `evaluation_fields` (fields only its evaluation, or its other runs, read),
  as JSON stores them (tuples as lists)."""
  skip = (*RESUMABLE_FIELDS, *evaluation_fields)
  kept = {k: v for k, v in sorted(_flat(config.to_dict()).items())
          if not any(k == field or k.startswith(field + ".") for field in skip)}
  return json.loads(json.dumps(kept))


def checkpoint_directory(workdir: pathlib.Path, run: str) -> pathlib.Path:
  """Where `fit` keeps the Orbax checkpoints of run `run` in `workdir`."""
  return workdir / "checkpoints" / run


def config_record(directory: pathlib.Path) -> pathlib.Path:
  """Where the trained fields of the run checkpointed in `directory` are recorded: beside it, out of Orbax's way."""
  return directory.with_name(directory.name + ".config.json")


RESUMED_KEY = "resumed_with_overrides"  # in a config record: the optimiser values each deliberate resume set


def _changed_fields(recorded: dict[str, Any], given: dict[str, Any], may_differ: Sequence[str],
                    label: str) -> list[str]:
  """'config.<field>=<given> (<label> <recorded>)' for every field both hold with other values, but `may_differ`."""
  return [f"config.{k}={given[k]!r} ({label} {recorded[k]!r})" for k in sorted(recorded.keys() & given.keys())
          if recorded[k] != given[k] and k not in may_differ]


def check_config_record(config: ml_collections.ConfigDict, directory: pathlib.Path,
                        evaluation_fields: Sequence[str] = ()) -> None:
  """Raises ConfigError naming every trained field of `config` that differs from the record of the run whose
  checkpoints are in `directory` (written by `fit` when the run started). Fields the record lacks (added to the
  configs after it was written) cannot be checked; a run without a record passes."""
  path = config_record(directory)
  if not path.exists():
    return
  try:
    recorded = {k: v for k, v in json.loads(path.read_text()).items() if k != RESUMED_KEY}
  except json.JSONDecodeError as error:
    raise ConfigError(f"the config record {path} cannot be read ({error}); delete it to resume unchecked") from error
  changed = _changed_fields(recorded, trained_fields(config, evaluation_fields),
                            config.get("resume_overrides", ()), "trained with")
  if changed:
    raise ConfigError(f"the checkpoints in {directory} were trained with another config: " + "; ".join(changed)
                      + ". Give the recorded values, or a fresh workdir to train with these (optimiser fields can "
                      "be changed deliberately with --config.resume_overrides=\"('learning_rate',)\").")


@jax.jit
def _finite(tree: Any) -> jax.Array:
  """True when every floating-point leaf of `tree` is finite: one program, not one per leaf shape."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
                            if jnp.issubdtype(leaf.dtype, jnp.floating)] or [jnp.array(True)]))


def _checkpoint_manager(directory: pathlib.Path) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(directory.absolute(), options=options)


class RunInterrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM stopped a run; a checkpoint of its current step was saved first."""

  def __init__(self, message: str, signal_number: int):
    super().__init__(message)
    self.signal_number = signal_number


def _identity(run: str, fields: dict[str, Any]) -> dict[str, Any]:
  """What a checkpoint says of its run: the run's name and the trained fields of its config."""
  return {"run": run, "config": fields}


def restore_latest(directory: pathlib.Path, template: TrainState, manager: ocp.CheckpointManager | None = None, *,
                   identity: dict[str, Any] | None = None, may_differ: Sequence[str] = ()) -> TrainState | None:
  """The latest checkpoint in `directory` restored into `template`'s structure and layout (arrays or
  `jax.ShapeDtypeStruct`s with their shardings), or None if there is none.

  With `identity` (`{"run": name, "config": trained fields}`), a checkpoint of another run, or of the same run
  trained with other values of a field (but those in `may_differ`), is refused with a ConfigError naming the
  difference, before its arrays are read."""
  if manager is None:
    if not directory.is_dir():  # a manager would create it: looking must not leave empty run directories behind
      return None
    manager = _checkpoint_manager(directory)
  step = manager.latest_step()
  if step is None:
    return None
  where = directory / str(step)
  try:
    saved = manager.restore(step, args=ocp.args.Composite(identity=ocp.args.JsonRestore()))["identity"]
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise RuntimeError(f"the checkpoint at {where} cannot be restored (its identity: {type(error).__name__}: "
                       f"{error}); delete it to resume from an earlier one, or the whole directory to start over") \
        from error
  if identity is not None:
    _check_identity(saved, identity, may_differ, where)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
  except Exception as error:  # Orbax raises many types for unreadable files.
    raise RuntimeError(
        f"the checkpoint at {where} cannot be restored ({type(error).__name__}: {error}); "
        "delete it to resume from an earlier one, or the whole directory to start over") from error


def _check_identity(saved: dict, expected: dict, may_differ: Sequence[str], where: pathlib.Path) -> None:
  if saved.get("run") != expected["run"]:
    raise ConfigError(f"the checkpoint at {where} belongs to run {saved.get('run')!r}, not to {expected['run']!r}: "
                      "it was copied or moved from another run; put it back, or delete it to train this run afresh")
  changed = _changed_fields(saved.get("config", {}), expected["config"], may_differ, "checkpoint:")
  if changed:
    raise ConfigError(f"the checkpoint at {where} was trained with another config: " + "; ".join(changed))


def _save(manager: ocp.CheckpointManager, state: TrainState, identity: dict[str, Any]) -> None:
  manager.save(int(state.step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        identity=ocp.args.JsonSave(identity)), force=True)
  manager.wait_until_finished()


def window_file(directory: pathlib.Path) -> pathlib.Path:
  """Where an interrupted run keeps the per-step metrics of its unfinished logging window (so that its resume logs
  the same means as an uninterrupted run)."""
  return directory.with_name(directory.name + ".window.json")


class _StopSignals:
  """While active, SIGINT and SIGTERM only set `received`; the training loop checks it after each step."""

  def __init__(self):
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> _StopSignals:
    if threading.current_thread() is threading.main_thread():  # handlers can only be set there
      for number in (signal.SIGINT, signal.SIGTERM):
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def _handle(self, number: int, frame: Any) -> None:
    del frame
    self.received = number

  def __exit__(self, *exc_info: Any) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)


def fit(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    *,
    run: str,
    init: Callable[[jax.Array], tuple[Any, Any]],
    loss_fn: LossFn,
    batch: tuple[Any, ...] = (),
    optimizer: optax.GradientTransformation | None = None,
    evaluation_fields: Sequence[str] = (),
    num_steps_field: str = "num_steps",
) -> TrainState:
  """Trains `run` for config.num_steps steps (resuming if a checkpoint exists) and returns the final state.

  Args:
    config: reads seed, num_steps, learning_rate, log_every, checkpoint_every_seconds, resume_overrides.
    workdir: the experiment's directory; checkpoints go to workdir/checkpoints/<run>, metrics
      to workdir/metrics.jsonl and, as TensorBoard scalars, to workdir/tensorboard/<run> (watch a run with
      `tensorboard --logdir WORKDIR/tensorboard`), the wall-clock seconds of each logged window to
      workdir/wall_times.jsonl.
    run: the model's name within the experiment.
    init: key -> (parameters, model state), e.g. `lambda key: model.init(key, K, observation_shape)`.
    loss_fn: (params, model_state, key, *batch) -> (loss, (metrics, model_state)) (`training.LossFn`), e.g. a
      model's `loss` with its sizes bound; it draws its own batch with the key.
    batch: arrays passed to every step (e.g. the stacked training distributions on the device).
    optimizer: Adam with config.learning_rate when None.
    evaluation_fields: config fields (dotted) that this run's training does not read: those only the
      experiment's evaluation, or its other runs, read. Every other field but RESUMABLE_FIELDS is recorded when
      the run starts (workdir/checkpoints/<run>.config.json, and in every checkpoint with the run's name) and
      must be the same when it resumes, but the optimiser fields that config.resume_overrides names.
    num_steps_field: the config field the messages name for config.num_steps (a run trained for another budget
      passes a copy of the config with num_steps set from that field).

  Training uses every device (`sharding.data_mesh`): the state replicated, the arrays of `batch` split over
  their leading (distribution) axis where the device count divides it, the query batch otherwise. The state
  returned is on this process's first device, for evaluation. SIGINT and SIGTERM stop it after the current step,
  with a checkpoint of that step saved: rerunning the same command resumes, with the same results as a run that
  was never stopped.

  Raises:
    ConfigError: a checkpoint exists and was trained with other values of the recorded fields (named), belongs to
      another run, or is past config.num_steps.
    FloatingPointError: the loss became NaN or inf; the message names the step, and the last
      checkpoint with finite parameters is kept.
    RunInterrupted: SIGINT or SIGTERM; the message says where the checkpoint is and how to resume.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  optimizer = optax.adam(config.learning_rate) if optimizer is None else optimizer
  init_key, train_key = jax.random.split(jax.random.key(config.seed))

  def initial_state(key):
    params, model_state = init(key)
    return init_train_state(params, optimizer, model_state)

  mesh = data_mesh()  # every device of every process; parameters replicated, distributions split
  batch = shard_distributions(mesh, batch)
  directory = checkpoint_directory(workdir, run)
  log = MetricsLog(workdir / "metrics.jsonl", run)
  clock = MetricsLog(workdir / "wall_times.jsonl", run)
  manager = _checkpoint_manager(directory)
  # A run that resumes needs only the state's shapes: it restores without initialising.
  replicated = NamedSharding(mesh, PartitionSpec())
  template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          jax.eval_shape(initial_state, init_key))
  record = config_record(directory)
  fields = trained_fields(config, evaluation_fields)
  identity = _identity(run, fields)
  overrides = tuple(config.get("resume_overrides", ()))
  trained = manager.latest_step()  # checkpoints are saved under the state's step
  if trained is not None:
    check_config_record(config, directory, evaluation_fields)
    if trained > config.num_steps:
      raise ConfigError(f"config.{num_steps_field}={config.num_steps} is below the {trained} steps already trained "
                        f"in {directory}; the same or a larger {num_steps_field} resumes or re-evaluates the run, a "
                        "smaller one needs a fresh workdir")
  state = restore_latest(directory, template, manager, identity=identity, may_differ=overrides)
  if state is None:
    state = replicate(mesh, initial_state(init_key))
  start = int(state.step)
  if jax.process_index() == 0:
    if start == 0 or not record.exists():  # runs from before the record existed are recorded as they resume
      atomic_write_text(record, json.dumps(fields, indent=2) + "\n")
    elif overrides:
      _record_overrides(record, fields, overrides, start)
  log.truncate_after(start)
  clock.truncate_after(start)
  if start >= config.num_steps:
    return _for_evaluation(state)

  step_fn = make_train_step(loss_fn, optimizer, mesh=mesh)
  last_save = last_log = time.monotonic()
  window = _unfinished_window(directory, start)
  board = _tensorboard(workdir, run, start)
  with _StopSignals() as signals, contextlib.closing(board), tqdm(
      total=config.num_steps, initial=start, desc=run, unit="step", dynamic_ncols=True,
      disable=jax.process_index() != 0) as bar:
    for step in range(start, config.num_steps):
      state, metrics = step_fn(state, jax.random.fold_in(train_key, step), *batch)
      window.append(metrics)
      done = step + 1
      if done % config.log_every == 0 or done == config.num_steps:
        window = jax.device_get(window)  # one transfer for the whole window
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        losses = [float(m["loss"]) for m in window]
        bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
        if bad is not None:
          failed = done - len(window) + bad
          kept = manager.latest_step()
          raise FloatingPointError(
              f"{run}: the loss is {losses[bad]} at step {failed}; stopped. "
              + (f"The last good checkpoint (step {kept}) is kept in {directory}; to resume it with other optimiser "
                 "settings, give them with --config.resume_overrides naming them (e.g. a lower learning_rate)"
                 if kept is not None else "No checkpoint had been saved yet"))
        log.write(done, means)
        for name, value in means.items():
          board.add_scalar(name, value, done)
        now = time.monotonic()  # the device_get above waited for the window's steps
        clock.write(done, {"seconds": now - last_log})
        last_log = now
        bar.set_postfix(loss=f"{means['loss']:.4g}")
        window = []
        timed_out = now - last_save >= config.checkpoint_every_seconds
        if (timed_out or done == config.num_steps) and bool(_finite(state.params)):
          _save(manager, state, identity)
          last_save = time.monotonic()
      bar.update(1)
      if signals.received is not None and done < config.num_steps:
        _stop(manager, state, identity, directory, window, signals.received, run)
  return _for_evaluation(state)


class _NoBoard:
  """What other processes than 0 write to TensorBoard: nothing."""

  def add_scalar(self, *args: Any) -> None:
    del args

  def close(self) -> None:
    pass


def _tensorboard(workdir: pathlib.Path, run: str, start: int) -> Any:
  """A TensorBoard writer of the run's logged metrics, in workdir/tensorboard/<run> (process 0 only). A resumed
  run purges the events past its checkpoint's step, as metrics.jsonl drops its lines."""
  if jax.process_index() != 0:
    return _NoBoard()
  from tensorboardX import SummaryWriter

  return SummaryWriter(str(workdir / "tensorboard" / run), purge_step=start, flush_secs=30,
                       filename_suffix=f".from_step_{start}")  # two sessions within a second: two files


def _record_overrides(record: pathlib.Path, fields: dict[str, Any], overrides: Sequence[str], step: int) -> None:
  """Notes in the config record the optimiser values a deliberate resume set, and from which step."""
  recorded = json.loads(record.read_text())
  new = {k: fields[k] for k in overrides if k in fields and recorded.get(k) != fields[k]}
  if new:
    recorded.setdefault(RESUMED_KEY, []).append({"from_step": step, **new})
    recorded.update(new)
    atomic_write_text(record, json.dumps(recorded, indent=2) + "\n")


def _unfinished_window(directory: pathlib.Path, start: int) -> list[dict[str, Any]]:
  """The per-step metrics an interrupted run kept of the logging window it stopped in, if it stopped at `start`."""
  path = window_file(directory)
  if not path.exists():
    return []
  saved = json.loads(path.read_text())
  if saved["step"] != start:
    return []
  return [{k: np.asarray(v, dtype) for k, (v, dtype) in m.items()} for m in saved["metrics"]]


def _stop(manager, state, identity, directory, window, signal_number, run) -> None:
  """Saves the current step (and the unfinished window's metrics) and raises RunInterrupted."""
  step = int(state.step)
  if jax.process_index() == 0:
    metrics = [{k: (float(v), str(np.asarray(v).dtype)) for k, v in m.items()} for m in jax.device_get(window)]
    atomic_write_text(window_file(directory), json.dumps({"step": step, "metrics": metrics}) + "\n")
  if manager.latest_step() != step and bool(_finite(state.params)):  # unless the step's regular save made it
    _save(manager, state, identity)
  saved = (f"a checkpoint of step {step} is saved in {directory}" if manager.latest_step() == step else
           f"its parameters are not finite, so the last good checkpoint (step {manager.latest_step()}) is kept")
  name = signal.Signals(signal_number).name
  raise RunInterrupted(f"{run}: stopped by {name} after step {step}; {saved}. Run the same command again to resume.",
                       signal_number)


def _for_evaluation(state: TrainState) -> TrainState:
  """The trained state on this process's first device, where the experiments evaluate it."""
  return jax.device_put(state, jax.local_devices()[0])


def _fingerprint(tree: Any) -> str:
  """sha256 of a pytree's structure and of its leaves' dtypes, shapes and bytes (on the host)."""
  digest = hashlib.sha256(str(jax.tree_util.tree_structure(tree)).encode())
  for leaf in jax.tree_util.tree_leaves(jax.device_get(tree)):
    leaf = np.ascontiguousarray(leaf)
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def _kept_evaluation(path: pathlib.Path, made_under: dict[str, Any]) -> dict[str, Any] | None:
  """The evaluation kept in `path` if it was made under `made_under`; None if it was not, and, with a warning naming
  the file, if the file cannot be read as one."""
  try:
    kept = json.loads(path.read_text())
    if kept["made_under"] == made_under:
      return dict(kept["evaluation"])
  except (OSError, ValueError, KeyError, TypeError) as error:
    warnings.warn(f"{path} is not a kept evaluation ({type(error).__name__}: {error}); evaluating again",
                  stacklevel=3)
  return None


def evaluate_once(workdir: pathlib.Path, run: str, config: ml_collections.ConfigDict, state: TrainState,
                  evaluate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """`evaluate()`, the evaluation of run `run` in the trained `state`, computed once.

  Its result is kept in workdir/evaluations/<run>.json with what it was made under: the run, the state's step and a
  fingerprint of its parameters, the config (but RESUMABLE_FIELDS: where the data is, how often it logs), and the
  JAX version and backend. While all of these are the same it is read back, so that an experiment resumed after
  one of its runs finished does not evaluate that run again. A change to the evaluation's code is not seen: delete
  workdir/evaluations to evaluate again. `evaluate` returns a dict of JSON values (finite floats, lists, dicts),
  and JSON gives them back (tuples as lists).

  Raises:
    FloatingPointError: the evaluation holds a non-finite number (named, with the run); nothing is kept.
  """
  made_under = {"run": run, "step": int(state.step), "params": _fingerprint(state.params),
                "config": trained_fields(config), "jax": jax.__version__, "backend": jax.default_backend()}
  path = workdir / "evaluations" / f"{run}.json"
  if path.exists() and (kept := _kept_evaluation(path, made_under)) is not None:
    return kept
  evaluation = evaluate()
  path.parent.mkdir(parents=True, exist_ok=True)
  try:
    write_results(path.parent, {"made_under": made_under, "evaluation": evaluation}, name=path.name)
  except FloatingPointError as error:
    raise FloatingPointError(f"the evaluation of run {run!r} at step {int(state.step)}: {error}") from None
  return json.loads(json.dumps(evaluation))


def write_results(workdir: pathlib.Path, results: dict[str, Any], name: str = "results.json") -> None:
  """Writes workdir/name (results.json), refusing non-finite numbers so that a broken run cannot look finished."""
  def check(value, path):
    if isinstance(value, dict):
      for k, v in value.items():
        check(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
      for i, v in enumerate(value):
        check(v, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
      raise FloatingPointError(f"results{path} is {value}")
  check(results, "")
  if jax.process_index() == 0:
    atomic_write_text(workdir / name, json.dumps(results, indent=2) + "\n")
