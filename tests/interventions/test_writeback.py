"""Writing matrices back into live models: every transform's inverse, the round trip for every family
(tiny instances of the libraries' own classes, from test_namemaps), and in-place edits of classifiers
loaded by models.load_classifier that restore bit for bit and leave the model alone when they should."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_namemaps import CASES, IDS, built, specs_of  # tiny models of the libraries' own classes
from tiny_suite import FILLER, WORDS, tiny_bert, tiny_effnet

from specbasis.data import Part
from specbasis.evaluate import evaluate
from specbasis.io.extract import extract_weights, list_ids
from specbasis.interventions.edits import HOWS, edit_group, group_ids, mask_group
from specbasis.models import load_classifier
from specbasis.io.namemaps import FAMILIES, MatrixSpec, apply_transform
from specbasis.svd import read_svd, svd_all, write_svd_store
from specbasis.interventions.writeback import LiveMatrices, put_step, write_matrix


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert list(now) == list(before)
    changed = [k for k in now if now[k].dtype != before[k].dtype or not torch.equal(now[k], before[k])]
    assert not changed, f"tensors changed: {changed[:5]}"


# ---------------------------------------------------------------------- each step's inverse

STEPS = [  # step, source shape
    ("none", (6, 4)), ("transpose", (4, 6)), ("squeeze_1x1", (6, 4, 1, 1)),
    ("split_qkv:q", (9, 4)), ("split_qkv:k", (9, 4)), ("split_qkv:v", (9, 4)),
    ("split_qkv_heads:q:2", (12, 5)), ("split_qkv_heads:k:2", (12, 5)), ("split_qkv_heads:v:3", (18, 5)),
    ("hnd:in", (4, 2, 3)), ("hnd:out", (4, 2, 3)),
]


@pytest.mark.parametrize("step, shape", STEPS)
def test_put_step_writes_exactly_what_the_step_reads(step, shape):
    t = torch.arange(float(np.prod(shape))).reshape(shape)
    before = t.clone()
    W = -1 - torch.rand(apply_transform(step, t).shape)  # negative: unlike every entry of t
    put_step(t, step, W, "w")
    assert torch.equal(apply_transform(step, t), W)
    untouched = t >= 0  # the entries the step does not read keep their values
    assert int((~untouched).sum()) == W.numel()
    assert torch.equal(t[untouched], before[untouched])


def test_qkv_heads_inverse_interleaves_per_head():
    t = torch.zeros(12, 5)  # 2 heads x (q, k, v) x d_head 2
    put_step(t, "split_qkv_heads:k:2", torch.ones(4, 5), "w")
    assert t[:, 0].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0]


def test_write_matrix_through_a_transposed_view():
    spec = MatrixSpec("00.attn_k", ("c_attn",), "transpose+split_qkv:k", shape=(4, 4), source_shapes=((4, 12),))
    t = torch.zeros(4, 12)
    write_matrix(spec, torch.eye(4), {"c_attn": t}.__getitem__)
    assert torch.equal(t[:, 4:8], torch.eye(4)) and t[:, :4].abs().sum() == 0 and t[:, 8:].abs().sum() == 0


@pytest.mark.parametrize("spec, source, W, pattern", [
    (MatrixSpec("00.attn_q", ("w",), "split_qkv:q", shape=(3, 4)), (9, 4), (4, 4),
     r"matrix 00.attn_q: cannot write a \(4, 4\) matrix into w, whose matrix is \(3, 4\)"),
    (MatrixSpec("00.attn_q", ("w",), "split_qkv:q"), (9, 4), (4, 4),
     r"tensor w: step 'split_qkv:q' reads a \(3, 4\) matrix from shape \(9, 4\), cannot write one of shape \(4, 4\)"),
    (MatrixSpec("00.attn_q", ("w",), "split_qkv_heads:q:2+transpose"), (12, 4), (4, 4),
     r"matrix 00.attn_q: step 'split_qkv_heads:q:2' of transform .* copies w"),
    (MatrixSpec("00.attn_q", ("w",), "hnd:in"), (9, 4), (4, 9), r"tensor w: step 'hnd:in' needs a 3-D"),
])
def test_write_matrix_refuses_what_it_cannot_write(spec, source, W, pattern):
    with pytest.raises(ValueError, match=pattern):
        write_matrix(spec, torch.zeros(W), {"w": torch.zeros(source)}.__getitem__)


# --------------------------------------------------------------- round trip, every family

def test_every_family_has_a_tiny_instance():
    missing = sorted(set(FAMILIES) - {c.family for c in CASES})
    assert not missing, f"families without a builder in tests/test_namemaps.py CASES: {missing}"


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_round_trip_is_bit_identical_for_every_family(i):
    model = copy.deepcopy(built(i, True))  # the classifier: names behind the base model's prefix
    before = snapshot(model)
    live = LiveMatrices(model, CASES[i].family)
    assert live.ids == [s.id for s in specs_of(i)]  # the ids of the base model's checkpoint

    for key in live.ids:  # extract -> write back unchanged
        write_matrix(live.spec(key), live.matrix(key).clone(), live.tensors.__getitem__)
    assert_bit_identical(model, before)

    originals = {key: live.matrix(key).clone() for key in live.ids}
    torch.manual_seed(i)
    for key in live.ids:  # a new matrix lands where load_matrix reads it, and nowhere else
        W = torch.randn(live.spec(key).shape)
        live.write(key, W)
        assert torch.equal(live.matrix(key), W), key
        assert torch.equal(live.original(key), originals[key]), key
        others = [k for k in live.ids if k != key and not torch.equal(live.matrix(k), originals[k])]
        assert not others, f"writing {key} changed {others}"
        live.restore()
    assert_bit_identical(model, before)


def test_live_matrices_name_the_model_for_an_unknown_id():
    live = LiveMatrices(copy.deepcopy(built(0, True)), CASES[0].family, name="bert-rt")
    with pytest.raises(KeyError, match=r"model bert-rt has no matrix '00.attn_x'"):
        live.matrix("00.attn_x")


# --------------------------------------------------- classifiers as load_classifier builds them

@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Per family: the pretrained folder, its SVD store (the donor of `pretrained`), test data."""
    root = tmp_path_factory.mktemp("interventions")
    out = {}
    rng = np.random.default_rng(0)
    words = FILLER + WORDS[0] + WORDS[1]
    for family, build, classes, data in [
        ("bert", tiny_bert, 2, Part([" ".join(rng.choice(words, 6)) for _ in range(48)], rng.integers(0, 2, 48))),
        ("efficientnet_lite", tiny_effnet, 10,
         Part(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40))),
    ]:
        folder = root / family
        build(folder)
        extract_weights(folder, family, root / f"{family}.weights.h5")
        write_svd_store(root / f"{family}.weights.h5", root / f"{family}.svd.h5")
        out[family] = {"folder": folder, "classes": classes, "test": data,
                       "weights": root / f"{family}.weights.h5", "svd": read_svd(root / f"{family}.svd.h5")}
    return out


@pytest.fixture(scope="module", params=["bert", "efficientnet_lite"])
def classifier(request, suite):
    """A classifier whose backbone is its pretrained model (so W̃ = W), its live matrices, own SVDs."""
    s = suite[request.param]
    model, preprocess = load_classifier(s["folder"], request.param, s["classes"], image_size=32, max_length=16)
    torch.manual_seed(0)
    with torch.no_grad():  # a head like a trained one: logits of order 1 (a fresh head's are 1e-2 for BERT)
        model.classifier.weight.normal_(0.0, 1.0)
    live = LiveMatrices(model, request.param, name=request.param)
    # the finetuned SVDs, from the live model's matrices by the stage's route (the donor's: from the store
    # of the checkpoint). Another route (float32 gesdd) moves the vectors by eps32/gap ~ 1e-5 |W| per
    # matrix, which 16 EfficientNet blocks carry to ~1e-4 in the logits: the stores must share a route.
    own = dict(svd_all({k: live.matrix(k).numpy() for k in live.ids}, progress=False))
    base = evaluate(model, preprocess, s["test"], "cpu")
    return {"family": request.param, "model": model, "preprocess": preprocess, "live": live, "own": own,
            "base": base, **s}


def test_live_ids_are_those_of_the_checkpoint(classifier):
    c = classifier
    assert c["live"].ids == list_ids(c["weights"]) and set(c["svd"]) == set(c["live"].ids)
    if c["family"] == "bert":  # BertForSequenceClassification's names carry the "bert." prefix
        assert all(s.sources[0].startswith("bert.encoder.") for s in c["live"].specs.values())


def groups_of(c) -> list[str]:
    return ["ffn", "attn"] if c["family"] == "bert" else ["ffn"]


def corrections(c, group: str, condition: str):
    ids = group_ids(c["live"].ids, group, model=c["family"])
    kind, _, arg = condition.partition(":")
    if kind == "own":            # the model's own vectors swapped into itself
        return edit_group(c["own"], ids, "pretrained", int(arg), donors=c["own"], model=c["family"])
    if kind == "pretrained":     # the pretrained store's vectors, W̃ = W
        return edit_group(c["own"], ids, "pretrained", int(arg), donors=c["svd"], model=c["family"])
    if kind in HOWS:
        donors = c["svd"] if kind == "cross" else None
        return edit_group(c["own"], ids, kind, int(arg), donors=donors, seed=1, model=c["family"])
    return mask_group(c["own"], ids, kind, float(arg), model=c["family"])


def logits_with(c, deltas) -> tuple[np.ndarray, object]:
    with c["live"].edited(deltas):
        result = evaluate(c["model"], c["preprocess"], c["test"], "cpu")
    return result.logits, result


NO_CHANGE = [f"{how}:0" for how in HOWS] + ["own:4", "own:8", "pretrained:4", "top_down:0", "bottom_up:0"]


@pytest.mark.parametrize("condition", NO_CHANGE)
def test_edits_that_change_nothing_reproduce_logits_and_accuracy(classifier, condition):
    c = classifier
    before = snapshot(c["model"])
    for group in groups_of(c):
        logits, result = logits_with(c, corrections(c, group, condition))
        np.testing.assert_allclose(logits, c["base"].logits, atol=1e-5, rtol=0, err_msg=f"{group} {condition}")
        assert result.accuracy == c["base"].accuracy and np.array_equal(result.correct, c["base"].correct)
    assert_bit_identical(c["model"], before)


@pytest.mark.parametrize("condition", ["zero:8", "random:8", "random_orthogonal:8", "top_down:0.5", "bottom_up:1"])
def test_real_edits_change_the_logits_and_restore_bit_for_bit(classifier, condition):
    c = classifier
    before = snapshot(c["model"])
    for group in groups_of(c):
        logits, _ = logits_with(c, corrections(c, group, condition))
        assert np.abs(logits - c["base"].logits).max() > 1e-3, f"{group} {condition} changed nothing"
        assert_bit_identical(c["model"], before)
    after = evaluate(c["model"], c["preprocess"], c["test"], "cpu")
    assert np.array_equal(after.logits, c["base"].logits)


def test_masking_everything_is_the_same_top_down_and_bottom_up(classifier):
    c = classifier
    top = corrections(c, "ffn", "top_down:1")
    with c["live"].edited(top):
        written = snapshot(c["model"])
        top_logits = evaluate(c["model"], c["preprocess"], c["test"], "cpu").logits
    with c["live"].edited(corrections(c, "ffn", "bottom_up:1")):
        assert_bit_identical(c["model"], written)
        assert np.array_equal(evaluate(c["model"], c["preprocess"], c["test"], "cpu").logits, top_logits)
    key = group_ids(c["live"].ids, "ffn")[0]
    with c["live"].edited({key: top[key]}):  # and the matrix is gone, up to the store's float32 residual
        W0 = c["live"].original(key)
        assert c["live"].matrix(key).abs().max() < 1e-5 * W0.abs().max() * max(W0.shape)


def test_edits_do_not_accumulate(classifier):
    """Each edit starts from the original W̃, whatever was written before and not restored."""
    c = classifier
    deltas = corrections(c, "ffn", "zero:2")
    key = next(iter(deltas))
    c["live"].apply(deltas)
    once = c["live"].matrix(key).clone()
    c["live"].apply(deltas)
    assert torch.equal(c["live"].matrix(key), once)
    c["live"].restore()
    assert torch.equal(c["live"].matrix(key), c["live"].original(key))
