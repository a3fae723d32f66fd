"""engine.pacs: search, retrieve from and send to a PACS over DICOMweb or DIMSE (no Qt here).

``connect(server)`` gives a connection with the same methods for both protocols: ``echo``,
``find_studies``, ``find_series``, ``instance_uids``, ``retrieve_series`` (streamed into a sink)
and ``send``. ``retrieve_series`` (module function) adds the on-disk cache, progress and cancel.
Failures are ``PacsError`` whose text is one sentence for the user.
"""

from engine.pacs.cache import Eviction, InstanceCache
from engine.pacs.errors import PacsError, RetrieveCancelled, SendRejected
from engine.pacs.query import SeriesResult, StudyQuery, StudyResult, parse_date_range
from engine.pacs.retrieve import Connection, RetrieveResult, connect, read_for_send, retrieve_series
from engine.pacs.servers import (
    PacsServer,
    PacsSettings,
    load_pacs_settings,
    parse_dimse_url,
    save_pacs_settings,
    server_from_url,
    store_keyring_secret,
)

__all__ = [
    "Connection",
    "Eviction",
    "InstanceCache",
    "PacsError",
    "PacsServer",
    "PacsSettings",
    "RetrieveCancelled",
    "RetrieveResult",
    "SendRejected",
    "SeriesResult",
    "StudyQuery",
    "StudyResult",
    "connect",
    "load_pacs_settings",
    "parse_date_range",
    "parse_dimse_url",
    "read_for_send",
    "retrieve_series",
    "save_pacs_settings",
    "server_from_url",
    "store_keyring_secret",
]
