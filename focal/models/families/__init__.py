"""Model families: one `Family` record per Hugging Face architecture the transformer computes.

    family = families.from_hf(config_json)     # import: model_type / architectures -> record
    family = families.of_config(model_config)  # export: ModelConfig.family, or by features

A record says everything family-specific that import, export and loading read: config.json's
names, the features the family fixes, its tensor names and partition rules (see `Family`).
Each family registers itself in its own module; a built-in one adds its import line below, and
any other module can register one too (tests/test_family_example.py does, in one module).
"""
from focal.models.families.base import (FAMILIES, FEATURES, Family, by_architecture, from_hf,
                                        get, names, of_config, register)
from focal.models.families.layout import LLAMA_LAYOUT, Layout, hf_tensor_name, hf_tensors

# The built-in families register themselves; a new one adds its import here.
from focal.models.families import llama, qwen2, qwen3  # noqa: E402,F401

__all__ = ["FAMILIES", "FEATURES", "LLAMA_LAYOUT", "Family", "Layout", "by_architecture",
           "from_hf", "get", "hf_tensor_name", "hf_tensors", "names", "of_config", "register"]
