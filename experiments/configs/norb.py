"""Transformation invariance on Small NORB (Wu et al., Table 2; docs/design.md section 4).

    python -m experiments.norb_elevation --config experiments/configs/norb_elevation.py \
        --config.data.manual_dir=DIR_OF_THE_SIX_FILES --config.model=meta_vae --workdir workdirs/norb_elevation

(and `norb_azimuth`, `norb_lighting`). Small NORB cannot be downloaded on the project's machine: its pipeline is
tested on small files written in the dataset's format (`smallnorb.prepare_generated`; the quick config runs end to
end on them in 5-14 s per model on the 2-core CPU machine), and these settings have not been trained here, so no
wall time or result is known. The paper's Table 2 (MetaVAE / VHE + VampPrior / VHE): elevation 0.601 / 0.337 /
0.309, azimuth 0.592 / 0.313 / 0.286, lighting 0.548 / 0.357 / 0.306.
"""

import ml_collections

from experiments.configs.invariance import invariance_config


def norb_config(axis: str, mode: str | None = None) -> ml_collections.ConfigDict:
  # `transform` is the axis whose values make the distributions: elevation | azimuth | lighting.
  c = invariance_config(mode, dataset="smallnorb", transform=axis, num_steps=20000, batch_size=32)
  # A shared conv trunk (batch norm, ELU) to 4 x 4 x 256 = 4096 features, the MLP heads of the MNIST models
  # on the features, conv decoders to 32 x 32.
  c.conv_features = (64, 64, 64, 128, 128, 128, 256, 256, 256)
  c.summary_features = (400, 400)
  c.eval_batch_size = 100
  if mode == "quick":
    c.conv_features = (2, 2, 2, 4, 4, 4, 4, 4, 4)
    c.batch_size = 4
    c.set_size = 3
    c.latent_dim = 3
    c.hidden = 8
    c.summary_features = (8,)
    c.context_dim = 4
    c.num_pseudo_sets = 2
    c.pseudo_set_size = 2
    c.num_steps = 4
    c.log_every = 2
    c.eval_batch_size = 8
    c.probe_max_iterations = 50
  return c
