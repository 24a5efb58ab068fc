"""Stage llm: each LLM call is accepted, answered, and complete.

Two ways in: :func:`check_answer` looks at an answer the flow received (a truncated answer
is a failure *here*, not a parse error later), and :func:`classify` explains an exception
raised by a call — one check per SDK failure, with status, request id and retry-after.
"""

from __future__ import annotations

from typing import Any

from harness.sdk import deprecated_models, error_class, per_call_timeout
from probes.core import Check, Finding, Level, NotApplicable, Stage

__all__ = [
    "CHECKS",
    "PING_CHECKS",
    "answer_summary",
    "check_exchange",
    "check_model_current",
    "classify",
    "exchange_evidence",
    "ping_anthropic",
    "ping_openai",
]

_TRUNCATION_HINT = (
    "Generate the plan in batches of at most 50 tasks (the seed's recommendation), or raise max_tokens; "
    "the model's maximum output is the hard ceiling."
)

LLM001 = Check("LLM001", Stage.LLM, Level.ERROR, "answer not cut at max_tokens", _TRUNCATION_HINT)
LLM002 = Check(
    "LLM002",
    Stage.LLM,
    Level.ERROR,
    "stream ended with a stop reason",
    "The stream was cut before message_stop: check proxies and load balancers for idle or size limits, "
    "and retry the call.",
)
LLM003 = Check(
    "LLM003",
    Stage.LLM,
    Level.ERROR,
    "API key accepted",
    "The API rejected the key: set a valid ANTHROPIC_API_KEY / OPENAI_API_KEY for this environment.",
)
LLM004 = Check(
    "LLM004",
    Stage.LLM,
    Level.ERROR,
    "API key allowed to use the model",
    "The key is valid but not permitted: check the workspace, organization and model access of the key.",
)
LLM005 = Check(
    "LLM005",
    Stage.LLM,
    Level.ERROR,
    "model exists",
    "The model name is unknown to the API: use a current model id (see the provider's model list).",
)
LLM006 = Check(
    "LLM006",
    Stage.LLM,
    Level.ERROR,
    "not rate limited",
    "Slow down or raise the rate limit; retry after the retry-after interval in the evidence.",
)
LLM007 = Check(
    "LLM007",
    Stage.LLM,
    Level.ERROR,
    "API not overloaded",
    "The provider is overloaded (529): retry with backoff; nothing is wrong on your side.",
)
LLM008 = Check(
    "LLM008",
    Stage.LLM,
    Level.ERROR,
    "API answered without a server error",
    "The provider failed (5xx): retry with backoff and check the provider's status page.",
)
LLM009 = Check(
    "LLM009",
    Stage.LLM,
    Level.ERROR,
    "API answered in time",
    "The call timed out: stream long generations, generate in batches, or raise the request timeout.",
)
LLM010 = Check(
    "LLM010",
    Stage.LLM,
    Level.ERROR,
    "API reachable",
    "The API could not be reached: check network egress, proxies and ANTHROPIC_BASE_URL / OPENAI_BASE_URL.",
)
LLM011 = Check(
    "LLM011",
    Stage.LLM,
    Level.ERROR,
    "API answered with JSON",
    "Something between you and the API answered instead of it (HTML error page, truncated body): "
    "check proxies and the base URL.",
)
LLM012 = Check(
    "LLM012",
    Stage.LLM,
    Level.ERROR,
    "request matches the cassette",
    "The flow sent a request the cassette did not record (prompt or parameters changed): "
    "re-record the cassette with `harness record`, or revert the change.",
)
LLM013 = Check(
    "LLM013",
    Stage.LLM,
    Level.WARNING,
    "example retrieval answered",
    "Embeddings failed, so the plan was generated without similar examples: check OPENAI_API_KEY and the "
    "embeddings model.",
)
LLM014 = Check(
    "LLM014",
    Stage.LLM,
    Level.ERROR,
    "request accepted as valid",
    "The API rejected the request (400/413/422): check max_tokens against the model's limit and the prompt size.",
)
LLM015 = Check(
    "LLM015",
    Stage.LLM,
    Level.ERROR,
    "stream carried no error event",
    "The API sent an error event mid-stream (usually overloaded): retry with backoff.",
)
LLM016 = Check(
    "LLM016",
    Stage.LLM,
    Level.WARNING,
    "model not deprecated",
    "The SDK lists this model as deprecated with an end-of-life date: move to a current model before that date.",
)
LLM017 = Check(
    "LLM017",
    Stage.LLM,
    Level.WARNING,
    "the event loop kept running (no blocking call in async code)",
    "A synchronous call inside async code stopped the event loop, so every other task (other users' sockets, "
    "timeouts, progress) waited: use the SDK's async client (AsyncAnthropic), or run the call in a thread "
    "(asyncio.to_thread).",
)
LLM100 = Check("LLM100", Stage.LLM, Level.ERROR, "call answered", "See the finding for the reason the call failed.")
LLM101 = Check(
    "LLM101",
    Stage.LLM,
    Level.ERROR,
    "application code ran up to the LLM call",
    "Your code raised before its request reached the API (a logging call with wrong arguments, a missing "
    "setting, None where text was expected): fix the line named in the evidence.",
)
LLM102 = Check(
    "LLM102",
    Stage.LLM,
    Level.ERROR,
    "the application's LLM wrapper handed the answer on",
    "The API answered, but your LLM wrapper returned nothing usable or raised (a missing `return`, a wrong key "
    "into the response): fix the wrapper at the line named in the evidence.",
)
LLM900 = Check(
    "LLM900",
    Stage.LLM,
    Level.ERROR,
    "call failed in an expected way",
    "An unexpected error during an LLM call; the evidence names the exception.",
)

CHECKS = (
    LLM001,
    LLM002,
    LLM003,
    LLM004,
    LLM005,
    LLM006,
    LLM007,
    LLM008,
    LLM009,
    LLM010,
    LLM011,
    LLM012,
    LLM013,
    LLM014,
    LLM015,
    LLM016,
    LLM017,
    LLM100,
    LLM101,
    LLM102,
    LLM900,
)
#: Checks a ``--llm ping`` makes.
PING_CHECKS = (LLM100, LLM016)


def exchange_evidence(exchange: Any) -> dict[str, Any]:
    """The recorded facts of one call: status, stop reason, every usage field, cost, latency, caller."""
    from harness.pricing import cost_usd

    model = exchange.answered_model or exchange.model
    return {
        "provider": exchange.provider,
        "model": model,
        "status": exchange.status,
        "stop_reason": exchange.stop_reason,
        "usage": dict(exchange.usage),
        "input_tokens": exchange.input_tokens,
        "output_tokens": exchange.output_tokens,
        "max_tokens": exchange.max_tokens,
        "cost_usd": cost_usd(model, exchange.input_tokens, exchange.output_tokens),
        "latency_s": round(exchange.latency_s, 3) if exchange.latency_s is not None else None,
        "streamed": exchange.streamed,
        "text_chars": len(exchange.text or ""),
        "request_id": exchange.headers.get("request-id") or exchange.headers.get("x-request-id"),
        "caller": str(exchange.caller) if exchange.caller else None,
    }


def answer_summary(exchange: Any) -> str:
    """``end_turn, 6,120 output tokens`` — how an answer ended, for messages that cite it."""
    tokens = exchange.output_tokens
    return f"{exchange.stop_reason or 'no stop reason'}, {tokens:,} output tokens" if tokens is not None else str(
        exchange.stop_reason or "no stop reason"
    )


def _status_finding(exchange: Any, point: str, evidence: dict[str, Any]) -> Finding:
    status = exchange.status
    error_type = exchange.api_error_type
    evidence = {
        **evidence,
        "api_error_type": error_type,
        "error": (exchange.api_error_message or "")[:300] or None,
        "retry_after": exchange.headers.get("retry-after"),
    }
    if status == 401 or error_type == "authentication_error":
        check, message = LLM003, "The API rejected the key"
    elif status == 403 or error_type == "permission_error":
        check, message = LLM004, "The key may not use this model or workspace"
    elif status == 404 or error_type == "not_found_error":
        check, message = LLM005, "The model (or endpoint) was not found"
    elif status == 429 or error_type == "rate_limit_error":
        check, message = LLM006, "The API rate-limited the call"
    elif status == 529 or error_type == "overloaded_error":
        check, message = LLM007, "The API is overloaded"
    elif status in (400, 413, 422):
        check, message = LLM014, "The API rejected the request"
    elif status is not None and status >= 500:
        check, message = LLM008, "The API failed with a server error"
    else:
        check, message = LLM900, "The API answered with an unexpected status"
    return check.finding(f"{message} ({point} call, status {status}).", point=point, **evidence)


def check_exchange(exchange: Any, point: str) -> list[Finding]:
    """Judge one exchange as it crossed the wire: accepted, answered, JSON, complete, not truncated."""
    evidence = exchange_evidence(exchange)
    if exchange.api == "embeddings":
        if exchange.answered and exchange.body_is_json is not False and exchange.error is None:
            return []
        mismatch = _cassette_mismatch(exchange.error.exception) if exchange.error and exchange.error.exception else None
        if mismatch is not None:
            # Not the provider failing: the cassette lacks this request. Said here, at the call whose request
            # is missing — not at the next call, whose prompt then differs because it had no examples.
            return [
                LLM012.finding(
                    f"The {point} request is not in the cassette.", point=point, mismatch=str(mismatch)[:2000], **evidence
                )
            ]
        reason = exchange.error.type if exchange.error else exchange.api_error_type or f"status {exchange.status}"
        return [
            LLM013.finding(
                f"Example retrieval failed ({reason}); the plan is generated without examples.",
                point=point,
                **evidence,
            )
        ]
    if exchange.error is not None:
        live = exchange.error.exception
        finding = classify(live, point) if live is not None else LLM900.finding(str(exchange.error), point=point)
        return [Finding(finding.check, finding.message, point, {**evidence, **finding.evidence})]
    if exchange.status is None:
        return [
            LLM002.finding(
                f"The {point} call never finished: the application stopped reading the answer.", point=point, **evidence
            )
        ]
    if exchange.status >= 400:
        return [_status_finding(exchange, point, evidence)]
    if exchange.stream_error:
        return [
            LLM015.finding(
                f"The stream carried an error event ({point} call, status {exchange.status}).",
                point=point,
                **evidence,
                api_error_type=exchange.api_error_type,
                error=(exchange.api_error_message or "")[:300] or None,
            )
        ]
    if exchange.body_is_json is False:
        return [
            LLM011.finding(
                f"The {point} call got a body that is not the API's JSON.", point=point, head=exchange.body_head, **evidence
            )
        ]
    evidence["text_tail"] = (exchange.text or "")[-80:]
    if exchange.truncated:
        return [
            LLM001.finding(
                f"The {point} answer stopped at {exchange.stop_reason} after {exchange.output_tokens} output tokens: "
                "its JSON is incomplete.",
                point=point,
                **evidence,
            )
        ]
    if not exchange.complete or exchange.stop_reason is None:
        return [
            LLM002.finding(
                f"The {point} stream ended with no stop reason after {len(exchange.text or '')} characters: "
                "the answer is incomplete.",
                point=point,
                **evidence,
            )
        ]
    return []


def _cassette_mismatch(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "CannotOverwriteExistingCassetteException":
            return current
        current = current.__cause__ or current.__context__
    return None


def _status_evidence(exc: Any) -> dict[str, Any]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", {}) or {}
    body = getattr(exc, "body", None)
    error_type = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        error_type = inner.get("type") if isinstance(inner, dict) else None
    return {
        "status": getattr(exc, "status_code", None),
        "api_error_type": error_type,
        "request_id": getattr(exc, "request_id", None) or headers.get("request-id") or headers.get("x-request-id"),
        "retry_after": headers.get("retry-after"),
        "error": str(getattr(exc, "message", exc))[:300],
    }


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception raised by an LLM call at ``point``."""
    import anthropic
    import openai

    mismatch = _cassette_mismatch(exc)
    if mismatch is not None:
        return LLM012.finding(
            f"The {point} request is not in the cassette.", point=point, mismatch=str(mismatch)[:2000]
        )

    if point == "examples":
        return LLM013.finding(
            f"Example retrieval failed ({type(exc).__name__}); the plan is generated without examples.",
            point=point,
            error_type=type(exc).__name__,
            error=str(exc)[:300],
        )

    for sdk in (anthropic, openai):
        by_class: list[tuple[type, Check, str]] = [
            (sdk.AuthenticationError, LLM003, "The API rejected the key"),
            (sdk.PermissionDeniedError, LLM004, "The key may not use this model or workspace"),
            (sdk.NotFoundError, LLM005, "The model (or endpoint) was not found"),
            (sdk.RateLimitError, LLM006, "The API rate-limited the call"),
            (sdk.APITimeoutError, LLM009, "The call timed out"),
            (sdk.APIConnectionError, LLM010, "The API could not be reached"),
            (sdk.APIResponseValidationError, LLM011, "The API's answer did not have the expected shape"),
        ]
        overloaded = error_class(sdk, "OverloadedError")  # absent from early 0.x: there a 529 is read by status, below
        if overloaded is not None:
            by_class.insert(4, (overloaded, LLM007, "The API is overloaded"))
        for cls, check, message in by_class:
            if isinstance(exc, cls):
                evidence = _status_evidence(exc) if isinstance(exc, sdk.APIStatusError) else {"error": str(exc)[:300]}
                return check.finding(
                    f"{message} ({point} call).", point=point, error_type=type(exc).__name__, **evidence
                )
        if isinstance(exc, sdk.APIStatusError):
            evidence = _status_evidence(exc)
            status = evidence["status"]
            if status == 200:
                check, message = LLM015, "The stream carried an error event"
            elif status in (400, 413, 422):
                check, message = LLM014, "The API rejected the request"
            elif status == 529 or evidence["api_error_type"] == "overloaded_error":
                check, message = LLM007, "The API is overloaded"
            elif status is not None and status >= 500:
                check, message = LLM008, "The API failed with a server error"
            else:
                check, message = LLM900, "The API answered with an unexpected status"
            return check.finding(
                f"{message} ({point} call, status {status}).", point=point, error_type=type(exc).__name__, **evidence
            )

    import json

    # httpx (first generation) and httpx2 share their class names; a dropped connection or a
    # timeout escapes the SDKs' own classes when it happens mid-body.
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in _HTTP_MODULES}
    if names & {"TimeoutException", "ReadTimeout", "ConnectTimeout", "PoolTimeout", "WriteTimeout"}:
        return LLM009.finding(f"The {point} call timed out: {exc}", point=point, error_type=type(exc).__name__)
    if names & {"TransportError", "NetworkError", "ProtocolError", "RemoteProtocolError", "ConnectError"}:
        return LLM010.finding(
            f"The connection to the API broke during the {point} call: {exc}",
            point=point,
            error_type=type(exc).__name__,
        )
    if isinstance(exc, json.JSONDecodeError):
        return LLM011.finding(
            f"The {point} call got a body that is not the API's JSON: {exc}", point=point, error_type=type(exc).__name__
        )
    return LLM900.finding(f"{type(exc).__name__}: {exc}", point=point, error_type=type(exc).__name__)


#: Modules whose exceptions are HTTP transport failures.
_HTTP_MODULES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2"})


def check_model_current(model: str) -> list[Finding]:
    """The model is not on the SDK's own list of deprecated models (``NotApplicable`` if the SDK keeps none)."""
    deprecated = deprecated_models()
    if deprecated is None:
        import anthropic

        raise NotApplicable(f"the installed anthropic SDK ({anthropic.__version__}) keeps no list of deprecated models")
    end_of_life = deprecated.get(model)
    if end_of_life:
        return [
            LLM016.finding(f"{model} is deprecated: end of life {end_of_life}.", model=model, end_of_life=end_of_life)
        ]
    return []


def ping_anthropic(
    api_key: str, model: str, *, base_url: str | None, timeout: float, point: str = "ping"
) -> tuple[list[Finding], dict[str, Any]]:
    """One minimal Messages call: proves the key is accepted and the model exists. Returns findings and facts."""
    import time

    import anthropic

    client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
    started = time.perf_counter()
    try:
        message = client.messages.create(
            model=model,
            max_tokens=1,
            messages=[{"role": "user", "content": "ping"}],
            **per_call_timeout(client),  # early anthropic 0.x would wait 600 s instead
        )
    except Exception as exc:  # classified below: every SDK failure has its own check
        return [classify(exc, point)], {}
    finally:
        client.close()
    usage = getattr(message, "usage", None)
    return [], {
        "model": getattr(message, "model", model),
        "stop_reason": getattr(message, "stop_reason", None),
        "input_tokens": getattr(usage, "input_tokens", None),
        "output_tokens": getattr(usage, "output_tokens", None),
        "latency_s": round(time.perf_counter() - started, 3),
    }


def ping_openai(api_key: str, model: str, *, base_url: str | None, timeout: float) -> list[Finding]:
    """One minimal embeddings call; a failure is the examples warning (LLM013), as in the flow."""
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
    try:
        client.embeddings.create(model=model, input="ping")
    except Exception as exc:  # classified as the examples point does in the flow
        return [classify(exc, "examples")]
    finally:
        client.close()
    return []


# -- probes ----------------------------------------------------------------------------------

from probes.registry import Scope, probe  # noqa: E402  (registration sits beside the checks)


@probe(Stage.LLM, scope=Scope.EXCHANGE, emits=(LLM100, LLM001, LLM002), independent=True)
def call_answered(ctx: Any, view: Any) -> list[Finding]:
    """Each generation call: accepted, answered with the API's JSON, complete, not cut at max_tokens."""
    return check_exchange(view.exchange, view.point)


@probe(Stage.LLM, scope=Scope.EMBEDDING, emits=(LLM012, LLM013))
def examples_answered(ctx: Any, view: Any) -> list[Finding]:
    """Each embeddings call answered (a failure is a warning: plans are made without examples; a request the
    cassette lacks is LLM012 here)."""
    return check_exchange(view.exchange, view.point)


@probe(Stage.LLM, scope=Scope.WRAPPER, emits=(LLM102,), requires=(LLM100, LLM001, LLM002), needs=("points.llm",))
def wrapper_handed_on(ctx: Any, item: Any) -> list[Finding]:
    """The application's LLM wrapper returned something after the API answered (not ``None``, not an exception)."""
    call, view = item
    if view is None:
        return []
    exchange = view.exchange
    evidence = {
        "wrapper": call.name,
        "defined_at": str(call.defined_at) if call.defined_at else None,
        **exchange_evidence(exchange),
    }
    wrapper = call.name.partition(":")[2] + (f" ({call.defined_at})" if call.defined_at else "")
    if call.returned and call.result is None:
        return [
            LLM102.finding(
                f"The LLM answered ({answer_summary(exchange)}), but {wrapper} returned None.",
                point=view.point,
                **evidence,
            )
        ]
    if call.error is not None:
        return [
            LLM102.finding(
                f"The LLM answered ({answer_summary(exchange)}), then {wrapper} raised {call.error}.",
                point=view.point,
                error=call.error.to_dict(),
                **evidence,
            )
        ]
    return []


def _failure_not_ours(ctx: Any, ended: Any) -> str | None:
    failure = ctx.failure
    if failure is not None and failure.stage is Stage.LLM and failure.follows is not None:
        return f"the flow's {failure.error.type} followed {failure.follows}"
    return None


@probe(Stage.LLM, scope=Scope.ENDED, emits=(LLM101,), applies=_failure_not_ours)
def code_reached_call(ctx: Any, ended: Any) -> list[Finding]:
    """The application's code did not raise before its LLM request was sent."""
    failure = ctx.failure
    if failure is None or failure.stage is not Stage.LLM:
        return []
    if failure.kind == "llm_call" and failure.error.exception is not None:
        return [classify(failure.error.exception, failure.point)]
    where = f" at {failure.error.location}" if failure.error.location else ""
    return [
        LLM101.finding(
            f"Your code failed before the {failure.point} LLM call was sent{where}: "
            f"{failure.error.type}: {failure.error.message}",
            point=failure.point,
            error=failure.error.to_dict(),
            location=str(failure.error.location) if failure.error.location else None,
        )
    ]


def _no_loop(ctx: Any, *item: Any) -> str | None:
    if ctx.state.get("replayed"):
        # A replayed answer arrives at once: how long a call holds the loop is only known live.
        return "answers were replayed, so how long a call blocks the event loop is only measured live"
    if ctx.target is not None and not ctx.target.is_async:
        return "the flow callable is synchronous (an event loop it runs itself is still watched)"
    return None


@probe(Stage.LLM, scope=Scope.STALL, emits=(LLM017,), applies=_no_loop)
def loop_kept_running(ctx: Any, stall: Any) -> list[Finding]:
    """The flow's event loop never stood still longer than the threshold (a sync call blocking async code)."""
    end = stall.at + stall.stalled_s
    inside = [
        view
        for view in ctx.exchanges
        if view.exchange.blocking_loop or (stall.at <= view.exchange.at <= end)
    ]
    stack = " ".join(stall.stack)
    if inside:
        what = f"a synchronous {inside[0].exchange.provider} call ({inside[0].point})"
    elif "sqlalchemy" in stack or "psycopg" in stack:
        what = "a synchronous database call"
    else:
        what = "synchronous code"
    where = f" at {stall.blocking}" if stall.blocking else ""
    return [
        LLM017.finding(
            f"The event loop stood still for {stall.stalled_s:.1f} s{where}, blocked by {what}.",
            point=inside[0].point if inside else "flow",
            stalled_s=round(stall.stalled_s, 3),
            blocking=str(stall.blocking) if stall.blocking else None,
            stack=list(stall.stack[-12:]),
            calls=[view.point for view in inside],
        )
    ]
