"""Focal: GRPO for language models under rubric-based rewards, in JAX.

Installs the library (`focal`) only. The entry points (`python -m experiments.train`) and the
configs (`configs/`) run from a checkout's root, as the README shows; they are not installed as
top-level packages, whose names (`configs`, `experiments`) would collide with other projects.
The exact versions the tests and docs/RESULTS.md were produced with are in constraints.txt
(`pip install -e ".[test,hf]" -c constraints.txt`; refreshed by tools/refresh_constraints.sh).
"""
from setuptools import find_packages, setup

HF = ["tokenizers>=0.23", "safetensors>=0.8", "jinja2>=3.1.6"]

setup(
  name="focal",
  version="0.2.0",
  description="Rubric-reward aggregation (Focal Reward, POW3R, static baselines) and GRPO in JAX.",
  packages=find_packages(include=["focal", "focal.*"]),
  python_requires=">=3.11",
  install_requires=[
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "tensorflow-datasets>=4.9.10",
    "ml-collections>=1.1",
    "numpy>=2.1",
    "absl-py>=2.1",
    "grain>=0.2.18",
    "tqdm>=4.66",
    "matplotlib>=3.9",
    "tensorboardX>=2.6",
  ],
  extras_require={
    # Hugging Face checkpoints: tokenizer.json, safetensors, chat templates.
    "hf": HF,
    # Accelerators: the jax builds that bring libtpu or the CUDA plugins.
    "tpu": ["jax[tpu]>=0.10.2"],
    # experiments.plan: compiling for TPU slices on a machine without one needs libtpu, the
    # one that matches the installed jax exactly (jax[tpu]==X pins it); CI installs it.
    "plan": ["jax[tpu]==0.10.2"],
    "cuda": ["jax[cuda12]>=0.10.2"],
    # Experiment tracking (config.log.wandb).
    "wandb": ["wandb>=0.31"],
    # Everything the test suite imports, so that no test is skipped for a missing package.
    "test": ["pytest>=8", "pytest-xdist>=3.6", "hypothesis>=6", "nbclient>=0.10", "nbformat>=5.10",
             "ipykernel>=6.29", "wandb>=0.31"] + HF,
    # Mutation testing of the formula modules (tools/mutation.py; not part of the default suite).
    "mutation": ["cosmic-ray>=8.7"],
  },
)
