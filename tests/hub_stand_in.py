"""A stand-in for the Hugging Face Hub: a small HTTP server on 127.0.0.1 that serves tiny look-alike repositories,
so that tests can run the notebook's online path (as in Colab) with no network.

It serves what datasets 5, transformers 5 and huggingface_hub 2 call while the notebook downloads WikiText, GPT-2's
tokenizer and BERT (found by logging their requests), and nothing more:

- `GET /api/{models,datasets}/<repo>` and `.../<repo>/revision/<rev>`: the repository's info (its commit `sha`,
  its files as `siblings`, the YAML front matter of its README.md as `cardData`);
- `GET /api/{models,datasets}/<repo>/tree/<rev>[/<folder>]` (`?recursive=true`): the files and folders in a folder
  (datasets resolves its data_files patterns with it; transformers looks for `additional_chat_templates/`);
- `HEAD` and `GET` on `/<repo>/resolve/<rev>/<file>` (models) and `/datasets/<repo>/resolve/<rev>/<file>`, with
  the headers huggingface_hub reads: `X-Repo-Commit`, `ETag` (the git blob sha1), `Content-Length`. Large ("LFS")
  files answer with a 302 redirect to a second server standing in for the CDN (another origin, which
  huggingface_hub does not follow in its HEAD requests), with `Location`, `X-Linked-Etag` (their sha256) and
  `X-Linked-Size`, as the Hub does; the CDN serves `GET /lfs/<sha256>`;
- a renamed repository (`bert-base-uncased`, now `google-bert/bert-base-uncased`): its API answers under the old
  name, and its files redirect (307) to the new name's, relatively, as the Hub does;
- `GET /api/agent-harnesses`: the registry of AI coding agents huggingface_hub names in its user agent (empty).

Missing files answer 404 with `X-Error-Code: EntryNotFound` (transformers and datasets look for optional files), an
unknown revision `RevisionNotFound`, an unknown repository `RepoNotFound`, and any other path a plain 404. Every
request is recorded in `StandInHub.requests`, so that a test can show what was asked, and what the stand-in does not
serve (`StandInHub.unknown()`).

The repositories are built at test time from the WikiText sample the course ships (`build_repositories`): WikiText
in its parquet layout, a GPT-2-style byte-level BPE tokenizer of a few hundred tokens, and a tiny random BERT.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin")
LAST_MODIFIED = "2024-01-01T00:00:00.000Z"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repository:
    """A repository of the Hub: its kind ("model" or "dataset"), its id, and its files (path -> bytes)."""

    kind: str
    repo_id: str
    files: dict[str, bytes]
    aliases: tuple[str, ...] = ()  # former names, which the Hub redirects to this one

    @cached_property
    def sha(self) -> str:
        """The commit: a digest of every file, so that other files make another commit."""
        digest = hashlib.sha1(self.repo_id.encode())
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(self.files[path]).encode())
        return digest.hexdigest()

    @cached_property
    def card_data(self) -> dict:
        """The YAML front matter of README.md, which the Hub returns as `cardData`."""
        found = re.match(rb"---\n(.*?)\n---\n", self.files.get("README.md", b""), re.S)
        return yaml.safe_load(found.group(1)) if found else {}

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def folders(self) -> set[str]:
        return {"/".join(path.split("/")[:n]) for path in self.files for n in range(1, path.count("/") + 1)}

    def entry(self, path: str) -> dict | None:
        """A file's or a folder's entry, as the tree and paths-info APIs list it."""
        if path in self.files:
            data = self.files[path]
            entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
            if self.is_lfs(path):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            return entry
        if path in self.folders():
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        return None

    def info(self) -> dict:
        info = {"_id": self.sha[:24], "id": self.repo_id, "sha": self.sha, "private": False, "gated": False,
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": LAST_MODIFIED,
                "createdAt": LAST_MODIFIED, "cardData": self.card_data,
                "siblings": [{"rfilename": path} for path in sorted(self.files)]}
        if self.kind == "model":
            info.update(modelId=self.repo_id, library_name="transformers",
                        config=json.loads(self.files.get("config.json", b"{}")))
        return info


@dataclass
class Request:
    method: str
    path: str  # with its query
    status: int
    server: str  # "hub" or "cdn"
    error_code: str | None = None  # X-Error-Code, on errors
    served: tuple[str, str] | None = None  # (repository id, file path) of the file sent, if one was

    def __str__(self):
        return f"{self.method} {self.path} -> {self.status}{f' {self.error_code}' if self.error_code else ''} ({self.server})"


@dataclass
class StandInHub:
    """The stand-in Hub (and its CDN), serving `repositories` on ephemeral ports of 127.0.0.1 while started."""

    repositories: list[Repository]
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_port}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_port}"

    def start(self) -> StandInHub:
        for name in ["hub", "cdn"]:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, name))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name=f"stand-in {name}", daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self):
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def record(self, request: Request):
        with self._lock:
            self.requests.append(request)

    def unknown(self) -> list[Request]:
        """The requests for paths the stand-in does not serve at all (a plain 404: no API, no repository)."""
        return [request for request in self.requests if request.status == 404 and request.error_code is None]

    def downloaded(self) -> set[tuple[str, str]]:
        """(repository id, file path) of every file sent whole, from the Hub or from the CDN."""
        return {request.served for request in self.requests if request.served and request.status == 200}

    def repository(self, repo_id: str) -> Repository:
        return next(repository for repository in self.repositories if repository.repo_id == repo_id)

    def find(self, kind: str, repo_id: str) -> tuple[Repository | None, bool]:
        """The repository named `repo_id` (or one of its former names), and whether it was found by a former name."""
        for repository in self.repositories:
            if repository.kind == kind and repo_id in (repository.repo_id, *repository.aliases):
                return repository, repo_id != repository.repo_id
        return None, False

    def split_repo(self, kind: str, rest: str) -> tuple[Repository | None, bool, str]:
        """Splits "<repo id>/<rest>" on the longest repository id served (ids have 1 or 2 parts)."""
        parts = rest.split("/")
        for n in (2, 1):
            repository, renamed = self.find(kind, "/".join(parts[:n]))
            if repository:
                return repository, renamed, "/".join(parts[n:])
        return None, False, rest


API = re.compile(r"/api/(?P<kinds>models|datasets)/(?P<rest>.+)")
RESOLVE = re.compile(r"/(?P<dataset>datasets/)?(?P<rest>.+?)/resolve/(?P<revision>[^/]+)/(?P<path>.+)")


def _handler(hub: StandInHub, server: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Hub: every answer has a Content-Length

        def log_message(self, *args):  # recorded in hub.requests instead
            pass

        def do_GET(self):
            url = urlsplit(self.path)
            path, self.query = unquote(url.path), parse_qs(url.query)
            if server == "cdn":
                self.cdn(path)
            elif path == "/api/agent-harnesses":  # the AI agents huggingface_hub names in its user agent: none
                self.send_json({"standardEnvVars": [], "harnesses": {}})
            elif found := API.fullmatch(path):
                self.api(found["kinds"][:-1], found["rest"])
            elif found := RESOLVE.fullmatch(path):
                self.resolve("dataset" if found["dataset"] else "model", found["rest"], found["revision"], found["path"])
            else:
                self.error(404)

        do_HEAD = do_GET  # the same headers, without the body (see answer)

        # -- answers

        def answer(self, status: int, data: bytes = b"", headers: dict | None = None,
                   served: tuple[str, str] | None = None):
            headers = {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(data))}
            hub.record(Request(self.command, self.path, status, server, headers.get("X-Error-Code"),
                               served if self.command == "GET" else None))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_json(self, value):
            self.answer(200, json.dumps(value).encode())

        def error(self, status: int, code: str | None = None):
            message = json.dumps({"error": f"{code or 'Not Found'}: {self.path}"}).encode()
            self.answer(status, message, {"X-Error-Code": code} if code else {})

        def redirect(self, status: int, location: str, headers: dict | None = None):
            self.answer(status, b"", {"Location": location, **(headers or {})})

        # -- the API

        def api(self, kind: str, rest: str):
            repository, _, rest = hub.split_repo(kind, rest)
            if repository is None:
                return self.error(404, "RepoNotFound")
            action, _, argument = rest.partition("/")
            revision, _, folder = argument.partition("/")
            if action in ("revision", "tree") and revision not in ("main", repository.sha):
                return self.error(404, "RevisionNotFound")
            if action == "" or (action == "revision" and not folder):
                return self.send_json(repository.info())
            if action == "tree":
                return self.tree(repository, folder.strip("/"))
            self.error(404)

        def tree(self, repository: Repository, folder: str):
            if folder and folder not in repository.folders():
                return self.error(404, "EntryNotFound")
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
            prefix = f"{folder}/" if folder else ""
            paths = sorted(path for path in repository.folders() | set(repository.files)
                           if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]))
            self.send_json([repository.entry(path) for path in paths])

        # -- the files

        def resolve(self, kind: str, rest: str, revision: str, path: str):
            repository, renamed, rest = hub.split_repo(kind, rest)
            if repository is None or rest:
                return self.error(404, "RepoNotFound")
            if renamed:  # a relative redirect to the new name, which huggingface_hub follows
                prefix = "/datasets" if kind == "dataset" else ""
                return self.redirect(307, f"{prefix}/{repository.repo_id}/resolve/{revision}/{path}")
            if revision not in ("main", repository.sha):
                return self.error(404, "RevisionNotFound")
            if path not in repository.files:
                return self.error(404, "EntryNotFound")
            data = repository.files[path]
            headers = {"X-Repo-Commit": repository.sha, "ETag": f'"{git_blob_sha1(data)}"'}
            if repository.is_lfs(path):  # on the CDN, which huggingface_hub does not follow in its HEAD requests
                sha256 = hashlib.sha256(data).hexdigest()
                return self.redirect(302, f"{hub.cdn_url}/lfs/{sha256}",
                                     {**headers, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
            self.answer(200, data, {**headers, "Content-Type": "application/octet-stream"}, (repository.repo_id, path))

        def cdn(self, path: str):
            blobs = {hashlib.sha256(data).hexdigest(): (repository.repo_id, name, data)
                     for repository in hub.repositories for name, data in repository.files.items()
                     if repository.is_lfs(name)}
            found = re.fullmatch(r"/lfs/([0-9a-f]{64})", path)
            if not found or found[1] not in blobs:
                return self.error(404)
            repo_id, name, data = blobs[found[1]]
            self.answer(200, data, {"ETag": f'"{found[1]}"', "Content-Type": "application/octet-stream"}, (repo_id, name))

    return Handler


# ---------------------------------------------------------------------------------------------------------------
# The repositories, built from the WikiText sample the course ships


def wikitext(splits: dict[str, list[str]]) -> Repository:
    """Salesforce/wikitext, config wikitext-103-raw-v1 only, in the Hub's parquet layout, with the sample's lines."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = "wikitext-103-raw-v1"
    files = {}
    for split, lines in splits.items():
        buffer = io.BytesIO()
        pq.write_table(pa.table({"text": pa.array(lines, pa.string())}), buffer)
        files[f"{config}/{split}-00000-of-00001.parquet"] = buffer.getvalue()
    card = {
        "annotations_creators": ["no-annotation"], "language": ["en"], "license": ["cc-by-sa-3.0", "gfdl"],
        "pretty_name": "WikiText", "task_categories": ["text-generation", "fill-mask"],
        "dataset_info": [{
            "config_name": config, "features": [{"name": "text", "dtype": "string"}],
            "splits": [{"name": split, "num_bytes": sum(len(line.encode()) for line in lines),
                        "num_examples": len(lines)} for split, lines in sorted(splits.items())],
            "download_size": sum(len(data) for data in files.values()),
            "dataset_size": sum(len(line.encode()) for lines in splits.values() for line in lines)}],
        "configs": [{"config_name": config, "data_files": [
            {"split": split, "path": f"{config}/{split}-*"} for split in sorted(splits)]}],
    }
    readme = f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n\n# Dataset Card for \"wikitext\" (a stand-in)\n"
    return Repository("dataset", "Salesforce/wikitext", {**files, "README.md": readme.encode()})


def gpt2(lines: list[str], vocab_size: int = 300) -> Repository:
    """openai-community/gpt2's tokenizer files: a byte-level BPE trained on `lines`, with `<|endoftext|>` last,
    as in GPT-2 (id vocab_size), and the files of the real repository (config.json of model_type gpt2, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.add_special_tokens(["<|endoftext|>"])
    model = json.loads(bpe.to_str())["model"]
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model["merges"]]
    vocab = dict(bpe.get_vocab(with_added_tokens=True))
    eos = vocab["<|endoftext|>"]
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": len(vocab), "n_positions": 1024,
              "n_ctx": 1024, "n_embd": 32, "n_layer": 2, "n_head": 2, "bos_token_id": eos, "eos_token_id": eos,
              "activation_function": "gelu_new", "task_specific_params": {"text-generation": {"do_sample": True,
                                                                                             "max_length": 50}}}
    return Repository("model", "openai-community/gpt2", {
        "config.json": json.dumps(config, indent=2).encode(),
        "tokenizer_config.json": json.dumps({"model_max_length": 1024}).encode(),
        "tokenizer.json": bpe.to_str().encode(),
        "vocab.json": json.dumps(dict(sorted(vocab.items(), key=lambda item: item[1]))).encode(),
        "merges.txt": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode(),
        "README.md": b"---\nlanguage: en\nlicense: mit\n---\n\n# GPT-2 (a stand-in: its tokenizer only)\n",
    }, aliases=("gpt2",))


BERT_WORDS = """the of and in to a was is for on as with by he at from his an were are which this be that or it has
had first after its new not but also one two their they who her she been have i will go run jump into lake we you
me my your our all can would there more when time than up out about so some what if no do said like just how over
film year years world war city song album game season team river king new people work""".split()


def bert(folder: Path, hidden_size: int = 32) -> Repository:
    """google-bert/bert-base-uncased (formerly bert-base-uncased), tiny: 2 layers of 2 heads, random weights, and a
    vocabulary of basic English words, with the special tokens and every letter."""
    import torch
    from transformers import BertConfig, BertModel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = list(".,;:!?'\"()-") + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    words = list(dict.fromkeys(specials + characters + BERT_WORDS + [f"##{c}" for c in characters]))
    config = BertConfig(vocab_size=len(words), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden_size, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return Repository("model", "google-bert/bert-base-uncased", {
        "config.json": (folder / "config.json").read_bytes(),
        "model.safetensors": (folder / "model.safetensors").read_bytes(),
        "vocab.txt": ("\n".join(words) + "\n").encode(),
        "tokenizer_config.json": json.dumps({"do_lower_case": True, "model_max_length": 512}).encode(),
        "README.md": b"---\nlanguage: en\nlicense: apache-2.0\n---\n\n# BERT base uncased (a stand-in: tiny, random)\n",
    }, aliases=("bert-base-uncased",))


def build_repositories(sample: Path, folder: Path) -> list[Repository]:
    """The repositories the notebook downloads, built from the WikiText sample (data/wikitext_sample.json)."""
    splits = json.loads(sample.read_text(encoding="utf-8"))
    return [wikitext(splits), gpt2(splits["train"]), bert(folder)]
