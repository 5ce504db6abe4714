"""MNIST through tensorflow-datasets, prepared offline from the original files when a directory is given.

TensorFlow is imported only to prepare and read the dataset (`prepared`); the arrays
returned are plain numpy.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import socket
import urllib.parse
import warnings
from collections.abc import Mapping

import numpy as np

from experiments.data.prepared import prepare_and_read

# The original files' sha256 sums (the same as tensorflow-datasets' url_checksums/mnist.txt).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
SIZES = {"train": 60000, "test": 10000}
# sha256 of each prepared split, images (uint8, N x 28 x 28 x 1) then labels (int64), in tensorflow-datasets' order:
# a prepared copy that differs (a corrupt extracted-download cache passes the original files' checksums) is
# detected, deleted and prepared again.
PREPARED_SHA256 = {
    "train": "fcbef7f0a39631249afe3af3b0a2df41c01592579450834cf6eb8d67655804fd",
    "test": "29bf46f62b56c145189735d86a64898e1dd066fcd59db368c0a0cbf4660114c2",
}
VERIFIED_MARK = ".verified_sha256"  # in the prepared dataset's directory, once its splits matched


def prepared_digest(arrays: Mapping[str, np.ndarray]) -> str:
  """The sha256 of one prepared split's images and labels (see PREPARED_SHA256)."""
  digest = hashlib.sha256(np.ascontiguousarray(arrays["image"], np.uint8).tobytes())
  digest.update(np.ascontiguousarray(arrays["label"], np.int64).tobytes())
  return digest.hexdigest()


def _check_reachable(data_dir: pathlib.Path) -> None:
  """Without manual_dir, tensorflow-datasets downloads MNIST, retrying for minutes when there is no network:
  fail within seconds instead, saying how to prepare it offline."""
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  host = urllib.parse.urlparse(tfds_mnist._MNIST_URL).hostname
  try:
    socket.create_connection((host, 443), timeout=5).close()
  except OSError as error:
    raise ConnectionError(
        f"MNIST is not prepared in {data_dir} and its download server cannot be reached ({error}); give the "
        "directory of the four original files with --config.data.manual_dir=DIR (e.g. ../shared/data/mnist) to "
        "prepare it offline") from error


def ensure_prepared(data_dir: str | pathlib.Path, manual_dir: str | pathlib.Path | None) -> None:
  """Prepares MNIST in data_dir once and checks the prepared splits against PREPARED_SHA256; a copy that differs
  is deleted with the download cache and prepared again (a warning says so), and a second mismatch is an error."""
  import tensorflow_datasets as tfds  # data preparation only

  data_dir = pathlib.Path(data_dir)
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  mark = pathlib.Path(builder.data_dir) / VERIFIED_MARK
  if builder.is_prepared() and mark.exists():
    return
  if not builder.is_prepared() and manual_dir is None:
    _check_reachable(data_dir)
  for attempt in range(2):
    full = prepare_and_read("mnist", data_dir, manual_dir, {split: split for split in SIZES})
    bad = [split for split in SIZES if prepared_digest(full[split]) != PREPARED_SHA256[split]]
    if not bad:
      mark.write_text("".join(f"{split} {PREPARED_SHA256[split]}\n" for split in SIZES))
      return
    shutil.rmtree(builder.data_dir, ignore_errors=True)
    shutil.rmtree(data_dir / "downloads", ignore_errors=True)
    if attempt == 0:
      warnings.warn(f"MNIST prepared in {data_dir} differs from the original data in its {bad} split(s) (a corrupt "
                    "download cache?); deleted it and the cache, preparing it again", stacklevel=2)
      builder = tfds.builder("mnist", data_dir=str(data_dir))
  raise ValueError(f"MNIST prepared in {data_dir} differs from the original data in its {bad} split(s) even when "
                   "prepared afresh; check the files of manual_dir")


def verify_mnist_files(manual_dir: str | pathlib.Path) -> None:
  """Raises FileNotFoundError or ValueError naming the directory or file that is missing or corrupt."""
  manual_dir = pathlib.Path(manual_dir)
  if not manual_dir.is_dir():
    raise FileNotFoundError(f"MNIST manual_dir {str(manual_dir)!r} is not a directory")
  for name, expected in MNIST_SHA256.items():
    path = manual_dir / name
    if not path.is_file():
      raise FileNotFoundError(f"MNIST file {str(path)!r} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
      raise ValueError(f"MNIST file {str(path)!r} is corrupt: sha256 {digest}, expected {expected}")


def load_mnist(data_dir: str | pathlib.Path, *, manual_dir: str | pathlib.Path | None = None,
               num_examples: Mapping[str, int | None] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (images, labels)}: float32 (N, 28, 28) in [0, 1], int32 (N,).

  Args:
    data_dir: where tensorflow-datasets keeps the prepared dataset (prepared once, reused after).
    manual_dir: a directory with the four original files, verified before use; without it
      tensorflow-datasets downloads them (checksums verified by it), and where the download server cannot be
      reached that is a ConnectionError within seconds naming the option. The prepared splits are checked against
      known digests once (`ensure_prepared`).
    num_examples: {split: n} reads only these splits, each its first n examples (the whole split for None);
      by default both splits whole. An unknown split or an n outside [1, the split's size] is a ValueError.
  """
  num_examples = dict.fromkeys(SIZES) if num_examples is None else num_examples
  splits = {}
  for split, num in num_examples.items():
    if split not in SIZES:
      raise ValueError(f"unknown MNIST split {split!r}; expected one of {list(SIZES)}")
    if num is not None and not (isinstance(num, int) and 0 < num <= SIZES[split]):
      raise ValueError(f"{num!r} {split} examples is not allowed; expected an integer in [1, {SIZES[split]}]")
    splits[split] = split if num is None else f"{split}[:{num}]"
  if manual_dir is not None:
    verify_mnist_files(manual_dir)
  ensure_prepared(data_dir, manual_dir)
  prepared = prepare_and_read("mnist", data_dir, manual_dir, splits)
  return {split: (arrays["image"][..., 0].astype(np.float32) / 255.0, arrays["label"].astype(np.int32))
          for split, arrays in prepared.items()}
