"""dcmtk's archive and storage SCP for the DIMSE tests: plain processes on 127.0.0.1 with temp configs.

``Dcmqrscp`` writes a ``dcmqrscp.cfg`` (a free port, one RW storage area, a host table that names
our AE title at our C-MOVE storage port so the archive can move to us; any other AE title is an
unknown move destination, 0xA801) and starts ``dcmqrscp`` in its default mode, one forked child
per association (its ``--single-process`` mode crashed with SIGSEGV after a C-ECHO in our
trials, dcmtk 3.6.7). ``Storescp`` is ``storescp`` writing what it receives into a folder. Both are
ready when they answer a C-ECHO: a bare TCP connect would itself be logged by dcmtk as a protocol
error, which is what the tests look for in ``log()``. Without the binaries the tests fail with the
name of the Debian package; they are never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.orthanc import OUR_AET, _die_with_parent, free_port

PACKAGE = "dcmtk"
ARCHIVE_AET = "DCMQRSCP"
STORESCP_AET = "STORESCP"
FSM_ERROR = "DUL Finite State Machine Error"


def dcmtk_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(
            f"The DIMSE tests need dcmtk's {name}, which is not installed: apt-get install {PACKAGE}", pytrace=False
        )
    return path


def answers_echo(aet: str, port: int) -> bool:
    """One C-ECHO association (what a DICOM node expects; a bare TCP probe is an error in its log)."""
    ae = AE(ae_title=OUR_AET)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 2
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


class _DcmtkProcess:
    """A dcmtk server process with its log in ``folder``; stopped (and waited for) on exit."""

    aet = ""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.folder / f"{type(self).__name__.lower()}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call between fork and exec
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"{self.command()[0]} exited at start: {self.log()[-2000:]}")
            if answers_echo(self.aet, self.port):
                return self
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"{self.command()[0]} did not answer a C-ECHO within 20 s")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Dcmqrscp(_DcmtkProcess):
    """dcmtk's query/retrieve archive: C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE (into ``storage``)."""

    aet = ARCHIVE_AET

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.storage = self.folder / "storage"
        self.storage.mkdir(exist_ok=True)
        self.move_port = free_port()  # where the host table says OUR_AET listens for C-MOVE

    def command(self) -> list[str]:
        config = self.folder / "dcmqrscp.cfg"
        config.write_text(
            f"NetworkTCPPort = {self.port}\n"
            "MaxPDUSize = 16384\n"
            "MaxAssociations = 16\n"
            "HostTable BEGIN\n"
            f"clinlens = ({OUR_AET}, 127.0.0.1, {self.move_port})\n"
            "HostTable END\n"
            "VendorTable BEGIN\n"
            "VendorTable END\n"
            "AETable BEGIN\n"
            f"{self.aet} {self.storage} RW (100, 512mb) ANY\n"
            "AETable END\n"
        )
        return [dcmtk_binary("dcmqrscp"), "--log-level", "warn", "-c", str(config)]


class Storescp(_DcmtkProcess):
    """dcmtk's storage SCP: every instance it receives lands in ``received``."""

    aet = STORESCP_AET

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.received = self.folder / "received"
        self.received.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [
            dcmtk_binary("storescp"),
            "--log-level",
            "warn",
            "--aetitle",
            self.aet,
            "--output-directory",
            str(self.received),
            str(self.port),
        ]
