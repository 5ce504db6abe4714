"""Meta-splits of the transformation-invariance experiments: which values train, which are unseen.

MNIST (docs/design.md section 3) in transformation values; Small NORB (section 4) in
value indices along the axis.
"""

from __future__ import annotations

from experiments.data.transforms import ROTATION_VALUES, SCALE_VALUES

SPLIT_NAMES = ("interleaved", "sparse", "contiguous")

_ANGLE_SPLITS = {
    "interleaved": (-180.0, -140.0, -100.0, -60.0, -20.0, 20.0, 60.0, 100.0, 140.0),
    "sparse": (-160.0, -80.0, 0.0, 80.0, 160.0),
    "contiguous": tuple(v for v in ROTATION_VALUES if v <= 0.0),
}
_SCALE_SPLITS = {
    "interleaved": (0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9),
    "sparse": (0.6, 1.0, 1.4, 1.8),
    "contiguous": tuple(v for v in SCALE_VALUES if v <= 1.2),
}
MNIST_GRIDS = {"rotate": ROTATION_VALUES, "shear": ROTATION_VALUES, "scale": SCALE_VALUES}
MNIST_TRAIN_VALUES = {"rotate": _ANGLE_SPLITS, "shear": _ANGLE_SPLITS, "scale": _SCALE_SPLITS}

NORB_AXES = {"elevation": 9, "azimuth": 18, "lighting": 6}
# The value of each index: elevation in degrees (30..70), azimuth in degrees (0..340), lighting condition.
NORB_VALUES = {"elevation": tuple(30 + 5 * i for i in range(9)), "azimuth": tuple(20 * i for i in range(18)),
               "lighting": tuple(range(6))}
NORB_TRAIN_INDICES = {
    "elevation": {"interleaved": (0, 2, 4, 6, 8), "sparse": (1, 4, 7), "contiguous": (0, 1, 2, 3, 4)},
    "azimuth": {"interleaved": tuple(range(0, 18, 2)), "sparse": (0, 4, 8, 12, 16),
                "contiguous": tuple(range(9))},
    "lighting": {"interleaved": (0, 2, 4), "sparse": (1, 4), "contiguous": (0, 1, 2)},
}


def _check(kind: str, name: str, known, split: str) -> None:
  if name not in known:
    raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(known)}")
  if split not in SPLIT_NAMES:
    raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_NAMES)}")


def mnist_split(transform: str, split: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(training values, unseen values) of an MNIST transformation ("rotate", "scale", "shear")."""
  _check("transformation", transform, MNIST_GRIDS, split)
  train = MNIST_TRAIN_VALUES[transform][split]
  return train, tuple(v for v in MNIST_GRIDS[transform] if v not in train)


def norb_split(axis: str, split: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(training value indices, unseen value indices) along a Small NORB axis."""
  _check("Small NORB axis", axis, NORB_AXES, split)
  train = NORB_TRAIN_INDICES[axis][split]
  return train, tuple(i for i in range(NORB_AXES[axis]) if i not in train)
