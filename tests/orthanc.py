"""A real Orthanc for the PACS tests: a plain process on 127.0.0.1 with a temporary config.

``OrthancServer`` writes a configuration (free HTTP and DICOM ports, the DICOMweb plugin of
the Debian package ``orthanc-dicomweb``, storage in a temp folder, optional ``RegisteredUsers``,
a ``DicomModalities`` entry for our AE title so C-MOVE can reach our storage SCP), starts
``Orthanc CONFIG.json``, waits for its REST API, and stops it on ``stop()``. Without the binaries
the tests fail with the names of the packages to install; they are never skipped.

``ct_series`` generates a multi-instance CT series (random pixels, real geometry) so tests and
the benchmark can ask for any size; seeding goes through Orthanc's REST ``POST /instances``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PACKAGES = "orthanc orthanc-dicomweb"
PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")
OUR_AET = "CLINLENS"


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when the test process dies, even by SIGKILL (no teardown runs then)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def orthanc_binaries() -> tuple[str, str]:
    """(Orthanc executable, DICOMweb plugin) or a test failure naming the Debian packages."""
    binary = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()), None
    )
    plugin = next((p for p in PLUGIN_CANDIDATES if Path(p).exists()), None)
    if not binary or not plugin:
        missing = "Orthanc" if not binary else "its DICOMweb plugin"
        pytest.fail(
            f"The PACS tests need a real Orthanc, but {missing} is not installed: apt-get install {PACKAGES}",
            pytrace=False,
        )
    return binary, plugin


class OrthancServer:
    def __init__(
        self,
        folder: Path,
        *,
        users: dict[str, str] | None = None,
        aet: str = "ORTHANC",
        lua: str = "",
        config: dict | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.users = users or {}
        self.aet = aet
        self.lua = lua  # a Lua script, e.g. an IncomingHttpRequestFilter that refuses uploads
        self.config = config or {}  # overrides of the configuration below
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.storage_port = free_port()  # our C-MOVE storage SCP (the modality entry points here)
        self.process: subprocess.Popen | None = None

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse_url(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.dicom_port}"

    def start(self) -> OrthancServer:
        binary, plugin = orthanc_binaries()
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "ClinLens test PACS",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "HttpBindAddress": "127.0.0.1",
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {"clinlens": [OUR_AET, "127.0.0.1", self.storage_port]},
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowStore": True,
            "StorageCompression": False,
            "HttpThreadsCount": 8,
            "DicomThreadsCount": 4,
        }
        config.update(self.config)
        if self.lua:
            script = self.folder / "filter.lua"
            script.write_text(self.lua)
            config["LuaScripts"] = [str(script)]
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        self.log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call between fork and exec, no lock taken
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"Orthanc exited at start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.rest("GET", "/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        pytest.fail("Orthanc did not answer within 30 s")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None

    def kill(self) -> None:
        """Stop it hard, as a crashed or unplugged server would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def rest(self, method: str, path: str, body: bytes | None = None) -> object:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        if self.users:
            user, password = next(iter(self.users.items()))
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            data = answer.read()
        return json.loads(data) if data else None

    def upload(self, data: bytes | Dataset | Path | str) -> dict:
        if isinstance(data, Dataset):
            data = encode(data)
        elif isinstance(data, (Path, str)):
            data = Path(data).read_bytes()
        return self.rest("POST", "/instances", data)


def encode(dataset: Dataset) -> bytes:
    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct_series(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    patient_id: str = "PACS-TEST-1",
    patient_name: str = "Test^Pacs",
    study_uid: str | None = None,
    description: str = "Generated CT",
    study_date: str = "20240315",
) -> list[Dataset]:
    """``n`` CT slices of ``size``×``size`` int16 noise with consistent geometry, one study/series."""
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_of_reference = generate_uid()
    slices = []
    for index in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_of_reference
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, patient_name, "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = study_date, "101500", "ACC0001", "1"
        ds.StudyDescription, ds.SeriesDescription = description, f"{description} series"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
        ds.ReferringPhysicianName, ds.Manufacturer = "", "ClinLens test generator"
        ds.ImagePositionPatient = [0.0, 0.0, float(index) * 2.5]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.5
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = rng.integers(0, 2000, size=(size, size), dtype=np.int16).tobytes()
        slices.append(ds)
    return slices


@dataclass
class Seeded:
    """The module-wide Orthanc of the PACS tests and what it was seeded with."""

    server: OrthancServer
    ct: list[pydicom.Dataset]
    corrupt: list[pydicom.Dataset]
    mr_study: str


def seeded_orthanc(tmp_path_factory) -> Iterator[Seeded]:
    """Body of the test modules' ``pacs`` fixture: Orthanc seeded with pydicom's CT_small and
    MR_small, a 12-slice CT, and a 5-slice CT whose third slice is cut short; stopped after."""
    with OrthancServer(tmp_path_factory.mktemp("orthanc")) as server:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            server.upload(get_testdata_file(name))
        ct = ct_series(12, seed=1, patient_id="PACS-CT", description="Chest CT")
        corrupt = ct_series(5, seed=2, patient_id="PACS-BAD", description="Broken CT", study_date="20230101")
        corrupt[2].PixelData = corrupt[2].PixelData[: len(corrupt[2].PixelData) // 3]  # truncated pixel data
        for ds in ct + corrupt:
            server.upload(ds)
        mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
        yield Seeded(server, ct, corrupt, str(mr.StudyInstanceUID))
