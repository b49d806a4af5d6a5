"""POST /score, per request: as plain ASGI (no router, request or response objects), or answered
by the HTTP protocol itself for a plain request whose body it holds whole (``protocol.py``).

Bearer check, bounded body read, orjson parse, the spec's checks in vectorised passes
(``model/rows.py``), one matrix product (the model's affine form, verified at load) or one
``predict_proba``, orjson response with pre-encoded headers, a tally for the metrics (folded in
bulk) and a log line joined from the bytes already in hand. Everything slow (model loading,
request-log serialisation and I/O) runs in threads, in ``state.py``.
"""

import logging
import os
import re
import time

import orjson

from mlops_assets.model.loaded import LoadedModel, score_rows
from mlops_assets.model.rows import PayloadError, Rows, duplicate_key, rows_from_payload
from mlops_assets.project.rules import shown
from mlops_assets.serving.line_budget import REFUSAL_LINES
from mlops_assets.serving.request_log import record_line
from mlops_assets.serving.state import ServiceState

log = logging.getLogger("mlops_assets.serving")
SYNTHETIC_HEADER = b"x-mlops-synthetic"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
NON_FINITE = re.compile(rb"(?<![\w\"])-?(NaN|Infinity)(?![\w\"])")


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody is left to answer."""


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_response(
    status: int, message: str, request_id: str, *headers: tuple[bytes, bytes]
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    body = orjson.dumps({"error": message, "request_id": request_id})
    return status, body, [(b"x-request-id", request_id.encode()), *headers]


async def send_error(send, status: int, message: str, request_id: str, *headers: tuple[bytes, bytes]) -> None:
    await _send(send, *_error_response(status, message, request_id, *headers))


class RequestHead:
    """What a /score request's headers say, read in one pass (names arrive lower-cased; the first
    of each counts), and when it began."""

    __slots__ = ("authorization", "declared", "request_id", "started", "synthetic", "trace")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = time.perf_counter()
        self.request_id = os.urandom(16).hex()  # a third of uuid4's cost, the same 128 random bits
        authorization = declared = synthetic = traceparent = None
        for name, value in headers:
            if name == b"authorization":
                authorization = authorization or value
            elif name == b"content-length":
                declared = declared or value
            elif name == b"traceparent":
                traceparent = traceparent or value
            elif name == SYNTHETIC_HEADER:
                synthetic = synthetic or value
        self.authorization = authorization
        self.declared = declared
        self.synthetic = synthetic is not None and synthetic.lower() in (b"1", b"true", b"yes")
        self.trace = traceparent.decode("latin-1") if traceparent else None


class ScoreHandler:
    """The per-request side of the service: it holds nothing of its own between requests, only
    the process's state (the model is read once per request: a swap never splits one).

    Two ways in, one answer: ``score`` is POST /score as ASGI; ``answer`` computes a response from
    a request's head and whole body, synchronously, for a server that has both in hand
    (``protocol.py`` answers a plain request this way, without an ASGI cycle)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.config = state.config
        self.writer = state.writer  # these three live as long as the process: bound once
        self.tally = state.tally

    @property
    def model(self) -> LoadedModel | None:
        """The model a request arriving now is scored with."""
        return self.state.model

    async def score(self, scope: dict, receive, send) -> None:
        """POST /score as plain ASGI: refused before its body is read where the head says so
        (key, readiness, log backlog), the body taken from the first message when it came whole."""
        head = RequestHead(scope["headers"])
        model = self.state.model
        refusal = self.refusal(head.authorization, model)
        if refusal is not None:
            self.tally.record(str(refusal[0]), 0, time.perf_counter() - head.started)
            await send_error(send, *refusal[:2], head.request_id, *refusal[2:])
            return
        try:
            body = await self._read_body(head.declared, receive)
        except PayloadError as exc:
            status, out, headers = self._refused_payload(head, exc)
        except ClientGone:
            self.gone(head)
            return
        else:
            status, out, headers = self.answer(head, model, body)
        await _send(send, status, out, headers)

    def answer(
        self, head: RequestHead, model: LoadedModel, body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The response to an admitted request's whole body: (status, JSON body, headers beyond
        content-length and content-type). Never raises; the request is counted and logged."""
        rows_scored = 0
        try:
            rows = self._rows(model, body)
            scored = score_rows(model, rows)
            if rows.flags:  # scored though outside the spec: the caller is told which, and why
                scored["flags"] = rows.flags
            out = orjson.dumps(scored, option=orjson.OPT_SERIALIZE_NUMPY)
            trace = head.trace
            self.writer.append(
                record_line(
                    head.request_id,
                    time.time(),
                    model.version,
                    body,
                    out,
                    (time.perf_counter() - head.started) * 1000,
                    head.synthetic,
                    trace if trace and TRACEPARENT.match(trace) else None,
                    orjson.dumps(rows.flags) if rows.flags else b"",
                )
            )
            rows_scored = rows.count
        except PayloadError as exc:
            return self._refused_payload(head, exc)
        except Exception:
            log.exception("request %s failed", head.request_id)
            self.tally.record("500", 0, time.perf_counter() - head.started)
            return _error_response(500, "the service failed to score this request", head.request_id)
        self.tally.record("200", rows_scored, time.perf_counter() - head.started)
        return (
            200,
            out,
            [(b"x-model-version", model.version_header), (b"x-request-id", head.request_id.encode())],
        )

    def gone(self, head: RequestHead) -> None:
        """The client left before its whole body arrived: counted as 499 (nginx's code), never sent."""
        self.tally.record("499", 0, time.perf_counter() - head.started)

    def _refused_payload(self, head: RequestHead, exc: PayloadError) -> tuple[int, bytes, list]:
        REFUSAL_LINES.say(log.info, "rejected %s: %s (traceparent %s)", head.request_id, exc, head.trace)
        self.tally.record(str(exc.status), 0, time.perf_counter() - head.started)
        return _error_response(exc.status, str(exc), head.request_id)

    def _rows(self, model: LoadedModel, body: bytes) -> Rows:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # JSON has no NaN or Infinity, and 1e999 overflows: the value is wrong, not the syntax.
            if NON_FINITE.search(body):
                raise PayloadError(422, "values must be finite numbers: NaN and Infinity are not") from None
            if "infinity when parsed" in str(exc):
                raise PayloadError(
                    422,
                    f"a number is too large: beyond a 64-bit float's range (about ±1.8e308), "
                    f"{str(exc).rsplit(':', 1)[-1].strip()}",
                ) from None
            raise PayloadError(400, f"body is not valid JSON: {exc}") from None
        repeated = duplicate_key(payload, body)
        if repeated is not None:
            raise PayloadError(
                422,
                f"key {shown(repeated, 40)} appears twice in one object: each key once (a row names each feature once)",
            )
        return rows_from_payload(payload, model.serving_spec, self.config.max_rows, body)

    def refusal(self, authorization: bytes | None, model: LoadedModel | None) -> tuple | None:
        """Why the request is refused before its body is read: (status, message, *headers), or None."""
        if not self.state.authorized(authorization):
            return (401, "missing or invalid bearer key", (b"www-authenticate", b"Bearer"))
        if model is None:
            return (503, "no verified model loaded yet", (b"retry-after", b"1"))
        if self.writer.stuck:  # its record could be kept nowhere: shed before doing the work
            return (503, "the request log can keep no record now; retry shortly", (b"retry-after", b"5"))
        if self.writer.backlog > self.config.max_log_backlog:  # shed rather than lose log records
            return (503, "request log backlog is full; retry shortly", (b"retry-after", b"1"))
        return None

    async def _read_body(self, declared: bytes | None, receive) -> bytes:
        limit = self.config.max_body_bytes
        if declared is not None:
            if not declared.isdigit():
                raise PayloadError(400, "Content-Length is not a number")
            if int(declared) > limit:
                raise PayloadError(413, f"body of {declared.decode()} bytes is over the {limit}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if not message.get("more_body", False) and not chunks:
                if len(chunk) > limit:
                    raise PayloadError(413, f"body is over the {limit}-byte limit")
                return chunk  # the whole body in one message: the usual case
            size += len(chunk)
            if size > limit:
                raise PayloadError(413, f"body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
