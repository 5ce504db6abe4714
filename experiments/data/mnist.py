"""MNIST through tensorflow-datasets, prepared offline from the original files when a directory is given.

TensorFlow is imported only to prepare and read the dataset (`prepared`); the arrays
returned are plain numpy.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from experiments.data.prepared import prepare_and_read

# The original files' sha256 sums (the same as tensorflow-datasets' url_checksums/mnist.txt).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
SPLITS = ("train", "test")


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
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{"train": (images, labels), "test": (images, labels)}: float32 (N, 28, 28) in [0, 1], int32 (N,).

  Args:
    data_dir: where tensorflow-datasets keeps the prepared dataset (prepared once, reused after).
    manual_dir: a directory with the four original files, verified before use; without it
      tensorflow-datasets downloads them (checksums verified by it).
  """
  if manual_dir is not None:
    verify_mnist_files(manual_dir)
  prepared = prepare_and_read("mnist", data_dir, manual_dir, SPLITS)
  return {split: (arrays["image"][..., 0].astype(np.float32) / 255.0, arrays["label"].astype(np.int32))
          for split, arrays in prepared.items()}
