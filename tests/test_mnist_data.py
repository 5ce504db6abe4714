import shutil

import numpy as np
import pytest

from experiments.data import mnist
from tests.conftest import MNIST_MANUAL_DIR as MANUAL_DIR


@pytest.fixture(scope="module")
def mnist_arrays(mnist_data_dir):
  return mnist.load_mnist(mnist_data_dir, manual_dir=MANUAL_DIR)


def test_mnist_is_prepared_offline_from_the_original_files(mnist_arrays):
  train_images, train_labels = mnist_arrays["train"]
  test_images, test_labels = mnist_arrays["test"]
  assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
  assert train_images.dtype == np.float32 and train_images.min() == 0.0 and train_images.max() == 1.0
  assert sorted(np.unique(train_labels)) == list(range(10))
  # The classic counts of the training digits: 5923 zeros, 6742 ones.
  assert np.bincount(train_labels)[:2].tolist() == [5923, 6742]
  assert np.bincount(test_labels).sum() == 10000


def test_reading_the_first_examples_gives_the_whole_splits_first_rows(mnist_arrays, mnist_data_dir):
  part = mnist.load_mnist(mnist_data_dir, manual_dir=MANUAL_DIR, num_examples={"test": 70, "train": 100})
  assert list(part) == ["test", "train"]
  for split, n in (("test", 70), ("train", 100)):
    for got, whole in zip(part[split], mnist_arrays[split], strict=True):
      np.testing.assert_array_equal(got, whole[:n])
  with pytest.raises(ValueError, match=r"10001 test examples is not allowed; expected an integer in \[1, 10000\]"):
    mnist.load_mnist(mnist_data_dir, num_examples={"test": 10001})
  with pytest.raises(ValueError, match=r"unknown MNIST split 'validation'; expected one of \['train', 'test'\]"):
    mnist.load_mnist(mnist_data_dir, num_examples={"validation": 10})


def test_missing_or_corrupt_files_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="manual_dir '.*nowhere' is not a directory"):
    mnist.load_mnist(tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
  copy = tmp_path / "copy"
  shutil.copytree(MANUAL_DIR, copy)
  (copy / "t10k-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz' is missing"):
    mnist.verify_mnist_files(copy)
  shutil.copy(MANUAL_DIR / "t10k-labels-idx1-ubyte.gz", copy)
  data = bytearray((copy / "train-labels-idx1-ubyte.gz").read_bytes())
  data[100] ^= 0xFF
  (copy / "train-labels-idx1-ubyte.gz").write_bytes(bytes(data))
  with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz' is corrupt: sha256"):
    mnist.verify_mnist_files(copy)
