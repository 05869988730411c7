"""Every table records what made it (specbasis.io.tables.write_table): the suite's config and its sha256 and the
specbasis commit, in a sidecar JSON beside the CSV and as a last comment line of the markdown and the LaTeX."""
import hashlib
import json
import re

import pandas as pd
import pytest

from specbasis.io.provenance import specbasis_commit
from specbasis.io.tables import provenance_path, write_table

from conftest import COMMIT



@pytest.fixture
def table():
    return pd.DataFrame({"pair": ["a", "b"], "score": [0.91234, 0.5]})


def paths(tmp_path):
    return tmp_path / "table1.csv", tmp_path / "table1.md", tmp_path / "table1.tex"


def test_the_sidecar_is_beside_the_csv():
    assert str(provenance_path("results/mine/table1.csv")) == "results/mine/table1.provenance.json"


def test_a_table_records_the_config_and_the_commit(tmp_path, table, suite):
    csv, md, tex = paths(tmp_path)
    write_table(table, csv, md, tex, provenance=suite)
    record = json.loads((tmp_path / "table1.provenance.json").read_text())
    assert {k: record[k] for k in suite} == suite
    assert record["config_sha256"] == hashlib.sha256(b"models: {}\n").hexdigest()
    assert COMMIT.fullmatch(record["specbasis_commit"]) and record["specbasis_commit"] == specbasis_commit()
    md_last = md.read_text().splitlines()[-1]
    assert md_last.startswith("<!-- specbasis provenance: ") and md_last.endswith(" -->")
    assert json.loads(md_last.removeprefix("<!-- specbasis provenance: ").removesuffix(" -->")) == record
    tex_last = tex.read_text().splitlines()[-1]
    assert json.loads(tex_last.removeprefix("% specbasis provenance: ")) == record
    assert r"\end{tabular}" in tex.read_text() and "| pair" in md.read_text()  # the tables themselves are unchanged
    assert pd.read_csv(csv).equals(table)  # the CSV stays a plain table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml", "table1.csv", "table1.md",
                                                           "table1.provenance.json", "table1.tex"]  # no .tmp left


def test_without_provenance_no_sidecar_and_no_comment(tmp_path, table):
    csv, md, tex = paths(tmp_path)
    write_table(table, csv, md, tex)
    assert not provenance_path(csv).exists()
    assert "provenance" not in md.read_text() and "provenance" not in tex.read_text()
