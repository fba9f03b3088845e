"""``contactrank serve``: the lookup API dialers and CRMs call at the moment of a call (docs/serve.md).

- ``GET /v1/persons/{person_id}/priority``: the person's rows of docs/contract.md §2, in rank order;
- ``GET /v1/exports/latest``: the manifest of the export being served, with its date;
- ``GET /healthz``: no key; which export is loaded (503 until one is).

Every answer of the two ``/v1`` routes comes from one export, named in the ``X-Export-Date``
header: a poller thread loads a newer committed export whole (``contactrank.serve_index``) and then
replaces one reference, which a request reads once. Only persons of the committed export are
served (it has no suppressed person); a person erased after the export was published is refused
from the erasure records, re-read whenever that file changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.convertors import PathConvertor, register_url_convertor

from contactrank.errors import ContactrankError
from contactrank.serve_index import (
    NO_ERASURES,
    Erasures,
    ExportIndex,
    Identity,
    erasure_stamp,
    load_erasures,
    load_export,
    newest_committed,
    priority_root,
)
from contactrank.settings import Settings

log = logging.getLogger(__name__)

API_KEY_ENV = "CONTACTRANK_API_KEY"
API_KEY_FILE_ENV = "CONTACTRANK_API_KEY_FILE"
EXPORT_DATE_HEADER = "X-Export-Date"
DEFAULT_POLL_SECONDS = 5.0
# The answers carry personal data (addresses): no cache on the way may keep them.
_NO_STORE = {"Cache-Control": "no-store"}


class _AnyText(PathConvertor):
    """Starlette's ``path`` convertor matches no newline (``.*``): an id holding one would get the
    router's 404 instead of this API's 422, so the person segment matches any character."""

    regex = "(?s:.*)"


register_url_convertor("person_id", _AnyText())


def read_api_key(env: dict[str, str] | None = None) -> bytes:
    """The key from ``CONTACTRANK_API_KEY_FILE`` (a mounted secret) or ``CONTACTRANK_API_KEY``."""
    env = dict(os.environ) if env is None else env
    path = env.get(API_KEY_FILE_ENV)
    if path:
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise ContactrankError(f"{API_KEY_FILE_ENV}={path}: {exc.strerror or exc}") from None
        if not key:
            raise ContactrankError(f"{API_KEY_FILE_ENV}={path} is empty")
    else:
        key = (env.get(API_KEY_ENV) or "").strip()
    if not key:
        raise ContactrankError(f"no API key: set {API_KEY_ENV} or {API_KEY_FILE_ENV} (a file holding it)")
    if any(c.isspace() for c in key):
        raise ContactrankError("the API key holds whitespace: a Bearer token cannot carry it")
    return key.encode()


def _digest(value: bytes) -> bytes:
    # comparing fixed-length digests keeps even the key's length out of the timing
    return hashlib.sha256(value).digest()


def id_problem(person_id: str, max_length: int) -> str | None:
    """Why ``person_id`` is not a valid id (None when it is): empty, too long, a control character."""
    if not person_id:
        return "empty person id"
    if len(person_id) > max_length:
        return f"person id longer than {max_length} characters"
    if any(unicodedata.category(c) == "Cc" for c in person_id):
        return "control character in the person id"
    return None


@dataclass
class ServeState:
    """What the requests read: one reference each, replaced whole by the poller, never mutated."""

    index: ExportIndex | None = None
    erasures: Erasures = NO_ERASURES
    failed: Identity | None = None  # an export that failed to load: not retried until it changes
    lock: threading.Lock = field(default_factory=threading.Lock)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"detail": detail}, status, headers)


def create_app(settings: Settings, state: ServeState, api_key: bytes) -> FastAPI:
    """The ASGI app over ``state``; the poller (``refresh``) keeps ``state`` current."""
    # no /docs, /redoc or /openapi.json: every route but /healthz needs the key
    app = FastAPI(title="contactrank", docs_url=None, redoc_url=None, openapi_url=None)
    expected = _digest(api_key)
    max_length = settings.max_string_length

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip().encode()), expected)

    unauthorized = {"WWW-Authenticate": "Bearer", **_NO_STORE}

    async def person_priority(request: Request) -> Response:
        person_id = request.path_params["person_id"]
        if not authorized(request):
            return _problem(401, "missing or wrong API key", unauthorized)
        problem = id_problem(person_id, max_length)
        if problem:
            return _problem(422, problem, _NO_STORE)
        index = state.index  # read once: rows, header and manifest all from this export
        if index is None:
            return _problem(503, "no committed export loaded yet", _NO_STORE)
        headers = {EXPORT_DATE_HEADER: index.date.isoformat(), **_NO_STORE}
        pseudonymised = bool(index.manifest.get("pseudonymised"))
        rows = None if state.erasures.erased(person_id, pseudonymised) else index.rows(person_id)
        if rows is None:  # erased or never exported: the same answer, an erasure is not disclosed
            return _problem(404, "person not in the export", headers)
        return _json(rows, headers=headers)

    async def latest(request: Request) -> Response:
        if not authorized(request):
            return _problem(401, "missing or wrong API key", unauthorized)
        index = state.index
        if index is None:
            return _problem(503, "no committed export loaded yet", _NO_STORE)
        body = {**index.manifest, "date": index.date.isoformat(), "served": index.summary()}
        return _json(body, headers={EXPORT_DATE_HEADER: index.date.isoformat(), **_NO_STORE})

    async def healthz(request: Request) -> Response:
        index = state.index
        body = {
            "status": "ok" if index else "no_export",
            "export": index.summary() if index else None,
            "erased_persons": len(state.erasures.hashes),
        }
        return _json(body, 200 if index else 503, _NO_STORE)

    # Plain Starlette endpoints (request in, response out): FastAPI's parameter machinery cost about
    # 4x the time of the whole lookup (bench/serve.py) and these routes parse nothing it would check.
    # The person segment takes any text, "/" (sent as %2F) and the empty id included: the validation
    # above answers 422 for the bad ones, where the router would answer a bare 404.
    app.add_route("/v1/persons/{person_id:person_id}/priority", person_priority, methods=["GET"])
    app.add_route("/v1/exports/latest", latest, methods=["GET"])
    app.add_route("/healthz", healthz, methods=["GET"])
    return app


def refresh(settings: Settings, state: ServeState) -> bool:
    """One poll: re-read the erasure records if they changed, load a newer export if one is committed.

    Returns whether the export was swapped. The erasures are swapped before the export so that a
    new export is never served with older erasure records than the ones already in force."""
    with state.lock:  # one refresh at a time (the start-up load and the poller thread)
        if erasure_stamp(settings) != state.erasures.stamp:
            state.erasures = load_erasures(settings)
            log.info("erasure records re-read: %d erased persons", len(state.erasures.hashes))
        found = newest_committed(priority_root(settings))
        if found is None:
            return False
        d, folder, identity = found
        current = state.index.identity if state.index else None
        if identity in (current, state.failed):
            return False
        try:
            index = load_export(d, folder, identity)
        except (OSError, ValueError, ContactrankError) as exc:
            # keep serving the export already loaded; a later publish (a new identity) is tried again
            state.failed = identity
            log.error("export %s not loaded, still serving %s: %s", folder, current and current[0], exc)
            return False
        state.index = index
        log.info(
            "serving export %s: %d rows, %d persons, loaded in %.2fs",
            d,
            index.num_rows,
            index.persons,
            index.load_seconds,
        )
        return True


def _poll(settings: Settings, state: ServeState, stop: threading.Event, seconds: float) -> None:
    while not stop.wait(seconds):
        try:
            refresh(settings, state)
        except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
            log.exception("refresh failed; retrying in %.1fs", seconds)


def run(settings: Settings, host: str, port: int, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
    """Load the newest committed export, then serve until interrupted, polling for newer ones."""
    api_key = read_api_key()
    if poll_seconds <= 0:
        raise ContactrankError(f"--poll-seconds must be positive, not {poll_seconds}")
    state = ServeState()
    refresh(settings, state)
    if state.index is None:
        log.warning(
            "no committed export under %s yet: /healthz answers 503 until one is", priority_root(settings)
        )
    stop = threading.Event()
    poller = threading.Thread(
        target=_poll, args=(settings, state, stop, poll_seconds), name="export-poller", daemon=True
    )
    poller.start()
    # access_log off: request paths hold person ids, which must not end up in the logs
    config = uvicorn.Config(
        create_app(settings, state, api_key),
        host=host,
        port=port,
        access_log=False,
        server_header=False,
        log_level="info",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
        poller.join(timeout=poll_seconds + 1)
