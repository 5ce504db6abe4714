"""The numbers Wu et al. report, in one place: the experiments write them beside their own and
`python -m experiments.report` prints them beside the seeds' means (docs/design.md section 6 and Table 2)."""

# Demo 1: clustering error on unseen mixtures (fractions); the paper does not give the data dimension.
CLUSTERING = {"vae": 0.279, "meta_vae_N10": 0.212, "meta_vae_N20": 0.158, "meta_vae_N50": 0.099}

# Table 2: mean linear-probe accuracy on the unseen transformations (the paper's split is not stated).
TABLE2 = {"rotate": {"meta_vae": 0.885, "vhe_vampprior": 0.830, "vhe": 0.793},
          "scale": {"meta_vae": 0.893, "vhe_vampprior": 0.767, "vhe": 0.463},
          "shear": {"meta_vae": 0.844, "vhe_vampprior": 0.679, "vhe": 0.602}}

# Table 1: mean L2 distance between the code of an image and those of its transformed versions, for the MetaVAE
# amortized over each transformation (rows) under each transformation (columns: rotate, scale, shear).
TABLE1 = {"rotate": (1.65, 4.44, 4.09), "scale": (5.44, 2.16, 4.92), "shear": (3.79, 4.89, 1.47)}

# Demo 2: "MSE < 0.001" over angles 20-70 degrees and lengths 2-20 (Figure 2, a heat map; no single number).
PLANES_MSE_BOUND = 0.001

# Marino et al., single-level model on binarised MNIST: test -log p(x) in nats after about a thousand epochs.
ITERATIVE_MNIST_NLL = {"standard": 84.14, "iterative": 83.84}
