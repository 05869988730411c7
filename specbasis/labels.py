"""Which logit is which class: a finetuned checkpoint's output order mapped onto a dataset's classes.

Hub checkpoints finetuned on the same task order their logits differently. The legacy GLUE
processors of transformers (and Google's BERT run_classifier) sorted MNLI's labels as
contradiction, entailment, neutral; the `datasets` GLUE script orders them entailment, neutral,
contradiction; and many configs say nothing useful (transformers' default id2label is LABEL_0,
LABEL_1, ...). So the order is read, never assumed:

    labels given        the model's `labels:` in the workflow config: the class of each logit, in
                        logit order (for checkpoints whose config.json does not say, e.g. textattack's)
    else id2label       config.json's id2label, its names matched to the dataset's class names
                        case- and format-insensitively ("NOT_ENTAILMENT" = "not entailment")

Anything else stops with an error naming the model and saying what to write: no id2label, generic
names (LABEL_0, ...), names that are not the dataset's classes, a head of another size, duplicates.

The result is `order`, with logits[:, order] in the dataset's class order: order[j] is the logit
column of classes[j] (so argmax of the reordered logits compares directly with the dataset's labels).
"""
from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

_GENERIC = re.compile(r"label_?\d+")  # transformers' default names, after normalize()


class LabelOrderError(ValueError):
    """The order of a model's logits cannot be established: the message says why and what to write."""


def normalize(name: str) -> str:
    """Case- and format-insensitive form of a class name: 'NOT-Entailment ' -> 'not_entailment'."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).casefold()).strip("_")


def head_names(config: Mapping, *, model: str) -> list[str] | None:
    """The names of config.json's id2label in logit order, or None when there is no id2label.

    Keys may be strings (JSON) or ints (a transformers config object); they must be 0..n-1."""
    id2label = config.get("id2label")
    if not id2label:
        return None
    try:
        keyed = {int(k): v for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError) as error:
        raise LabelOrderError(f"{model}: config.json's id2label {id2label!r} is not a map of logit index to "
                              "name") from error
    if sorted(keyed) != list(range(len(keyed))):
        raise LabelOrderError(f"{model}: config.json's id2label keys {sorted(keyed)} are not 0..{len(keyed) - 1}")
    return [str(keyed[i]) for i in range(len(keyed))]


def _match(names: Sequence[str], classes: Sequence[str], *, model: str, what: str, fix: str) -> list[int]:
    """order with names[order[j]] == classes[j] after normalize(); raises naming what does not fit."""
    wanted = [normalize(c) for c in classes]
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"dataset classes {list(classes)} are not distinct once normalized: {wanted}")
    got = [normalize(n) for n in names]
    if len(got) != len(wanted):
        raise LabelOrderError(f"{model}: {what} has {len(got)} outputs {list(names)}, the dataset {len(wanted)} "
                              f"classes {list(classes)}: not a model of this task{fix}")
    twice = sorted({n for n, g in zip(names, got) if got.count(g) > 1})
    if twice:
        raise LabelOrderError(f"{model}: {what} names a class twice: {twice}{fix}")
    unknown = [n for n, g in zip(names, got) if g not in wanted]
    if unknown:
        raise LabelOrderError(f"{model}: {what} names {unknown} that are not the dataset's classes "
                              f"{list(classes)}{fix}")
    return [got.index(w) for w in wanted]


def logit_order(config: Mapping, classes: Sequence[str], *, model: str,
                labels: Sequence[str] | None = None) -> list[int]:
    """order with logits[:, order] in the order of `classes` (the dataset's class names).

    config: the checkpoint's config.json (only id2label is read). labels: the model's explicit
    `labels:` from the workflow config, the class of each logit in logit order; it wins over
    id2label (with a warning when id2label names other classes). model: its name, for messages."""
    names = head_names(config, model=model)
    example = f"labels: [{', '.join(classes)}]"
    if labels is not None:
        size = len(names) if names is not None else config.get("num_labels", config.get("_num_labels"))
        if size is not None and size != len(labels):
            raise LabelOrderError(f"{model}: labels: {list(labels)} lists {len(labels)} classes, but its head "
                                  f"has {size} outputs (config.json)")
        order = _match(labels, classes, model=model, what="labels:",
                       fix=f"; write the dataset's class of each logit, in logit order, e.g. {example}")
        if names is not None and not any(_GENERIC.fullmatch(normalize(n)) for n in names):
            if [normalize(n) for n in names] != [normalize(n) for n in labels]:
                log.warning("%s: labels: %s overrides config.json's id2label %s", model, list(labels), names)
        return order
    fix = (f"; give the model `labels:` in the config, the class of each logit in logit order (from its model "
           f"card or training code), e.g. {example}")
    if names is None:
        raise LabelOrderError(f"{model}: config.json has no id2label, so the order of its logits is unknown{fix}")
    if any(_GENERIC.fullmatch(normalize(n)) for n in names):
        raise LabelOrderError(f"{model}: config.json's id2label {names} has generic names, which say nothing "
                              f"about the order of its logits{fix}")
    return _match(names, classes, model=model, what="config.json's id2label", fix=fix)
