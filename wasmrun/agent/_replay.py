"""An offline, OpenAI-compatible chat-completions server that replays a scripted conversation.

`ReplayServer` listens on 127.0.0.1 (an ephemeral port, on a daemon thread) and
answers each ``POST /v1/chat/completions`` with the next step of its script, as
a real ``chat.completion`` object, so the real ``openai`` client (pointed at
`ReplayServer.base_url`) and the whole agent loop run exactly as with a real
model. It serves the offline demo and the tests.

A script step is one of:

* an assistant message: `say` (text) or `call` / `calls` / `run_code_call` (tool calls);
* a complete ``chat.completion`` object (a dict with ``"choices"``), sent as is;
* a callable taking the request body (a dict) and returning either of the above,
  for steps that depend on what the agent sent.

Every request is checked the way the real API checks it (400 ``invalid_request_error``
otherwise): the model and messages are present, each assistant message with
``tool_calls`` is followed by exactly one tool message per call id, every tool
message answers such a call, and strict function definitions are really strict
(every property required, ``additionalProperties: false``). Received bodies are
kept in `ReplayServer.requests` for assertions. Running out of script is a 500.

`script_from_transcript` turns an agent transcript (e.g. of a run against a
real model) into a script, so a real conversation can be recorded once and
replayed offline afterwards.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import msgspec
import openai

from ._jsonsafe import encode_json
from ._run_code import RUN_CODE
from ._transcript import read_transcript

Step = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]
"""One scripted model response: a message, a ``chat.completion`` object, or a callable producing one."""

_call_ids = itertools.count(1)


def say(text: str) -> dict[str, Any]:
    """An assistant message with text content and no tool calls (a final answer, or a review verdict)."""
    return {"role": "assistant", "content": text}


def tool_call(name: str, arguments: Mapping[str, Any] | str, *, id: str | None = None) -> dict[str, Any]:
    """One tool call for `calls`; `arguments` is a mapping (encoded as JSON) or a raw string (sent as is)."""
    if isinstance(arguments, str):
        raw = arguments
    else:
        try:
            raw = msgspec.json.encode(dict(arguments)).decode()
        except UnicodeEncodeError:  # a lone surrogate: escape it, as a real model's JSON would
            raw = json.dumps(dict(arguments))
    return {
        "id": id or f"call_{next(_call_ids):04d}",
        "type": "function",
        "function": {"name": name, "arguments": raw},
    }


def calls(*tool_calls: Mapping[str, Any], content: str | None = None) -> dict[str, Any]:
    """An assistant message making several tool calls (each made with `tool_call`) at once."""
    return {"role": "assistant", "content": content, "tool_calls": [dict(c) for c in tool_calls]}


def call(
    name: str, arguments: Mapping[str, Any] | str | None = None, *, content: str | None = None, id: str | None = None
) -> dict[str, Any]:
    """An assistant message making one tool call."""
    return calls(tool_call(name, arguments if arguments is not None else {}, id=id), content=content)


def run_code_call(code: str, *, content: str | None = None, id: str | None = None) -> dict[str, Any]:
    """An assistant message calling ``run_code`` with `code`."""
    return call(RUN_CODE, {"code": code, "language": "python"}, content=content, id=id)


def completion(message: Mapping[str, Any], *, model: str, number: int, prompt_chars: int = 0) -> dict[str, Any]:
    """A complete ``chat.completion`` object carrying the assistant `message`."""
    content = message.get("content")
    tool_calls = [dict(c) for c in message.get("tool_calls") or []]
    body: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        body["tool_calls"] = tool_calls
    completion_chars = len(content or "") + sum(
        len(str(c.get("function", {}).get("arguments", ""))) for c in tool_calls
    )
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, completion_chars // 4)
    return {
        "id": f"chatcmpl-replay-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": body,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class RequestError(ValueError):
    """A chat-completions request the real API would refuse (sent back as a 400)."""


def check_chat_request(body: Any) -> None:
    """Refuse (`RequestError`) what the real Chat Completions API refuses about tool calling."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestError("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array")
    pending: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise RequestError(f"messages[{i}]: invalid message or role")
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise RequestError(
                    f"messages[{i}]: messages with role 'tool' must be a response to a preceding message "
                    f"with 'tool_calls' (unknown or repeated tool_call_id {call_id!r})"
                )
            if not isinstance(message.get("content"), str):
                raise RequestError(f"messages[{i}]: a tool message needs string content")
            pending.remove(call_id)
            continue
        if pending:
            raise RequestError(
                f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; missing: {pending}"
            )
        if role == "assistant":
            tool_calls = message.get("tool_calls") or []
            if not tool_calls and message.get("content") is None:
                raise RequestError(f"messages[{i}]: an assistant message needs content or tool_calls")
            for tc in tool_calls:
                if not isinstance(tc, dict) or not isinstance(tc.get("id"), str):
                    raise RequestError(f"messages[{i}]: each tool call needs an id")
                function = tc.get("function")
                if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                    raise RequestError(f"messages[{i}]: tool call {tc['id']}: arguments must be a string")
                pending.append(tc["id"])
        elif not isinstance(message.get("content"), str):
            raise RequestError(f"messages[{i}]: a {role} message needs string content")
    if pending:
        raise RequestError(f"tool calls without a tool response: {pending}")
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError("each tool needs a function with a name")
        if function.get("strict"):
            _check_strict(function["name"], function.get("parameters"))


def _check_strict(name: str, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise RequestError(f"tool {name}: strict mode needs a parameters schema")
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            raise RequestError(f"tool {name}: strict schemas need 'additionalProperties': false on every object")
        if sorted(schema.get("required") or []) != sorted(props):
            raise RequestError(f"tool {name}: strict schemas must list every property in 'required'")
        for sub in props.values():
            _check_strict(name, sub)
    for key in ("anyOf", "allOf"):
        for sub in schema.get(key) or []:
            _check_strict(name, sub)
    if isinstance(schema.get("items"), dict):
        _check_strict(name, schema["items"])
    for sub in (schema.get("$defs") or {}).values():
        _check_strict(name, sub)


class ReplayServer:
    """A local OpenAI-compatible server replaying `script`, one step per chat-completions request.

    >>> with ReplayServer([say("hello")]) as server:
    ...     client = server.client()
    ...     client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    """

    def __init__(self, script: Sequence[Step], *, model: str = "replay") -> None:
        self.script: list[Step] = list(script)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> ReplayServer:
        """Start listening on 127.0.0.1 (an ephemeral port). Idempotent."""
        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
            server.daemon_threads = True
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="wasmrun-replay", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:43567/v1``."""
        if self._server is None:
            raise RuntimeError("the replay server is not running; call start() or use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def remaining(self) -> int:
        """Script steps not served yet."""
        with self._lock:
            return len(self.script) - len(self.requests)

    def client(self, **options: Any) -> openai.OpenAI:
        """A real ``openai.OpenAI`` client pointed at this server (no retries, a dummy key)."""
        settings: dict[str, Any] = {"api_key": "replay-no-key", "base_url": self.base_url, "max_retries": 0}
        settings.update(options)
        return openai.OpenAI(**settings)

    # -- serving -----------------------------------------------------------------
    def respond(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one chat-completions request."""
        try:
            check_chat_request(body)
        except RequestError as exc:
            with self._lock:
                self.errors.append(str(exc))
            return 400, _error(str(exc), "invalid_request_error")
        with self._lock:
            number = len(self.requests)
            self.requests.append(body)
            if number >= len(self.script):
                message = f"replay script exhausted: request {number + 1}, but the script has {len(self.script)} steps"
                self.errors.append(message)
                return 500, _error(message, "replay_error")
            step = self.script[number]
        try:
            produced = step(body) if callable(step) else step
        except Exception as exc:  # noqa: BLE001 - a failing step is a server error, not a crash
            message = f"replay step {number + 1} failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self.errors.append(message)
            return 500, _error(message, "replay_error")
        if "choices" in produced:
            return 200, dict(produced)
        chars = len(encode_json(body.get("messages", [])))
        return 200, completion(
            produced, model=str(body.get("model") or self.model), number=number + 1, prompt_chars=chars
        )


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _make_handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls

        def _send(self, status: int, payload: Mapping[str, Any]) -> None:
            try:
                data = msgspec.json.encode(payload)
            except UnicodeEncodeError:  # a scripted lone surrogate: send it escaped, as a real server may
                data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, _error(f"unknown endpoint {self.path}", "not_found"))
                return
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                self._send(400, _error(f"the body is not JSON: {exc}", "invalid_request_error"))
                return
            status, payload = server.respond(body)
            self._send(status, payload)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(
                    200, {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "replay"}]}
                )
            else:
                self._send(404, _error(f"unknown endpoint {self.path}", "not_found"))

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the agent's transcript is the log."""

    return Handler


def script_from_transcript(path: str | Path) -> list[dict[str, Any]]:
    """The model's side of a recorded conversation (an agent transcript), as a replay script.

    Every ``model_response`` event becomes an assistant message with the same
    content and tool calls (ids and argument strings exactly as recorded).
    """
    script: list[dict[str, Any]] = []
    for event in read_transcript(path):
        if event.get("type") != "model_response":
            continue
        message = cast(dict[str, Any], event.get("message") or {})
        recorded = [
            tool_call(str(c.get("name")), str(c.get("arguments", "")), id=str(c.get("id")))
            for c in message.get("tool_calls") or []
        ]
        if recorded:
            script.append(calls(*recorded, content=message.get("content")))
        else:
            script.append(say(str(message.get("content") or "")))
    return script
