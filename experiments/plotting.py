"""Figures written to PNG files without a display."""

import contextlib
import json
import pathlib

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


@contextlib.contextmanager
def figure(path: pathlib.Path, *args, **kwargs):
  """Yields (fig, axes) from plt.subplots(*args, **kwargs) and saves the figure to `path` on exit."""
  fig, axes = plt.subplots(*args, **kwargs)
  try:
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=120)
  finally:
    plt.close(fig)


def learning_curves(workdir: pathlib.Path, path: pathlib.Path | None = None, *, metric: str = "loss") -> pathlib.Path:
  """Plots `metric` against the step for every run logged in workdir/metrics.jsonl (the trainer's log) and saves
  it to `path` (workdir/learning_curves.png when None).

      python -c "import pathlib; from experiments import plotting; plotting.learning_curves(pathlib.Path('DIR'))"
  """
  curves: dict[str, list[tuple[int, float]]] = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    if metric in row:
      curves.setdefault(row["run"], []).append((row["step"], row[metric]))
  if not curves:
    raise ValueError(f"{workdir / 'metrics.jsonl'} has no {metric!r} to plot")
  path = workdir / "learning_curves.png" if path is None else path
  with figure(path, figsize=(6, 3.5)) as (_, ax):
    for run, points in curves.items():
      steps, values = zip(*points, strict=True)
      ax.plot(steps, values, label=run)
    values = np.array([v for points in curves.values() for _, v in points])
    low, high = values.min(), np.percentile(values, 90)  # the first, steep steps would flatten the rest
    ax.set_ylim(low - 0.05 * (high - low), high)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} (logged batch)")
    ax.legend(fontsize=7)
  return path
