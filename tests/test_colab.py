"""experiments/colab.ipynb runs end to end on CPU (its install cell aside) and shows the experiment's figure."""

import json
import os
import pathlib

import nbformat
from nbclient import NotebookClient

from tests.conftest import MNIST_MANUAL_DIR

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_colab_notebook_runs_the_quick_rotation_experiment(tmp_path, mnist_data_dir, monkeypatch):
  notebook = nbformat.read(ROOT / "experiments" / "colab.ipynb", as_version=4)
  notebook.cells = [c for c in notebook.cells if "install" not in c.metadata.get("tags", [])]
  monkeypatch.setenv("MNIST_MANUAL_DIR", str(MNIST_MANUAL_DIR))
  monkeypatch.setenv("TFDS_DATA_DIR", str(mnist_data_dir))
  monkeypatch.setenv("NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  text = "".join(o.get("text", "") for o in outputs)
  assert "backend: cpu" in text and "mean unseen accuracy" in text
  assert any("image/png" in o.get("data", {}) for o in outputs)
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert f"mean unseen accuracy {results['mean_test_accuracy']:.3f}" in text
