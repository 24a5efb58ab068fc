"""What differs between the generations of the LLM SDKs and their HTTP layer, decided in one place.

The harness is installed beside an application's own pins, so it meets every generation::

    SDK        first generation                 current
    anthropic  0.30 … 0.x   on httpx → httpcore    1.0 …   on httpx2 → httpcore2
    openai     1.0 … 2.x    on httpx → httpcore    3.0 …   on httpx2 → httpcore2

Both stacks can be installed at once (an app on anthropic 0.x may have another library that
brings httpx2), and each SDK sends through its own. The generations differ in:

- the HTTP library, its TLS context and its exception classes (:func:`transport_of`,
  :func:`tls_context`, :func:`httpcore_modules`);
- ``DefaultAsyncHttpxClient``, which openai gained in 1.17 (:func:`default_async_http_client`);
- ``anthropic.OverloadedError``, which early 0.x versions (0.30 among them) lack: a 529 is an
  ``InternalServerError`` there (:func:`error_class`);
- the timeout of a non-streaming Messages call: early anthropic 0.x (0.30) gives ``messages.create``
  a default of 600 s of its own that overrides the client's timeout, so a call is bounded by the
  client's timeout only when it is passed again with the call (:func:`per_call_timeout`);
- where the SDK keeps its list of deprecated models: ``anthropic._data`` from 1.x, the messages
  resource in later 0.x versions, nowhere in early ones such as 0.30 (:func:`deprecated_models`);
- what the embeddings endpoint is asked for: openai ≥ 1.62 always asks for base64, earlier
  versions only when numpy is installed. Asking for it explicitly makes the wire the same under
  every generation, so one cassette replays under all of them; the SDK then hands the base64
  text back as it came (:data:`EMBEDDING_ENCODING`, :func:`embedding_vector`).

Everything else the harness uses (``messages.create`` / ``messages.stream``, ``Timeout``,
``max_retries``, the ``APIStatusError`` tree) is the same in every supported version.
"""

from __future__ import annotations

import base64
import functools
import importlib
import importlib.util
import struct
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = [
    "EMBEDDING_ENCODING",
    "HTTP_LIBRARIES",
    "default_async_http_client",
    "deprecated_models",
    "embedding_vector",
    "error_class",
    "httpcore_modules",
    "per_call_timeout",
    "tls_context",
    "transport_of",
]

#: The HTTP client libraries the SDKs send through, newest first.
HTTP_LIBRARIES = ("httpx2", "httpx")
#: The transport beneath each HTTP client library.
_HTTPCORE_OF = {"httpx2": "httpcore2", "httpx": "httpcore"}
#: Where anthropic generations keep ``DEPRECATED_MODELS`` (model → end-of-life date), newest first.
_DEPRECATED_MODELS_IN = ("anthropic._data", "anthropic.resources.messages.messages", "anthropic.resources.messages")
#: What the reference flow asks the embeddings endpoint for: the one encoding every openai version sends alike.
EMBEDDING_ENCODING = "base64"


def transport_of(sdk: ModuleType) -> str:
    """The HTTP library (``"httpx"`` or ``"httpx2"``) the ``anthropic`` or ``openai`` module ``sdk`` sends through."""
    client_class = getattr(sdk, "DefaultAsyncHttpxClient", None)
    for cls in getattr(client_class, "__mro__", ()):
        library = cls.__module__.partition(".")[0]
        if library in _HTTPCORE_OF:
            return library
    return "httpx"  # an SDK without DefaultAsyncHttpxClient (openai < 1.17) predates httpx2


@functools.cache
def tls_context(library: str) -> Any:
    """The CA store every client of ``library`` in this process verifies against, loaded once (~30 ms a load)."""
    return importlib.import_module(library).create_ssl_context()


def default_async_http_client(sdk: ModuleType) -> Any | None:
    """The SDK's own default async HTTP client sharing one loaded CA store; ``None`` where the SDK has none."""
    client_class = getattr(sdk, "DefaultAsyncHttpxClient", None)
    if client_class is None:
        return None  # the SDK builds its own default client
    return client_class(verify=tls_context(transport_of(sdk)))


def error_class(sdk: ModuleType, name: str) -> type[BaseException] | None:
    """The SDK's exception class ``name``, or ``None`` in a generation that does not have it."""
    found = getattr(sdk, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def per_call_timeout(client: Any) -> dict[str, Any]:
    """``{"timeout": ...}`` with the timeout ``client`` was built with, to pass with each call so every SDK
    generation keeps to it; empty for a client that has none of its own (an application's wrapper class)."""
    timeout = getattr(client, "timeout", None)
    return {"timeout": timeout} if timeout is not None else {}


def deprecated_models() -> Mapping[str, str] | None:
    """The installed anthropic SDK's own table of deprecated models and their end of life; ``None`` where it has none."""
    for name in _DEPRECATED_MODELS_IN:
        try:
            table = getattr(importlib.import_module(name), "DEPRECATED_MODELS", None)
        except ImportError:  # private modules: a generation that lacks one simply has no table there
            continue
        if isinstance(table, Mapping):
            return table
    return None


def httpcore_modules() -> list[ModuleType]:
    """The installed httpcore generations (``httpcore2``, ``httpcore``), newest first."""
    modules = []
    for library in HTTP_LIBRARIES:
        name = _HTTPCORE_OF[library]
        if importlib.util.find_spec(library) is not None and importlib.util.find_spec(name) is not None:
            modules.append(importlib.import_module(name))
    return modules


def embedding_vector(embedding: Any) -> list[float]:
    """One embedding as floats: a list as the SDK parsed it, or the base64 of little-endian float32 it passed on."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return [float(value) for value in embedding]
