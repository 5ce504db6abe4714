"""MNIST through tensorflow-datasets, prepared offline from the original files when a directory is given.

TensorFlow is imported only to prepare and read the dataset (`prepared`); the arrays
returned are plain numpy.
"""

from __future__ import annotations

import hashlib
import pathlib
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
      tensorflow-datasets downloads them (checksums verified by it).
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
  prepared = prepare_and_read("mnist", data_dir, manual_dir, splits)
  return {split: (arrays["image"][..., 0].astype(np.float32) / 255.0, arrays["label"].astype(np.int32))
          for split, arrays in prepared.items()}
