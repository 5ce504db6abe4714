"""Imports of the optional dependencies, failing with the name of the extra that installs them."""

import importlib
from types import ModuleType

EXTRA = "models"


def require(module: str, *, needed_by: str) -> ModuleType:
  """`importlib.import_module(module)`, or an ImportError saying which extra installs it."""
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as error:
    raise ImportError(f"{needed_by} needs {module.split('.')[0]}, which the '{EXTRA}' extra installs: "
                      f"pip install \"meta_amortized[{EXTRA}]\"") from error
