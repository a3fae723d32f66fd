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


# --- DIMSE status codes ------------------------------------------------------------------------
# PS3.4 Annex B (Storage) and C (Query/Retrieve) and the general statuses of PS3.7 Annex C, as
# (first, last, services, what happened and what to do). The first matching row wins, so the
# service-specific rows come before the general ones. "{aet}", "{listener}", "{service}" are filled
# in by ``dimse_status_error``.
_FIND, _GET, _MOVE, _STORE = "C-FIND", "C-GET", "C-MOVE", "C-STORE"
_QUERY = frozenset({_FIND, _GET, _MOVE})
_RETRIEVE = frozenset({_GET, _MOVE})
_ALL = frozenset({_FIND, _GET, _MOVE, _STORE})
_DIMSE_STATUSES: tuple[tuple[int, int, frozenset[str], str], ...] = (
    (
        0xA801,
        0xA801,
        frozenset({_MOVE}),
        "the archive does not know AE {aet} as a move destination: add it with this host and port ({listener})",
    ),
    (
        0xA701,
        0xA701,
        _RETRIEVE,
        "the archive is out of resources and could not count the matching images: try again later",
    ),
    (0xA702, 0xA702, _RETRIEVE, "the archive is out of resources and could not send the images: try again later"),
    (0xA700, 0xA7FF, frozenset({_FIND}), "the archive is out of resources: narrow the search or try again later"),
    (
        0xA700,
        0xA7FF,
        frozenset({_STORE}),
        "the archive is out of resources (disk full?): ask its administrator, then send again",
    ),
    (0xA700, 0xA7FF, _RETRIEVE, "the archive is out of resources: try again later"),
    (
        0xA900,
        0xA9FF,
        _QUERY,
        "the request does not match the archive's Study Root model: check it supports Study Root {service}",
    ),
    (
        0xA900,
        0xA9FF,
        frozenset({_STORE}),
        "the instance does not match its SOP class: check the file before sending it again",
    ),
    (
        0xAA00,
        0xAAFF,
        _RETRIEVE,
        "the archive could not make the requested instances or frames: open the whole series instead",
    ),
    (
        0xC000,
        0xCFFF,
        _QUERY,
        "the archive was unable to process the request: check its log (an unsupported search field?)",
    ),
    (
        0xC000,
        0xCFFF,
        frozenset({_STORE}),
        "the archive could not understand the instance: check the file and the archive's log",
    ),
    (
        0xB000,
        0xB000,
        _RETRIEVE,
        "the archive sent some images but failed on others: open the series again to fetch the rest",
    ),
    (0xFE00, 0xFE00, _ALL, "the {service} was cancelled: start it again"),
    (
        0x0122,
        0x0122,
        frozenset({_STORE}),
        "the archive does not store this SOP class: ask its administrator to accept it",
    ),
    (0x0122, 0x0122, _QUERY, "the archive does not support Study Root {service}: ask its administrator to enable it"),
    (
        0x0124,
        0x0124,
        _ALL,
        "the archive does not allow AE {aet} to use {service}: ask its administrator to authorise it",
    ),
    (0x0117, 0x0117, _ALL, "the archive found an invalid instance (bad SOP Instance UID): check the file"),
    (0x0111, 0x0111, _ALL, "the archive already holds an instance with this UID and keeps it: nothing to resend"),
    (0x0105, 0x0107, _ALL, "the archive found an unknown or invalid attribute: check the file or the search fields"),
    (0x0116, 0x0116, _ALL, "the archive found an attribute value out of range: check the file or the search fields"),
    (0x0120, 0x0121, _ALL, "the archive found a required attribute missing: check the file"),
    (0x0110, 0x0110, _ALL, "the archive failed while processing the request: check its log, then try again"),
    (0x0112, 0x0112, _ALL, "the archive does not have the requested instance: search again, it may be gone"),
    (0x0118, 0x0119, _ALL, "the archive does not accept the SOP class given for the instance: check the file"),
    (0x0210, 0x0210, _ALL, "the archive saw the same request twice: try again"),
    (0x0211, 0x0211, _ALL, "the archive does not implement {service}: use another method or ask its administrator"),
    (0x0212, 0x0212, _ALL, "the archive could not read a field of the request: check the archive's log"),
    (0x0213, 0x0213, _ALL, "the archive hit a resource limit: try again later"),
    (0x0113, 0x0115, _ALL, "the archive refused an argument of the request: check the archive's log"),
    (0x0123, 0x0123, _ALL, "the archive refused an unknown action: check the archive's log"),
)


def dimse_status_sentence(service: str, code: int, *, aet: str, listener: str = "") -> str:
    """What a refusal status of ``service`` means and what to do, without the server's name."""
    for first, last, services, text in _DIMSE_STATUSES:
        if first <= code <= last and service in services:
            return text.format(aet=aet, listener=listener or "its storage port", service=service)
    return f"DICOM defines no such status for {service}: check the archive's log"


def dimse_status_error(
    service: str,
    code: int,
    where: str,
    *,
    aet: str,
    listener: str = "",
    detail: str = "",
    error_type: type[PacsError] = PacsError,
) -> PacsError:
    """A refused DIMSE operation as one sentence: who refused, the status, what it means, what to do."""
    sentence = dimse_status_sentence(service, code, aet=aet, listener=listener)
    status = f"status {code:#06x}, {detail}" if detail else f"status {code:#06x}"
    return error_type(f"{where} refused the {service} ({status}): {sentence}.")
