"""Flax (Linen) networks of the MetaVAE and its baselines (the `models` extra), one file per family:

- `layers`: `MLP`, `gaussian_from_params`, `init_stacked` (the per-distribution decoder bank), `leaky_relu`;
- `mlp`: the MetaVAE's MLP networks (`SummaryNetwork`, `MetaInferenceNetwork`, `Encoder`, `QueryOnlyInference`,
  `Decoder`);
- `context`: the NS and VHE statistic networks (`ContextPosterior`, `LatentPosterior`, `LatentPrior`,
  `StatisticianDecoder`) and how an input meets a context (`join_context`, `embed_with_context`);
- `conv`: the conv trunk and decoders for 32 x 32 images (`ConvEncoder`, `BatchStatNorm`, `ConvDecoder`,
  `ConvContextDecoder`);
- `iterative`: Marino et al.'s `IterativeEncoder`.

Linen's `init` / `apply` keeps parameters as plain pytrees, which is what the objectives and the per-distribution
decoder bank (parameters stacked on a leading axis, applied with `jax.vmap`) want. Sizes default to the original
code's (docs/design.md). Size arguments have one type per name: `hidden` and `features` are sequences of layer
widths; `width`, `wide`, `latent_dim`, `context_dim` and `output_dim` are ints. Every name is importable from
`meta_amortized.networks` itself.
"""

from meta_amortized.networks.context import (
  CONTEXT_MERGES,
  ContextPosterior,
  LatentPosterior,
  LatentPrior,
  StatisticianDecoder,
  embed_with_context,
  join_context,
)
from meta_amortized.networks.conv import BatchStatNorm, ConvContextDecoder, ConvDecoder, ConvEncoder
from meta_amortized.networks.iterative import IterativeEncoder
from meta_amortized.networks.layers import MLP, gaussian_from_params, init_stacked, leaky_relu, reinitialize_dense
from meta_amortized.networks.mlp import Decoder, Encoder, MetaInferenceNetwork, QueryOnlyInference, SummaryNetwork

__all__ = [
    "CONTEXT_MERGES",
    "MLP",
    "BatchStatNorm",
    "ContextPosterior",
    "ConvContextDecoder",
    "ConvDecoder",
    "ConvEncoder",
    "Decoder",
    "Encoder",
    "IterativeEncoder",
    "LatentPosterior",
    "LatentPrior",
    "MetaInferenceNetwork",
    "QueryOnlyInference",
    "StatisticianDecoder",
    "SummaryNetwork",
    "embed_with_context",
    "gaussian_from_params",
    "init_stacked",
    "join_context",
    "leaky_relu",
    "reinitialize_dense",
]
