"""The package as a user installs and imports it: a light core, extras named when missing, a clean wheel."""

import json
import pathlib
import subprocess
import sys
import zipfile

import pytest

import meta_amortized

REPO = pathlib.Path(__file__).resolve().parents[1]
CORE = ("meta_amortized", "meta_amortized.distributions", "meta_amortized.objectives", "meta_amortized.iterative",
        "meta_amortized.sampling", "meta_amortized.sharding")


def _run(code: str) -> str:
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_the_core_loads_neither_flax_nor_optax():
  loaded = json.loads(_run(
      "import json, sys\n" + "".join(f"import {m}\n" for m in CORE)
      + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"))
  assert not {"flax", "optax", "orbax", "tensorflow", "ml_collections", "chex"} & set(loaded), loaded
  assert "jax" in loaded


def test_the_models_without_their_extra_fail_naming_it():
  # A finder that hides flax and optax, as an environment installed without the extra.
  blocker = ("import sys\nclass Block:\n  def find_spec(self, name, path=None, target=None):\n"
             "    if name.split('.')[0] in ('flax', 'optax'): raise ModuleNotFoundError(name)\n"
             "sys.meta_path.insert(0, Block())\n")
  for module, missing in (("networks", "flax"), ("metavae", "flax"), ("training", "optax"), ("probe", "optax")):
    out = _run(blocker + f"try:\n  import meta_amortized.{module}\nexcept ImportError as e:\n  print(e)\n")
    assert f"needs {missing}, which the 'models' extra installs" in out, (module, out)
    assert 'pip install "meta_amortized[models]"' in out
  assert _run(blocker + "from meta_amortized import objectives; print(objectives.elbo.__name__)").strip() == "elbo"


def test_version_and_lazy_attributes():
  assert meta_amortized.__version__.count(".") == 2
  assert meta_amortized.MetaVAE.__name__ == "MetaVAE"
  with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
    meta_amortized.nothing  # noqa: B018


def test_the_wheel_holds_the_library_alone(tmp_path):
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                  str(REPO)], check=True, capture_output=True)
  (wheel,) = tmp_path.glob("meta_amortized-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert {n.split("/")[0] for n in names} == {"meta_amortized", f"{wheel.name.split('-py')[0]}.dist-info"}
  assert "meta_amortized/py.typed" in names
  metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
  requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
  assert sorted(r.split()[1].split(">")[0].split("=")[0] for r in requires) == ["jax", "numpy"]
  assert len(metadata) < 20_000  # a short long description, not the docs
  assert "License: Apache-2.0" in metadata and any(n.endswith(".dist-info/LICENSE") or
                                                  n.endswith(".dist-info/licenses/LICENSE") for n in names)
