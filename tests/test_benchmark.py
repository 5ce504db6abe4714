import json
import math

from experiments import benchmark


def test_benchmark_prints_json_with_finite_numbers(capsys):
  benchmark.main(["--json", "--num-distributions", "2", "--batch-size", "4", "--set-size", "3",
                  "--num-examples", "50", "--steps", "2", "--matmul-size", "128"])
  result = json.loads(capsys.readouterr().out)
  for key in ("sec_per_step", "model_gflop_per_step", "achieved_gflops", "matmul_gflops"):
    assert math.isfinite(result[key]) and result[key] > 0, key
  assert result["achieved_gflops"] == result["model_gflop_per_step"] / result["sec_per_step"]
