"""Figures written to PNG files without a display."""

import contextlib
import pathlib

import matplotlib

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
