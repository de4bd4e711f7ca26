"""notebooks/quickstart.ipynb runs top to bottom, headless, on the tiny preset: in this
environment (Focal already importable, one CPU device), and (slow) through its install cell in
a fresh virtual environment that holds only jax and Jupyter, as a Colab runtime does, on 8
simulated devices."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")
CONSTRAINTS = os.path.join(REPO, "constraints.txt")
# A cell appended after the notebook's own: did anything import pyplot (and so pick a backend)?
PYPLOT_CHECK = 'import sys\nprint("pyplot imported:", "matplotlib.pyplot" in sys.modules)'


def with_parameters(nb, **params):
  """Appends assignments to the cell tagged 'parameters', as papermill would inject them."""
  cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
  cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
  nb.cells.append(nbformat.v4.new_code_cell(PYPLOT_CHECK))
  return nb


def tiny_notebook(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  return with_parameters(nb, PRESET="tiny", STEPS=2, WORKDIR=str(tmp_path / "runs"),
                         CACHE_DIR=str(tmp_path / "cache"))


def stream_text(nb) -> str:
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def check_executed(nb, workdir, devices: int, prompts_per_step: int) -> str:
  """The outputs and run directories of an executed tiny-preset notebook; returns its text."""
  text = stream_text(nb)
  assert f"backend: cpu  devices: {devices} x cpu" in text
  assert (f"mesh (data, fsdp, tensor) = ({devices}, 1, 1); {prompts_per_step} prompts per step"
          in text)
  assert "WARNING" not in text  # this machine has no accelerator, so CPU is no fallback
  assert "weighted_sum" in text and "strict completion" in text
  assert "pyplot imported: False" in text
  # The run re-read from its directory: the loop's own evaluation, and an exported policy.
  assert "step 2 re-evaluated; equals the loop's final evaluation: True" in text
  assert "exported step 2 of " in text and "model.safetensors" in text
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2  # per-category curves and the aggregator comparison
  for name in ("weighted_sum", "focal"):
    with open(os.path.join(workdir, name, "metrics.jsonl")) as f:
      steps = [json.loads(line)["step"] for line in f]
    assert steps == [0, 1, 2], name
    with open(os.path.join(workdir, name, "config.json")) as f:
      saved = json.load(f)
    assert saved["data"]["prompts_per_step"] == prompts_per_step
    assert saved["provenance"]["mesh_shape"] == [devices, 1, 1]
  return text


@pytest.mark.slow  # about 20-40 s; the default suite keeps under 15 min on CI
def test_quickstart_runs_on_the_tiny_preset(tmp_path):
  nb = tiny_notebook(tmp_path)
  # Raises CellExecutionError, naming the cell, if any cell fails.
  NotebookClient(nb, kernel_name="python3", timeout=600,
                 resources={"metadata": {"path": REPO}}).execute()
  text = check_executed(nb, tmp_path / "runs", devices=1, prompts_per_step=4)
  assert "installing Focal" not in text  # focal was importable: nothing installed
  # The source notebook stays the real-run version; the test only edits its in-memory copy.
  source = nbformat.read(NOTEBOOK, as_version=4)
  assert "PRESET = None" in source.cells[1].source
  assert source.metadata["accelerator"] == "TPU"  # Colab opens it on a TPU runtime


def test_mesh_and_batch_use_every_device_with_a_dividing_batch():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  cell = next(c.source for c in nb.cells if "def mesh_and_batch" in c.source)
  start = cell.index("def mesh_and_batch")
  scope = {"math": __import__("math")}
  exec(cell[start:cell.index("\n\n\n", start)], scope)  # the function alone, no device query
  for devices in (1, 2, 4, 8, 16, 32):
    for batch in (1, 4, 6, 12, 16, 32):
      mesh, rounded = scope["mesh_and_batch"](devices, batch)
      assert mesh == (devices, 1, 1)
      assert rounded % devices == 0 and batch <= rounded < batch + devices


def test_install_source_errors_say_what_to_set(tmp_path, monkeypatch):
  """An unclonable URL (the default repository unreachable, a typo) or a folder that is no
  checkout is a RuntimeError naming FOCAL_SOURCE, not git's exit status alone."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  cell = next(c.source for c in nb.cells if "def checkout_of" in c.source)
  scope = {}
  for name in ("find_checkout", "checkout_of"):
    start = cell.index(f"def {name}")
    exec(cell[start:cell.index("\n\n\n", start)], {**scope, "os": os, "subprocess": subprocess},
         scope)
  monkeypatch.chdir(tmp_path)
  missing = (tmp_path / "nowhere.git").as_uri()
  with pytest.raises(RuntimeError, match="could not clone .*Set FOCAL_SOURCE"):
    scope["checkout_of"](missing)
  assert not (tmp_path / "nowhere").exists()
  with pytest.raises(RuntimeError, match="is not a Focal checkout"):
    scope["checkout_of"](str(tmp_path))
  assert scope["checkout_of"](REPO) == REPO


def copy_checkout(dst) -> str:
  """The working tree as a fresh runtime would clone it (no runs, caches or build output)."""
  ignore = shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info", "build",
                                  ".pytest_cache", ".hypothesis")
  shutil.copytree(REPO, dst, ignore=ignore)
  return str(dst)


EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
  NotebookClient(nb, kernel_name="python3", timeout=1200,
                 resources={"metadata": {"path": sys.argv[3]}}).execute()
finally:
  nbformat.write(nb, sys.argv[2])
"""


@pytest.mark.slow
def test_quickstart_installs_focal_in_a_fresh_environment(tmp_path):
  """Only jax and Jupyter preinstalled (pinned by constraints.txt, as the runtime's jax is by
  Colab); the notebook's install cell installs Focal from the checkout it sits in, keeping
  that jax, with constraints.txt applied through PIP_CONSTRAINT; 8 simulated CPU devices."""
  assert os.path.exists(CONSTRAINTS), "constraints.txt is missing from the repository root"
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
  python = str(venv / "bin" / "python")
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  env.update(PIP_CONSTRAINT=CONSTRAINTS, PIP_DISABLE_PIP_VERSION_CHECK="1",
             XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
  subprocess.run([python, "-m", "pip", "install", "-q", "jax", "jaxlib", "nbclient", "nbformat",
                  "ipykernel"], check=True, env=env, timeout=1200)
  checkout = copy_checkout(tmp_path / "focal")
  nb_in, nb_out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
  nbformat.write(tiny_notebook(tmp_path), str(nb_in))
  run = subprocess.run([python, "-c", EXECUTE, str(nb_in), str(nb_out), checkout], env=env,
                       capture_output=True, text=True, timeout=2400)
  nb = nbformat.read(str(nb_out), as_version=4)
  assert run.returncode == 0, (run.stderr[-3000:], stream_text(nb)[-3000:])
  text = check_executed(nb, tmp_path / "runs", devices=8, prompts_per_step=8)
  versions = subprocess.run([python, "-m", "pip", "freeze"], env=env, capture_output=True,
                            text=True, check=True).stdout
  jax_pins = sorted(line for line in open(CONSTRAINTS).read().splitlines()
                    if line.startswith(("jax==", "jaxlib==")))
  assert f"installing Focal from {checkout}, keeping {', '.join(jax_pins)}" in text
  assert f"focal from {os.path.join(checkout, 'focal')}" in text
  for pin in jax_pins:
    assert pin in versions.splitlines()  # the preinstalled jax was kept
