import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.data import splits, transforms


def _dot(row, col):
  return jnp.zeros((1, 28, 28)).at[0, row, col].set(1.0)


def test_rotation_is_counter_clockwise_and_exact_for_half_turns():
  image = jax.random.uniform(jax.random.key(0), (2, 28, 28))
  np.testing.assert_array_equal(transforms.rotate(image, 0.0), image)
  np.testing.assert_array_equal(transforms.rotate(image, 180.0), image[:, ::-1, ::-1])
  # A dot right of the centre goes above it after a quarter turn counter-clockwise.
  turned = transforms.rotate(_dot(14, 24), 90.0)
  assert np.argwhere(np.asarray(turned[0]) > 0).tolist() == [[3, 14]]


def test_scale_crops_and_resizes_about_the_centre():
  image = jax.random.uniform(jax.random.key(0), (2, 28, 28))
  np.testing.assert_allclose(transforms.scale(image, 1.0), image, atol=1e-6)
  shrunk = transforms.scale(jnp.ones((1, 28, 28)), 1.9)  # s > 1: the digit shrinks, black padding
  assert float(shrunk[0, 0, 0]) == 0.0 and float(shrunk[0, 14, 14]) == 1.0
  assert 0.2 < float(jnp.mean(shrunk)) < 0.35  # about (1 / 1.9)^2 of the area
  enlarged = transforms.scale(_dot(14, 14), 0.5)  # s < 1: the digit is magnified
  assert int(jnp.sum(enlarged[0] > 0)) > 1


def test_shear_matches_torchvision_02_and_stays_finite_at_90_degrees():
  image = jax.random.uniform(jax.random.key(0), (2, 28, 28))
  np.testing.assert_array_equal(transforms.shear(image, 0.0), image)
  np.testing.assert_array_equal(transforms.shear(image, 180.0), image[:, ::-1, :])  # 1 / cos = -1: a flip
  # Below the centre the source lies to the right: a row shifts by tan(s) * (its offset from the centre).
  sheared = transforms.shear(_dot(20, 20), 20.0)
  (row, col), = np.argwhere(np.asarray(sheared[0]) > 0).tolist()
  assert row == 20 and col == 20 - round(np.tan(np.deg2rad(20.0)) * 6.5)
  for degrees in (90.0, -90.0):
    out = transforms.shear(image, degrees)
    assert np.all(np.isfinite(out)) and float(jnp.max(out)) == 0.0


@pytest.mark.parametrize("name", ["rotate", "scale", "shear"])
def test_every_grid_value_gives_finite_images_in_range(name):
  image = jax.random.uniform(jax.random.key(1), (3, 28, 28))
  out = jax.jit(jax.vmap(lambda v: transforms.TRANSFORMS[name](image, v)))(jnp.asarray(transforms.VALUES[name]))
  assert out.shape == (len(transforms.VALUES[name]), 3, 28, 28)
  assert np.all(np.isfinite(out)) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6


def test_transform_rejects_unknown_names_and_values():
  expected = r"unknown transformation 'skew'; expected one of \['rotate', 'scale', 'shear'\]"
  with pytest.raises(ValueError, match=expected):
    transforms.transform("skew", jnp.zeros((1, 28, 28)), 0.0)
  with pytest.raises(ValueError, match=r"rotate value 15.0 is not on the experiment's grid"):
    transforms.transform("rotate", jnp.zeros((1, 28, 28)), 15.0)


def test_value_grids():
  assert transforms.ROTATION_VALUES == tuple(float(v) for v in range(-180, 161, 20))
  assert len(transforms.ROTATION_VALUES) == 18
  assert transforms.SCALE_VALUES == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9)


# docs/design.md sections 3 and 4: (training values, number unseen).
MNIST_TABLE = {
    ("rotate", "interleaved"): ((-180, -140, -100, -60, -20, 20, 60, 100, 140), 9),
    ("rotate", "sparse"): ((-160, -80, 0, 80, 160), 13),
    ("rotate", "contiguous"): ((-180, -160, -140, -120, -100, -80, -60, -40, -20, 0), 8),
    ("scale", "interleaved"): ((0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9), 7),
    ("scale", "sparse"): ((0.6, 1.0, 1.4, 1.8), 11),
    ("scale", "contiguous"): ((0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2), 7),
}
NORB_TABLE = {
    ("elevation", "interleaved"): ((0, 2, 4, 6, 8), (1, 3, 5, 7)),
    ("elevation", "sparse"): ((1, 4, 7), (0, 2, 3, 5, 6, 8)),
    ("elevation", "contiguous"): ((0, 1, 2, 3, 4), (5, 6, 7, 8)),
    ("azimuth", "interleaved"): (tuple(range(0, 18, 2)), tuple(range(1, 18, 2))),
    ("azimuth", "sparse"): ((0, 4, 8, 12, 16), (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17)),
    ("azimuth", "contiguous"): (tuple(range(9)), tuple(range(9, 18))),
    ("lighting", "interleaved"): ((0, 2, 4), (1, 3, 5)),
    ("lighting", "sparse"): ((1, 4), (0, 2, 3, 5)),
    ("lighting", "contiguous"): ((0, 1, 2), (3, 4, 5)),
}


def test_mnist_splits_match_the_reference_table():
  for (transform, split), (train, num_unseen) in MNIST_TABLE.items():
    for name in ((transform, "shear") if transform == "rotate" else (transform,)):
      got_train, got_unseen = splits.mnist_split(name, split)
      assert got_train == tuple(float(v) for v in train)
      assert len(got_unseen) == num_unseen
      assert sorted(got_train + got_unseen) == sorted(transforms.VALUES[name])


def test_norb_splits_match_the_reference_table():
  for (axis, split), expected in NORB_TABLE.items():
    assert splits.norb_split(axis, split) == expected


def test_unknown_split_or_axis_is_a_clear_error():
  expected = r"unknown split 'random'; expected one of \['interleaved', 'sparse', 'contiguous'\]"
  with pytest.raises(ValueError, match=expected):
    splits.mnist_split("rotate", "random")
  with pytest.raises(ValueError, match=r"unknown Small NORB axis 'pose'"):
    splits.norb_split("pose", "sparse")
