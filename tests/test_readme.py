"""The README: short, its commands the ones CI runs, its example runnable, its results table the report's."""

import pathlib
import re

from experiments import report

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(language):
  return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_readme_is_short_and_starts_with_the_commands_ci_runs():
  assert len(README.splitlines()) <= 200
  install, tests = _blocks("bash")[:2]
  ci = (REPO / ".ci" / "run").read_text()
  assert 'pip install -e ".[experiments,dev]"' in install and 'pip install -e ".[experiments,dev]"' in ci
  assert tests.strip() == "ruff check . && python -m pytest"
  assert ci.strip().endswith(tests.strip())


def test_the_readme_example_runs():
  (example,) = _blocks("python")
  namespace = {}
  exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
  value, (param_grads, decoder_grads) = namespace["value"], namespace["grads"]
  assert value.shape == () and bool(value > 0)
  assert param_grads["r"].shape == (12 + 16, 4)
  assert decoder_grads["w"].shape == (3, 2, 12)  # a gradient for each distribution's decoder


def test_the_readme_results_are_the_ones_the_result_files_make():
  assert README == report.readme_with_headlines(README), "run `python -m experiments.report tables --out " \
                                                         "docs/results.md`"
