"""`info` and `render` sub-commands: inspect an image and write exactly what the viewer shows.

`render` writes `engine.imaging.render(frame, window)` unchanged (no overlays), so scripts,
tests and the models see the same pixels as the canvas. Bad input prints one sentence on
stderr and exits with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from cli.help import examples
from cli.options import add_frame_option, add_window_option, fail, frame_index, window_arg
from engine.imaging import (
    ImageLoadError,
    ImageStack,
    Plane,
    VolumeError,
    Window,
    initial_window,
    load_volume,
    open_image,
    render,
    volume_geometry,
)

EXIT_OK = 0
EXIT_WRITE_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the `info` and `render` sub-commands to a main.py argparse sub-parser set."""
    info = subparsers.add_parser(
        "info",
        help="describe an image file (DICOM, PNG, JPEG, TIFF)",
        description="Print what ClinLens reads from an image: modality, size, frames, photometric interpretation, "
        "transfer syntax, stored type, pixel spacing and where it came from, rescale, the header windows, the "
        "initial window and the range of modality values (HU for CT) of frame 1. Bad input exits with code 2.",
        epilog=examples("CT_small.dcm", "~/scans/ct-series/ --json", "photo.png"),
    )
    info.add_argument("file", help="image file, or a folder (its first series)")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(func=run_info)

    rend = subparsers.add_parser(
        "render",
        help="write one frame as PNG, exactly as displayed",
        description="Write one frame through the display pipeline (modality LUT, window, MONOCHROME1 "
        "inversion) as an 8-bit PNG, without overlays. With neither --window nor --preset the header's VOI LUT, "
        "first window or an automatic window applies. Bad input exits with code 2; an output that cannot be "
        "written with 1.",
        epilog=examples(
            "CT_small.dcm lung.png --preset lung",
            "CT_small.dcm lung.png --window -600,1500",
            "us-multiframe.dcm frame18.png --frame 18 --invert",
        ),
    )
    rend.add_argument("file", help="image file, or a folder (its first series)")
    rend.add_argument("out", help="output PNG path")
    add_frame_option(rend)
    rend.add_argument(
        "--plane",
        choices=[p.value for p in Plane],
        help="read the series as a volume and write this plane at display aspect",
    )
    rend.add_argument("--slice", type=int, help="1-based slice along the plane's axis (default: the middle)")
    add_window_option(rend, "window centre and width")
    rend.add_argument("--invert", action="store_true", help="invert the displayed image")
    rend.set_defaults(func=run_render)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `info` or `render` standalone (tests and scripts); main.py uses `register`."""
    parser = argparse.ArgumentParser(prog="clinlens")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def run_info(args: argparse.Namespace) -> int:
    try:
        stack = open_image(args.file)
        facts = describe(stack)
    except ImageLoadError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(_as_text(facts))
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    try:
        window = window_arg(args)
    except ValueError as exc:
        return fail(str(exc))
    if args.slice is not None and args.plane is None:
        return fail("--slice needs --plane (use --frame for the frames of the file or series).")
    try:
        stack = open_image(args.file)
        if args.plane is not None:
            frame = _plane_frame(stack, Plane(args.plane), args.slice)
        else:
            frame = stack.frame(frame_index(args, stack))
        pixels = render(frame, window, invert=args.invert)
    except (ImageLoadError, VolumeError, ValueError) as exc:
        return fail(str(exc))
    try:
        Image.fromarray(pixels).save(args.out, format="PNG")
    except (OSError, ValueError) as exc:
        return fail(f"could not write {args.out}: {exc}", EXIT_WRITE_FAILED)
    return EXIT_OK


def _plane_frame(stack: ImageStack, plane: Plane, slice_number: int | None):
    """A plane of the stack read as a volume; the volume's warnings go to stderr."""
    volume = load_volume(stack)
    for warning in volume.geometry.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    count = volume.axes(plane).n_positions
    number = (count + 1) // 2 if slice_number is None else slice_number
    if not 1 <= number <= count:
        raise ValueError(
            f"--slice {number} is out of range: the {plane.value} plane of {stack.title} has {count} slices."
        )
    return volume.plane_frame(plane, number - 1)


def describe(stack: ImageStack) -> dict[str, Any]:
    """The facts `info` prints, as plain data (JSON-ready)."""
    frame = stack.frame(0)
    header = stack.header(0)
    values = frame.modality_values()
    finite = values[np.isfinite(values)]
    spacing = stack.spacing
    rescale = frame.pixel_params.rescale if not frame.is_color else None
    window = None if frame.is_color else initial_window(frame)
    syntax = header.file_meta.get("TransferSyntaxUID") if header is not None and hasattr(header, "file_meta") else None
    return {
        "file": stack.paths[0],
        "kind": stack.kind,
        "is_color": stack.is_color,
        "modality": stack.modality,
        "rows": stack.rows,
        "columns": stack.columns,
        "frames": stack.n_frames,
        "photometric_interpretation": stack.photometric,
        "transfer_syntax": stack.transfer_syntax,
        "transfer_syntax_uid": str(syntax) if syntax else "",
        "bits_stored": None if header is None else header.get("BitsStored"),
        "stored_dtype": str(frame.stored.dtype),
        "pixel_spacing_mm": None if spacing is None else [spacing.row_mm, spacing.col_mm],
        "pixel_spacing_source": None if spacing is None else spacing.source,
        "rescale_slope": None if rescale is None else rescale[0],
        "rescale_intercept": None if rescale is None else rescale[1],
        "modality_lut": frame.pixel_params.modality_lut is not None,
        "voi_lut_sequence": frame.has_voi_lut,
        "header_windows": [_window_dict(w) for w in frame.windows],
        "initial_window": None if window is None else _window_dict(window),
        "modality_min": float(finite.min()) if finite.size else None,
        "modality_max": float(finite.max()) if finite.size else None,
        "modality_range_of": "frame 1",
        **_volume_facts(stack),
    }


def _volume_facts(stack: ImageStack) -> dict[str, Any]:
    """The volume geometry (headers only), or why the stack is not a volume."""
    if stack.n_frames < 2 or stack.kind != "dicom":
        return {"volume": None, "volume_note": "a single image" if stack.n_frames < 2 else "not DICOM"}
    try:
        return {"volume": volume_geometry(stack).to_dict(), "volume_note": ""}
    except VolumeError as exc:
        return {"volume": None, "volume_note": str(exc)}


def _window_dict(window: Window) -> dict[str, Any]:
    return {
        "center": window.center,
        "width": window.width,
        "function": window.function,
        "explanation": window.explanation,
    }


def _as_text(facts: dict[str, Any]) -> str:
    spacing = (
        "unknown"
        if facts["pixel_spacing_mm"] is None
        else f"{facts['pixel_spacing_mm'][0]:g} x {facts['pixel_spacing_mm'][1]:g} mm "
        f"(row x column, from {facts['pixel_spacing_source']})"
    )
    if facts["modality_lut"]:
        rescale = "Modality LUT Sequence"
    elif facts["rescale_slope"] is None:
        rescale = "none (modality values = stored values)"
    else:
        rescale = f"slope {facts['rescale_slope']:g}, intercept {facts['rescale_intercept']:g}"
    windows = ", ".join(
        f"{w['center']:g}/{w['width']:g} {w['function']}" + (f" ({w['explanation']})" if w["explanation"] else "")
        for w in facts["header_windows"]
    ) or ("none (VOI LUT Sequence)" if facts["voi_lut_sequence"] else "none")
    init = facts["initial_window"]
    initial = (
        "header VOI LUT Sequence"
        if init is None and facts["voi_lut_sequence"]
        else "n/a (colour)"
        if init is None
        else f"{init['center']:g}/{init['width']:g} {init['function']}"
        + (f" ({init['explanation']})" if init["explanation"] else "")
    )
    syntax = facts["transfer_syntax"] or "n/a (raster file)"
    if facts["transfer_syntax_uid"]:
        syntax += f" ({facts['transfer_syntax_uid']})"
    value_range = (
        "n/a"
        if facts["modality_min"] is None
        else f"min {facts['modality_min']:g}, max {facts['modality_max']:g} ({facts['modality_range_of']})"
    )
    stored = facts["stored_dtype"] + (f", {facts['bits_stored']} bits stored" if facts["bits_stored"] else "")
    rows = [
        ("File", facts["file"]),
        ("Modality", facts["modality"] or "n/a"),
        ("Size", f"{facts['columns']} x {facts['rows']} px (columns x rows), {facts['frames']} frame(s)"),
        ("Photometric", facts["photometric_interpretation"]),
        ("Transfer syntax", syntax),
        ("Stored values", stored),
        ("Pixel spacing", spacing),
        ("Rescale", rescale),
        ("Header windows", windows),
        ("Initial window", initial),
        ("RGB values" if facts["is_color"] else "Modality values", value_range),
        ("Volume", _volume_text(facts)),
    ]
    rows += [("Warning", warning) for warning in (facts["volume"] or {}).get("warnings", [])]
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)


def _volume_text(facts: dict[str, Any]) -> str:
    volume = facts["volume"]
    if volume is None:
        return f"no ({facts['volume_note']})"
    dims, spacing = volume["dimensions"], volume["spacing_mm"]
    return (
        f"{dims['columns']} x {dims['rows']} x {dims['slices']} voxels, "
        f"{spacing['column']:g} x {spacing['row']:g} x {spacing['slice']:g} mm "
        f"(slice spacing from positions{'' if volume['regular_spacing'] else ', irregular'})"
    )
