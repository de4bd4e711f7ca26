import numpy as np
import pytest

from focal import tasks
from focal.data import build
from focal.data.synthetic import SyntheticSuite


def test_synthetic_suite_round_trips_through_array_record(tmp_path):
  builder = build(SyntheticSuite(data_dir=str(tmp_path), num_per_task=3, seed=1,
                                 task_names=["keywords", "sort"]))
  for split in ("train", "eval"):
    source = builder.as_data_source(split)
    assert len(source) == 6
    records = [source[i] for i in range(len(source))]
    for name in ("keywords", "sort"):
      task = tasks.get(name)
      expected = task.make_prompts(split, 3, seed=1)
      mine = [r for r in records if r["task"].decode() == name]
      for i, rec in enumerate(mine):
        np.testing.assert_array_equal(rec["grader_features"], expected.features[i])
        assert rec["prompt"].decode() == bytes(expected.tokens[i]).decode()
        assert rec["prompt_id"] == expected.prompt_ids[i]
        real = expected.mask[i]
        np.testing.assert_allclose(rec["criteria"]["weight"], expected.weights[i][real])
        np.testing.assert_array_equal(rec["criteria"]["category"], expected.categories[i][real])
        names = [t.decode() for t in rec["criteria"]["title"]]
        assert names == [c.name for c, m in zip(task.criteria, real) if m]


def test_unknown_task_name_fails_before_writing(tmp_path):
  with pytest.raises(ValueError, match="unknown task 'poems'"):
    SyntheticSuite(data_dir=str(tmp_path), task_names=["poems"])
  assert not any(tmp_path.iterdir())
