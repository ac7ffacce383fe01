"""THE fake GitHub: an aiohttp server built on GitHub's own OpenAPI description (tests/fixtures/github).

Every request is matched to an operation of `openapi-subset.json` and validated (method and path,
path and query parameters, JSON body against the operation's requestBody schema). Anything GitHub
would not understand lands in `violations`, which the `fakegh` fixture asserts empty. The documented
rejections are served as GitHub serves them (422) and listed in `rejections`: more than 50
annotations, a review comment anchored outside the diff, bodies over 65,536 characters, an invalid
reaction. Failures can be programmed per operation (5xx, rate limits, answers that stall past the
client's timeout, a 401 once), and events can be made to happen just before an operation is served (a
push, the PR closed, the App uninstalled).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import io
import itertools
import json
import re
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.conftest_paths import OPENAPI

SPEC_PATH = OPENAPI
SPEC_URI = "urn:github-openapi"
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
MAX_BODY = 65_536
MAX_OUTPUT_TEXT = 65_535
MAX_ANNOTATIONS = 50
METHODS = ("get", "post", "put", "patch", "delete")


# ---------------------------------------------------------------- the spec

def _nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` has no JSON Schema meaning; rewrite it as a null alternative."""
    if isinstance(node, list):
        return [_nullable_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_jsonschema(v) for k, v in node.items()}
    if isinstance(out.get("discriminator"), dict) and "propertyName" in out["discriminator"]:
        del out["discriminator"]
    if isinstance(out.get("nullable"), bool) and not out["nullable"]:
        del out["nullable"]
    if out.get("nullable") is True:
        del out["nullable"]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    regex: re.Pattern
    params: dict[str, dict]
    body_pointer: str | None
    body_required: bool
    responses: dict


@cache
def spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


@cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(_nullable_to_jsonschema(spec()),
                                                                     default_specification=DRAFT4))


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def operations() -> tuple[Operation, ...]:
    ops = []
    for template, item in spec()["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            params = {}
            for raw in [*item.get("parameters", []), *op.get("parameters", [])]:
                p = _resolve(raw)
                params[f"{p['in']}:{p['name']}"] = p
            pattern = ""
            for piece in re.split(r"(\{[^}]+\})", template):
                if piece.startswith("{"):
                    name = piece[1:-1]
                    multi = params.get(f"path:{name}", {}).get("x-multi-segment") or name == "basehead"
                    pattern += f"(?P<{name}>{'.+' if multi else '[^/]+'})"
                else:
                    pattern += re.escape(piece)
            body = op.get("requestBody")
            pointer = None
            if body and "application/json" in _resolve(body).get("content", {}):
                pointer = "#/" + _pointer("paths", template, method, "requestBody", "content",
                                          "application/json", "schema")
            ops.append(Operation(method.upper(), template, op["operationId"], re.compile(f"^{pattern}$"),
                                 params, pointer, bool(body and _resolve(body).get("required")), op["responses"]))
    # Literal segments beat parameters: `/commits/{sha}/pulls` must not be read as `/commits/{ref}`.
    return tuple(sorted(ops, key=lambda o: -len(re.sub(r"\{[^}]+\}", "", o.template))))


def match_operation(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    for op in operations():
        if op.method == method:
            m = op.regex.match(path)
            if m:
                return op, m.groupdict()
    return None


def _check_value(name: str, raw: str, schema: dict) -> str | None:
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", raw):
        return f"{name}={raw!r} is not an integer"
    if kind == "boolean" and raw not in ("true", "false"):
        return f"{name}={raw!r} is not a boolean"
    if "enum" in schema and raw not in schema["enum"]:
        return f"{name}={raw!r} not in {schema['enum']}"
    return None


def validate_request(op: Operation, path_params: dict[str, str], query: dict[str, str], body: Any,
                     has_body: bool) -> list[str]:
    """What GitHub's OpenAPI description says is wrong with this request ([] if nothing)."""
    problems = []
    for name, raw in path_params.items():
        p = op.params.get(f"path:{name}")
        if p is None:
            problems.append(f"path parameter {name} is not described")
        elif err := _check_value(name, raw, p.get("schema", {})):
            problems.append(err)
    for name, raw in query.items():
        p = op.params.get(f"query:{name}")
        if p is None:
            problems.append(f"query parameter {name!r} is not accepted by {op.operation_id}")
        elif err := _check_value(name, raw, p.get("schema", {})):
            problems.append(err)
    for key, p in op.params.items():
        if key.startswith("query:") and p.get("required") and key[6:] not in query:
            problems.append(f"required query parameter {key[6:]} missing")
    if op.body_pointer is None:
        if has_body and body not in (None, {}):
            problems.append(f"{op.operation_id} takes no request body")
        return problems
    if not has_body:
        if op.body_required:
            problems.append(f"{op.operation_id} requires a JSON body")
        return problems
    validator = Draft4Validator({"$ref": SPEC_URI + op.body_pointer}, registry=_registry())
    for error in validator.iter_errors(body):
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        problems.append(f"body {where}: {error.message[:300]}")
    return problems


def example(operation_id: str, status: str | None = None, name: str | None = None) -> Any:
    """A deep copy of the spec's example response for an operation (first 2xx, or `status`)."""
    op = next(o for o in operations() if o.operation_id == operation_id)
    codes = [status] if status else sorted(c for c in op.responses if c.startswith("2"))
    for code in codes:
        content = _resolve(op.responses[code]).get("content", {}).get("application/json", {})
        examples = content.get("examples", {})
        if examples:
            chosen = examples[name] if name else next(iter(examples.values()))
            return copy.deepcopy(_resolve(chosen)["value"])
    raise KeyError(f"no example for {operation_id}")


# ---------------------------------------------------------------- diff anchors

def commentable_lines(patch: str | None) -> dict[str, set[int]]:
    """Lines a review comment may anchor to: RIGHT = new-side lines in hunks, LEFT = old-side lines."""
    sides: dict[str, set[int]] = {"RIGHT": set(), "LEFT": set()}
    old = new = 0
    for line in (patch or "").splitlines():
        header = re.match(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", line)
        if header:
            old, new = int(header.group(1)), int(header.group(2))
        elif line.startswith("+"):
            sides["RIGHT"].add(new)
            new += 1
        elif line.startswith("-"):
            sides["LEFT"].add(old)
            old += 1
        elif line.startswith("\\"):
            continue
        else:
            sides["RIGHT"].add(new)
            sides["LEFT"].add(old)
            old += 1
            new += 1
    return sides


def patch_positions(patch: str | None) -> int:
    return max(len((patch or "").splitlines()) - 1, 0)


# ---------------------------------------------------------------- state

@dataclass
class FakePull:
    number: int
    head_sha: str
    base_sha: str
    merge_base: str
    author: str = "Codertocat"
    base_ref: str = "main"
    head_ref: str = "changes"
    state: str = "open"
    draft: bool = False
    files: list[dict] = field(default_factory=list)


@dataclass
class FakeRepo:
    full_name: str
    default_branch: str = "main"
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)
    pulls: dict[int, FakePull] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    operation_id: str | None
    query: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    operation_id: str
    status: int
    times: int
    headers: dict[str, str]
    message: str
    stall: float = 0.0  # seconds before answering: longer than the client's timeout, it is a timeout
    skip: int = 0  # requests of the operation served normally before the failures start


def tarball(prefix: str, files: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A gzipped tarball shaped like GitHub's: everything under one `owner-repo-sha/` folder."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        top = tarfile.TarInfo(prefix)
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return gzip.compress(raw.getvalue())


class FakeGitHub:
    """State and behaviour of the fake; `app` is the aiohttp application to serve."""

    def __init__(self, *, app_id: int, private_key: str, app_slug: str = "infra-review") -> None:
        self.app_id = app_id
        self.app_slug = app_slug
        self._public_key = load_pem_private_key(private_key.encode(), None).public_key()
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.rejections: list[str] = []
        self.failures: list[Failure] = []
        self.tokens: dict[str, int] = {}
        self.check_runs: dict[int, dict] = {}
        self.annotations: dict[int, list[dict]] = {}
        self.reviews: list[dict] = []
        self.review_comments: list[dict] = []
        self.issue_comments: list[dict] = []
        self.reactions: list[dict] = []
        self.rate_limit_resets: list[int] = []
        self._ids = itertools.count(1000)
        self.expired: set[str] = set()
        self.uninstalled: set[int] = set()
        self._before: list[tuple[str, int, Callable[[], None]]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/_codeload/{owner}/{repo}/{ref}", self._codeload)
        # GitHub's web pages of the App-manifest flow (not API operations): the form posts the manifest,
        # GitHub answers with a redirect to the manifest's redirect_url carrying a one-time code.
        self.app.router.add_post("/settings/apps/new", self._new_app_from_manifest)
        self.app.router.add_post("/organizations/{org}/settings/apps/new", self._new_app_from_manifest)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.private_key = private_key
        self.webhook_secret = "whsec-from-the-manifest-flow"
        self.manifests: dict[str, dict] = {}  # code -> the manifest it registered

    # ---- programming the fake

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> FakeRepo:
        return self.repos.setdefault(full_name, FakeRepo(full_name, default_branch))

    def add_pull(self, repo: str, pull: FakePull) -> FakePull:
        self.add_repo(repo).pulls[pull.number] = pull
        return pull

    def fail(self, operation_id: str, *, status: int = 502, times: int = 1, headers: dict[str, str] | None = None,
             message: str = "Server Error", stall: float = 0.0, skip: int = 0) -> None:
        """After `skip` normal answers, the next `times` requests of the operation (or "codeload", the
        tarball's redirect target) get this answer, after `stall` seconds."""
        self.failures.append(Failure(operation_id, status, times, headers or {}, message, stall, skip))

    def before(self, operation_id: str, action: Callable[[], None], nth: int = 1) -> None:
        """Run `action` once, when the operation is requested for the `nth` time (counted from now):
        something happens mid-review. The request is then served as usual."""
        seen = sum(1 for r in self.requests if r.operation_id == operation_id)
        self._before.append((operation_id, seen + nth, action))

    def uninstall(self, installation_id: int) -> None:
        """The App is uninstalled: its tokens stop working and no new one is issued (GitHub: 401, 404)."""
        self.uninstalled.add(installation_id)

    def secondary_rate_limit(self, operation_id: str, *, retry_after: int | None = 7) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        self.fail(operation_id, status=403, headers=headers,
                  message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")

    def expire_tokens(self) -> None:
        """Every installation token issued so far stops working (GitHub answers 401)."""
        self.expired |= set(self.tokens)
        self.tokens.clear()

    def exhaust_rate_limit(self, reset_at: int) -> None:
        """The next response carries `x-ratelimit-remaining: 0` and this reset time."""
        self.rate_limit_resets.append(reset_at)

    def calls(self, operation_id: str) -> list[Recorded]:
        return [r for r in self.requests if r.operation_id == operation_id]

    def user(self, login: str, kind: str = "User") -> dict:
        """A `simple-user` as GitHub shows the author of a comment."""
        data = example("pulls/list-review-comments")[0]["user"]
        data.update(login=login, type=kind, id=zlib.crc32(login.encode()))
        return data

    def bot_user(self) -> dict:
        """The App's bot user: the author GitHub records for whatever the App posts."""
        return self.user(f"{self.app_slug}[bot]", "Bot")

    # ---- plumbing

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                   "x-ratelimit-reset": str(int(time.time()) + 3600), **(headers or {})}
        if self.rate_limit_resets:
            headers.update({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(self.rate_limit_resets.pop(0))})
        return web.json_response(data, status=status, headers=headers)

    def _reject(self, rec: Recorded, why: str) -> web.Response:
        self.rejections.append(f"{rec.operation_id}: {why}")
        return self._json({"message": "Validation Failed", "errors": [why],
                           "documentation_url": "https://docs.github.com/rest"}, 422)

    def _auth(self, request: web.Request, op: Operation) -> tuple[str, Any] | web.Response:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if op.template.startswith("/app-manifests/"):  # the one-time code is the credential
            return "manifest", None
        if op.template.startswith("/app"):
            if scheme.lower() != "bearer":
                self.violations.append(f"{op.operation_id} needs the App JWT, got {scheme or 'nothing'}")
                return self._json({"message": "A JSON web token could not be decoded"}, 401)
            try:
                claims = jwt.decode(credential, self._public_key, algorithms=["RS256"],
                                    options={"require": ["iat", "exp", "iss"]}, leeway=60)
            except jwt.PyJWTError as exc:
                self.violations.append(f"bad App JWT: {exc}")
                return self._json({"message": "A JSON web token could not be decoded"}, 401)
            if claims["iss"] != str(self.app_id) or claims["exp"] - claims["iat"] > 600:
                self.violations.append(f"App JWT claims rejected: {claims}")
                return self._json({"message": "'Expiration time' claim ('exp') is too far in the future"}, 401)
            return "app", claims
        if scheme.lower() == "token" and credential in self.expired:
            return self._json({"message": "Bad credentials"}, 401)
        if scheme.lower() != "token" or credential not in self.tokens:
            self.violations.append(f"{op.operation_id} without a valid installation token")
            return self._json({"message": "Bad credentials"}, 401)
        if self.tokens[credential] in self.uninstalled:
            return self._json({"message": "Bad credentials"}, 401)
        return "installation", self.tokens[credential]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body, has_body = None, bool(raw)
        if has_body:
            try:
                body = json.loads(raw)
            except ValueError:
                self.violations.append(f"{request.method} {request.path}: body is not JSON")
        matched = match_operation(request.method, request.path)
        rec = Recorded(request.method, request.path, matched[0].operation_id if matched else None,
                       dict(request.query), body)
        self.requests.append(rec)
        if matched is None:
            self.violations.append(f"{request.method} {request.path}: no such operation in the OpenAPI subset")
            rec.status = 404
            return self._json({"message": "Not Found"}, 404)
        op, params = matched
        self._run_before(op.operation_id)
        response = await self._serve(request, op, params, rec, body, has_body)
        rec.status = response.status
        return response

    def _run_before(self, operation_id: str) -> None:
        """Called once the request is recorded, so the count includes it."""
        count = sum(1 for r in self.requests if r.operation_id == operation_id)
        for i, (when, nth, action) in enumerate(self._before):
            if when == operation_id and nth == count:
                del self._before[i]
                action()
                return

    async def _programmed_failure(self, operation_id: str) -> web.Response | None:
        for failure in self.failures:
            if failure.operation_id == operation_id and failure.times > 0:
                if failure.skip:
                    failure.skip -= 1
                    return None
                failure.times -= 1
                if failure.stall:
                    await asyncio.sleep(failure.stall)
                return self._json({"message": failure.message}, failure.status, failure.headers)
        return None

    async def _serve(self, request: web.Request, op: Operation, params: dict[str, str], rec: Recorded,
                     body: Any, has_body: bool) -> web.StreamResponse:
        auth = self._auth(request, op)
        if isinstance(auth, web.Response):
            return auth
        failed = await self._programmed_failure(op.operation_id)
        if failed is not None:
            return failed
        rejection = self._documented_rejection(op, params, body)
        if rejection:
            return self._reject(rec, rejection)
        problems = validate_request(op, params, dict(request.query), body, has_body)
        if problems:
            self.violations += [f"{op.operation_id}: {p}" for p in problems]
            return self._json({"message": "Invalid request.", "errors": problems}, 422)
        handler = getattr(self, "op_" + op.operation_id.replace("/", "__").replace("-", "_"), None)
        if handler is None:
            self.violations.append(f"{op.operation_id}: the fake does not implement it yet")
            return self._json({"message": "Not implemented by the fake"}, 501)
        return await handler(request, params, body or {})

    def _documented_rejection(self, op: Operation, params: dict[str, str], body: Any) -> str | None:
        if not isinstance(body, dict):
            return None
        output = body.get("output") or {}
        if isinstance(output, dict):
            if len(output.get("annotations") or []) > MAX_ANNOTATIONS:
                return f"Only {MAX_ANNOTATIONS} annotations are allowed per request"
            for key in ("summary", "text"):
                if len(output.get(key) or "") > MAX_OUTPUT_TEXT:
                    return f"output.{key} is too long (maximum is {MAX_OUTPUT_TEXT} characters)"
        texts = [body.get("body")] + [c.get("body") for c in body.get("comments") or [] if isinstance(c, dict)]
        if any(isinstance(t, str) and len(t) > MAX_BODY for t in texts):
            return f"body is too long (maximum is {MAX_BODY} characters)"
        if op.operation_id.startswith("reactions/create") and body.get("content") not in REACTIONS:
            return f"content {body.get('content')!r} is not a valid reaction"
        if op.operation_id in ("pulls/create-review", "pulls/create-review-comment"):
            pull = self._pull(params)
            comments = body.get("comments") or [] if op.operation_id == "pulls/create-review" else [body]
            for c in comments:
                if pull is not None and isinstance(c, dict) and (why := self._bad_anchor(pull, c)):
                    return why
        return None

    def _bad_anchor(self, pull: FakePull, comment: dict) -> str | None:
        files = {f["filename"]: f for f in pull.files}
        path = comment.get("path")
        if path not in files:
            return f"Path {path!r} is not part of the diff"
        patch = files[path].get("patch")
        if "line" not in comment and "position" in comment:
            return None if 1 <= comment["position"] <= patch_positions(patch) else "position is outside the diff"
        if "line" not in comment:
            return None if comment.get("subject_type") == "file" else "line or position is required"
        lines = commentable_lines(patch)
        side = comment.get("side", "RIGHT")
        if comment["line"] not in lines.get(side, set()):
            return f"Line {comment['line']} ({side}) of {path} could not be resolved: it is not part of the diff"
        if "start_line" in comment and comment["start_line"] not in lines.get(comment.get("start_side", side), set()):
            return f"start_line {comment['start_line']} of {path} is not part of the diff"
        return None

    def _repo(self, params: dict[str, str]) -> FakeRepo | None:
        return self.repos.get(f"{params['owner']}/{params['repo']}")

    def _pull(self, params: dict[str, str]) -> FakePull | None:
        repo = self._repo(params)
        return repo.pulls.get(int(params["pull_number"])) if repo else None

    def _not_found(self) -> web.Response:
        return self._json({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404)

    def _page(self, request: web.Request, items: list) -> web.Response:
        per_page = int(request.query.get("per_page", 30))
        page = int(request.query.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = request.url.update_query(page=str(page + 1), per_page=str(per_page))
            headers["link"] = f'<{nxt}>; rel="next"'
        return self._json(chunk, headers=headers)

    async def _new_app_from_manifest(self, request: web.Request) -> web.StreamResponse:
        """GitHub's "Create GitHub App" page, confirmed at once: validate the manifest as GitHub does
        (a name, a redirect URL, known permission levels), then redirect with a code and the state."""
        form = await request.post()
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            self.violations.append("manifest flow: the manifest is not JSON")
            return web.Response(status=422, text="Invalid manifest")
        levels = {"read", "write"}
        problems = [f"{key} is missing" for key in ("name", "url", "redirect_url", "hook_attributes")
                    if not manifest.get(key)]
        problems += [f"permission {k}: {v}" for k, v in (manifest.get("default_permissions") or {}).items()
                     if v not in levels]
        if problems:
            self.violations += [f"manifest flow: {p}" for p in problems]
            return web.Response(status=422, text="; ".join(problems))
        code = f"code{next(self._ids)}"
        self.manifests[code] = manifest
        state = request.query.get("state", "")
        raise web.HTTPFound(f"{manifest['redirect_url']}?{urlencode({'code': code, 'state': state})}")

    # ---- operations (named after operationId)

    async def op_apps__create_from_manifest(self, request, params, body):
        manifest = self.manifests.pop(params["code"], None)
        if manifest is None:
            return self._json({"message": "Not Found"}, 404)
        data = example("apps/create-from-manifest")
        data.update(id=self.app_id, slug=self.app_slug, name=manifest["name"], pem=self.private_key,
                    webhook_secret=self.webhook_secret, html_url=f"https://github.com/apps/{self.app_slug}",
                    permissions=manifest.get("default_permissions", {}), events=manifest.get("default_events", []))
        return self._json(data, 201)


    async def op_apps__create_installation_access_token(self, request, params, body):
        if int(params["installation_id"]) in self.uninstalled:
            return self._not_found()
        token = f"ghs_fake{next(self._ids)}"
        self.tokens[token] = int(params["installation_id"])
        data = example("apps/create-installation-access-token")
        data.update(token=token, expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)))
        return self._json(data, 201)

    async def op_apps__get_authenticated(self, request, params, body):
        data = example("apps/get-authenticated")
        data["id"] = self.app_id
        return self._json(data)

    async def op_repos__get(self, request, params, body):
        repo = self._repo(params)
        if repo is None:
            return self._not_found()
        data = example("repos/get")
        data.update(name=params["repo"], full_name=repo.full_name, default_branch=repo.default_branch)
        return self._json(data)

    def _pull_json(self, repo: FakeRepo, pull: FakePull) -> dict:
        data = example("pulls/get")
        data.update(number=pull.number, state=pull.state, draft=pull.draft)
        data["user"]["login"] = pull.author
        data["head"].update(sha=pull.head_sha, ref=pull.head_ref)
        data["base"].update(sha=pull.base_sha, ref=pull.base_ref)
        data["base"]["repo"].update(full_name=repo.full_name, name=repo.full_name.split("/")[1])
        return data

    async def op_pulls__get(self, request, params, body):
        pull = self._pull(params)
        if pull is None:
            return self._not_found()
        return self._json(self._pull_json(self._repo(params), pull))

    async def op_repos__list_pull_requests_associated_with_commit(self, request, params, body):
        repo = self._repo(params)
        if repo is None:
            return self._not_found()
        found = [p for p in repo.pulls.values() if p.head_sha == params["commit_sha"]]
        return self._page(request, [self._pull_json(repo, p) for p in found])

    def _diff_entries(self, pull: FakePull) -> list[dict]:
        """The PR's files as GitHub's `diff-entry`, which both pulls/list-files and a compare return."""
        template = example("pulls/list-files")[0]
        items = []
        for f in pull.files:
            item = {**template, "filename": f["filename"], "status": f.get("status", "modified"),
                    "additions": f.get("additions", 0), "deletions": f.get("deletions", 0),
                    "changes": f.get("additions", 0) + f.get("deletions", 0)}
            item.pop("patch", None)
            if f.get("patch") is not None:
                item["patch"] = f["patch"]
            if f.get("previous_filename"):
                item["previous_filename"] = f["previous_filename"]
            items.append(item)
        return items

    async def op_pulls__list_files(self, request, params, body):
        pull = self._pull(params)
        if pull is None:
            return self._not_found()
        return self._page(request, self._diff_entries(pull))

    async def op_repos__compare_commits(self, request, params, body):
        """Like GitHub: with a page size the files come on page 1 only, at most 300 of them."""
        repo = self._repo(params)
        base, sep, head = params["basehead"].partition("...")
        if repo is None or not sep:
            return self._not_found()
        pull = next((p for p in repo.pulls.values() if p.head_sha == head), None)
        data = example("repos/compare-commits")
        data["merge_base_commit"]["sha"] = pull.merge_base if pull else base
        first_page = request.query.get("page", "1") == "1"
        data["files"] = self._diff_entries(pull)[:300] if pull and first_page else []
        return self._json(data)

    async def op_repos__download_tarball_archive(self, request, params, body):
        repo = self._repo(params)
        if repo is None or params["ref"] not in repo.trees:
            return self._not_found()
        location = f"/_codeload/{params['owner']}/{params['repo']}/{quote(params['ref'], safe='')}"
        raise web.HTTPFound(location=str(request.url.with_path(location).with_query({"token": "codeload-t"})))

    async def _codeload(self, request: web.Request) -> web.Response:
        owner, name, ref = request.match_info["owner"], request.match_info["repo"], request.match_info["ref"]
        rec = Recorded("GET", request.path, "codeload", dict(request.query), None, 200)
        self.requests.append(rec)
        self._run_before("codeload")
        failed = await self._programmed_failure("codeload")
        if failed is not None:
            rec.status = failed.status
            return failed
        repo = self.repos.get(f"{owner}/{name}")
        if repo is None or ref not in repo.trees:
            return web.Response(status=404)
        return web.Response(body=tarball(f"{owner}-{name}-{ref[:7]}", repo.trees[ref]),
                            content_type="application/x-gzip")

    async def op_repos__get_content(self, request, params, body):
        repo = self._repo(params)
        if repo is None:
            return self._not_found()
        ref = request.query.get("ref", repo.default_branch)
        content = repo.trees.get(ref, {}).get(params["path"])
        if content is None:
            return self._not_found()
        data = example("repos/get-content", name="response-if-content-is-a-file")
        data.update(type="file", encoding="base64", path=params["path"], name=params["path"].rsplit("/", 1)[-1],
                    size=len(content), content=base64.encodebytes(content).decode())
        return self._json(data)

    async def op_repos__get_collaborator_permission_level(self, request, params, body):
        repo = self._repo(params)
        if repo is None:
            return self._not_found()
        role = repo.roles.get(params["username"], "read")
        data = example("repos/get-collaborator-permission-level")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        data.update(permission=legacy, role_name=role)
        data["user"]["login"] = params["username"]
        return self._json(data)

    async def op_reactions__create_for_issue_comment(self, request, params, body):
        data = example("reactions/create-for-issue-comment")
        data.update(id=next(self._ids), content=body["content"])
        self.reactions.append({"comment_id": int(params["comment_id"]), **data})
        return self._json(data, 201)

    async def op_reactions__list_for_issue_comment(self, request, params, body):
        cid = int(params["comment_id"])
        return self._page(request, [r for r in self.reactions if r["comment_id"] == cid])

    def _check_run_json(self, run: dict) -> dict:
        data = example("checks/get")
        data.update({k: v for k, v in run.items() if k != "output"})
        data["output"] = {**data.get("output", {}), **{k: v for k, v in (run.get("output") or {}).items()
                                                        if k != "annotations"},
                          "annotations_count": len(self.annotations.get(run["id"], []))}
        data["app"].update(id=self.app_id, slug=self.app_slug)
        return data

    async def op_checks__create(self, request, params, body):
        run_id = next(self._ids)
        run = {"id": run_id, "status": "queued", "conclusion": None, **body,
               "repo": f"{params['owner']}/{params['repo']}"}
        self.check_runs[run_id] = run
        self.annotations[run_id] = list((body.get("output") or {}).get("annotations") or [])
        return self._json(self._check_run_json(run), 201)

    async def op_checks__update(self, request, params, body):
        run = self.check_runs.get(int(params["check_run_id"]))
        if run is None:
            return self._not_found()
        output = body.get("output")
        run.update({k: v for k, v in body.items() if k != "output"})
        if output:
            run["output"] = {**(run.get("output") or {}), **output}
            self.annotations[run["id"]] += list(output.get("annotations") or [])
        if body.get("conclusion") and "status" not in body:
            run["status"] = "completed"
        return self._json(self._check_run_json(run))

    async def op_checks__get(self, request, params, body):
        run = self.check_runs.get(int(params["check_run_id"]))
        return self._json(self._check_run_json(run)) if run else self._not_found()

    async def op_checks__list_for_ref(self, request, params, body):
        repo = f"{params['owner']}/{params['repo']}"
        runs = [self._check_run_json(r) for r in self.check_runs.values()
                if r["repo"] == repo and r["head_sha"] == params["ref"]
                and request.query.get("check_name", r["name"]) == r["name"]]
        return self._json({"total_count": len(runs), "check_runs": runs})

    async def op_checks__list_annotations(self, request, params, body):
        return self._page(request, self.annotations.get(int(params["check_run_id"]), []))

    async def op_pulls__create_review(self, request, params, body):
        pull = self._pull(params)
        if pull is None:
            return self._not_found()
        data = example("pulls/create-review")
        review_id = next(self._ids)
        data.update(id=review_id, body=body.get("body", ""), commit_id=body.get("commit_id", pull.head_sha),
                    user=self.bot_user(),
                    state={"COMMENT": "COMMENTED", "APPROVE": "APPROVED",
                           "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(body.get("event", ""), "PENDING"))
        self.reviews.append({"pull": pull.number, **data})
        for c in body.get("comments") or []:
            self._add_review_comment(pull, c, review_id, self.bot_user())
        return self._json(data)

    def _add_review_comment(self, pull: FakePull, c: dict, review_id: int | None, user: dict | None = None) -> dict:
        """Comments posted through the API are the App's; tests pass `user` for anyone else's."""
        data = example("pulls/list-review-comments")[0]
        data.update(id=next(self._ids), body=c["body"], path=c["path"], line=c.get("line"),
                    side=c.get("side", "RIGHT"), pull_request_review_id=review_id, in_reply_to_id=c.get("in_reply_to"),
                    user=user or self.user("octocat"))
        self.review_comments.append({"pull": pull.number, **data})
        return data

    async def op_pulls__create_review_comment(self, request, params, body):
        pull = self._pull(params)
        if pull is None:
            return self._not_found()
        return self._json(self._add_review_comment(pull, body, None, self.bot_user()), 201)

    async def op_pulls__list_reviews(self, request, params, body):
        pull = self._pull(params)
        return self._page(request, [r for r in self.reviews if pull and r["pull"] == pull.number])

    async def op_pulls__list_review_comments(self, request, params, body):
        pull = self._pull(params)
        return self._page(request, [c for c in self.review_comments if pull and c["pull"] == pull.number])

    async def op_pulls__delete_review_comment(self, request, params, body):
        cid = int(params["comment_id"])
        before = len(self.review_comments)
        self.review_comments = [c for c in self.review_comments if c["id"] != cid]
        return web.Response(status=204) if len(self.review_comments) < before else self._not_found()

    async def op_issues__create_comment(self, request, params, body):
        data = example("issues/create-comment")
        data.update(id=next(self._ids), body=body["body"])
        self.issue_comments.append({"issue": int(params["issue_number"]), **data})
        return self._json(data, 201)

    async def op_issues__list_comments(self, request, params, body):
        number = int(params["issue_number"])
        return self._page(request, [c for c in self.issue_comments if c["issue"] == number])
