"""Shared fixtures: a linear-Gaussian model whose evidence and posterior are known exactly."""

import fcntl
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized.distributions import DiagonalGaussian

# Tests use small shapes; XLA's heavy optimisation passes only add compile time. The environment variable
# carries the setting into the processes the tests start (workers, the notebook's kernel).
jax.config.update("jax_disable_most_optimizations", True)
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true"


class LinearGaussian:
  """p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I), with W's columns orthogonal.

  Orthogonal columns make the exact posterior diagonal, so a `DiagonalGaussian`
  can represent it: cov = (I + W^T W / s^2)^-1, mean = cov W^T (x - b) / s^2.
  """

  def __init__(self, latent_dim=3, data_dim=5, noise_std=0.5, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))
    self.weight = q * rng.uniform(0.5, 2.0, size=latent_dim)  # (D, Z), orthogonal columns
    self.bias = rng.normal(size=data_dim)
    self.noise_std = noise_std
    self.latent_dim, self.data_dim = latent_dim, data_dim

  def log_likelihood(self, x, z):
    mean = z @ self.weight.T + self.bias
    return DiagonalGaussian(mean, jnp.full_like(mean, 2 * np.log(self.noise_std))).log_prob(x)

  def log_evidence(self, x):
    cov = self.weight @ self.weight.T + self.noise_std**2 * np.eye(self.data_dim)
    diff = np.asarray(x) - self.bias
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
    return -0.5 * (self.data_dim * np.log(2 * np.pi) + logdet + quad)

  def posterior(self, x):
    precision = 1.0 + np.sum(self.weight**2, axis=0) / self.noise_std**2  # diagonal of I + W^T W / s^2
    mean = (np.asarray(x) - self.bias) @ self.weight / self.noise_std**2 / precision
    return DiagonalGaussian(jnp.asarray(mean, jnp.float32),
                            jnp.asarray(np.broadcast_to(-np.log(precision), mean.shape), jnp.float32))

  def exact_elbo(self, x, q):
    """Closed-form ELBO of a diagonal Gaussian q: E_q log p(x|z) - KL(q || N(0, I))."""
    m, v = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_variance, np.float64))
    diff = np.asarray(x) - self.bias - m @ self.weight.T
    expected_sq = np.sum(diff**2, axis=-1) + v @ np.sum(self.weight**2, axis=0)
    log_lik = -0.5 * (self.data_dim * np.log(2 * np.pi * self.noise_std**2) + expected_sq / self.noise_std**2)
    kl = 0.5 * np.sum(v + m**2 - 1 - np.log(v), axis=-1)
    return log_lik - kl

  def sample_x(self, key, batch):
    z_key, x_key = jax.random.split(key)
    z = jax.random.normal(z_key, (batch, self.latent_dim))
    return z @ self.weight.T + self.bias + self.noise_std * jax.random.normal(x_key, (batch, self.data_dim))


@pytest.fixture
def linear_gaussian():
  return LinearGaussian()


MNIST_MANUAL_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory, worker_id):
  """A tensorflow-datasets directory with MNIST prepared offline from ../shared/data/mnist, once per test run:
  the first pytest-xdist worker to need it prepares it while the others wait on a lock, then reuse it."""
  from experiments.data import mnist

  root = tmp_path_factory.getbasetemp()
  root = root if worker_id == "master" else root.parent  # the directory every worker's base lies in
  with open(root / "mnist_tfds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    mnist.load_mnist(root / "mnist_tfds", manual_dir=MNIST_MANUAL_DIR, num_examples={"test": 1})
  return root / "mnist_tfds"


def prepare_fake_smallnorb(manual_dir, data_dir, written):
  """`smallnorb.prepare_generated`: Small NORB files written by the tests, prepared by tensorflow-datasets."""
  from experiments.data import smallnorb

  return smallnorb.prepare_generated(manual_dir, data_dir, written)


@pytest.fixture(scope="session")
def norb_lighting_dirs(tmp_path_factory):
  """(manual_dir, data_dir) of a small Small NORB with every lighting value equally often in each split."""
  from experiments.data import smallnorb

  manual_dir, data_dir = tmp_path_factory.mktemp("norb_files"), tmp_path_factory.mktemp("norb_tfds")
  smallnorb.prepare_generated(manual_dir, data_dir, smallnorb.generated_lighting_data())
  return manual_dir, data_dir
