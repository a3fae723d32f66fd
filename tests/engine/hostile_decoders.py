"""Test-only pydicom decoder plugins that behave like a native decoder on a hostile stream.

python-gdcm aborts the process on some damaged JPEG 2000 streams (a C++ exception that ends in
std::terminate, SIGABRT), and some damaged streams keep a decoder busy for minutes. These
plugins reproduce both on demand: `install_abort` / `install_hang` run inside a decoder process
(DecoderPool child_setup, see ABORT / HANG) and become the only plugin for RLE Lossless there,
so decoding any RLE frame in that process aborts it or never returns.
"""

from __future__ import annotations

import os
import time

from pydicom.pixels import get_decoder
from pydicom.uid import RLELossless

ABORT = f"{__name__}:install_abort"
HANG = f"{__name__}:install_hang"
DECODER_DEPENDENCIES = {RLELossless: ()}


def is_available(uid: str) -> bool:
    return uid == RLELossless


def abort_decode(src: bytes, runner) -> bytearray:
    os.abort()


def hang_decode(src: bytes, runner) -> bytearray:
    time.sleep(3600)
    raise AssertionError("unreachable: the pool kills this process long before")


def install_abort() -> None:
    _only_plugin("abort_decode")


def install_hang() -> None:
    _only_plugin("hang_decode")


def _only_plugin(function: str) -> None:
    decoder = get_decoder(RLELossless)
    for label in list(decoder.available_plugins):
        decoder.remove_plugin(label)
    decoder.add_plugin("hostile", (__name__, function))
