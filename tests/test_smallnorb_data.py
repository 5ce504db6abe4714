"""The Small NORB pipeline on a small dataset written in the original files' format."""

import numpy as np
import pytest

from experiments.data import smallnorb
from tests.conftest import prepare_fake_smallnorb


def _fake_split(rng, n):
  images = rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)
  images[:, 1] = 255 - images[:, 0]  # camera 2 differs from camera 1
  images[0] = 200  # a constant pair: resizing must keep it constant
  info = np.stack([rng.integers(0, 10, n), rng.integers(0, 9, n), 2 * rng.integers(0, 18, n),
                   rng.integers(0, 6, n)], axis=1)
  return images, rng.integers(0, 5, n), info


@pytest.fixture(scope="module")
def norb(tmp_path_factory):
  rng = np.random.default_rng(0)
  written = {split: _fake_split(rng, n) for split, n in (("train", 12), ("test", 8))}
  return written, prepare_fake_smallnorb(tmp_path_factory.mktemp("norb_files"), tmp_path_factory.mktemp("tfds"),
                                         written)


def test_both_cameras_resized_with_their_labels(norb):
  written, arrays = norb
  for split, (_, categories, info) in written.items():
    got = arrays[split]
    n = len(categories)
    assert got["images"].shape == (2 * n, 32, 32) and got["images"].dtype == np.float32
    assert 0.0 <= got["images"].min() and got["images"].max() <= 1.0
    # tfds may reorder examples: match them through the (instance, elevation, azimuth, lighting, category) labels.
    keys = list(zip(info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3], categories))
    got_keys = list(zip(got["instance"], got["elevation"], got["azimuth"], got["lighting"], got["category"]))
    assert sorted(got_keys[:n]) == sorted(keys) and got_keys[n:] == got_keys[:n]
    constant = got_keys.index(keys[0])
    np.testing.assert_allclose(got["images"][constant], 200 / 255, atol=1e-5)
    np.testing.assert_allclose(got["images"][constant + n], 200 / 255, atol=1e-5)
    # Camera 2 is the negative of camera 1 (but for the constant pair); resizing is linear, so it stays one.
    others = [i for i in range(n) if i != constant]
    np.testing.assert_allclose(got["images"][n:][others], 1.0 - got["images"][:n][others], atol=1e-5)


def test_select_one_axis_value(norb):
  _, arrays = norb
  value = int(arrays["train"]["azimuth"][0])
  chosen = smallnorb.select(arrays["train"], "azimuth", value)
  assert len(chosen["images"]) == int(np.sum(arrays["train"]["azimuth"] == value))
  assert np.all(chosen["azimuth"] == value)
  with pytest.raises(ValueError, match="unknown Small NORB axis 'pose'"):
    smallnorb.select(arrays["train"], "pose", 0)
  with pytest.raises(ValueError, match="no Small NORB example has lighting index 7"):
    smallnorb.select(arrays["train"], "lighting", 7)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="Small NORB manual_dir .* is not a directory"):
    smallnorb.load_smallnorb(tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
  (tmp_path / "files").mkdir()
  with pytest.raises(FileNotFoundError, match="smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"):
    smallnorb.load_smallnorb(tmp_path / "tfds", manual_dir=tmp_path / "files")
