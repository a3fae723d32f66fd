"""Test-only decoders that behave like a native decoder on a hostile stream.

python-gdcm aborts the process on some damaged JPEG 2000 streams (a C++ exception that ends in
std::terminate, SIGABRT), and some damaged streams keep a decoder busy for minutes. These
decoders reproduce both on demand; each `install_*` runs inside a decoder process
(DecoderPool child_setup, see the constants):

- ABORT / HANG: the only pydicom plugin for RLE Lossless, so any RLE frame aborts or never returns;
- PILLOW_ABORT / PILLOW_HANG: Pillow's decoders for PNG ("zip"), JPEG and libtiff, so any
  compressed raster file aborts or never returns;
- ZLIB_ABORT: zlib's decompression, so a deflated DICOM file aborts.
"""

from __future__ import annotations

import os
import threading
import time
import zlib

from PIL import Image, ImageFile
from pydicom.pixels import get_decoder
from pydicom.uid import RLELossless

ABORT = f"{__name__}:install_abort"
HANG = f"{__name__}:install_hang"
PILLOW_ABORT = f"{__name__}:install_pillow_abort"
PILLOW_HANG = f"{__name__}:install_pillow_hang"
ZLIB_ABORT = f"{__name__}:install_zlib_abort"
PILLOW_DECODERS = ("zip", "jpeg", "libtiff")
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


class _AbortingPillowDecoder(ImageFile.PyDecoder):
    def decode(self, buffer):
        os.abort()


class _HangingPillowDecoder(ImageFile.PyDecoder):
    def decode(self, buffer):
        hang_decode(buffer, None)


def install_pillow_abort() -> None:
    for name in PILLOW_DECODERS:
        Image.register_decoder(name, _AbortingPillowDecoder)


def install_pillow_hang() -> None:
    for name in PILLOW_DECODERS:
        Image.register_decoder(name, _HangingPillowDecoder)


def install_zlib_abort() -> None:
    def abort(*_args, **_kwargs):
        os.abort()

    zlib.decompress = abort
    zlib.decompressobj = abort


# ----- results that cannot cross the pipe (DecoderPool.run with these as the decode function)
def unpicklable_result(*_args) -> threading.Lock:
    """A decode that succeeds with a result pickle refuses (a lock), so the child cannot send it."""
    return threading.Lock()


def _refuse_unpickling() -> None:
    raise RuntimeError("this result cannot be rebuilt in the viewer")


class _FailsToUnpickle:
    def __reduce__(self):
        return (_refuse_unpickling, ())


def result_that_fails_to_unpickle(*_args) -> _FailsToUnpickle:
    """A result that pickles in the child but raises when the caller unpickles it."""
    return _FailsToUnpickle()
