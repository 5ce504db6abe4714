"""The MNIST grid behind Table 2, Table 1 and Figure 7 (see experiments/mnist_tables.py).

    python -m experiments.mnist_tables --workdir workdirs/mnist_grid --config.run_missing=True \
        --config.run.num_steps=3000 --config.run.data.manual_dir=../shared/data/mnist "--config.splits=('sparse',)"

Budget: each cell (transformation, split, model) is one run of configs/mnist.py at `run.num_steps` (the command above:
the reproduction's 3000 steps on the sparse split, three transformations and four models), then Table 1's distances
on `table1_images` test images. The quick config runs end to end in under a minute on the project's 2-core CPU
machine; it checks the pipeline, not the numbers. What the cells reach, seed by seed, and their minutes:
docs/results.md (Table 2, Figure 7 and Table 1), written from the committed result files by `python -m
experiments.report tables`.
"""

import ml_collections

from experiments.configs.mnist import mnist_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.transforms = ("rotate", "scale", "shear")
  c.splits = ("interleaved", "sparse", "contiguous")
  c.models = ("meta_vae", "ns", "vhe", "vhe_vampprior")
  c.run_missing = False  # train and evaluate what is missing: cells without results, budgets past their last one
  c.budgets = ()  # steps at which run_missing also evaluates each cell on its way to run.num_steps (the curve)
  c.table1_split = "sparse"  # the MetaVAEs whose codes Table 1 compares
  c.table1_model = "meta_vae"  # or "vae": the same distances for the VAE control
  c.table1_images = 1000  # test images per distance
  c.run = mnist_config("rotate", mode)  # settings of each run; transform, split and model are set per cell
  if mode == "quick":
    c.transforms = ("rotate",)
    c.splits = ("sparse",)
    c.models = ("meta_vae", "vhe")
    c.run_missing = True
    c.budgets = (10,)
    c.table1_images = 50
  return c
