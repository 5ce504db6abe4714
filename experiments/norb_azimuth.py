"""Transformation invariance on Small NORB along azimuth (Wu et al., Table 2).

    python -m experiments.norb_azimuth --config experiments/configs/norb_azimuth.py \
        --config.model=meta_vae|ns|vhe|vhe_vampprior --config.split=interleaved|sparse|contiguous \
        --config.data.manual_dir=DIR_WITH_THE_SIX_SMALLNORB_FILES --workdir DIR
"""

from experiments import cli, invariance

if __name__ == "__main__":
  cli.main("norb_azimuth", invariance.run)
