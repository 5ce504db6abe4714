"""Transformation invariance on MNIST under scale (Wu et al., Table 2 and Figure 7).

    python -m experiments.mnist_scale --config experiments/configs/mnist_scale.py \
        --config.model=meta_vae|ns|vhe|vhe_vampprior --config.split=interleaved|sparse|contiguous \
        --config.data.manual_dir=../shared/data/mnist --workdir DIR
"""

from experiments import cli, invariance

if __name__ == "__main__":
  cli.main("mnist_scale", invariance.run)
