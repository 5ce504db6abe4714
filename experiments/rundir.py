"""What keeps a run directory whole: one run at a time, files replaced atomically, logs that survive a kill.

- `owns_workdir` (a decorator of an experiment's `run(config, workdir)`) holds an exclusive lock on
  `workdir/.lock` for the whole run: a second run on the same workdir, in this process or another, is refused at
  once with the holder's pid, host and command. The lock is the operating system's (`fcntl.flock`), so a process
  that dies, even by SIGKILL, releases it, and the next run takes the workdir over.
- `atomic_write_text` writes a file through a temporary file and a rename: a reader, or a run killed half-way,
  sees the old file or the new one, never a torn one.
- `MetricsLog` appends one JSON line per logged step; cutting it back (on resume) rewrites it atomically, and a
  torn last line (a kill in the middle of an append) is dropped with a warning that names the file.
- Each time a run takes its workdir, `workdir/provenance.jsonl` gains a line saying what ran there: the config, the
  git commit of the code (and whether it had uncommitted changes), the machine and the JAX devices
  (`provenance`), and a line {"finished": <its start>} when the run returns. `python -m experiments.report record`
  copies it beside the results.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

LOCK_NAME = ".lock"
PROVENANCE_NAME = "provenance.jsonl"


class WorkdirBusy(RuntimeError):
  """Another run holds the workdir."""


def _read_umask() -> int:
  mask = os.umask(0)  # the only way to read it is to set it: done once, at import
  os.umask(mask)
  return mask


_UMASK = _read_umask()


def atomic_write_text(path: pathlib.Path, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same directory and an atomic rename."""
  path = pathlib.Path(path)
  descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's file is private (0600): give it an ordinary file's mode
    with os.fdopen(descriptor, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    pathlib.Path(temporary).unlink(missing_ok=True)
    raise


class WorkdirLock:
  """An exclusive lock on `workdir/.lock` while the `with` block runs (see the module's docstring)."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK_NAME
    self._file = None

  def __enter__(self) -> WorkdirLock:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "a process that has not written its name yet"
      handle.close()
      raise WorkdirBusy(f"{self.path.parent} is in use by another run ({holder}); wait for it to finish, stop it, "
                        "or give this run another --workdir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{' '.join(sys.argv)}\n")
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *exc_info: Any) -> None:
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def _git(*args: str) -> str | None:
  try:
    done = subprocess.run(["git", *args], cwd=pathlib.Path(__file__).parent, capture_output=True, text=True,
                          timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip()


def machine() -> str:
  """The CPU model and core count, e.g. 'AMD EPYC ..., 2 cores'."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
  except OSError:
    pass
  return f"{model}, {os.cpu_count()} cores"


def provenance() -> dict[str, Any]:
  """What a result came from: the time, the code's git commit (None outside a clone) and whether tracked files
  had uncommitted changes, the package version, the machine, and the JAX version and devices."""
  import jax

  from meta_amortized import __version__

  status = _git("status", "--porcelain", "--untracked-files=no")
  devices = jax.devices()
  return {"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
          "commit": _git("rev-parse", "HEAD"), "uncommitted_changes": None if status is None else bool(status),
          "version": __version__, "machine": machine(), "jax": jax.__version__,
          "devices": f"{len(devices)} x {devices[0].device_kind}"}


def owns_workdir(run: Callable[..., Any]) -> Callable[..., Any]:
  """Decorates an experiment's `run(config, workdir)` so that it holds the workdir's lock while it runs. Only
  process 0 of a multi-host run takes it (every process runs the same command on its own host)."""

  @functools.wraps(run)
  def locked(config, workdir: pathlib.Path, *args: Any, **kwargs: Any) -> Any:
    import jax  # the decorated modules import JAX anyway; this module stays importable without it

    if jax.process_index() != 0:
      return run(config, workdir, *args, **kwargs)
    with WorkdirLock(workdir):
      session = {**provenance(), "config": config.to_dict()}
      log = pathlib.Path(workdir) / PROVENANCE_NAME
      with log.open("a") as f:
        f.write(json.dumps(session) + "\n")
      result = run(config, workdir, *args, **kwargs)
      with log.open("a") as f:  # the session ran to its end (its results, if any, are written)
        f.write(json.dumps({"finished": session["started"]}) + "\n")
      return result

  return locked


def _lines_and_records(path: pathlib.Path) -> list[tuple[str, dict]]:
  lines = path.read_text().splitlines() if path.exists() else []
  kept = []
  for number, line in enumerate(lines, start=1):
    try:
      kept.append((line, json.loads(line)))
    except json.JSONDecodeError as error:
      if number == len(lines):
        warnings.warn(f"{path}: its last line is torn (a run killed while writing it?) and is dropped: {line!r}",
                      stacklevel=3)
        break
      raise ValueError(f"{path}, line {number}, cannot be read ({error}); the file is damaged") from error
  return kept


def read_jsonl(path: pathlib.Path) -> list[dict]:
  """The records of a JSON-lines file. A torn last line (a kill in the middle of an append) is dropped with a
  warning naming the file; an unreadable line before it is a ValueError naming the file and the line."""
  return [record for _, record in _lines_and_records(pathlib.Path(path))]


def logged_seconds(path: pathlib.Path, run: str, steps: int | None = None) -> tuple[dict[int, float], dict | None]:
  """What a wall_times.jsonl says of `run` up to `steps` (all of it when None): its training windows {step: seconds}
  and its last evaluation record (data_seconds, evaluation_seconds, devices) at `steps` (at any step when None)."""
  records = [r for r in read_jsonl(path) if r["run"] == run and (steps is None or r["step"] <= steps)]
  windows = {r["step"]: r["seconds"] for r in records if "seconds" in r}
  evaluations = [r for r in records if "evaluation_seconds" in r and (steps is None or r["step"] == steps)]
  return windows, evaluations[-1] if evaluations else None


class MetricsLog:
  """Appends one JSON line per logged step to `path`, each tagged with the run's name."""

  def __init__(self, path: pathlib.Path, run: str):
    self.path, self.run = pathlib.Path(path), run

  def truncate_after(self, step: int) -> None:
    """Drops this run's lines past `step` (written after the checkpoint a resume starts from), and a torn last
    line; the file is replaced atomically, so a kill here loses nothing."""
    if not self.path.exists():
      return
    kept = [line for line, r in _lines_and_records(self.path) if r.get("run") != self.run or r["step"] <= step]
    text = "".join(line + "\n" for line in kept)
    if text != self.path.read_text():
      atomic_write_text(self.path, text)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    import jax

    if jax.process_index() != 0:  # every process computes the same metrics; one writes them
      return
    with self.path.open("a") as f:
      f.write(json.dumps({"run": self.run, "step": step, **metrics}) + "\n")
