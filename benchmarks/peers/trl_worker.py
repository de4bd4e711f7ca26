"""TRL's GRPOTrainer on one shape of `shapes.py`, timed per iteration for `vs_peers.py`.

Runs in its own environment (docs/PERFORMANCE.md):
  python -m venv /work/venvs/trl && /work/venvs/trl/bin/pip install torch==2.13.0 trl transformers
  /work/venvs/trl/bin/python benchmarks/peers/trl_worker.py --shape 0.11M
then reads 'run K' lines on stdin and answers each with the K iteration times (shapes.emit).
Offline: a randomly initialised LlamaForCausalLM from a config, the local byte tokenizer, no hub.
One iteration is one optimizer step: generate 8 x 8 completions (min_new_tokens forces all 32
tokens), grade, advantages, one update (beta = 0, num_iterations = 1, loss_type 'grpo',
no activation checkpointing).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shapes  # noqa: E402


def build_model(shape: dict):
  from transformers import LlamaConfig, LlamaForCausalLM
  config = LlamaConfig(vocab_size=shapes.VOCAB_SIZE, hidden_size=shape["d_model"],
                       intermediate_size=shape["d_ff"], num_hidden_layers=shape["n_layers"],
                       num_attention_heads=shape["n_heads"],
                       num_key_value_heads=shape["n_kv_heads"], head_dim=shapes.head_dim(shape),
                       max_position_embeddings=shapes.PROMPT_LEN + shapes.COMPLETION_LEN,
                       tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
                       pad_token_id=shapes.PAD_ID, bos_token_id=shapes.BOS_ID,
                       eos_token_id=shapes.EOS_ID)
  return LlamaForCausalLM(config)


class Timer:
  """A TrainerCallback that times each optimizer step and takes commands between steps."""

  def __init__(self, warmup: int, build_s: float, meta: dict):
    self.warmup, self.build_s, self.meta = warmup, build_s, meta
    self.steps, self.todo, self.times, self.last = 0, 0, [], None
    self.commands = shapes.commands()

  def on_step_end(self, args, state, control, **kwargs):
    now = time.perf_counter()
    self.steps += 1
    if self.steps <= self.warmup:
      if self.steps == self.warmup:
        shapes.emit({"event": "ready", "build_s": time.perf_counter() - self.build_s, **self.meta})
        self._next(control)
      return control
    self.times.append(now - self.last)
    if len(self.times) == self.todo:
      shapes.emit({"event": "times", "seconds": self.times})
      self._next(control)
    else:
      self.last = time.perf_counter()
    return control

  def _next(self, control):
    """Blocks until the driver's next command; stops training on 'quit' or end of input."""
    self.todo, self.times = next(self.commands, 0), []
    if not self.todo:
      control.should_training_stop = True
    self.last = time.perf_counter()

  # The other TrainerCallback events are no-ops.
  def __getattr__(self, name):
    if name.startswith("on_"):
      return lambda *args, **kwargs: None
    raise AttributeError(name)


def main(argv=None):
  args = shapes.worker_args(__doc__, argv)
  start = time.perf_counter()

  import datasets
  import torch
  import transformers
  import trl
  from trl import GRPOConfig, GRPOTrainer

  import byte_tokenizer
  torch.manual_seed(0)
  tokenizer = byte_tokenizer.build()
  model = build_model(shapes.SHAPES[args.shape])
  n = shapes.NUM_PROMPTS * shapes.GROUP_SIZE
  config = GRPOConfig(
      output_dir=tempfile.mkdtemp(prefix="trl_bench_"), use_cpu=True, report_to="none",
      per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=1,
      num_generations=shapes.GROUP_SIZE, max_completion_length=shapes.COMPLETION_LEN,
      generation_kwargs={"min_new_tokens": shapes.COMPLETION_LEN}, temperature=1.0, top_k=0,
      top_p=1.0, beta=0.0, num_iterations=1, loss_type="grpo", learning_rate=shapes.LEARNING_RATE,
      max_grad_norm=shapes.GRAD_CLIP, max_steps=10 ** 6, save_strategy="no",
      logging_steps=10 ** 6, disable_tqdm=True, seed=0, bf16=False, fp16=False,
      dataloader_num_workers=0,
      # TRL turns activation checkpointing on by default; the others keep activations, and so
      # does TRL here (recomputing them would cost it a third more compute).
      gradient_checkpointing=False)
  dataset = datasets.Dataset.from_dict({"prompt": shapes.prompt_texts()})

  def reward(completions, **kwargs):
    return [shapes.reward(c) for c in completions]

  meta = {"peer": "trl", "shape": args.shape, "threads": torch.get_num_threads(),
          "versions": {"trl": trl.__version__, "torch": torch.__version__,
                       "transformers": transformers.__version__},
          "params": sum(p.numel() for p in model.parameters())}
  trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                        processing_class=tokenizer, callbacks=[Timer(args.warmup, start, meta)])
  trainer.train()


if __name__ == "__main__":
  main()
