"""Preparing a tensorflow-datasets dataset and reading its splits back as numpy arrays."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np


def prepare_and_read(name: str, data_dir: str | pathlib.Path, manual_dir: str | pathlib.Path | None,
                     splits: Mapping[str, str]) -> dict[str, dict[str, np.ndarray]]:
  """Prepares dataset `name` in data_dir (from manual_dir's files if given, else by download) once, then
  returns every feature of each split as a whole numpy array.

  Args:
    splits: {key of the result: tensorflow-datasets split}; a slice such as "train[:300]" reads (and decodes)
      only those examples, the first ones in the prepared order.
  """
  import tensorflow_datasets as tfds  # data preparation only: keeps TensorFlow off every other import path

  builder = tfds.builder(name, data_dir=str(data_dir))
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir is not None else None
  builder.download_and_prepare(download_config=config)
  return {key: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1)) for key, split in splits.items()}
