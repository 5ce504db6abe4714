"""Image transformations of the transformation-invariance experiments, as pure JAX functions.

Each takes a batch of grey images (B, H, W) with values in [0, 1] and one
transformation value, and samples the output by inverse mapping about the image
centre, with black outside the source image (docs/design.md section 3):

- `rotate(images, degrees)`: counter-clockwise, nearest neighbour.
- `scale(images, s)`: the centred box of side H * s resized back to H x W bilinearly
  (s < 1 enlarges the digit, s > 1 shrinks it with black padding).
- `shear(images, degrees)`: torchvision 0.2's affine shear, which the original code
  used: the inverse map [[1, tan s], [0, 1 / cos s]] (a horizontal shear plus a
  vertical squash by cos s, flipped vertically for |s| > 90), nearest neighbour.
  At s = +-90 degrees (not on the experiments' grid) the map is degenerate (cos s = 0):
  every row maps off the image (an even-sized grid has no row at the exact centre)
  and the result is black; it is computed with finite numbers, never NaN or inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ROTATION_VALUES = tuple(float(v) for v in range(-180, 180, 20))  # 18 values, degrees
SHEAR_VALUES = ROTATION_VALUES
SCALE_VALUES = tuple(round(0.5 + 0.1 * i, 1) for i in range(15))  # 0.5, 0.6, ..., 1.9


def _centred_grid(height: int, width: int) -> tuple[jax.Array, jax.Array]:
  """Output pixel coordinates (row, column) relative to the image centre, rows pointing down."""
  rows = jnp.arange(height, dtype=jnp.float32) - (height - 1) / 2
  cols = jnp.arange(width, dtype=jnp.float32) - (width - 1) / 2
  return jnp.meshgrid(rows, cols, indexing="ij")


def _sample_nearest(images: jax.Array, src_rows: jax.Array, src_cols: jax.Array) -> jax.Array:
  height, width = images.shape[-2:]
  r = jnp.round(src_rows + (height - 1) / 2)
  c = jnp.round(src_cols + (width - 1) / 2)
  inside = (r >= 0) & (r <= height - 1) & (c >= 0) & (c <= width - 1)
  r = jnp.clip(r, 0, height - 1).astype(jnp.int32)
  c = jnp.clip(c, 0, width - 1).astype(jnp.int32)
  return jnp.where(inside, images[..., r, c], 0.0)


def _sample_bilinear(images: jax.Array, src_rows: jax.Array, src_cols: jax.Array) -> jax.Array:
  height, width = images.shape[-2:]
  r = src_rows + (height - 1) / 2
  c = src_cols + (width - 1) / 2
  r0, c0 = jnp.floor(r), jnp.floor(c)
  total = 0.0
  for dr in (0, 1):
    for dc in (0, 1):
      rr, cc = r0 + dr, c0 + dc
      weight = (1 - jnp.abs(r - rr)) * (1 - jnp.abs(c - cc))
      inside = (rr >= 0) & (rr <= height - 1) & (cc >= 0) & (cc <= width - 1)
      pixel = images[..., jnp.clip(rr, 0, height - 1).astype(jnp.int32), jnp.clip(cc, 0, width - 1).astype(jnp.int32)]
      total = total + jnp.where(inside, weight * pixel, 0.0)
  return total


def rotate(images: jax.Array, degrees: float | jax.Array) -> jax.Array:
  """Rotates (B, H, W) images counter-clockwise by `degrees`, nearest neighbour, black fill."""
  angle = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  rows, cols = _centred_grid(*images.shape[-2:])
  # Output (x = col, y = -row) comes from the source point rotated back by -angle.
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  src_cols = cos * cols - sin * rows
  src_rows = sin * cols + cos * rows
  return _sample_nearest(images, src_rows, src_cols)


def scale(images: jax.Array, factor: float | jax.Array) -> jax.Array:
  """Crops the centred box of side H * factor and resizes it back to H x W bilinearly (black outside)."""
  factor = jnp.asarray(factor, jnp.float32)
  rows, cols = _centred_grid(*images.shape[-2:])
  return _sample_bilinear(images, rows * factor, cols * factor)


def shear(images: jax.Array, degrees: float | jax.Array) -> jax.Array:
  """torchvision 0.2's shear by `degrees`: source = [[1, tan s], [0, 1 / cos s]] @ (x, y), nearest neighbour."""
  angle = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  rows, cols = _centred_grid(*images.shape[-2:])
  cos = jnp.cos(angle)
  # Keep 1 / cos finite at +-90 degrees: the rows that then map off the image stay off it.
  safe_cos = jnp.where(jnp.abs(cos) < 1e-6, jnp.where(cos < 0, -1e-6, 1e-6), cos)
  src_rows = rows / safe_cos
  src_cols = cols + jnp.tan(angle) * rows
  return _sample_nearest(images, src_rows, src_cols)


TRANSFORMS = {"rotate": rotate, "scale": scale, "shear": shear}
VALUES = {"rotate": ROTATION_VALUES, "scale": SCALE_VALUES, "shear": SHEAR_VALUES}


def transform(name: str, images: jax.Array, value: float) -> jax.Array:
  """Applies transformation `name` ("rotate", "scale" or "shear") with `value` to (B, H, W) images."""
  if name not in TRANSFORMS:
    raise ValueError(f"unknown transformation {name!r}; expected one of {sorted(TRANSFORMS)}")
  if float(value) not in VALUES[name]:
    raise ValueError(f"{name} value {value!r} is not on the experiment's grid {list(VALUES[name])}")
  return TRANSFORMS[name](images, value)
