"""focal.policy: the model block's compute fields (remat, attention, logits_chunk) reach the
ModelConfig keywords and are checked; the abstract policy evaluation restores onto is the built
policy's structure."""
import pytest

from configs.base import get_config
from focal import policy
from focal.models import get_scale


def test_compute_fields_come_from_the_model_block_and_build_the_model():
  config = get_config()
  config.model.remat = "dots"
  config.model.logits_chunk = 256
  fields = policy.compute_fields(config)
  assert fields == {"remat": "dots", "attention": "auto", "logits_chunk": 256}
  model = get_scale(config.model.scale, **fields)
  assert (model.remat, model.attention, model.logits_rows) == ("dots", "auto", 256)


@pytest.mark.parametrize("field,value,message", [
    ("remat", "everything", r"config.model.remat must be one of \('none', 'block', 'dots'\)"),
    ("attention", "flash", r"config.model.attention must be one of"),
    ("logits_chunk", -1, r"config.model.logits_chunk must be an int >= 0")])
def test_bad_compute_fields_are_refused(field, value, message):
  config = get_config()
  config.model[field] = value
  with pytest.raises(ValueError, match=message):
    policy.check_model(config)


def test_the_abstract_policy_is_the_built_ones_structure(tmp_path):
  """What evaluation restores a checkpoint onto: the graphdef and parameter shapes of the policy
  the run built, without reading its weights; the context check holds there too."""
  import types

  import jax

  from chat_checkpoint import make_chat_checkpoint
  source = types.SimpleNamespace(width=24)
  config = get_config("tiny")
  config.model.checkpoint = make_chat_checkpoint(str(tmp_path / "qwen3"))
  graphdef, params, _ = policy.init_policy(config, source, 8, progress=False)
  abstract_graphdef, abstract = policy.abstract_policy(config, source, 8)
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert abstract_graphdef == graphdef and shapes(abstract) == shapes(params)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
  with pytest.raises(ValueError, match="exceed the checkpoint's context of 1024"):
    policy.abstract_policy(config, types.SimpleNamespace(width=1020), 8)
  # A scale's context is sized to the prompts plus the responses.
  assert policy.model_config(get_config("tiny"), source, 40) == get_scale("tiny", max_seq_len=64)
