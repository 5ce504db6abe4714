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


def test_the_prepared_splits_match_their_digests(mnist_arrays, mnist_data_dir):
  assert (next(mnist_data_dir.glob("mnist/*")) / mnist.VERIFIED_MARK).exists()
  for split, (images, labels) in mnist_arrays.items():
    arrays = {"image": np.rint(images[..., None] * 255).astype(np.uint8), "label": labels}
    assert mnist.prepared_digest(arrays) == mnist.PREPARED_SHA256[split]


def test_a_corrupt_download_cache_is_detected_and_prepared_again(mnist_data_dir, tmp_path):
  data_dir = tmp_path / "tfds"
  shutil.copytree(mnist_data_dir, data_dir)  # prepared from the original files, with their extracted copies
  for prepared in data_dir.glob("mnist/*"):
    shutil.rmtree(prepared)
  extracted = next(data_dir.glob("downloads/extracted/*train-images*"))
  data = bytearray(extracted.read_bytes())
  data[16 + 28 * 14 + 14] ^= 0x5A  # one pixel of the first training digit; the .gz originals still verify
  extracted.write_bytes(bytes(data))
  with pytest.warns(UserWarning, match=r"differs from the original data in its \['train'\] split"):
    arrays = mnist.load_mnist(data_dir, manual_dir=MANUAL_DIR, num_examples={"train": 1})
  whole = mnist.load_mnist(mnist_data_dir, manual_dir=MANUAL_DIR, num_examples={"train": 1})
  np.testing.assert_array_equal(arrays["train"][0], whole["train"][0])


def test_without_manual_dir_and_network_the_preparation_fails_at_once_naming_the_option(tmp_path, monkeypatch):
  import socket
  import time

  def offline(*args, **kwargs):
    raise OSError("Network is unreachable")

  monkeypatch.setattr(socket, "create_connection", offline)
  started = time.monotonic()
  with pytest.raises(ConnectionError, match=r"not prepared in .* --config.data.manual_dir=DIR"):
    mnist.load_mnist(tmp_path / "tfds", num_examples={"test": 1})
  assert time.monotonic() - started < 30
