"""Run directories that nothing can corrupt: one run at a time, checkpoints that know their run, logs that survive
kills, deliberate resumes with new optimiser settings."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import clustering, rundir, trainer
from experiments.configs import clustering as clustering_config

REPO = pathlib.Path(__file__).resolve().parents[1]
HOLD = ("import pathlib, sys, time\nfrom experiments import rundir\n"
        "with rundir.WorkdirLock(pathlib.Path(sys.argv[1])):\n  print('held', flush=True)\n  time.sleep(600)\n")


def _config(**overrides):
  return ml_collections.ConfigDict({**dict(seed=0, num_steps=20, learning_rate=0.1, log_every=5,
                                           checkpoint_every_seconds=0.0, resume_overrides=()), **overrides})


def _fit(config, workdir, run="tiny", loss_scale=1.0):
  loss_fn = lambda params, state, key: (loss_scale * jnp.sum((params["w"] - jax.random.normal(key, (3,))) ** 2),
                                        ({}, state))
  return trainer.fit(config, workdir, run=run, init=lambda k: ({"w": jax.random.normal(k, (3,))}, {}),
                     loss_fn=loss_fn)


def test_a_second_run_on_a_workdir_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rundir.WorkdirBusy, match=rf"{tmp_path} is in use by another run \(pid {holder.pid} on "):
      with rundir.WorkdirLock(tmp_path):
        pass
    config = clustering_config.get_config("quick")
    with pytest.raises(rundir.WorkdirBusy, match=f"pid {holder.pid}"):  # an experiment's run, refused at once
      clustering.run(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with rundir.WorkdirLock(tmp_path):  # the dead process's lock is the operating system's: released with it
    with pytest.raises(rundir.WorkdirBusy, match=f"pid {os.getpid()}"):  # and one process cannot hold it twice
      with rundir.WorkdirLock(tmp_path):
        pass


def test_a_checkpoint_of_another_run_is_refused_by_name(tmp_path):
  _fit(_config(), tmp_path, run="n10")
  _fit(_config(num_steps=10), tmp_path, run="n50")
  checkpoints = tmp_path / "checkpoints"
  shutil.rmtree(checkpoints / "n50")
  shutil.copytree(checkpoints / "n10", checkpoints / "n50")  # same shapes, another run
  with pytest.raises(trainer.ConfigError, match=r"checkpoint at .*n50/20 belongs to run 'n10', not to 'n50'"):
    _fit(_config(), tmp_path, run="n50")
  # A checkpoint of the same run name from a workdir trained with another config is refused too, by field.
  other = tmp_path / "other"
  _fit(_config(learning_rate=0.05), other, run="n10")
  (checkpoints / "n10.config.json").unlink()  # without the record beside it, the checkpoint itself still knows
  shutil.rmtree(checkpoints / "n10")
  shutil.copytree(other / "checkpoints" / "n10", checkpoints / "n10")
  with pytest.raises(trainer.ConfigError, match=r"n10/20 was trained with another config: config.learning_rate=0.1 "
                                                r"\(checkpoint: 0.05\)"):
    _fit(_config(), tmp_path, run="n10")


def test_a_torn_last_metrics_line_is_dropped_with_a_warning_and_a_damaged_one_named(tmp_path):
  _fit(_config(num_steps=10), tmp_path)
  metrics = tmp_path / "metrics.jsonl"
  with metrics.open("a") as f:
    f.write('{"run": "tiny", "step": 1')  # a kill in the middle of an append
  with pytest.warns(UserWarning, match=rf"{metrics}: its last line is torn"):
    _fit(_config(num_steps=20), tmp_path)
  assert [r["step"] for r in rundir.read_jsonl(metrics)] == [5, 10, 15, 20]
  lines = metrics.read_text().splitlines()
  metrics.write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")
  with pytest.raises(ValueError, match=rf"{metrics}, line 2, cannot be read"):
    rundir.read_jsonl(metrics)


def test_files_are_replaced_atomically_so_a_failure_leaves_the_old_one(tmp_path, monkeypatch):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"run": "a", "step": 5}\n{"run": "b", "step": 5}\n{"run": "a", "step": 10}\n')
  before = path.read_text()

  def fail(*args):
    raise OSError("disk full")

  monkeypatch.setattr(rundir.os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    rundir.MetricsLog(path, "a").truncate_after(5)
  assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
  monkeypatch.undo()
  rundir.MetricsLog(path, "a").truncate_after(5)
  assert [(r["run"], r["step"]) for r in rundir.read_jsonl(path)] == [("a", 5), ("b", 5)]


def test_resuming_after_a_nan_with_a_lower_learning_rate_is_an_explicit_option(tmp_path):
  # The loss is finite until w passes 2.05, which a learning rate of 0.1 reaches after 20 steps.
  def loss_fn(params, state, key):
    w = params["w"]
    return jnp.where(w > 2.05, jnp.nan, -w), ({}, state)

  fit = lambda config: trainer.fit(config, tmp_path, run="tiny", init=lambda k: ({"w": jnp.zeros(())}, {}),
                                   loss_fn=loss_fn, optimizer=optax.sgd(config.learning_rate))
  with pytest.raises(FloatingPointError, match=r"step 21; .*\(step 20\).*--config.resume_overrides"):
    fit(_config(num_steps=40))
  with pytest.raises(trainer.ConfigError, match=r"config.learning_rate=0.001 \(trained with 0.1\).*resume_overrides"):
    fit(_config(num_steps=40, learning_rate=0.001))
  with pytest.raises(trainer.ConfigError, match=r"config.resume_overrides=\('seed',\) is not allowed"):
    trainer.check_training(_config(resume_overrides=("seed",)))
  state = fit(_config(num_steps=40, learning_rate=0.001, resume_overrides=("learning_rate",)))
  assert int(state.step) == 40 and np.isclose(float(state.params["w"]), 2.0 + 20 * 0.001)
  record = json.loads((tmp_path / "checkpoints" / "tiny.config.json").read_text())
  assert record["learning_rate"] == 0.001
  assert record[trainer.RESUMED_KEY] == [{"from_step": 20, "learning_rate": 0.001}]
  fit(_config(num_steps=40, learning_rate=0.001))  # the new value is now the record's: no override needed


def test_messages_name_what_happened(tmp_path):
  with pytest.raises(FloatingPointError, match=r"at step 0; stopped. No checkpoint had been saved yet"):
    _fit(_config(num_steps=10), tmp_path, loss_scale=float("nan"))
  for value in (float("nan"), float("inf")):
    with pytest.raises(trainer.ConfigError, match=rf"config.learning_rate={value} is not allowed"):
      trainer.check_training(_config(learning_rate=value))
  _fit(_config(num_steps=10), tmp_path / "budget", run="vae")
  with pytest.raises(trainer.ConfigError, match=r"config.vae_num_steps=5 is below the 10 steps"):
    trainer.fit(_config(num_steps=5), tmp_path / "budget", run="vae", init=lambda k: ({"w": jnp.zeros(3)}, {}),
                loss_fn=lambda p, s, k: (jnp.sum(p["w"]), ({}, s)), num_steps_field="vae_num_steps")


def test_results_are_written_atomically(tmp_path):
  trainer.write_results(tmp_path, {"a": 1.0})
  assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1.0}
  with pytest.raises(FloatingPointError, match=r"results.a is nan"):
    trainer.write_results(tmp_path, {"a": float("nan")})
  assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1.0}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
  # With an ordinary file's mode (the temporary file's private 0600 is not kept).
  plain = tmp_path / "plain"
  plain.write_text("")
  assert (tmp_path / "results.json").stat().st_mode == plain.stat().st_mode



def test_each_run_on_a_workdir_appends_its_provenance(tmp_path):
  @rundir.owns_workdir
  def run(config, workdir):
    return config.seed

  config = ml_collections.ConfigDict({"seed": 4, "data": {"manual_dir": "x"}})
  run(config, tmp_path)
  config.seed = 5
  run(config, tmp_path)
  lines = rundir.read_jsonl(tmp_path / rundir.PROVENANCE_NAME)
  sessions = [line for line in lines if "config" in line]
  assert [s["config"]["seed"] for s in sessions] == [4, 5]
  assert [line["finished"] for line in lines if "finished" in line] == [s["started"] for s in sessions]
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pathlib.Path(__file__).parent, capture_output=True,
                        text=True).stdout.strip()
  assert sessions[0]["commit"] == (head or None)
  assert sessions[0]["devices"] == f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  assert sessions[0]["machine"].endswith(f"{os.cpu_count()} cores")
