"""The storage SCP a C-MOVE sends its images to: listening only where it must, accepting only the archive.

A C-MOVE makes the archive open a second association to us and C-STORE the images. A listener on
every interface that takes any caller would let anyone on the network write files into the cache
(and so into the viewer), so it binds to the configured address, or to loopback when the archive
is on this machine (nobody else needs to reach us), else to every interface (a remote archive
must). It accepts a connection only from the archive's addresses (``verify_request``: others are
closed before a byte of DICOM is read) and an association only with the archive's AE title as
calling AE title (``require_calling_aet``: others get an A-ASSOCIATE-RJ).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Self

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer

from engine.pacs.errors import PacsError, network_error
from engine.pacs.servers import PacsServer, parse_dimse_url

log = logging.getLogger(__name__)


def archive_addresses(host: str, timeout: float) -> frozenset[str]:
    """Every address the archive's host name resolves to (the peers a C-MOVE may come from)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as err:
        raise network_error(err, host, timeout) from None
    return frozenset(_normal(info[4][0]) for info in infos)


def _normal(address: str) -> str:
    """``::ffff:10.0.0.5`` (an IPv4 peer seen by an IPv6 socket) -> ``10.0.0.5``; scope ids dropped."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def bind_address(server: PacsServer, peers: frozenset[str]) -> str:
    """The configured address, else loopback for an archive on this machine, else every interface ("")."""
    if server.storage_bind.strip():
        return server.storage_bind.strip()
    ips = [ipaddress.ip_address(p) for p in peers]
    if ips and all(ip.is_loopback for ip in ips):
        return "127.0.0.1" if any(ip.version == 4 for ip in ips) else "::1"
    return ""


class _ArchiveOnlyServer(ThreadedAssociationServer):
    """pynetdicom's server, closing every connection that does not come from ``allowed_peers``."""

    allowed_peers: frozenset[str] = frozenset()  # empty until set: refuse everyone

    def verify_request(self, request, client_address) -> bool:
        peer = _normal(str(client_address[0]))
        if peer in self.allowed_peers:
            return True
        log.warning("Storage listener: refused a connection from %s (not the archive being retrieved from).", peer)
        return False


class StorageListener:
    """Context manager: the C-MOVE destination of one retrieve, stopped (thread joined) on exit."""

    def __init__(self, server: PacsServer, on_store: Callable[[evt.Event], int]) -> None:
        address = parse_dimse_url(server.url)
        self.server = server
        self.archive_aet = address.called_aet  # the archive calls us with its own AE title
        self.peers = archive_addresses(address.host, server.timeout_s)
        self.host = bind_address(server, self.peers)
        self.port = server.storage_port
        self._on_store = on_store
        self._scp: _ArchiveOnlyServer | None = None
        self._thread: threading.Thread | None = None

    def where(self, our_address: str) -> str:
        """``host:port`` the archive must send to (``our_address`` when listening on every interface)."""
        return f"{self.host or our_address}:{self.port}"

    def __enter__(self) -> Self:
        ae = AE(ae_title=self.server.our_aet)
        ae.supported_contexts = StoragePresentationContexts
        ae.require_calling_aet = [self.archive_aet]
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.server.timeout_s
        try:
            scp = ae.make_server(
                (self.host, self.port),
                evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
                server_class=_ArchiveOnlyServer,
            )
        except OSError as err:
            shown = f"{self.host or 'every interface'} port {self.port}"
            raise PacsError(f"Cannot listen on {shown} for C-MOVE: {err.strerror or err}.") from None
        scp.allowed_peers = self.peers
        self._scp = scp
        self._thread = threading.Thread(target=scp.serve_forever, kwargs={"poll_interval": 0.1}, name="StorageSCP")
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._scp is None:
            return
        self._scp.allowed_peers = frozenset()
        socketserver.BaseServer.shutdown(self._scp)  # not pynetdicom's: that one expects start_server's bookkeeping
        self._scp.server_close()  # ThreadingMixIn: joins the association threads it started
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._scp = None
