"""A stand-in for the Hugging Face Hub on 127.0.0.1: serves model and dataset repos from local
folders, with just enough of the Hub's HTTP API that the real huggingface_hub client (snapshot_download,
hf_hub_download, HfApi.model_info / dataset_info / repo_info / list_repo_tree) runs against it through
HF_ENDPOINT.

What huggingface_hub 2.x calls, and what the stub answers ({kind} = models or datasets; a dataset's
files are under the URL prefix datasets/, as on the Hub):

    GET  /api/{kind}/{repo}[/revision/{rev}]        model_info / dataset_info: {"id", "sha",
                                                    "siblings": [{"rfilename"}]}
    GET  /api/{kind}/{repo}/tree/{rev}[/{path}]     list_repo_tree (?recursive=true|false): files with
                                                    "oid" (git blob sha1), "size" and, for LFS files,
                                                    "lfs": {"oid": sha256, "size", "pointerSize"}
    HEAD [datasets/]{repo}/resolve/{rev}/{path}     file metadata: regular files answer 200 with
    GET                                             X-Repo-Commit, ETag (blob sha1), Content-Length;
                                                    LFS files answer 302 to the "CDN" (a second
                                                    server, another origin, as the real Hub's signed
                                                    URLs are) with X-Linked-Etag (sha256) and X-Linked-Size
    GET  {cdn}/blobs/{sha256}                       the LFS file's bytes
    anything else                                   404 (e.g. /api/agent-harnesses, a best-effort
                                                    call whose failure huggingface_hub ignores)

Models and datasets are separate namespaces, as on the Hub: a dataset id asked for as a model (or
the reverse) is RepoNotFound.

Errors carry the Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), which
huggingface_hub turns into its own exception classes. No Xet: neither the tree entries (xetHash)
nor the resolve headers (X-Xet-Hash) mention it, so the client downloads over plain HTTP.

A repo's commit sha is the sha1 of its file list (path and blob sha1), so it is stable across
runs; refs: "main" and the sha itself. A repo given as a list of folders has one commit each, `main` the last, and
each older one still served by its sha (a repo whose `main` moved). Every request is recorded in `requests` as
(method, path).

    with HubStub({"org/tiny": folder}, datasets={"nyu-mll/glue": glue_folder}) as hub:
        env = {"HF_ENDPOINT": hub.url, ...}
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".h5", ".msgpack", ".onnx", ".npz", ".parquet")
CHUNK = 1 << 22  # bytes read (hashing) and sent (serving) at a time
LFS_POINTER_SIZE = 134  # bytes of a git-lfs pointer file, as the Hub reports it


@dataclass(frozen=True)
class StubFile:
    path: str  # posix, relative to the repo root
    local: Path
    size: int
    blob_id: str  # git blob sha1 of the content (for LFS files the Hub gives the pointer's; content is fine here)
    sha256: str
    lfs: bool


def file_hashes(local: Path) -> tuple[int, str, str]:
    """(size, git blob sha1, sha256) of a file, read in chunks (a rehearsal's checkpoints are gigabytes)."""
    size = local.stat().st_size
    blob, sha256 = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
    with open(local, "rb") as f:
        while chunk := f.read(CHUNK):
            blob.update(chunk)
            sha256.update(chunk)
    return size, blob.hexdigest(), sha256.hexdigest()


class StubRepo:
    """A repo's commits: one folder each (a list: its history, oldest first; `main` is the last). A commit's sha is
    the sha1 of its file list (path and blob sha1); every commit stays reachable by its sha, as on the Hub."""

    def __init__(self, repo_id: str, folder: Path | list[Path], refs: dict[str, str] | None = None):
        self.repo_id = repo_id
        self.commits: dict[str, dict[str, StubFile]] = {}
        for version in (folder if isinstance(folder, list) else [folder]):
            files = {}
            for local in sorted(p for p in Path(version).rglob("*") if p.is_file()):
                path = local.relative_to(version).as_posix()
                size, blob_id, sha256 = file_hashes(local)
                files[path] = StubFile(path, local, size, blob_id, sha256, path.endswith(LFS_SUFFIXES))
            listing = "".join(f"{f.path} {f.blob_id}\n" for f in files.values())
            self.commit = hashlib.sha1(listing.encode()).hexdigest()  # the last one read: main
            self.commits[self.commit] = files
        self.files = self.commits[self.commit]  # main's
        self.refs = {"main": self.commit, **{c: c for c in self.commits}, **(refs or {})}

    def files_at(self, rev: str) -> dict[str, StubFile]:
        return self.commits.get(self.refs[rev], self.files)

    def tree(self, path: str, recursive: bool, rev: str = "main") -> list[dict]:
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries, folders = [], set()
        for f in self.files_at(rev).values():
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix):]
            parts = rest.split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE}
                entries.append(entry)
        dirs = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                for d in sorted(folders)]
        return dirs + entries


class HubStub:
    """Two loopback HTTP servers on ephemeral ports: the Hub (`url`) and its LFS "CDN"."""

    def __init__(self, repos: dict[str, Path], refs: dict[str, dict[str, str]] | None = None,
                 datasets: dict[str, Path] | None = None):
        """repos: model repo id -> folder (or a list of folders: its commits, oldest first, `main` the last);
        datasets: dataset repo id -> folder(s); refs: repo id -> extra {ref: commit} (models and datasets alike)."""
        self.repos = {rid: StubRepo(rid, folder, (refs or {}).get(rid)) for rid, folder in repos.items()}
        self.datasets = {rid: StubRepo(rid, folder, (refs or {}).get(rid)) for rid, folder in (datasets or {}).items()}
        self.blobs = {f.sha256: f for r in [*self.repos.values(), *self.datasets.values()]
                      for files in r.commits.values() for f in files.values() if f.lfs}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=False))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def start(self) -> "HubStub":
        for server in (self._hub, self._cdn):
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> "HubStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requested(self, path_part: str) -> list[tuple[str, str]]:
        """Requests whose (unquoted) path contains `path_part`."""
        with self._lock:
            return [(m, p) for m, p in self.requests if path_part in p]

    def _log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, unquote(path)))

    def _find_repo(self, rest: str, kind: str = "models") -> tuple[StubRepo | None, str]:
        """Split 'org/name/tail...' into the longest known repo id of `kind` (models, datasets) and the tail."""
        repos = self.datasets if kind == "datasets" else self.repos
        for rid in sorted(repos, key=len, reverse=True):
            if rest == rid or rest.startswith(rid + "/"):
                return repos[rid], rest[len(rid):].lstrip("/")
        return None, rest


def _handler(hub: HubStub, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "HubStub/1.0"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- responses -------------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False,
                  length: int | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _json(self, data, head: bool) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, head)

        def _error(self, status: int, code: str, message: str, head: bool, extra: dict | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                      "X-Error-Message": message, **(extra or {})}, head)

        def _file(self, f: StubFile, head: bool, headers: dict) -> None:
            self._send(200, b"", {"Content-Type": "application/octet-stream", **headers}, head=True, length=f.size)
            if not head:  # streamed from disk: a rehearsal's checkpoints are gigabytes
                with open(f.local, "rb") as source:
                    shutil.copyfileobj(source, self.wfile, CHUNK)

        # -- routing ---------------------------------------------------------------------------
        def _route(self, head: bool) -> None:
            hub._log(self.command, self.path)
            url = urlsplit(self.path)
            path = unquote(url.path)
            if cdn:
                f = hub.blobs.get(path.removeprefix("/blobs/")) if path.startswith("/blobs/") else None
                return self._file(f, head, {}) if f else self._error(404, "EntryNotFound", path, head)
            for kind in ("models", "datasets"):
                if path.startswith(f"/api/{kind}/"):
                    return self._api(kind, path.removeprefix(f"/api/{kind}/"), parse_qs(url.query), head)
            rest = path.lstrip("/")
            kind = "datasets" if rest.startswith("datasets/") else "models"
            repo, tail = hub._find_repo(rest.removeprefix("datasets/") if kind == "datasets" else rest, kind)
            if repo is None or not tail.startswith("resolve/"):
                return self._error(404, "RepoNotFound", f"Repository not found: {path}", head)
            rev, _, filename = tail.removeprefix("resolve/").partition("/")
            self._resolve(repo, rev, filename, head)

        def _api(self, kind: str, rest: str, query: dict, head: bool) -> None:
            repo, tail = hub._find_repo(rest, kind)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository not found: {kind}/{rest}", head)
            what, _, arg = tail.partition("/")
            if what in ("", "revision"):
                rev = arg or "main"
                if rev not in repo.refs:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                siblings = [{"rfilename": p} for p in repo.files_at(rev)]
                info = {"_id": repo.refs[rev][:24], "id": repo.repo_id, "sha": repo.refs[rev], "private": False,
                        "gated": False, "disabled": False, "siblings": siblings}
                return self._json({**info, "modelId": repo.repo_id} if kind == "models" else info, head)
            if what == "tree":
                rev, _, sub = arg.partition("/")
                if rev not in repo.refs:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                return self._json(repo.tree(sub, recursive, rev), head)
            return self._error(404, "EntryNotFound", f"Not served by the stub: /api/{kind}/{rest}", head)

        def _resolve(self, repo: StubRepo, rev: str, filename: str, head: bool) -> None:
            if rev not in repo.refs:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            commit = repo.refs[rev]
            f = repo.files_at(rev).get(filename)
            if f is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist at {rev}", head,
                                   {"X-Repo-Commit": commit})
            if f.lfs:  # like the Hub: a redirect to a signed URL on another origin, metadata on the redirect
                location = f"{hub.cdn_url}/blobs/{f.sha256}?repo={quote(repo.repo_id)}"
                return self._send(302, b"", {"Location": location, "X-Repo-Commit": commit,
                                             "ETag": f'"{f.sha256}"', "X-Linked-Etag": f'"{f.sha256}"',
                                             "X-Linked-Size": str(f.size)}, head)
            self._file(f, head, {"X-Repo-Commit": commit, "ETag": f'"{f.blob_id}"'})

    return Handler
