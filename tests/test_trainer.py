import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import trainer
from meta_amortized.training import init_train_state

REPO = pathlib.Path(__file__).resolve().parents[1]

# A tiny regression trained by `fit`, run as its own process so that it can be killed.
TINY_RUN = textwrap.dedent("""
    import pathlib, sys
    import jax, jax.numpy as jnp, ml_collections
    from experiments import trainer

    every = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0  # seconds between checkpoints
    config = ml_collections.ConfigDict(dict(seed=3, num_steps=int(sys.argv[2]), learning_rate=0.01, log_every=5,
                                            checkpoint_every_seconds=every))
    targets = jnp.linspace(-1.0, 1.0, 16)

    def loss_fn(params, state, key, targets):
        x = jax.random.normal(key, (32, 16))
        prediction = jnp.tanh(x @ params["w"]) @ params["v"]
        return jnp.mean((prediction - targets) ** 2), ({"norm": jnp.sum(params["w"] ** 2)}, state)

    try:
        state = trainer.fit(config, pathlib.Path(sys.argv[1]), run="tiny",
                            init=lambda k: ({"w": jax.random.normal(k, (16, 8)) * 0.3, "v": jnp.zeros((8, 16))}, {}),
                            loss_fn=loss_fn, batch=(targets,))
    except trainer.RunInterrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(128 + stop.signal_number)
    jnp.save(pathlib.Path(sys.argv[1]) / "final_w.npy", state.params["w"])
""")


def _tiny(workdir, steps, *extra, **popen):
  return subprocess.Popen([sys.executable, "-c", TINY_RUN, str(workdir), str(steps), *map(str, extra)], cwd=REPO,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **popen)


def test_killed_run_resumes_to_the_same_parameters_and_metrics(tmp_path):
  steps = 200
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  straight_process, process = _tiny(straight, steps), _tiny(killed, steps)
  checkpoints = killed / "checkpoints" / "tiny"
  deadline = time.monotonic() + 240
  while not (checkpoints.exists() and any(p.name.isdigit() and 50 <= int(p.name) < steps
                                          for p in checkpoints.iterdir())):
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    assert time.monotonic() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed / "final_w.npy").exists()
  lines_at_kill = (killed / "metrics.jsonl").read_text().count("\n")
  assert 10 <= lines_at_kill < steps // 5
  assert _tiny(killed, steps).wait(timeout=300) == 0 and straight_process.wait(timeout=300) == 0
  np.testing.assert_array_equal(np.load(killed / "final_w.npy"), np.load(straight / "final_w.npy"))
  assert (killed / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
  # The wall-clock log is cut back with the metrics: one window for each logged step, none timed twice.
  for workdir in (straight, killed):
    logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    timed = [json.loads(line) for line in (workdir / "wall_times.jsonl").read_text().splitlines()]
    assert [t["step"] for t in timed] == logged and all(t["seconds"] > 0 for t in timed)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_current_step_and_the_run_resumes_as_if_never_stopped(tmp_path, stop):
  """Checkpoints only every hour: the signal's own save is what the resume starts from, mid-window; its metrics
  and parameters are those of the uninterrupted run, to the last bit."""
  steps = 300
  straight, stopped = tmp_path / "straight", tmp_path / "stopped"
  straight_process, process = _tiny(straight, steps, 3600), _tiny(stopped, steps, 3600)
  deadline = time.monotonic() + 240
  while not ((stopped / "metrics.jsonl").exists() and (stopped / "metrics.jsonl").read_text().count("\n") >= 3):
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    assert time.monotonic() < deadline
    time.sleep(0.02)
  process.send_signal(stop)
  assert process.wait(timeout=120) == 128 + stop
  message = process.stderr.read().decode()
  assert f"tiny: stopped by {stop.name} after step" in message and "Run the same command again to resume" in message
  assert "Traceback" not in message
  saved = int(message.split("after step ")[1].split(";")[0])
  assert 15 <= saved < steps and (stopped / "checkpoints" / "tiny" / str(saved)).is_dir()
  window = json.loads(trainer.window_file(stopped / "checkpoints" / "tiny").read_text())
  assert window["step"] == saved and len(window["metrics"]) == saved % 5  # the steps past the last logged one
  assert not (stopped / "final_w.npy").exists()
  assert _tiny(stopped, steps, 3600).wait(timeout=300) == 0 and straight_process.wait(timeout=300) == 0
  np.testing.assert_array_equal(np.load(stopped / "final_w.npy"), np.load(straight / "final_w.npy"))
  assert (stopped / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()


def _config(**overrides):
  return ml_collections.ConfigDict({**dict(seed=0, num_steps=50, learning_rate=0.1, log_every=5,
                                           checkpoint_every_seconds=0.0), **overrides})


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  # The weight grows by 0.1 a step; the loss turns NaN once it passes 2.05 (step 21).
  def loss_fn(params, state, key):
    w = params["w"]
    return jnp.where(w > 2.05, jnp.nan, -w), ({}, state)

  with pytest.raises(FloatingPointError, match=r"tiny: the loss is nan at step 21; .*last good checkpoint \(step 20\)"):
    trainer.fit(_config(), tmp_path, run="tiny", init=lambda k: ({"w": jnp.zeros(())}, {}), loss_fn=loss_fn,
                optimizer=optax.sgd(0.1))
  template = init_train_state({"w": jnp.zeros(())}, optax.sgd(0.1))
  restored = trainer.restore_latest(tmp_path / "checkpoints" / "tiny", template)
  assert int(restored.step) == 20 and np.isclose(float(restored.params["w"]), 2.0)
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged] == [5, 10, 15, 20]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  loss_fn = lambda params, state, key: (jnp.sum(params["w"] ** 2), ({}, state))
  init = lambda k: ({"w": jnp.ones(3)}, {})
  trainer.fit(_config(num_steps=10), tmp_path, run="tiny", init=init, loss_fn=loss_fn)
  for path in (tmp_path / "checkpoints" / "tiny" / "10").rglob("*"):
    if path.is_file():
      path.write_bytes(b"not a checkpoint")
  with pytest.raises(RuntimeError, match=r"checkpoint at .*tiny/10 cannot be restored"):
    trainer.fit(_config(num_steps=20), tmp_path, run="tiny", init=init, loss_fn=loss_fn)


def test_a_run_that_resumes_restores_without_initialising(tmp_path):
  loss_fn = lambda params, state, key: (jnp.sum((params["w"] - jax.random.normal(key, (3,))) ** 2), ({}, state))
  init = lambda k: ({"w": jax.random.normal(k, (3,))}, {})
  straight = trainer.fit(_config(num_steps=20), tmp_path / "straight", run="tiny", init=init, loss_fn=loss_fn)
  trainer.fit(_config(num_steps=10), tmp_path / "resumed", run="tiny", init=init, loss_fn=loss_fn)

  def traced_only(key):  # the resumed run takes the state's shapes from a trace, never initialises
    assert isinstance(key, jax.core.Tracer)
    return init(key)

  resumed = trainer.fit(_config(num_steps=20), tmp_path / "resumed", run="tiny", init=traced_only,
                        loss_fn=loss_fn)
  assert int(resumed.step) == 20
  np.testing.assert_array_equal(resumed.params["w"], straight.params["w"])
  # Looking for a run that does not exist finds none and leaves no directory behind.
  assert trainer.restore_latest(tmp_path / "missing" / "tiny", resumed) is None
  assert not (tmp_path / "missing").exists()


def test_a_run_resumes_only_with_the_config_it_was_trained_with(tmp_path):
  loss_fn = lambda params, state, key: (jnp.sum(params["w"] ** 2), ({}, state))
  init = lambda k: ({"w": jnp.ones(3)}, {})
  config = lambda **o: _config(**{"num_steps": 10, "data": dict(manual_dir="a", num_test=5), **o})
  trainer.fit(config(), tmp_path, run="tiny", init=init, loss_fn=loss_fn, evaluation_fields=("data.num_test",))
  record = json.loads((tmp_path / "checkpoints" / "tiny.config.json").read_text())
  assert record == {"learning_rate": 0.1, "seed": 0}
  fit = lambda c: trainer.fit(c, tmp_path, run="tiny", init=init, loss_fn=loss_fn,
                              evaluation_fields=("data.num_test",))
  for changed in (config(seed=1, learning_rate=0.2), config(seed=1, learning_rate=0.2, num_steps=5)):
    with pytest.raises(trainer.ConfigError, match=r"tiny were trained with another config: config.learning_rate=0.2 "
                                                  r"\(trained with 0.1\); config.seed=1 \(trained with 0\)\."):
      fit(changed)
  # How long, where the data lies and what only the evaluation reads may change.
  resumed = fit(_config(num_steps=20, log_every=10, data=dict(manual_dir="b", num_test=7)))
  assert int(resumed.step) == 20
  # A record without a checkpoint (a run killed before its first save) is replaced by the new run's.
  (tmp_path / "checkpoints" / "fresh.config.json").write_text(json.dumps({"seed": 9}))
  trainer.fit(config(), tmp_path, run="fresh", init=init, loss_fn=loss_fn, evaluation_fields=("data.num_test",))
  assert json.loads((tmp_path / "checkpoints" / "fresh.config.json").read_text()) == record
  # Fewer steps than are trained: refused before anything is restored or logged, not the longer run evaluated.
  logged = (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(trainer.ConfigError, match=r"config.num_steps=15 is below the 20 steps already trained in "):
    fit(_config(num_steps=15, data=dict(manual_dir="b", num_test=7)))
  assert (tmp_path / "metrics.jsonl").read_text() == logged
  (tmp_path / "checkpoints" / "tiny.config.json").write_text("{broken")
  with pytest.raises(trainer.ConfigError, match=r"config record .*tiny.config.json cannot be read"):
    fit(config(num_steps=30))


def test_config_checks_name_the_field_and_allowed_values():
  config = ml_collections.ConfigDict(dict(model="vea", num_steps=-1, seed=0, learning_rate=1e-3, log_every=1,
                                          checkpoint_every_seconds=1.0))
  with pytest.raises(trainer.ConfigError, match=r"config.model='vea' is not allowed; expected one of \['vae', 'ns'\]"):
    trainer.check_choice(config, "model", ("vae", "ns"))
  with pytest.raises(trainer.ConfigError, match=r"config.num_steps=-1 is not allowed; expected finite numbers > 0"):
    trainer.check_training(config)


def test_write_results_refuses_non_finite_numbers(tmp_path):
  with pytest.raises(FloatingPointError, match=r"results.a.b\[1\] is nan"):
    trainer.write_results(tmp_path, {"a": {"b": [1.0, float("nan")]}})
  assert not (tmp_path / "results.json").exists()


def test_evaluate_once_reads_back_its_result_until_what_it_was_made_under_changes(tmp_path):
  calls = []

  def evaluate():
    calls.append(1)
    return {"nll": 80.0 + len(calls), "curve": (1.0, 2.0)}

  config = ml_collections.ConfigDict(dict(seed=0, nll_samples=10, log_every=5, data=dict(manual_dir="a")))
  state = init_train_state({"w": jnp.arange(3.0)}, optax.sgd(0.1))._replace(step=jnp.asarray(100))
  once = lambda config, state=state: trainer.evaluate_once(tmp_path, "standard", config, state, evaluate)
  first = once(config)
  assert first == {"nll": 81.0, "curve": [1.0, 2.0]} and len(calls) == 1  # as JSON gives it back
  relocated = config.copy_and_resolve_references()
  relocated.log_every, relocated.data.manual_dir = 50, "b"  # resumable fields: the same evaluation
  restored = jax.tree_util.tree_map(np.array, state)  # the same values, as a restore gives them
  assert once(relocated, restored) == first and len(calls) == 1
  changed = config.copy_and_resolve_references()
  changed.nll_samples = 20
  assert once(changed)["nll"] == 82.0 and len(calls) == 2  # another config: evaluated again, and kept
  assert once(changed) == {"nll": 82.0, "curve": [1.0, 2.0]} and len(calls) == 2
  assert once(changed, state._replace(step=jnp.asarray(200)))["nll"] == 83.0  # further trained
  retrained = state._replace(params={"w": jnp.arange(3.0) + 1e-6})  # same step and config, other weights
  assert once(changed, retrained)["nll"] == 84.0 and len(calls) == 4


@pytest.mark.parametrize("text", ["", "{torn", "[1]", '{"nll": 1.0}'])
def test_evaluate_once_evaluates_again_over_a_file_it_cannot_read_and_says_so(tmp_path, text):
  state = init_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1))
  path = tmp_path / "evaluations" / "standard.json"
  path.parent.mkdir()
  path.write_text(text)
  with pytest.warns(UserWarning, match=re.escape(f"{path} is not a kept evaluation")):
    assert trainer.evaluate_once(tmp_path, "standard", ml_collections.ConfigDict(), state, lambda: {"a": 1.0}) == {
        "a": 1.0}
  assert json.loads(path.read_text())["evaluation"] == {"a": 1.0}


def test_evaluate_once_keeps_no_non_finite_evaluation_and_names_the_run(tmp_path):
  state = init_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1))
  with pytest.raises(FloatingPointError, match=r"evaluation of run 'other' at step 0: results.evaluation.nll is nan"):
    trainer.evaluate_once(tmp_path, "other", ml_collections.ConfigDict(), state, lambda: {"nll": float("nan")})
  assert not (tmp_path / "evaluations" / "other.json").exists()


def _scalar_events(directory: pathlib.Path) -> list[tuple[str, int, float]]:
  """(tag, step, value) of every scalar in the TensorBoard event files of `directory`, and any purge step as
  ("purge", step, nan): TFRecords of Event protos (length, its CRC, the proto, its CRC)."""
  import struct

  from tensorboardX.proto import event_pb2

  found = []
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      if event.HasField("session_log") and event.session_log.status == event.session_log.START:
        found.append(("purge", event.step, math.nan))
      found += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return found


def test_the_logged_metrics_are_tensorboard_scalars_and_a_resume_purges_the_steps_past_its_checkpoint(tmp_path):
  loss_fn = lambda params, state, key: (jnp.sum(params["w"] ** 2), ({"norm": jnp.abs(params["w"]).sum()}, state))
  init = lambda k: ({"w": jnp.ones(3)}, {})
  trainer.fit(_config(num_steps=10), tmp_path, run="tiny", init=init, loss_fn=loss_fn)
  trainer.fit(_config(num_steps=20), tmp_path, run="tiny", init=init, loss_fn=loss_fn)
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  events = _scalar_events(tmp_path / "tensorboard" / "tiny")
  assert [e for e in events if e[0] == "loss"] == [("loss", m["step"], pytest.approx(m["loss"], rel=1e-6))
                                                    for m in logged]
  assert [e[1] for e in events if e[0] == "norm"] == [5, 10, 15, 20]
  assert [e[1] for e in events if e[0] == "purge"] == [0, 10]  # each session purges what lies past its start
