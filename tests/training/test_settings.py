"""The one dataclass of a finetune's settings, against the schema that checks the config's training keys."""
import pytest

from specbasis.config import load_schema
from specbasis.training.settings import CONFIG_KEYS, FinetuneSettings

BASE = dict(batch_size=8, lr=1e-3, weight_decay=0.0, warmup_frac=0.1)


def test_the_schemas_training_keys_are_the_dataclasss():
    schema = load_schema()
    assert set(schema["$defs"]["train_settings"]["properties"]) == set(CONFIG_KEYS)


def test_epochs_become_steps_over_the_training_split():
    s = FinetuneSettings(epochs=2.5, **BASE).for_train_split(100)
    assert (s.steps, s.epochs, s.eval_every) == (32, None, 32)  # ceil(2.5 * 100 / 8)
    assert FinetuneSettings(steps=10, **BASE).for_train_split(5).eval_every == 10  # default: evaluate at the end
    assert FinetuneSettings.from_mapping({"steps": 10, "epochs": 1, **BASE}).epochs == 1  # epochs replace steps
    assert FinetuneSettings(steps=10, **BASE).warmup_steps == 1


@pytest.mark.parametrize("change, message", [
    ({}, "give exactly one"),
    ({"steps": 0}, "steps=0: want an integer >= 1"),
    ({"steps": 5, "lr": 0}, "lr=0: want > 0"),
    ({"steps": 5, "batch_size": True}, "batch_size=True: want an integer >= 1"),
    ({"steps": 5, "warmup_frac": 2}, "warmup_frac=2: want 0 <= warmup_frac <= 1"),
    ({"steps": 5, "eval_every": 0}, "eval_every=0: want an integer >= 1"),
])
def test_bad_settings_are_refused_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        FinetuneSettings(**{**BASE, **change})


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown key\\(s\\) stepz; allowed: batch_size"):
        FinetuneSettings.from_mapping({"stepz": 3, **BASE})
