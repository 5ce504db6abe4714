"""The documentation site builds with warnings as errors: a broken link, a missing page or a docstring the API
reference cannot render fails here."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strictly(tmp_path):
  done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert done.returncode == 0, done.stderr[-4000:]
  api = (tmp_path / "site" / "api" / "index.html").read_text()
  assert 'id="meta_amortized.objectives.meta_elbo"' in api  # the reference is generated from the docstrings
  assert "<blockquote>" not in api  # doctest examples render as code, not as quoted text
