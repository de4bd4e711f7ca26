"""notebooks/quickstart.ipynb runs top to bottom, headless, on the tiny preset."""
import json
import os

import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def with_parameters(nb, **params):
  """Appends assignments to the cell tagged 'parameters', as papermill would inject them."""
  cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
  cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
  return nb


def test_quickstart_runs_on_the_tiny_preset(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  workdir = tmp_path / "runs"
  with_parameters(nb, PRESET="tiny", STEPS=2, WORKDIR=str(workdir),
                  CACHE_DIR=str(tmp_path / "cache"))
  # Raises CellExecutionError, naming the cell, if any cell fails.
  NotebookClient(nb, kernel_name="python3", timeout=600,
                 resources={"metadata": {"path": REPO}}).execute()

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "backend: cpu" in text
  assert "weighted_sum" in text and "worst category pass rate" in text
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2  # per-category curves and the aggregator comparison
  for name in ("weighted_sum", "focal"):
    with open(workdir / name / "metrics.jsonl") as f:
      steps = [json.loads(line)["step"] for line in f]
    assert steps == [0, 1, 2], name
  # The source notebook stays the real-run version; the test only edits its in-memory copy.
  source = nbformat.read(NOTEBOOK, as_version=4)
  assert "PRESET = None" in source.cells[1].source
