"""PACS failures as one sentence each, whatever library raised them.

requests/urllib3 (DICOMweb) and sockets (DIMSE) bury the reason a few exceptions deep; the
GUI, the CLI and the tests all need the same plain sentence ("connection refused", "unknown
host", "401: wrong credentials", ...), so the translation lives here once. The sentences name the
server address but never a query value: query values can be patient identifiers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import requests


class PacsError(Exception):
    """A PACS operation that failed; ``str(err)`` is one sentence for the user."""


class RetrieveCancelled(PacsError):
    """The user cancelled a retrieve; instances already complete stay in the cache."""


class SendRejected(PacsError):
    """The PACS answered but refused to store what we sent."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (cause, context, urllib3 ``reason``, first argument)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        linked = (
            item.__cause__,
            item.__context__,
            getattr(item, "reason", None),
            *(a for a in getattr(item, "args", ()) if isinstance(a, BaseException)),
        )
        todo.extend(inner for inner in linked if isinstance(inner, BaseException))


def _is_unknown_host(exc: BaseException) -> bool:
    for item in _causes(exc):
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return True
        text = str(item)
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text:
            return True
    return False


def network_error(exc: BaseException, where: str, timeout: float) -> PacsError:
    """A socket-level failure reaching ``where`` (host:port or URL) as one sentence."""
    if _is_unknown_host(exc):
        return PacsError(f"Unknown host: {where} does not resolve to an address (check the host name).")
    for item in _causes(exc):
        if isinstance(item, ConnectionRefusedError):
            return PacsError(
                f"Connection refused by {where}: nothing listens there (is the PACS running, is the port right?)."
            )
        if isinstance(item, (TimeoutError, socket.timeout, requests.Timeout)):
            return PacsError(f"{where} did not answer within {timeout:g} s (timeout).")
    return PacsError(f"Cannot reach {where}: {_short(exc)}.")


def http_error(exc: BaseException, base_url: str, timeout: float) -> PacsError:
    """Any failure of a DICOMweb request as one sentence."""
    if isinstance(exc, PacsError):
        return exc
    if isinstance(
        exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)
    ):
        return PacsError(f"{base_url} is not a valid DICOMweb URL (expected http://host:port/path).")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return PacsError(
                f"{base_url} refused the credentials (HTTP 401): check the user name and password or token."
            )
        if code == 403:
            return PacsError(f"{base_url} denied access (HTTP 403): this account may not use that service.")
        if code == 404:
            return PacsError(f"Wrong URL: {base_url} has no DICOMweb service there (HTTP 404).")
        return PacsError(f"{base_url} answered HTTP {code} {exc.response.reason}.")
    if isinstance(exc, requests.Timeout):
        return PacsError(f"{base_url} did not answer within {timeout:g} s (timeout).")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return PacsError(f"The connection to {base_url} broke off in the middle of the transfer.")
    if isinstance(exc, requests.ConnectionError):
        if (
            any(
                isinstance(i, (ConnectionResetError, BrokenPipeError))
                or "RemoteDisconnected" in type(i).__name__
                or "ProtocolError" in type(i).__name__
                for i in _causes(exc)
            )
            and not _is_unknown_host(exc)
            and not any(isinstance(i, ConnectionRefusedError) for i in _causes(exc))
        ):
            return PacsError(f"The connection to {base_url} broke off in the middle of the transfer.")
        return network_error(exc, base_url, timeout)
    if isinstance(exc, (ValueError, KeyError, TypeError, json.JSONDecodeError)):
        return PacsError(
            f"{base_url} answered, but not with DICOM: check that the URL is the DICOMweb root (often …/dicom-web)."
        )
    return PacsError(f"DICOMweb request to {base_url} failed: {_short(exc)}.")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
