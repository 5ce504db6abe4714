"""Transformation invariance on MNIST under rotate (Wu et al., Table 2 and Figure 7).

    python -m experiments.mnist_rotate --config experiments/configs/mnist_rotate.py \
        --config.model=meta_vae|ns|vhe|vhe_vampprior --config.split=interleaved|sparse|contiguous \
        --config.data.manual_dir=../shared/data/mnist --workdir DIR
"""

from experiments import cli, invariance

if __name__ == "__main__":
  cli.main("mnist_rotate", invariance.run)
