"""Small NORB along elevation (see configs/norb.py)."""

import ml_collections

from experiments.configs.norb import norb_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  return norb_config("elevation", mode)
