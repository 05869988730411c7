"""Every figure records what made it (specbasis.figures.save): the suite's config and its sha256 and the specbasis
commit, in the PDF's Info dictionary and in a PNG text chunk; and every rule that draws a figure or writes a table
passes the suite's record (PROVENANCE) to its script."""
import hashlib
import json
import re
import textwrap
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from specbasis.figures import save
from specbasis.io.provenance import specbasis_commit

ROOT = Path(__file__).resolve().parents[2]
from conftest import COMMIT



def tiny_figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def pdf_info(path: Path, key: str) -> str:
    """One entry of a PDF's Info dictionary, read from its bytes (matplotlib writes it uncompressed, an ASCII string
    with '\\', '(' and ')' escaped)."""
    found = re.search(rb"/" + key.encode() + rb" \(((?:\\.|[^\\)])*)\)", path.read_bytes())
    assert found, f"no /{key} in {path}"
    return re.sub(rb"\\(.)", rb"\1", found.group(1)).decode("ascii")


def test_a_pdf_and_a_png_record_the_config_and_the_commit(tmp_path, suite):
    pdf, png = tmp_path / "fig.pdf", tmp_path / "fig.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns on a PDF Info key it does not know
        save(tiny_figure(), pdf, png, provenance=suite)
    from_pdf = json.loads(pdf_info(pdf, "Subject"))
    from_png = json.loads(Image.open(png).text["specbasis"])
    assert from_pdf == from_png
    assert {k: from_pdf[k] for k in suite} == suite
    assert from_pdf["config_sha256"] == hashlib.sha256(b"models: {}\n").hexdigest()
    assert COMMIT.fullmatch(from_pdf["specbasis_commit"])
    assert from_pdf["specbasis_commit"] == specbasis_commit()
    assert pdf_info(pdf, "Creator") == f"specbasis {from_pdf['specbasis_commit']}"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: nothing left beside them


def test_the_record_survives_parentheses_in_it(tmp_path, suite):
    """The default suite's name is '(the folder's config.yaml)': a PDF string escapes its parentheses."""
    pdf = tmp_path / "fig.pdf"
    save(tiny_figure(), pdf, provenance={**suite, "suite": "(the folder's config.yaml)"})
    assert json.loads(pdf_info(pdf, "Subject"))["suite"] == "(the folder's config.yaml)"


def test_without_provenance_a_figure_records_none(tmp_path):
    pdf, png = tmp_path / "fig.pdf", tmp_path / "fig.png"
    save(tiny_figure(), pdf, png)
    assert b"specbasis" not in pdf.read_bytes()
    assert "specbasis" not in Image.open(png).text


# Rules: every rule whose script saves a figure or writes a table passes params.provenance; a table's rule names the
# sidecar write_table writes beside its CSV as an output.


def rule_blocks():
    """(file:rule, the rule's text, its script's name) of every rule that runs a script under workflow/scripts."""
    found = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m for m in re.finditer(r"^( *)rule( \w+)?:\n", text, re.M)]
        for m, nxt in zip(starts, [*starts[1:], None]):
            block = text[m.start():nxt.start() if nxt else len(text)]
            name = m.group(2).strip() if m.group(2) else re.search(r"name:\s*\n\s*(\S+)", block).group(1)
            script = re.search(r'"\.\./scripts/(\w+)\.py"', block)
            if script:
                found.append((f"{smk.name}:{name}", block, script.group(1)))
    return found


def records(script: str) -> bool:
    """Whether the script saves a figure or writes a table."""
    text = (ROOT / "workflow" / "scripts" / f"{script}.py").read_text()
    return bool(re.search(r"^from specbasis\.figures import .*\bsave\b", text, re.M)) or "write_table(" in text


RECORDING = [(rule, block) for rule, block, script in rule_blocks() if records(script)]


def test_the_rules_of_every_figure_and_table_are_found():
    names = {rule.split(":")[1] for rule, _ in RECORDING}
    assert {"fig2", "fig3", "fig10", "fig11", "table1", "table2", "table4", "table5", "table6", "fig22",
            "fig4", "fig9", "fig21", "swap_fig", "fig17"} <= names
    assert not {"finetune", "prefix_cache", "alignment"} & names


@pytest.mark.parametrize("rule, block", [pytest.param(r, b, id=r) for r, b in RECORDING])
def test_every_figure_and_table_rule_passes_the_suites_record(rule, block):
    block = textwrap.dedent(block)  # a rule made in a loop (fig12-15) is indented once more
    params = re.search(r"\n    params:\n((?:        .*\n|\s*\n)+)", block)
    assert params and re.search(r"^        provenance=PROVENANCE,$", params.group(1), re.M), rule
    tex = re.search(r'^        tex=R\("(\w+)\.tex"\),$', block, re.M)
    if tex:  # a table: the sidecar is an output, beside the CSV (write_table's provenance_path)
        assert re.search(r'csv=report\(R\("%s\.csv"\)' % tex.group(1), block)
        assert f'        provenance=R("{tex.group(1)}.provenance.json"),\n' in block, rule
