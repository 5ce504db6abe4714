"""Small NORB through tensorflow-datasets (`smallnorb`): both cameras, 32 x 32, and its three axes.

Each stereo pair gives two examples (the original code uses both cameras
separately: 48,600 per split), resized from 96 x 96 to 32 x 32 bilinearly (with
antialiasing, as PIL's resize does) and scaled to [0, 1]. A distribution of the
invariance experiments is the set of examples with one value along one axis
(elevation, azimuth or lighting); the other axes vary freely within it.

The dataset's own format, which tensorflow-datasets reads from the six original
files: each file is gzip of [int32 magic][int32 ndim][int32 dims, at least 3][data],
little-endian, magic 0x1E3D4C55 for uint8 data and 0x1E3D4C54 for int32;
`write_norb_chunk` writes it (the tests make small datasets with it).
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from experiments.data.prepared import prepare_and_read

AXES = ("elevation", "azimuth", "lighting")
NUM_CATEGORIES = 5  # animal, human, airplane, truck, car
SPLITS = ("train", "test")
_PREFIX = {"train": "smallnorb-5x46789x9x18x6x2x96x96-training", "test": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
FILES = tuple(f"{_PREFIX[split]}-{kind}.mat.gz" for split in SPLITS for kind in ("dat", "cat", "info"))
_MAGIC = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}


def _write_matrix(path: pathlib.Path, array: np.ndarray) -> None:
  array = np.ascontiguousarray(array)
  header = [_MAGIC[array.dtype], array.ndim, *array.shape] + [1] * max(0, 3 - array.ndim)
  with gzip.open(path, "wb") as f:
    f.write(np.asarray(header, "<i4").tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


def write_norb_chunk(directory: str | pathlib.Path, split: str, images: np.ndarray, categories: np.ndarray,
                     info: np.ndarray) -> None:
  """Writes one split in the original format: images (n, 2, 96, 96) uint8, categories (n,), info (n, 4).

  info holds [instance, elevation index, azimuth (0, 2, ..., 34, as the original files), lighting index].
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  _write_matrix(directory / f"{_PREFIX[split]}-dat.mat.gz", images.astype(np.uint8))
  _write_matrix(directory / f"{_PREFIX[split]}-cat.mat.gz", categories.astype(np.int32))
  _write_matrix(directory / f"{_PREFIX[split]}-info.mat.gz", info.astype(np.int32))


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  import jax
  import jax.numpy as jnp
  resize = jax.jit(lambda x: jax.image.resize(x, x.shape[:1] + (size, size), "linear", antialias=True))
  return np.concatenate([np.asarray(resize(jnp.asarray(chunk, jnp.float32) / 255.0))
                         for chunk in np.array_split(images, max(1, len(images) // 4096))])


def load_smallnorb(data_dir: str | pathlib.Path, *, manual_dir: str | pathlib.Path | None = None,
                   size: int = 32) -> dict[str, dict[str, np.ndarray]]:
  """{"train": arrays, "test": arrays}, each with "images" float32 (2n, size, size) in [0, 1] (camera 1's
  n images, then camera 2's), and int32 "category", "instance", "elevation", "azimuth", "lighting" (value
  indices: azimuth 0..17) of the same length.

  Args:
    data_dir: where tensorflow-datasets keeps the prepared dataset.
    manual_dir: a directory with the six original files (FILES); without it they are downloaded.
    size: the side of the resized images.
  """
  if manual_dir is not None:
    manual_dir = pathlib.Path(manual_dir)
    if not manual_dir.is_dir():
      raise FileNotFoundError(f"Small NORB manual_dir {str(manual_dir)!r} is not a directory")
    missing = [name for name in FILES if not (manual_dir / name).is_file()]
    if missing:
      raise FileNotFoundError(f"Small NORB files missing from {str(manual_dir)!r}: {missing}")
  out = {}
  for split, arrays in prepare_and_read("smallnorb", data_dir, manual_dir, {s: s for s in SPLITS}).items():
    both_cameras = np.concatenate([arrays["image"][..., 0], arrays["image2"][..., 0]])
    labels = {"category": arrays["label_category"], "instance": arrays["instance"],
              **{axis: arrays[f"label_{axis}"] for axis in AXES}}
    out[split] = {"images": _resize(both_cameras, size),
                  **{name: np.concatenate([v, v]).astype(np.int32) for name, v in labels.items()}}
  return out


def select(arrays: dict[str, np.ndarray], axis: str, value_index: int) -> dict[str, np.ndarray]:
  """The examples whose `axis` has value index `value_index`: one distribution of the experiments."""
  if axis not in AXES:
    raise ValueError(f"unknown Small NORB axis {axis!r}; expected one of {list(AXES)}")
  mask = arrays[axis] == value_index
  if not mask.any():
    raise ValueError(f"no Small NORB example has {axis} index {value_index}")
  return {name: values[mask] for name, values in arrays.items()}


def prepare_generated(manual_dir: str | pathlib.Path, data_dir: str | pathlib.Path,
                      written: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
  """Writes {split: (images, categories, info)} in Small NORB's format and prepares it with tensorflow-datasets, for
  tests and quick runs on a machine without the dataset; returns `load_smallnorb`'s arrays.

  The real builder parses and prepares the files; only its comparison with the registered checksums of the real
  files is switched off, since generated files cannot match them.
  """
  from unittest import mock

  import tensorflow_datasets as tfds  # data preparation only

  for split, (images, categories, info) in written.items():
    write_norb_chunk(manual_dir, split, images, categories, info)
  with mock.patch.object(tfds.download.DownloadManager, "_register_or_validate_checksums", lambda *a, **k: None):
    return load_smallnorb(data_dir, manual_dir=manual_dir)


def generated_lighting_data(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """A small random Small NORB (24 training and 12 test pairs) with every lighting value equally often in each
  split, for `prepare_generated`."""
  rng = np.random.default_rng(seed)
  written = {}
  for split, n in (("train", 24), ("test", 12)):
    images = rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)
    info = np.stack([rng.integers(0, 10, n), rng.integers(0, 9, n), 2 * rng.integers(0, 18, n), np.arange(n) % 6], 1)
    written[split] = (images, rng.integers(0, 5, n), info)
  return written
