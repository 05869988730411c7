"""specbasis.labels: the order of a checkpoint's logits, from tables of id2label as real hub configs have them.

Each id2label below is copied from the config.json of the named checkpoint as stored hub pages show it
(the revision where it changed over time); the label orders of textattack's checkpoints, whose configs
say nothing, are TextAttack's own (its dataset_args: MNLI label_map [1, 2, 0], the others none)."""
import logging

import numpy as np
import pytest

from specbasis.labels import LabelOrderError, head_names, logit_order, normalize

MNLI = ["entailment", "neutral", "contradiction"]  # GLUE's ClassLabel order (datasets' glue.py)
QNLI = ["entailment", "not_entailment"]
SST2 = ["negative", "positive"]
COLA = ["unacceptable", "acceptable"]

CASES = [  # model, config.json's id2label, dataset classes, order (logits[:, order] is in class order)
    ("typeform/distilbert-base-uncased-mnli (main)", {"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"},
     MNLI, [0, 1, 2]),
    ("typeform/distilbert-base-uncased-mnli@75d12f3", {"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"},
     MNLI, [2, 1, 0]),
    ("aloxatel/bert-base-mnli (label2id is LABEL_i: ignored)", {"0": "contradiction", "1": "entailment",
                                                                "2": "neutral"}, MNLI, [1, 2, 0]),
    ("huggingface/distilbert-base-uncased-finetuned-mnli", {"0": "contradiction", "1": "entailment", "2": "neutral"},
     MNLI, [1, 2, 0]),
    ("gchhablani/bert-base-cased-finetuned-mnli", {"0": "entailment", "1": "neutral", "2": "contradiction"},
     MNLI, [0, 1, 2]),
    ("NbAiLab/nb-bert-base-mnli", {"0": "contradiction", "1": "neutral", "2": "entailment"}, MNLI, [2, 1, 0]),
    ("mfuntowicz/bert-base-cased-finetuned-sst2 (int keys)", {0: "NEGATIVE", 1: "POSITIVE"}, SST2, [0, 1]),
    ("written differently", {"0": "Not-Entailment", "1": "ENTAILMENT"}, QNLI, [1, 0]),
    ("cola, GLUE names", {"0": "unacceptable", "1": "acceptable"}, COLA, [0, 1]),
]


@pytest.mark.parametrize("model,id2label,classes,order", CASES, ids=[c[0] for c in CASES])
def test_order_from_id2label(model, id2label, classes, order):
    config = {"architectures": ["BertForSequenceClassification"], "id2label": id2label,
              "label2id": {"LABEL_0": 0}}  # label2id is never read (some configs' disagrees with id2label)
    assert logit_order(config, classes, model=model) == order
    logits = np.eye(len(classes))  # example i: logit i is the largest
    predicted = [classes[k] for k in logits[:, order].argmax(1)]  # reordered: argmax is a dataset label
    assert [normalize(c) for c in predicted] == [normalize(n) for n in head_names(config, model=model)]


REFUSED = [  # model, config.json, classes, what the error says
    ("prajjwal1/bert-tiny-mnli", {"id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}}, MNLI,
     "has generic names"),
    ("TehranNLP-org/bert-base-uncased-cls-mnli", {"id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}},
     MNLI, "has generic names"),
    ("textattack/bert-base-uncased-QQP (no id2label)", {"finetuning_task": "qqp", "model_type": "bert"},
     ["not_duplicate", "duplicate"], "has no id2label"),
    ("fabriceyhc/bert-base-uncased-imdb", {"id2label": {"0": "neg", "1": "pos"}}, SST2,
     "names ['neg', 'pos'] that are not the dataset's classes ['negative', 'positive']"),
    ("half generic", {"id2label": {"0": "LABEL_0", "1": "positive"}}, SST2, "has generic names"),
    ("an MNLI head on QNLI", {"id2label": {"0": "entailment", "1": "neutral", "2": "contradiction"}}, QNLI,
     "has 3 outputs ['entailment', 'neutral', 'contradiction'], the dataset 2 classes"),
    ("twice", {"id2label": {"0": "Entailment", "1": "entailment"}}, QNLI, "names a class twice"),
    ("holes", {"id2label": {"0": "negative", "2": "positive"}}, SST2, "keys [0, 2] are not 0..1"),
]


@pytest.mark.parametrize("model,config,classes,says", REFUSED, ids=[r[0] for r in REFUSED])
def test_unusable_id2label_is_refused_naming_the_model(model, config, classes, says):
    with pytest.raises(LabelOrderError) as info:
        logit_order(config, classes, model=model)
    message = str(info.value)
    assert message.startswith(f"{model}: ") and says in message
    if "not a model of this task" not in message and "keys" not in message:
        assert f"labels: [{', '.join(classes)}]" in message  # says what to write in the config


EXPLICIT = [  # model, config.json, its `labels:` in the workflow config, classes, order
    ("textattack/bert-base-uncased-MNLI", {"id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}},
     ["contradiction", "entailment", "neutral"], MNLI, [1, 2, 0]),
    ("textattack/bert-base-uncased-QNLI", {"model_type": "bert"}, ["entailment", "not_entailment"], QNLI, [0, 1]),
    ("textattack/bert-base-uncased-SST-2", {"model_type": "bert"}, ["NEGATIVE", "POSITIVE"], SST2, [0, 1]),
    ("textattack/bert-base-uncased-CoLA", {"model_type": "bert", "num_labels": 2}, COLA, COLA, [0, 1]),
]


@pytest.mark.parametrize("model,config,labels,classes,order", EXPLICIT, ids=[e[0] for e in EXPLICIT])
def test_explicit_labels_give_the_order(model, config, labels, classes, order):
    assert logit_order(config, classes, model=model, labels=labels) == order


def test_explicit_labels_win_over_id2label_with_a_warning(caplog):
    config = {"id2label": {"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"}}
    with caplog.at_level(logging.WARNING, logger="specbasis.labels"):
        assert logit_order(config, MNLI, model="m", labels=["entailment", "neutral", "contradiction"]) == [0, 1, 2]
    assert "overrides config.json's id2label" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="specbasis.labels"):
        logit_order(config, MNLI, model="m", labels=["Contradiction", "neutral", "entailment"])
    assert caplog.text == ""  # the same names, written differently: nothing to warn about


@pytest.mark.parametrize("config,labels,classes,says", [
    ({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}, MNLI, MNLI, "lists 3 classes, but its head has 2 outputs"),
    ({"_num_labels": 3}, SST2, SST2, "lists 2 classes, but its head has 3 outputs"),
    ({}, ["negative", "good"], SST2, "labels: names ['good'] that are not the dataset's classes"),
    ({}, ["negative", "Negative"], SST2, "labels: names a class twice"),
    ({}, SST2, MNLI, "labels: has 2 outputs ['negative', 'positive'], the dataset 3 classes"),
])
def test_explicit_labels_are_checked(config, labels, classes, says):
    with pytest.raises(LabelOrderError) as info:
        logit_order(config, classes, model="m", labels=labels)
    assert str(info.value).startswith("m: ") and says in str(info.value)


@pytest.mark.parametrize("name,normal", [("NOT_ENTAILMENT", "not_entailment"), ("not entailment", "not_entailment"),
                                         (" Not-Entailment ", "not_entailment"), ("LABEL_0", "label_0"),
                                         ("label-1", "label_1")])
def test_normalize(name, normal):
    assert normalize(name) == normal
