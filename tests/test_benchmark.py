import json
import math
import os
import re
import subprocess
import sys

import jax
import pytest

from experiments import benchmark, report

TINY = ["--num-distributions", "2", "--batch-size", "4", "--set-size", "3", "--num-examples", "50", "--steps", "2",
        "--matmul-size", "128", "--model-sizes", "quick", "--json"]


def test_benchmark_prints_json_with_finite_numbers(capsys, tmp_path):
  record = tmp_path / "benchmark" / "tiny.json"
  benchmark.main(["--models", "ns", *TINY, "--record", str(record)])  # the MetaVAE runs in the test below
  rows = json.loads(capsys.readouterr().out)["rows"]
  # The record keeps the same rows with the commit and the machine, and the performance page is made from it.
  recorded = json.loads(record.read_text())
  assert recorded["rows"] == rows and recorded["provenance"]["machine"]
  page = report.performance_markdown(tmp_path)
  assert f"| ns | {rows[0]['parameters'] / 1e6:.2f} M | {rows[0]['sec_per_step']:.3f} |" in page
  assert [r["model"] for r in rows] == ["ns"]
  assert rows[0]["set_size"] == 4  # the NS's set is its batch
  for result in rows:
    for key in ("sec_per_step", "sec_per_step_back_to_back", "model_gflop_per_step", "achieved_gflops",
                "matmul_gflops"):
      assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["achieved_gflops"] == result["model_gflop_per_step"] / result["sec_per_step"]
    assert result["model_sizes"] == "quick" and result["original_sec_per_step"] is None  # known at the MNIST sizes only
  # The original code's concatenation widens the layer after each join: more parameters and FLOPs than the sum.
  benchmark.main(["--models", "ns", "--context-merge", "concat", *TINY])
  concat = json.loads(capsys.readouterr().out)["rows"][0]
  assert (rows[0]["context_merge"], concat["context_merge"]) == ("sum", "concat")
  assert concat["parameters"] > rows[0]["parameters"]
  assert concat["model_gflop_per_step"] > rows[0]["model_gflop_per_step"]


def test_benchmark_shards_the_step_over_fake_devices():
  env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
  out = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--models", "meta_vae", "--devices", "1,2",
                        *TINY], env=env, capture_output=True, text=True, check=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  assert result["device"].startswith("cpu x2")
  assert [r["num_devices"] for r in result["rows"]] == [1, 2]
  for row in result["rows"]:
    assert row["examples_per_sec_per_device"] == pytest.approx(8 / row["sec_per_step"] / row["num_devices"])


def test_fitted_exponent_reads_the_power_past_the_overhead():
  sizes = [1, 10, 100, 1000]
  assert benchmark.fitted_exponent(sizes, [0.5 * s for s in sizes]) == pytest.approx(1.0)
  assert benchmark.fitted_exponent(sizes, [2e-3 * s**2 for s in sizes]) == pytest.approx(2.0)
  # A fixed overhead bends the smallest sizes only: the three largest still read close to 1.
  assert benchmark.fitted_exponent(sizes, [1.0 + 0.5 * s for s in sizes]) == pytest.approx(1.0, abs=0.1)
  # With the overhead fitted as well, the power and the overhead are read exactly, even at the small sizes.
  sizes = [5, 10, 20, 40]
  assert benchmark.exponent_past_overhead(sizes, [0.3 + 0.01 * s for s in sizes]) == pytest.approx((1.0, 0.3))
  assert benchmark.exponent_past_overhead(sizes, [0.3 + 1e-3 * s**2 for s in sizes]) == pytest.approx((2.0, 0.3))
  assert benchmark.exponent_past_overhead(sizes, [0.02 * s**0.5 for s in sizes]) == pytest.approx((0.5, 0.0))


def test_scaling_sweeps_the_sizes_asked_for(tmp_path, capsys):
  args = [a for a in TINY if a != "--json"]
  benchmark.main(["--models", "vhe", "--scaling", "--sweep", "set_size=2,3,4", "--out", str(tmp_path), *args])
  results = json.loads((tmp_path / "scaling.json").read_text())
  assert list(results) == ["set_size/vhe"] and results["set_size/vhe"]["sizes"] == [2, 3, 4]
  assert all(s > 0 for s in results["set_size/vhe"]["sec_per_step_back_to_back"])
  assert len(results["set_size/vhe"]["sec_per_step_back_to_back"]) == 3
  # The VHE's set enters only through per-element layers and a mean: its step's FLOPs are a fixed part plus a part
  # linear in N, read exactly by the fit (a quadratic term in N would show as an exponent above 1).
  gflops = results["set_size/vhe"]["gflop_per_step"]
  assert gflops[2] - gflops[1] == pytest.approx(gflops[1] - gflops[0]) and gflops[1] > gflops[0]
  assert results["set_size/vhe"]["flop_exponent_past_overhead"] == pytest.approx(1.0)
  assert 0 < results["set_size/vhe"]["overhead_gflop"] < gflops[0]
  assert "| set_size | vhe | 2, 3, 4 | " in capsys.readouterr().out
  assert (tmp_path / "scaling.png").stat().st_size > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "vae"], r"--models: unknown \['vae'\]"),
    (["--scaling", "--sweep", "depth=1,2,3"], r"unknown axis 'depth'"),
    (["--scaling", "--sweep", "set_size=5,10"], r"at least three increasing positive sizes"),
])
def test_benchmark_rejects_bad_arguments_naming_them(args, message, capsys):
  with pytest.raises(SystemExit):
    benchmark.main(args)
  assert re.search(message, capsys.readouterr().err)


def _fake_prepared_step(run_step, *, gflop_per_step=1.0, compute_dtype="float32"):
  """A prepared step of batch 10 on one device whose run is `run_step` (key -> None), for the timing rounds."""
  row = {"num_distributions": 1, "batch_size": 10, "num_devices": 1, "model_gflop_per_step": gflop_per_step,
         "compute_dtype": compute_dtype}
  return benchmark._PreparedStep(run_step, lambda: 0.0, jax.random.key(0), row)


def test_prepared_steps_are_timed_in_rounds(monkeypatch):
  # Fake steps whose "time" is their work: the order of the calls and each step's own median are what is checked.
  work = {"a": 1.0, "b": 2.0, "c": 4.0}
  log = []

  def fake_step(name):
    return _fake_prepared_step(lambda key: log.append(name), gflop_per_step=work[name])

  def fake_seconds(fn):
    before = len(log)
    fn()
    return sum(work[name] for name in log[before:]) or 0.5  # no step ran: the matmul

  monkeypatch.setattr(benchmark, "_seconds", fake_seconds)
  rows = benchmark._time_in_rounds([fake_step(n) for n in "abc"], steps=4, matmul_size=8)
  # Three warm-up steps each, then one step of each per round, and after the fourth round a block of 4 steps of each:
  # a drift of the machine falls on every step alike, not on whichever was timed while it lasted.
  assert log == ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["a", "b", "c"] * 4 + ["a"] * 4 + ["b"] * 4 + ["c"] * 4
  assert [r["sec_per_step"] for r in rows] == [1.0, 2.0, 4.0]
  assert [r["sec_per_step_back_to_back"] for r in rows] == [1.0, 2.0, 4.0]  # per step, the block's time / 4
  assert [r["matmul_gflops"] for r in rows] == [2 * 8**3 / 1e9 / 0.5] * 3
  assert [r["examples_per_sec"] for r in rows] == [10.0, 5.0, 2.5]


def test_rounds_refuse_mixed_compute_dtypes():
  # One reference matmul runs between the steps, in their dtype: steps of two dtypes cannot share it.
  steps = [_fake_prepared_step(lambda key: None, compute_dtype=dtype) for dtype in ("float32", "bfloat16")]
  with pytest.raises(ValueError, match=r"compute_dtype=\['bfloat16', 'float32'\]"):
    benchmark._time_in_rounds(steps, steps=2, matmul_size=8)
