"""Kustomize's remote references, read as what to download (never with git).

Two forms (Kustomize's examples/remoteBuild.md, and its v5 parser, api/internal/git/repospec.go):

- a file URL, `https://raw.githubusercontent.com/org/repo/v1/deploy.yaml` or any http(s) URL that is
  not shaped like a repository: downloaded as it is;
- a git repository with an optional folder and query, `github.com/org/repo//path?ref=v1`,
  `https://github.com/org/repo//path?ref=v1`, `git::https://...`, `git@github.com:org/repo.git//path`,
  `ssh://git@github.com/org/repo`, `?version=` for `?ref=`: fetched as an archive of that ref over
  https, `https://codeload.github.com/<org>/<repo>/tar.gz/<ref>` for github.com and
  `https://gitlab.com/<project>/-/archive/<ref>/<name>-<ref>.tar.gz` for gitlab.com, whatever scheme
  the reference names. No ref is the default branch (`HEAD`). Other hosts are not fetched.

The folder is split from the repository as Kustomize splits it: at `_git/`, `//` or `.git`, else after
the first two path segments (`org/repo`). `?timeout=` and `?submodules=` are ignored (submodules are
not in an archive).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

CODELOAD = "https://codeload.github.com"
GITLAB = "https://gitlab.com"
_ARCHIVE_HOSTS = ("github.com", "gitlab.com")
_USER = re.compile(r"^([a-zA-Z][a-zA-Z0-9-]*)@")


@dataclass(frozen=True)
class RemoteRef:
    """What one remote entry stands for. `kind`: "file" (download `url`), "archive" (download `url`,
    a tar.gz of `ref`, and use its folder `subpath`) or "unsupported" (`reason` says why)."""

    value: str
    kind: str
    url: str = ""
    subpath: str = ""
    ref: str = ""
    reason: str = ""

    @property
    def key(self) -> str:
        """A short name for the place its content takes in a scratch copy."""
        return hashlib.sha256(f"{self.kind}\0{self.url}\0{self.subpath}".encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The file name a downloaded file keeps (Kustomize names a generator's key after it)."""
        base = posixpath.basename(urlsplit(self.url).path) if self.kind == "file" else ""
        base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
        return base or "resource.yaml"


def is_url(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


def _looks_like_repository(value: str) -> bool:
    """An http(s) URL naming a repository rather than a file: a `//` folder marker, `.git` or
    `_git/`, a `ref`/`version` query, or a github.com / gitlab.com page."""
    parts = urlsplit(value.strip())
    host = (parts.hostname or "").lower()
    query = parse_qs(parts.query)
    if "ref" in query or "version" in query:
        return True
    if "//" in parts.path or "_git/" in parts.path or re.search(r"\.git(?:/|$)", parts.path):
        return True
    return host in ("github.com", "www.github.com", "gitlab.com", "www.gitlab.com") and "/raw/" not in parts.path


def parse(value: str, repository_ok: bool = True, codeload: str = CODELOAD, gitlab: str = GITLAB) -> RemoteRef:
    """What a remote entry stands for. `repository_ok`: the field may name a repository
    (`resources`, `bases`, `components`); other fields can only name a file URL."""
    text = value.strip()
    if is_url(text) and not (repository_ok and _looks_like_repository(text)):
        return RemoteRef(value, "file", url=text)
    if not repository_ok:
        return RemoteRef(value, "unsupported", reason="only an http(s) URL of a file can be fetched for this field")
    return _repository(value, codeload.rstrip("/"), gitlab.rstrip("/"))


def _repository(value: str, codeload: str, gitlab: str) -> RemoteRef:
    n, _, query = value.strip().partition("?")
    params = parse_qs(query)
    ref = (params.get("ref") or params.get("version") or [""])[0]
    if n.lower().startswith("git::"):
        n = n[5:]
    scheme = next((s for s in ("ssh://", "https://", "http://", "file://") if n.lower().startswith(s)), "")
    n = n[len(scheme):]
    if scheme == "file://":
        return RemoteRef(value, "unsupported", reason="a file:// repository is a path on the machine that builds it")
    user = _USER.match(n)
    if user:
        n = n[len(user.group(0)):]
    github = n.lower().startswith(("github.com/", "github.com:"))
    scp = scheme == "" and (user is not None or github)
    if scheme == "" and not scp:
        return RemoteRef(value, "unsupported", reason="it is not a URL Kustomize can fetch")
    cut = n.find("/")
    if scp:
        colon = n.find(":")
        if cut == -1 or 0 < colon < cut:
            cut = colon
    if cut <= 0:
        return RemoteRef(value, "unsupported", reason="the URL names no repository")
    host, rest = n[:cut].lower(), n[cut + 1:]
    host = host.split(":", 1)[0] if not scp else host
    repo, subpath = _split_path(rest)
    if not repo:
        return RemoteRef(value, "unsupported", reason="the URL names no repository")
    subpath = posixpath.normpath(subpath.strip("/")) if subpath.strip("/") else ""
    if subpath == ".." or subpath.startswith("../"):
        return RemoteRef(value, "unsupported", reason="its folder leaves the repository")
    repo = repo.strip("/").removesuffix(".git")
    host = host.removeprefix("www.")
    if host not in _ARCHIVE_HOSTS:
        return RemoteRef(value, "unsupported", reason=f"{host} is not a host infra-review fetches archives from "
                                                      f"({' and '.join(_ARCHIVE_HOSTS)} are)")
    wanted = ref or "HEAD"
    if host == "github.com":
        if repo.count("/") != 1:
            return RemoteRef(value, "unsupported", reason=f"`{repo}` is not an owner/repository pair")
        url = f"{codeload}/{quote(repo)}/tar.gz/{quote(wanted, safe='/')}"
    else:
        name = repo.rsplit("/", 1)[-1]
        flat = wanted.replace("/", "-")
        url = f"{gitlab}/{quote(repo)}/-/archive/{quote(wanted, safe='/')}/{quote(name)}-{quote(flat)}.tar.gz"
    return RemoteRef(value, "archive", url=url, subpath=subpath, ref=wanted)


def _split_path(n: str) -> tuple[str, str]:
    """(repository path, folder in it), split as Kustomize splits them."""
    if "_git/" in n:
        head, _, tail = n.partition("_git/")
        first, _, rest = tail.partition("/")
        return head + "_git/" + first, rest
    if "//" in n:
        head, _, tail = n.partition("//")
        return head, tail
    m = re.search(r"\.git(?=/|$)", n)
    if m:
        return n[:m.end()], n[m.end():]
    segments = n.split("/")
    if len(segments) < 2:
        return "", ""
    return "/".join(segments[:2]), "/".join(segments[2:])
