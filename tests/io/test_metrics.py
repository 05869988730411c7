"""metrics.json's one typed record: a file reads back as written, fields that do not apply stay out of it."""
import json

import pytest
from fake_metrics import fake_metrics

from specbasis.io.metrics import CLASSIFICATION_ONLY, FinetuneMetrics


def test_a_record_round_trips_through_its_file(tmp_path):
    record = fake_metrics()
    path = record.write(tmp_path)
    text = path.read_text()
    assert FinetuneMetrics.read(tmp_path) == record and FinetuneMetrics.read(path).to_dict() == json.loads(text)
    assert "image_size" not in json.loads(text) and "prefix_cache" not in json.loads(text)


def test_fields_that_do_not_apply_stay_out():
    regression = fake_metrics(task_type="regression", modality="image", max_length=None, image_size=32,
                              test_metric={"name": "pearson", "value": 0.5},
                              **dict.fromkeys(CLASSIFICATION_ONLY))
    keys = regression.to_dict()
    assert not set(CLASSIFICATION_ONLY) & set(keys) and "image_size" in keys and "max_length" not in keys
    assert FinetuneMetrics.from_dict(keys) == regression


def test_a_file_that_is_not_a_finetunes_is_refused_naming_it(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({**fake_metrics().to_dict(), "extra": 1}))
    with pytest.raises(ValueError, match=r"metrics.json: unknown key\(s\) extra"):
        FinetuneMetrics.read(tmp_path)
    data = fake_metrics().to_dict()
    del data["lr"]
    with pytest.raises(ValueError, match=r"missing key\(s\) lr"):
        FinetuneMetrics.from_dict(data)


def test_full_finetuning_is_told_by_the_counts():
    assert fake_metrics().trained_every_parameter
    assert not fake_metrics(parameter_counts={"trainable": 10, "adapter": 4, "head": 6, "base": 1000}
                            ).trained_every_parameter
