"""PACS server entries: what the settings file holds, and the secrets it never holds.

One entry per archive. Its ``url`` says the protocol: ``http(s)://host/dicom-web`` for DICOMweb,
``dicom://AET@host:port`` for DIMSE, the same spelling the command line takes. A password or
token is looked up when a connection is made: from the environment variable the entry names,
or from the OS keyring (service ``ClinLens PACS``, user = entry name). The JSON file only
ever holds the variable's name.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from engine.files import JsonFileError, read_json, write_json_atomic
from engine.pacs.errors import PacsError
from engine.paths import config_dir

SETTINGS_FILE = "pacs.json"
KEYRING_SERVICE = "ClinLens PACS"
AUTH_MODES = ("none", "basic", "bearer")
DEFAULT_OUR_AET = "CLINLENS"
DEFAULT_CACHE_LIMIT_MB = 4096
# The two spellings of a PACS address, in full, for every message that asks for one.
ADDRESS_FORMS = "http(s)://host:port/dicom-web for DICOMweb or dicom://AET@host:port for DIMSE"
_DIMSE_URL = re.compile(r"^dicom://(?P<aet>[^@/\\]{1,16})@(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d{1,5})/?$")


@dataclass(frozen=True)
class DimseAddress:
    called_aet: str
    host: str
    port: int


def parse_dimse_url(url: str) -> DimseAddress:
    """``dicom://AET@host:port`` -> its parts; PacsError with the expected form otherwise."""
    match = _DIMSE_URL.match(url.strip())
    if not match or not 0 < int(match["port"]) < 65536:
        raise PacsError(
            f"{url} is not a valid DIMSE address (expected dicom://AET@host:port, e.g. dicom://ORTHANC@pacs:4242)."
        )
    return DimseAddress(match["aet"], match["host"].strip("[]"), int(match["port"]))


@dataclass(frozen=True)
class PacsServer:
    """One archive the user can search and send to."""

    name: str
    url: str  # http(s)://…/dicom-web  or  dicom://AET@host:port
    auth: str = "none"  # DICOMweb: none | basic | bearer
    username: str = ""  # DICOMweb basic auth
    secret_env: str = ""  # name of the environment variable holding the password / token
    use_keyring: bool = False  # else: read the secret from the OS keyring
    our_aet: str = DEFAULT_OUR_AET  # DIMSE: the AE title we call with (calling AET)
    storage_port: int = 0  # DIMSE: our storage SCP port for C-MOVE (0: C-GET only)
    storage_bind: str = ""  # DIMSE: address that SCP listens on ("": loopback for a local archive, else all)
    timeout_s: float = 20.0

    @property
    def kind(self) -> str:
        return "dimse" if self.url.strip().lower().startswith("dicom://") else "dicomweb"

    def problems(self) -> list[str]:
        """Why this entry cannot work, one sentence each (empty when it can)."""
        found = []
        if not self.name.strip():
            found.append("A PACS entry needs a name.")
        if self.kind == "dimse":
            try:
                parse_dimse_url(self.url)
            except PacsError as err:
                found.append(str(err))
            if not 0 < len(self.our_aet.strip()) <= 16:
                found.append("Our AE title must be 1 to 16 characters.")
            if not 0 <= self.storage_port < 65536:
                found.append(f"The storage port must be between 0 and 65535, not {self.storage_port}.")
        else:
            try:
                parts = urlsplit(self.url.strip())
            except ValueError:  # e.g. an unclosed IPv6 bracket
                parts = urlsplit("")
            if not self.url.strip():
                found.append(f"Enter the server's address: {ADDRESS_FORMS}.")
            elif parts.scheme not in ("http", "https") or not parts.netloc:
                found.append(f"{self.url.strip()} is not a PACS address: enter {ADDRESS_FORMS}.")
            if self.auth not in AUTH_MODES:
                found.append(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}.")
            if self.auth == "basic" and not self.username:
                found.append("HTTP basic authentication needs a user name.")
            if self.auth != "none" and not (self.secret_env or self.use_keyring):
                found.append("Say where the password or token comes from: an environment variable or the OS keyring.")
        if self.timeout_s <= 0:
            found.append("The timeout must be positive.")
        return found

    def secret(self) -> str | None:
        """The password or token, from the named environment variable or the keyring."""
        if self.auth == "none" or self.kind == "dimse":
            return None
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value
            if not self.use_keyring:
                raise PacsError(
                    f"The environment variable {self.secret_env} holding the secret of {self.name} is not set."
                )
        try:
            import keyring

            value = keyring.get_password(KEYRING_SERVICE, self.name)
        except Exception as err:  # noqa: BLE001 - any backend failure is "no keyring here"
            instead = self.secret_env or "an environment variable"
            raise PacsError(f"The OS keyring cannot be read ({type(err).__name__}); set {instead} instead.") from None
        if not value:
            raise PacsError(f"The OS keyring has no secret for {self.name} (service {KEYRING_SERVICE!r}).")
        return value


def store_keyring_secret(server_name: str, secret: str) -> None:
    """Keep a password/token in the OS keyring (PacsError when there is none)."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, server_name, secret)
    except Exception as err:  # noqa: BLE001
        raise PacsError(
            f"The OS keyring cannot store the secret ({type(err).__name__}); use an environment variable."
        ) from None


@dataclass(frozen=True)
class PacsSettings:
    servers: tuple[PacsServer, ...] = ()
    cache_limit_mb: int = DEFAULT_CACHE_LIMIT_MB
    default_server: str = ""

    def server(self, name: str) -> PacsServer | None:
        return next((s for s in self.servers if s.name == name), None)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_pacs_settings() -> PacsSettings:
    """The saved entries; bad entries and damaged files are dropped rather than crash the app."""
    try:
        data = read_json(settings_path())
    except JsonFileError:
        return PacsSettings()
    if not isinstance(data, dict):
        return PacsSettings()
    known = {f.name for f in fields(PacsServer)}
    servers = []
    for item in data.get("servers", []) if isinstance(data.get("servers"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("url"), str):
            try:
                servers.append(PacsServer(**{k: v for k, v in item.items() if k in known}))
            except TypeError:
                continue
    limit = data.get("cache_limit_mb", DEFAULT_CACHE_LIMIT_MB)
    return PacsSettings(
        tuple(servers),
        limit if isinstance(limit, int) and limit > 0 else DEFAULT_CACHE_LIMIT_MB,
        data.get("default_server", "") if isinstance(data.get("default_server"), str) else "",
    )


def save_pacs_settings(settings: PacsSettings) -> None:
    write_json_atomic(
        settings_path(),
        {
            "servers": [asdict(s) for s in settings.servers],
            "cache_limit_mb": settings.cache_limit_mb,
            "default_server": settings.default_server,
        },
    )


def server_from_url(
    url: str,
    *,
    username: str = "",
    secret_env: str = "",
    token_env: str = "",
    our_aet: str = DEFAULT_OUR_AET,
    storage_port: int = 0,
    storage_bind: str = "",
    timeout_s: float = 20.0,
) -> PacsServer:
    """An unnamed entry for the command line (``--url`` plus options)."""
    auth = "bearer" if token_env else "basic" if username else "none"
    server = PacsServer(
        name=url,
        url=url.strip(),
        auth=auth,
        username=username,
        secret_env=token_env or secret_env,
        our_aet=our_aet,
        storage_port=storage_port,
        storage_bind=storage_bind,
        timeout_s=timeout_s,
    )
    problems = server.problems()
    if problems:
        raise PacsError(problems[0])
    return server
