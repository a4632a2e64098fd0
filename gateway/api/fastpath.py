"""The SMS hook without the framework on its common path.

An SMSC or SMS router calls `POST /v1/sms/check` once per message: FastAPI's request cycle
(routing, dependency injection, the middleware chain, the response class) cost about three
times the scan of the SMS. `SmsFastPath`, in front of the app, answers
`POST /v1/sms/check` and `POST /v1/sms/check-batch` itself when the request is the ordinary
case: a JSON body within the limit, an API key holding `sms:check` within its rate, valid
messages. It validates with the same pydantic models, builds the same messages and answers the
same bytes as the routes in `gateway.api.sms` (which stay registered: the OpenAPI document and
every other case). It sits in front of the whole app (`gateway.api.server.ApiApp`), so the
framework's own middleware and telemetry are skipped too.

Anything else goes to the app untouched (the body read so far is replayed), so every error
answer (401, 403, 413, 422 with its detail, 429) is the app's own. The fast path decides
before it changes anything: the one side effect before the scan, the rate limiter's token, is
taken only once the request is known to be scanned here (a refused take takes nothing).

Single messages that reach the scan in the same turn of the event loop (several connections'
requests read by one poll of the sockets) are judged together in one `Gateway.process_many`
call (`MicroBatcher`), each answered with its own verdict; a request alone waits one turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from pydantic import TypeAdapter
from starlette.responses import PlainTextResponse

from gateway import limits
from gateway.api.auth import authenticator_of, bearer_of
from gateway.api.common import gateway_error_response
from gateway.api.middleware import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    security_headers,
    with_security_headers,
)
from gateway.api.sms import SmsIn, answer, sms_message
from gateway.errors import GatewayError
from gateway.message import Message as SmsMessage
from gateway.message import Peer
from gateway.runtime import Gateway
from gateway.verdict import Verdict

CHECK = "/v1/sms/check"
CHECK_BATCH = "/v1/sms/check-batch"
SCOPE = "sms:check"
MAX_TOKEN = 8192  # longer bearer tokens are refused by the authenticator
_BATCH = TypeAdapter(list[SmsIn])
_OWN_HEADERS = {b"content-length", b"content-type"}


class SmsFastPath:
    """In front of the app: the SMS hook's ordinary requests answered here, the rest by `app`.

    `state` is the FastAPI app's state (the gateway, the authenticator); `body_max` the body
    limit of the hook (`MAMORI_LIMITS__SMS_BODY_MAX`); `cors` (CORS configured): requests with
    an Origin header go to the app (its CORS middleware answers them)."""

    def __init__(self, app: ASGIApp, state: Any, body_max: int, cors: bool = False) -> None:
        self.app = app
        self.state = state
        self.body_max = body_max
        self.cors = cors
        # the CORS middleware marks answers to requests without an Origin `Vary: Origin`
        vary = [(b"vary", b"Origin")] if cors else []
        self._tail = {path: [(b"content-type", b"application/json"), *vary,
                             *security_headers(path, _OWN_HEADERS)]
                      for path in (CHECK, CHECK_BATCH)}
        self._batcher: MicroBatcher | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path")
                or scope["path"] not in self._tail):
            await self.app(scope, receive, send)
            return
        token = self._ordinary(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        try:
            auth = authenticator_of(self.state)
        except Exception:  # e.g. a JWT secret too short: the app's own error answer
            await self.app(scope, receive, send)
            return
        caller = auth.key_caller(token)
        if caller is None or SCOPE not in caller.scopes \
                or (auth.jwt_enabled and token.count(".") == 2):
            # a JWT is tried first by the app; a token that is not an API key is its to refuse
            await self.app(scope, receive, send)
            return
        seen: list[Message] = []
        body = await self._body(receive, seen)
        if body is None:
            await self.app(scope, _replay(seen, receive), send)
            return
        path: str = scope["path"]
        client = scope.get("client")
        peer = Peer(ip=client[0], port=client[1]) if client else Peer()
        try:
            data = orjson.loads(body)
            if path == CHECK:
                msgs = [sms_message(SmsIn.model_validate(data), caller, peer)]
            else:
                batch = _BATCH.validate_python(data)
                if len(batch) > limits.current().sms_batch_max:
                    raise ValueError("batch too large")
                msgs = [sms_message(s, caller, peer) for s in batch]
        except Exception:  # invalid: the app answers (the same 422 detail as always)
            await self.app(scope, _replay(seen, receive), send)
            return
        if auth.limiter.take(f"{caller.kind}:{caller.id}"):
            await self.app(scope, _replay(seen, receive), send)  # the app's 429
            return
        gw: Gateway = self.state.gateway
        try:
            if path == CHECK:
                if self._batcher is None or self._batcher.gw is not gw:
                    self._batcher = MicroBatcher(gw)
                out: Any = answer(msgs[0], await self._batcher.verdict(msgs[0]))
            else:
                verdicts = await gw.process_many(msgs, "http")
                out = [answer(m, v) for m, v in zip(msgs, verdicts, strict=True)]
            payload = orjson.dumps(out)
        except GatewayError as exc:
            await gateway_error_response(exc)(scope, receive, with_security_headers(path, send))
            return
        except Exception:  # as the framework's error middleware: a bare 500, and raised
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()),
                                *self._tail[path]]})
        await send({"type": "http.response.body", "body": payload})

    def _ordinary(self, scope: Scope) -> str | None:
        """The bearer token of a request whose headers are the ordinary case, else None."""
        ctype: bytes | None = None
        authz: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value if ctype is None else ctype
            elif name == b"authorization":
                authz = value if authz is None else authz
            elif name == b"content-length":
                if not value.isdigit() or int(value) > self.body_max:
                    return None  # the app's 413 (or its answer to a bad length)
            elif name == b"origin" and self.cors:
                return None
        if ctype != b"application/json" or authz is None:
            return None
        token = bearer_of(authz.decode("latin-1"))
        if token is None or len(token) > MAX_TOKEN:
            return None
        return token

    async def _body(self, receive: Receive, seen: list[Message]) -> bytes | None:
        """The whole body, None when it is over the limit or the client went away (`seen`:
        the messages received, for the app)."""
        size = 0
        while True:
            msg = await receive()
            seen.append(msg)
            if msg["type"] != "http.request":
                return None
            size += len(msg.get("body", b""))
            if size > self.body_max:
                return None
            if not msg.get("more_body", False):
                break
        if len(seen) == 1:
            return bytes(seen[0].get("body", b""))
        return b"".join(m.get("body", b"") for m in seen)


def _replay(seen: list[Message], receive: Receive) -> Receive:
    """`receive` that first gives the messages already taken."""
    pending = list(seen)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class MicroBatcher:
    """The verdicts of single SMS, judged in batches of those that arrive in one loop turn.

    The first request of a turn waits one turn (`sleep(0)`: every task the last poll of the
    sockets woke runs first) while the others join its batch; alone it is `Gateway.process`,
    else one `Gateway.process_many` call, in a task of its own (a cancelled request does not
    cancel its neighbours'), which answers each request as soon as its verdict is final.
    A message whose verdict failed gets the failure (a StoreError: that request's 503)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._gathering: list[tuple[SmsMessage, asyncio.Future[Verdict]]] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def verdict(self, msg: SmsMessage) -> Verdict:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Verdict] = loop.create_future()
        if self._gathering is not None:
            if self._loop is not loop:  # the app served on two loops (tests): no mixing
                return await self.gw.process(msg, "http")
            self._gathering.append((msg, fut))
            return await fut
        batch = self._gathering = [(msg, fut)]
        self._loop = loop
        try:
            await asyncio.sleep(0)
        finally:
            self._gathering = None
            if len(batch) > 1:
                task = asyncio.create_task(self._judge(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        if len(batch) == 1:
            return await self.gw.process(msg, "http")
        return await fut

    async def _judge(self, batch: list[tuple[SmsMessage, asyncio.Future[Verdict]]]) -> None:
        def final(i: int, verdict: Verdict) -> None:
            if not batch[i][1].done():
                batch[i][1].set_result(verdict)

        try:
            await self.gw.process_many([m for m, _ in batch], "http", on_verdict=final)
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            for _, fut in batch:  # cancelled (the loop is closing): nobody waits any more
                fut.cancel()
