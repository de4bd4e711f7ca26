"""Qwen3: Llama with an RMSNorm on each query and key head before RoPE; Qwen3Config's head_dim
defaults to 128 rather than hidden_size / heads."""
from focal.models.families.base import Family, register

QWEN3 = register(Family(
    model_type="qwen3",
    architectures=("Qwen3ForCausalLM",),
    qk_norm=True,
    default_head_dim=128,
    hf_fields={"use_sliding_window": False, "sliding_window": None,
               "max_window_layers": lambda config: config.n_layers, "attention_bias": False},
    infer=True,
))
