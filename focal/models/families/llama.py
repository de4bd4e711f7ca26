"""Llama 3.x (and Llama 2): no q/k/v biases, no q/k norms; Llama 3.1+ scales RoPE (rope_type
'llama3', read for every family by focal.models.hf_config)."""
from focal.models.families.base import Family, register

LLAMA = register(Family(
    model_type="llama",
    architectures=("LlamaForCausalLM",),
    hf_fields={"attention_bias": False, "mlp_bias": False},
    infer=True,
))
