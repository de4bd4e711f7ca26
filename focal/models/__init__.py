"""Decoder-only transformer models (Llama 3.x / Qwen2 / Qwen3), scales and Hugging Face I/O.

The Hugging Face families a checkpoint may belong to are registered records
(`focal.models.families`): config.json names, fixed features, tensor names, partition rules.

HF checkpoints: `focal.models.pretrained.load_pretrained` (weights, tokenizer, chat template,
stop ids), `focal.models.hf_import.load_hf_checkpoint` (weights only, sharded),
`focal.models.hf_export.export_checkpoint`. Import them from their own modules (they are not
re-exported here).
"""
from focal.models.scales import (BOS_ID, BYTE_VOCAB_SIZE, EOS_ID, PAD_ID, SCALES, UNK_ID,
                                 get_scale, param_count)
from focal.models.transformer import (KVCache, ModelConfig, RopeScaling, Transformer,
                                      abstract_model, forward, init_cache, init_model,
                                      positions_from_mask, token_logprobs)

__all__ = [
    "BOS_ID", "BYTE_VOCAB_SIZE", "EOS_ID", "PAD_ID", "SCALES", "UNK_ID", "KVCache", "ModelConfig",
    "RopeScaling", "Transformer", "abstract_model", "forward", "get_scale", "init_cache",
    "init_model", "param_count", "positions_from_mask", "token_logprobs",
]
