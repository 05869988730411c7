"""Where a suite writes (specbasis.plan.outputs.Suite): results/ for a folder's config.yaml, results/<name>/ for every
other config, the name from `name:` or the config file; names that would not make a folder of their own refused."""
import hashlib
from pathlib import Path

import pytest

from specbasis.config import ConfigError, load_config
from specbasis.plan import Plan, Suite
from specbasis.io.provenance import specbasis_commit
from specbasis.plan.outputs import RESULTS_FOLDERS

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path, name, text="models: {}\n"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_folders_config_yaml_writes_to_results_itself(tmp_path):
    path = _file(tmp_path, "config.yaml")
    suite = Suite.of({}, [str(path)])
    assert (suite.name, suite.results, suite.logs) == (None, "results", "logs")
    assert suite.config == str(path) and suite.config_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_config_file_names_its_own_folder(tmp_path):
    suite = Suite.of({}, [str(_file(tmp_path, "config.yaml")), str(_file(tmp_path, "mine.yaml"))])
    assert (suite.name, suite.results, suite.logs) == ("mine", "results/mine", "logs/mine")
    assert Suite.of({}, [str(_file(tmp_path, "paper.yml"))]).results == "results/paper"


def test_name_wins_over_the_file(tmp_path):
    assert Suite.of({"name": "study-2"}, [str(_file(tmp_path, "config.yaml"))]).results == "results/study-2"
    assert Suite.of({"name": "study-2"}, [str(_file(tmp_path, "mine.yaml"))]).results == "results/study-2"
    assert Suite.of({"name": "x"}, []).results == "results/x"


def test_no_config_file_is_the_default_suite():
    suite = Suite.of({}, [])
    assert (suite.results, suite.config, suite.config_sha256) == ("results", None, None)


@pytest.mark.parametrize("name", ["svd", "models", "peft"])
def test_a_name_that_is_a_folder_of_results_is_refused(tmp_path, name):
    assert name in RESULTS_FOLDERS
    with pytest.raises(ConfigError, match=f"name: '{name}' is a folder of the default suite's results/"):
        Suite.of({"name": name}, [])
    with pytest.raises(ConfigError, match=f"the config file's name .*{name}.yaml"):
        Suite.of({}, [str(_file(tmp_path, f"{name}.yaml"))])


def test_a_file_name_that_is_no_folder_name_asks_for_a_name(tmp_path):
    with pytest.raises(ConfigError, match="give the suite a `name:`"):
        Suite.of({}, [str(_file(tmp_path, "my pairs.yaml"))])


def test_the_plan_targets_the_suites_folder():
    targets = Plan(load_config(ROOT / "config.yaml"), results="results/mine").all_targets()
    assert targets and all(t.startswith("results/mine/") for t in targets)
    assert "results/mine/fig2.pdf" in targets


def test_provenance_names_the_config_and_a_commit(tmp_path):
    suite = Suite.of({}, [str(_file(tmp_path, "mine.yaml"))])
    assert suite.provenance == {"suite": "mine", "config": str(tmp_path / "mine.yaml"),
                                "config_sha256": hashlib.sha256(b"models: {}\n").hexdigest()}
    commit = specbasis_commit()
    assert commit.startswith("unknown") or len(commit.removesuffix("+dirty")) == 40
    assert specbasis_commit(tmp_path) == "unknown (not a git checkout)"
