"""The models of the transformation-invariance experiments and the ablations beside them, registered in one place.

A model is a name, the datasets it is built for, a builder and its own checks: the paper's four (`meta_vae`, `ns`,
`vhe`, `vhe_vampprior`) and two that are not in it (`meta_vae_iterative`, the MetaVAE with an iterative
meta-inference network; `vae`, the control whose encoder ignores the set). An ablation is a switch: one config
field whose default is the paper's choice, the models it changes, the datasets it exists on, and what it does to
the builder's options. The experiment's own validation (`invariance.validate`) and results know none of them by
name: `check` validates every registered model and switch, `build_model` builds the configured model with the
switches applied, and `options` lists the switches of the model for results.json.

Adding an ablation is one `Switch` here (and its field in configs/invariance.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
from flax import linen as nn

from experiments import trainer
from meta_amortized.conv import ConvModel
from meta_amortized.metavae import IterativeMetaVAE, MetaVAE
from meta_amortized.networks import (
  CONTEXT_MERGES,
  ContextPosterior,
  ConvContextDecoder,
  ConvDecoder,
  ConvEncoder,
  Decoder,
  IterativeEncoder,
  LatentPosterior,
  LatentPrior,
  MetaInferenceNetwork,
  QueryOnlyInference,
  StatisticianDecoder,
  SummaryNetwork,
)
from meta_amortized.statistician import NeuralStatistician, VariationalHomoencoder

ACTIVATIONS = {"relu": jax.nn.relu, "elu": jax.nn.elu}


class MetaVAEOptions(NamedTuple):
  """What the MetaVAE family's builder varies: the activation of g's MLP and the decoders, one decoder for every
  distribution, an encoder that ignores the set (with a shared decoder: a plain VAE)."""

  activation: str = "relu"
  shared_decoder: bool = False
  query_only: bool = False
  likelihood_clamp: float = 0.0


class ContextOptions(NamedTuple):
  """What the NS / VHE family's builder varies: whether the decoder and the encoder read c, whether p(z | c) is
  learned, how the embeddings of x (or z) and c meet."""

  decoder_reads_c: bool = True
  encoder_reads_c: bool = True
  learned_prior: bool = True
  context_merge: str = "sum"
  likelihood_clamp: float = 0.0
  original_init: bool = False


class Switch(NamedTuple):
  """An ablation: config.<field> (default the paper's choice) and what each value does to the builder's options."""

  field: str
  choices: tuple[str, ...]
  models: tuple[str, ...]
  datasets: tuple[str, ...]
  apply: Callable[[Any, str], Any]  # (options, value) -> options
  why: str  # what the models that have it have: the end of the error message for the others

  @property
  def default(self) -> str:
    return self.choices[0]


class Model(NamedTuple):
  """A model the experiment trains: its name, datasets, builder (config, |X|, options) -> model, and checks."""

  name: str
  datasets: tuple[str, ...]
  options: Any  # the builder's default options (the paper's architecture)
  build: Callable[[ml_collections.ConfigDict, int | None, Any], Any]
  check: Callable[[ml_collections.ConfigDict], None] = lambda config: None


def _examples_per_distribution(config: ml_collections.ConfigDict) -> int:
  """|X| of the VHE's context-KL weight 1/|X|: the training images of one distribution."""
  from experiments.data import splits

  if config.dataset == "mnist":
    return config.data.num_train_examples
  return 2 * 24300 // splits.NORB_AXES[config.transform]  # both cameras, one value of the axis


def _conv(config: ml_collections.ConfigDict) -> bool:
  return config.dataset == "smallnorb"


def _on_images(config: ml_collections.ConfigDict, model: Any) -> Any:
  """Small NORB's models read the features of a batch-norm conv trunk (`meta_amortized.conv`)."""
  return ConvModel(ConvEncoder(tuple(config.conv_features)), model) if _conv(config) else model


def _build_meta_vae(config: ml_collections.ConfigDict, examples: int | None, options: MetaVAEOptions) -> Any:
  del examples
  hidden, activation = (config.hidden, config.hidden), ACTIVATIONS[options.activation]
  decoder = ConvDecoder(tuple(config.conv_features)) if _conv(config) else Decoder(hidden, 784, activation)
  inference = (QueryOnlyInference(hidden, config.latent_dim, activation) if options.query_only
               else MetaInferenceNetwork(tuple(config.summary_features), hidden, config.latent_dim, activation))
  return _on_images(config, MetaVAE(inference, decoder, shared_decoder=options.shared_decoder,
                                    likelihood_clamp=options.likelihood_clamp))


def _build_context_model(config: ml_collections.ConfigDict, examples: int | None, options: ContextOptions) -> Any:
  merge = options.context_merge
  decoder = (ConvContextDecoder(config.hidden, tuple(config.conv_features), options.decoder_reads_c, merge)
             if _conv(config) else
             StatisticianDecoder(config.hidden, config.decoder_wide, 784, options.decoder_reads_c, merge))
  networks = dict(
      context=ContextPosterior(config.hidden, config.context_dim, jax.nn.elu if config.model == "ns" else None),
      latent_posterior=LatentPosterior(config.hidden, config.latent_dim, options.encoder_reads_c, merge),
      latent_prior=LatentPrior((config.hidden, config.hidden), config.latent_dim) if options.learned_prior else None,
      decoder=decoder, likelihood_clamp=options.likelihood_clamp,
      kernel_init=nn.initializers.variance_scaling(2.0, "fan_avg", "normal") if options.original_init else None)
  if config.model == "ns":
    return _on_images(config, NeuralStatistician(**networks))
  weight = config.context_kl_weight
  weight = 1.0 / (examples or _examples_per_distribution(config)) if weight is None else weight
  return _on_images(config, VariationalHomoencoder(
      **networks, num_pseudo_sets=config.num_pseudo_sets if config.model == "vhe_vampprior" else 0,
      pseudo_set_size=config.pseudo_set_size, context_kl_weight=weight))


def _build_iterative(config: ml_collections.ConfigDict, examples: int | None, options: None) -> IterativeMetaVAE:
  del examples, options
  hidden = (config.hidden, config.hidden)
  return IterativeMetaVAE(SummaryNetwork(tuple(config.summary_features)), IterativeEncoder(hidden, config.latent_dim),
                          Decoder(hidden, 784), num_refinements=config.num_refinements,
                          num_samples=config.refinement_samples, gradient_encoding=config.gradient_encoding)


def _check_iterative(config: ml_collections.ConfigDict) -> None:
  if config.compute_dtype != "float32":
    raise trainer.ConfigError(f"config.model='meta_vae_iterative' is not allowed with config.compute_dtype="
                              f"{config.compute_dtype!r}; it is built for float32")
  trainer.check_choice(config, "gradient_encoding", ("log_sign", "standardize"))
  if config.eval_refinements < config.num_refinements:
    raise trainer.ConfigError(f"config.eval_refinements={config.eval_refinements} is not allowed; expected at "
                              f"least config.num_refinements={config.num_refinements}")


BOTH = ("mnist", "smallnorb")
CONTEXT_MODELS = ("ns", "vhe", "vhe_vampprior")

MODELS: dict[str, Model] = {m.name: m for m in (
    Model("meta_vae", BOTH, MetaVAEOptions(), _build_meta_vae),
    Model("ns", BOTH, ContextOptions(), _build_context_model),
    Model("vhe", BOTH, ContextOptions(), _build_context_model),
    Model("vhe_vampprior", BOTH, ContextOptions(), _build_context_model),
    # Not in the paper: the MetaVAE with Marino et al.'s iterative inference, and the control whose encoder ignores D.
    Model("meta_vae_iterative", ("mnist",), None, _build_iterative, _check_iterative),
    Model("vae", ("mnist",), MetaVAEOptions(shared_decoder=True, query_only=True), _build_meta_vae),
)}
PAPER_MODELS = ("meta_vae", "ns", "vhe", "vhe_vampprior")

SWITCHES: tuple[Switch, ...] = (
    # The NS's and the VHEs' (in neither paper): with all three of the first, the set enters nothing but the
    # context's KL term; "concat" is the original MetaVAE code's way of joining x (or z) and c.
    Switch("latent_prior", ("learned", "standard"), CONTEXT_MODELS, BOTH,
           lambda o, v: o._replace(learned_prior=v == "learned"), "only the NS and the VHEs have a context c"),
    Switch("decoder_input", ("z_and_c", "z"), CONTEXT_MODELS, BOTH,
           lambda o, v: o._replace(decoder_reads_c=v == "z_and_c"), "only the NS and the VHEs have a context c"),
    Switch("encoder_input", ("x_and_c", "x"), CONTEXT_MODELS, BOTH,
           lambda o, v: o._replace(encoder_reads_c=v == "x_and_c"), "only the NS and the VHEs have a context c"),
    Switch("context_merge", CONTEXT_MERGES, CONTEXT_MODELS, BOTH,
           lambda o, v: o._replace(context_merge=v), "only the NS and the VHEs have a context c"),
    # The MetaVAE's: one decoder shared by every distribution; ELU where the original has ReLU (h keeps LeakyReLU).
    Switch("decoders", ("per_distribution", "shared"), ("meta_vae",), BOTH,
           lambda o, v: o._replace(shared_decoder=o.shared_decoder or v == "shared"),
           "only the MetaVAE has a decoder per distribution to share"),
    Switch("activation", ("relu", "elu"), ("meta_vae", "vae"), ("mnist",),
           lambda o, v: o._replace(activation=v), "only the MLP MetaVAE and the VAE have it"),
    # The original MetaVAE code's (docs/design.md section 2), to test whether they explain its weak baselines:
    # Bernoulli probabilities clamped to [1e-7, 1 - 1e-7]; the NS / VHE networks initialised xavier_normal with
    # gain sqrt 2 and zero biases.
    Switch("likelihood_clamp", ("none", "1e-7"), ("meta_vae", *CONTEXT_MODELS), ("mnist",),
           lambda o, v: o._replace(likelihood_clamp=0.0 if v == "none" else float(v)),
           "only the MLP models with a Bernoulli likelihood have it"),
    Switch("init", ("flax", "xavier_sqrt2"), CONTEXT_MODELS, ("mnist",),
           lambda o, v: o._replace(original_init=v == "xavier_sqrt2"), "only the NS and the VHEs have it"),
)


def check(config: ml_collections.ConfigDict) -> None:
  """Validates config.model and every switch: a known value, and the default unless the model has the switch."""
  trainer.check_choice(config, "model", list(MODELS))
  model = MODELS[config.model]
  if config.dataset not in model.datasets:
    raise trainer.ConfigError(f"config.model={config.model!r} is not allowed with config.dataset={config.dataset!r}; "
                              f"it is built for {list(model.datasets)}")
  for switch in SWITCHES:
    trainer.check_choice(config, switch.field, switch.choices)
  for switch in SWITCHES:
    if config[switch.field] != switch.default and (config.model not in switch.models
                                                   or config.dataset not in switch.datasets):
      raise trainer.ConfigError(f"config.{switch.field}={config[switch.field]!r} is not allowed with config.model="
                                f"{config.model!r} on {config.dataset!r}; {switch.why}")
  model.check(config)


def options(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The switches of config.model with their values, for results.json."""
  return {s.field: config[s.field] for s in SWITCHES if config.model in s.models}


def build_model(config: ml_collections.ConfigDict, examples_per_distribution: int | None = None) -> Any:
  """The model of `config`: the MLP models on flat MNIST images, or, for Small NORB, the same on the features of a
  conv trunk with conv decoders. `examples_per_distribution` is the |X| of the VHE's default context-KL weight
  1/|X| (the full dataset's when None)."""
  model = MODELS[config.model]
  applied = functools.reduce(lambda o, s: s.apply(o, config[s.field]),
                             [s for s in SWITCHES if config.model in s.models], model.options)
  return model.build(config, examples_per_distribution, applied)
