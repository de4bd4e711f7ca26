"""Qwen2 / Qwen2.5: Llama with biases on the q/k/v projections (and no 'attention_bias' field)."""
from focal.models.families.base import Family, register

QWEN2 = register(Family(
    model_type="qwen2",
    architectures=("Qwen2ForCausalLM",),
    qkv_bias=True,
    attention_bias_field=False,
    hf_fields={"use_sliding_window": False, "sliding_window": None,
               "max_window_layers": lambda config: config.n_layers},
    infer=True,
))
