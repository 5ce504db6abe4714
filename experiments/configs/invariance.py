"""Fields shared by the transformation-invariance experiments on MNIST and Small NORB (experiments/invariance.py)."""

import ml_collections

from experiments.configs.common import data_config, training_config


def invariance_config(mode: str | None, *, dataset: str, transform: str, num_steps: int,
                      batch_size: int) -> ml_collections.ConfigDict:
  # The original: Adam 2e-4 (docs/design.md section 1).
  c = training_config(mode, num_steps=num_steps, learning_rate=2e-4)
  c.dataset = dataset
  c.transform = transform
  c.split = "sparse"  # interleaved | sparse | contiguous
  c.model = "meta_vae"  # meta_vae | ns | vhe | vhe_vampprior | meta_vae_iterative, vae (MNIST)
  # bfloat16: bfloat16 matrix products with float32 parameters and losses (for GPU/TPU; slow on CPU).
  c.compute_dtype = "float32"
  c.data = data_config()
  # Models (docs/design.md sections 1, 2 and 4).
  c.batch_size = batch_size
  c.set_size = 10
  c.latent_dim = 40
  c.hidden = 400
  c.context_dim = 300
  c.num_pseudo_sets = 500
  c.pseudo_set_size = 10
  # meta_vae_iterative: T refinements from the prior, samples per ELBO, how its gradients are encoded.
  c.num_refinements = 5
  c.eval_refinements = 10  # refinement steps of the ELBO curve on unseen distributions (past T)
  c.refinement_samples = 1
  c.gradient_encoding = "log_sign"  # log_sign | standardize
  # MetaVAEs on unseen distributions: the decoder of the training distribution with the nearest mean summary
  # (over summary_sets sets) scores the MetaELBO of unseen_elbo_examples test images (and refines the codes of
  # meta_vae_iterative); with unseen_decoder "best_bound", the decoder under which the MetaELBO of the unseen
  # distribution's first unseen_elbo_examples training images is highest (one bound per training decoder). The
  # paper reports no bound on unseen distributions, so neither choice is its.
  c.summary_sets = 100
  c.unseen_elbo_examples = 1000
  c.unseen_decoder = "nearest_summary"
  # VHE context-KL weight; None is the VHE paper's 1 / |X| with X the distribution's training images.
  c.context_kl_weight = ml_collections.FieldReference(None, field_type=float)
  # NS / VHE prior over z: "learned" p(z | c), as their papers, or "standard" N(0, I), ignoring c, as the
  # MetaVAE's (an ablation, not in either paper). The MetaVAEs' prior is always N(0, I).
  c.latent_prior = "learned"
  # NS / VHE decoder: "z_and_c" p(x | z, c), as their papers, or "z" p(x | z), c entering only the encoder
  # q(z | x, c) (and p(z | c)), as the set enters only the MetaVAE's encoder (an ablation, not in either paper).
  c.decoder_input = "z_and_c"
  # NS / VHE encoder: "x_and_c" q(z | x, c), as their papers, or "x" q(z | x), c ignored; with decoder_input "z" and
  # latent_prior "standard" the set then enters nothing but the context KL (a VAE with their networks; an ablation).
  c.encoder_input = "x_and_c"
  # NS / VHE: how the embeddings of x (or z) and of c meet in q(z | x, c) and p(x | z, c): "sum", summed then ELU,
  # as the Neural Statistician's networks, or "concat", ELU of each, concatenated, as the original MetaVAE code's
  # baselines (the next layer twice as wide: 8.28 M parameters against 6.49 M on MNIST).
  c.context_merge = "sum"
  # MetaVAE decoders: "per_distribution", as the paper, or one "shared" by every distribution (an ablation).
  c.decoders = "per_distribution"
  # MetaVAE / VAE (MNIST) encoder MLP and decoders: "relu", as the original code, or "elu", as the NS's and the
  # VHE's networks (an ablation, not in either paper); the summary network h keeps its LeakyReLU.
  c.activation = "relu"
  # The original MetaVAE code's departures (docs/design.md section 2), in neither paper: "1e-7" clamps the
  # Bernoulli probabilities to [1e-7, 1 - 1e-7] (MLP MetaVAE, NS, VHEs); "xavier_sqrt2" initialises the NS's and
  # the VHEs' Dense kernels xavier_normal with gain sqrt 2 and zero biases instead of Flax's lecun_normal.
  c.likelihood_clamp = "none"
  c.init = "flax"
  # Linear probe.
  c.probe_tolerance = 1e-5
  c.probe_max_iterations = 5000  # the VHE codes need up to ~1100 L-BFGS iterations to reach the tolerance
  # The probe also fitted to codes whose queries all share one set, drawn once, beside test_accuracy's fresh set per
  # query, as fixed_set_test_accuracy: "per_split", the training codes' set from the training split and the test
  # codes' from the test split, or "shared", the training split's set for both (not the NS, whose set is each chunk
  # of queries); None: not.
  c.fixed_set_probe = ml_collections.FieldReference(None, field_type=str)
  c.checkpoint_every_seconds = 300.0
  if mode == "quick":
    c.latent_dim = 4
    c.context_dim = 6
    c.num_pseudo_sets = 3
    c.pseudo_set_size = 4
    c.num_steps = 20
    c.log_every = 10
    c.probe_max_iterations = 200
    c.num_refinements = 2
    c.eval_refinements = 3
    c.summary_sets = 5
    c.unseen_elbo_examples = 20
  return c
