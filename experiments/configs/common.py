"""Fields every experiment's config shares (read by `experiments.trainer.fit` and the CLI)."""

import ml_collections

MODES = (None, "quick")


def training_config(mode: str | None, *, num_steps: int, learning_rate: float = 1e-3,
                    log_every: int = 100) -> ml_collections.ConfigDict:
  """A config holding the shared training fields; raises ValueError for a mode other than None or 'quick'."""
  if mode not in MODES:
    raise ValueError(f"unknown config mode {mode!r}; expected 'quick' or none")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.fast_compile = mode == "quick"  # True skips most XLA optimisation: quicker compiles, slower steps
  c.num_steps = num_steps
  c.learning_rate = learning_rate
  c.log_every = log_every
  c.checkpoint_every_seconds = 120.0
  # Optimiser fields (learning_rate, ...) a resume may deliberately change from the checkpoint's, e.g. after a
  # NaN: --config.resume_overrides="('learning_rate',)" with the new value. No other trained field can change.
  c.resume_overrides = ()
  # Multi-host: run the same command on every host; True calls jax.distributed.initialize() first.
  c.distributed = False
  return c


def data_config() -> ml_collections.ConfigDict:
  """Where tensorflow-datasets prepares a dataset, and the directory of its original files (None downloads)."""
  data = ml_collections.ConfigDict()
  data.manual_dir = ml_collections.FieldReference(None, field_type=str)
  data.data_dir = "workdirs/tensorflow_datasets"
  return data
