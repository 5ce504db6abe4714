"""Compiled inference for inclined planes (Wu et al., demo 2, Figure 2).

A box slides down a plane of length L and angle A with friction mu; the
simulator returns the descent time plus N(0, 0.02^2) noise. Observation model
for a box that never slides (g sin A <= g cos A mu): the experimenter stops the
clock at `max_time`, so the box is observed at max_time (plus the same noise),
as is any descent slower than that. A meta-inference network g(D, t) is trained
by compiled inference (maximising log q(mu | D, t) over simulated pairs, eq. 14)
on 25 planes, D holding simulated (mu, t) pairs of the same plane; a VAE-style
inference network q(mu | t) is trained the same way on the single plane L = 10,
A = 45. Both are scored by the MSE of the inferred mean on the 304 test planes,
next to the Bayes-optimal MSE (the exact posterior mean under a uniform prior,
computed on a grid), which shows where the observation carries little information.

    python -m experiments.physics --config experiments/configs/physics.py --workdir workdirs/physics
"""

from __future__ import annotations

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import cli, rundir, trainer
from experiments.plotting import figure
from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.networks import MLP, SummaryNetwork, gaussian_from_params

EVALUATION_FIELDS = ("test_lengths", "test_angles", "test_simulations", "test_sets", "bayes_grid", "region_angles",
                     "region_lengths")  # see `trainer.fit`


def validate(config: ml_collections.ConfigDict) -> None:
  trainer.check_training(config)
  trainer.check_positive(config, "gravity", "noise_std", "max_time", "mu_min", "mu_max", "train_lengths",
                         "train_angles", "vae_length", "vae_angle", "test_lengths", "test_angles", "set_size",
                         "batch_size", "hidden", "test_simulations", "test_sets", "bayes_grid")
  for field in ("train_angles", "test_angles", "vae_angle"):
    values = config[field] if isinstance(config[field], tuple) else (config[field],)
    if any(not 0 < a < 90 for a in values):
      raise trainer.ConfigError(f"config.{field}={config[field]!r} is not allowed; expected angles in (0, 90) degrees")
  if config.test_simulations % config.test_sets:
    raise trainer.ConfigError(f"config.test_simulations={config.test_simulations} is not allowed; expected a "
                              f"multiple of config.test_sets={config.test_sets}")


def acceleration(mu, angle_degrees, gravity=9.8):
  angle = jnp.deg2rad(angle_degrees)
  return gravity * (jnp.sin(angle) - jnp.cos(angle) * mu)


def descent_time(mu, length, angle_degrees, *, gravity=9.8, max_time=10.0):
  """Noise-free observed time: sqrt(2 L / a) when the box slides, capped at max_time (also when it never does)."""
  a = acceleration(mu, angle_degrees, gravity)
  slides = a > 0
  time = jnp.sqrt(2.0 * length / jnp.where(slides, a, 1.0))
  return jnp.where(slides, jnp.minimum(time, max_time), max_time)


def euler_descent_time(mu, length, angle_degrees, *, gravity=9.8, max_time=10.0, dt=0.005):
  """The original code's integration: x += v dt, v += a dt until x >= L, capped at max_time."""
  a = acceleration(mu, angle_degrees, gravity)

  def body(carry):
    position, velocity, time = carry
    return position + velocity * dt, velocity + a * dt, time + dt

  def not_done(carry):
    position, _, time = carry
    return jnp.logical_and(position < length, time < max_time)

  zeros = jnp.zeros_like(a)
  _, _, time = jax.lax.while_loop(not_done, body, (zeros, zeros, zeros))
  return jnp.minimum(time, max_time)


def simulate(key, length, angle, shape, config):
  """(mu, observed time) pairs of one plane: mu ~ U(mu_min, mu_max), t = descent time + noise."""
  mu_key, noise_key = jax.random.split(key)
  mu = jax.random.uniform(mu_key, shape, minval=config.mu_min, maxval=config.mu_max)
  time = descent_time(mu, length, angle, gravity=config.gravity, max_time=config.max_time)
  return mu, time + config.noise_std * jax.random.normal(noise_key, shape)


def time_features(time, max_time):
  return jnp.stack([time / max_time, jnp.log(jnp.maximum(time, 1e-2))], axis=-1)


class PlaneInference(nn.Module):
  """q(mu | D, t) with D a set of (mu, t) pairs; without a set, the single-plane q(mu | t)."""

  hidden: int
  max_time: float
  use_set: bool = True

  @nn.compact
  def __call__(self, set_mu, set_time, time) -> DiagonalGaussian:
    inputs = time_features(time, self.max_time)
    if self.use_set:
      elements = jnp.concatenate([set_mu[..., None], time_features(set_time, self.max_time)], -1)
      summary = SummaryNetwork((self.hidden, self.hidden), activation=nn.relu)(elements)
      inputs = jnp.concatenate([inputs, jnp.broadcast_to(summary, inputs.shape[:-1] + summary.shape[-1:])], -1)
    return gaussian_from_params(MLP((self.hidden, self.hidden, 2))(inputs))


def compiled_inference_loss(params, state, key, lengths, angles, *, model, config):
  """-log q(mu | D, t) over simulated pairs of every training plane (eq. 14); one set D per plane and step."""
  def one(plane_key, length, angle):
    set_key, query_key = jax.random.split(plane_key)
    set_mu, set_time = simulate(set_key, length, angle, (config.set_size,), config)
    mu, time = simulate(query_key, length, angle, (config.batch_size,), config)
    return model.apply(params, set_mu, set_time, time).log_prob(mu[:, None])

  keys = jax.random.split(key, lengths.shape[0])
  return -jnp.mean(jax.vmap(one)(keys, lengths, angles)), ({}, state)


def bayes_optimal_mse(key, length, angle, config):
  """MSE of the exact posterior mean E[mu | t] (uniform prior, Gaussian noise) on simulated pairs of one plane."""
  grid = jnp.linspace(config.mu_min, config.mu_max, config.bayes_grid)
  grid_times = descent_time(grid, length, angle, gravity=config.gravity, max_time=config.max_time)
  mu, time = simulate(key, length, angle, (config.test_simulations,), config)
  log_weights = -0.5 * ((time[:, None] - grid_times[None]) / config.noise_std) ** 2
  posterior_mean = jnp.sum(jax.nn.softmax(log_weights, axis=-1) * grid, axis=-1)
  return jnp.mean((posterior_mean - mu) ** 2)


def plane_mse(params, key, length, angle, *, model, config):
  """MSE of the inferred mean over test_simulations queries, in test_sets groups sharing a set D each."""
  per_set = config.test_simulations // config.test_sets

  def one_set(set_key):
    d_key, q_key = jax.random.split(set_key)
    set_mu, set_time = simulate(d_key, length, angle, (config.set_size,), config)
    mu, time = simulate(q_key, length, angle, (per_set,), config)
    return jnp.mean((model.apply(params, set_mu, set_time, time).mean[:, 0] - mu) ** 2)

  return jnp.mean(jax.vmap(one_set)(jax.random.split(key, config.test_sets)))


def grid_of(fn, key, config):
  lengths, angles = jnp.meshgrid(jnp.asarray(config.test_lengths), jnp.asarray(config.test_angles), indexing="ij")
  keys = jax.random.split(key, lengths.size).reshape(lengths.shape)
  return np.asarray(jax.jit(jax.vmap(jax.vmap(fn)))(keys, lengths, angles))


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  validate(config)
  workdir.mkdir(parents=True, exist_ok=True)
  lengths, angles = (jnp.asarray(v, jnp.float32).ravel()
                     for v in jnp.meshgrid(jnp.asarray(config.train_lengths), jnp.asarray(config.train_angles)))
  dummy = (jnp.zeros((config.set_size,)), jnp.zeros((config.set_size,)), jnp.ones((1,)))
  grids = {}
  eval_key = jax.random.key(config.seed + 1)
  for name, use_set, planes in [("meta_vae", True, (lengths, angles)),
                                ("vae", False, (jnp.array([config.vae_length]), jnp.array([config.vae_angle])))]:
    model = PlaneInference(config.hidden, config.max_time, use_set)
    state = trainer.fit(config, workdir, run=name, init=lambda key, m=model: (m.init(key, *dummy), {}),
                        loss_fn=functools.partial(compiled_inference_loss, model=model, config=config), batch=planes,
                        evaluation_fields=EVALUATION_FIELDS)
    grids[name] = grid_of(functools.partial(plane_mse, state.params, model=model, config=config), eval_key, config)
  grids["bayes_optimal"] = grid_of(functools.partial(bayes_optimal_mse, config=config), eval_key, config)

  lengths_test, angles_test = np.asarray(config.test_lengths), np.asarray(config.test_angles)
  region = np.outer((lengths_test >= config.region_lengths[0]) & (lengths_test <= config.region_lengths[1]),
                    (angles_test >= config.region_angles[0]) & (angles_test <= config.region_angles[1]))
  results = {
      "mse_grid": {name: grid.tolist() for name, grid in grids.items()},
      "lengths": lengths_test.tolist(),
      "angles": angles_test.tolist(),
      "meta_vae_mse_in_region": float(grids["meta_vae"][region].mean()),
      "vae_mse_in_region": float(grids["vae"][region].mean()),
      "bayes_optimal_mse_in_region": float(grids["bayes_optimal"][region].mean()),
      "meta_vae_fraction_of_region_below_0.001": float(np.mean(grids["meta_vae"][region] < 1e-3)),
      "bayes_optimal_fraction_of_region_below_0.001": float(np.mean(grids["bayes_optimal"][region] < 1e-3)),
      "meta_vae_mse_in_region_where_bayes_below_0.001": float(
          grids["meta_vae"][region & (grids["bayes_optimal"] < 1e-3)].mean())
      if np.any(region & (grids["bayes_optimal"] < 1e-3)) else None,
      "region": {"angles": list(config.region_angles), "lengths": list(config.region_lengths)},
  }
  # The region reaches past the training planes (lengths up to 20 and angles up to 70 against at most 10 and 60):
  # the same means inside and outside their span tell interpolation from extrapolation.
  within = np.outer((lengths_test >= min(config.train_lengths)) & (lengths_test <= max(config.train_lengths)),
                    (angles_test >= min(config.train_angles)) & (angles_test <= max(config.train_angles)))
  for part, cells in (("within_training_span", region & within), ("beyond_training_span", region & ~within)):
    results[f"region_{part}"] = {name: float(grid[cells].mean()) if cells.any() else None
                                 for name, grid in grids.items()}
  trainer.write_results(workdir, results)
  plot(workdir, grids, lengths_test, angles_test)
  return results


def plot(workdir, grids, lengths, angles):
  from matplotlib.colors import LogNorm

  titles = {"meta_vae": "MetaVAE", "vae": "VAE (L = 10, A = 45)", "bayes_optimal": "Bayes-optimal"}
  with figure(workdir / "physics_mse.png", 1, 3, figsize=(14, 4)) as (fig, axes):
    floor = max(min(float(g[g > 0].min()) for g in grids.values()), 1e-7)
    for ax, (name, grid) in zip(axes, grids.items()):
      image = ax.imshow(np.maximum(grid, floor), origin="lower", aspect="auto", norm=LogNorm(vmin=floor, vmax=0.1),
                        extent=[angles[0] - 2.5, angles[-1] + 2.5, lengths[0] - 0.5, lengths[-1] + 0.5], cmap="magma_r")
      ax.set_title(f"{titles[name]}: MSE of inferred friction", fontsize=9)
      ax.set_xlabel("angle A (degrees)")
      ax.set_ylabel("length L")
      fig.colorbar(image, ax=ax)


if __name__ == "__main__":
  cli.main("physics", run)
