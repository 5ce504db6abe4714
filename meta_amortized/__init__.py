"""Meta-amortized variational inference in JAX (Wu et al. 2020; Marino et al. 2018).

The core needs only JAX and NumPy: `distributions`, `objectives`, `iterative` (the pure functions of iterative
inference), `sampling` and `sharding`. The Flax networks and models (`networks`, `metavae`, `statistician`,
`conv`) and the Optax training step and probe (`training`, `probe`) come with the `models` extra:
`pip install "meta_amortized[models]"`. Submodules load when first used, so importing the package, or one
of its core modules, loads neither Flax nor Optax.

Examples:
  >>> import meta_amortized
  >>> from meta_amortized import objectives
  >>> isinstance(meta_amortized.__version__, str)
  True
"""

import importlib

__version__ = "0.2.0"

_SUBMODULES = ("conv", "distributions", "iterative", "metavae", "networks", "objectives", "probe", "sampling",
               "sharding", "statistician", "training")
_MODELS = {"MetaVAE": "metavae", "IterativeMetaVAE": "metavae", "NeuralStatistician": "statistician",
           "VariationalHomoencoder": "statistician", "ConvModel": "conv"}

__all__ = ["__version__", *_SUBMODULES, *_MODELS]


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name in _MODELS:
    return getattr(importlib.import_module(f"{__name__}.{_MODELS[name]}"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(__all__)
