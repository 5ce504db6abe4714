"""MNIST under scale (see configs/mnist.py)."""

import ml_collections

from experiments.configs.mnist import mnist_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  return mnist_config("scale", mode)
