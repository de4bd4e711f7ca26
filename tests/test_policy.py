"""focal.policy: the model block's compute fields (remat, attention, logits_chunk) reach the
ModelConfig keywords, default for runs saved before they existed, and are checked."""
import ml_collections
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


def test_runs_saved_before_the_compute_fields_get_their_defaults():
  old = ml_collections.ConfigDict({"model": {"scale": "tiny", "checkpoint": "", "dtype": "float32",
                                             "param_dtype": "float32"}})
  assert policy.compute_fields(old) == {"remat": "none", "attention": "auto", "logits_chunk": 0}
  named = ml_collections.ConfigDict({"model": "small"})
  assert policy.model_fields(named)["remat"] == "none"


@pytest.mark.parametrize("field,value,message", [
    ("remat", "everything", r"config.model.remat must be one of \('none', 'block', 'dots'\)"),
    ("attention", "flash", r"config.model.attention must be one of"),
    ("logits_chunk", -1, r"config.model.logits_chunk must be an int >= 0")])
def test_bad_compute_fields_are_refused(field, value, message):
  config = get_config()
  config.model[field] = value
  with pytest.raises(ValueError, match=message):
    policy.check_model(config)
