"""`segment`: a box (and points) on one frame to a mask with a SAM-family model, optionally
propagated through a frame range, written as DICOM SEG, NIfTI, PNG label maps or COCO RLE.

The same engine the window will use: the frame is rendered with the chosen window (the pixels
as displayed, which is what the model sees), the mask is a pending model annotation with its
provenance, and the file is written by the annotation exporters, so it reads back everywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.help import examples
from cli.options import (
    add_device_option,
    add_dtype_option,
    add_frame_option,
    add_window_option,
    fail,
    frame_index,
    window_arg,
)

EXIT_OK = 0
EXIT_WRITE_FAILED = 1

# OUT's ending -> the annotation export format that writes it
OUTPUTS = {".dcm": "seg", ".nii.gz": "nifti", ".png": "png", ".json": "coco"}


def register(subparsers: Any) -> None:
    """Add the `segment` sub-command to a main.py argparse sub-parser set."""
    seg = subparsers.add_parser(
        "segment",
        help="turn a box on an image into a mask with SAM or MedSAM",
        description="Segment the region in --box on one frame with a local SAM-family checkpoint (SAM, MedSAM), "
        "from the pixels as displayed with --window or --preset; with --propagate FIRST:LAST the mask is carried "
        "through those frames, each prompted with the box of the mask before it. OUT's ending picks the format: "
        ".dcm (DICOM SEG), .nii.gz (NIfTI label map), .png (label map; one per frame) or .json (COCO RLE). The mask "
        "is model output pending review, with its model, prompt and window recorded. Bad input exits with code 2; "
        "an output that cannot be written with 1.",
        epilog=examples(
            "CT_small.dcm --box 40,8,90,50 --model ~/models/sam-vit-base --out mask.dcm",
            "~/scans/ct-series/ --frame 31 --box 120,80,200,150 --propagate 20:45 --model ~/models/medsam "
            "--out liver.nii.gz --preset liver",
        ),
    )
    seg.add_argument("image", help="image file, or a folder (its first series)")
    seg.add_argument("--box", required=True, help="X1,Y1,X2,Y2 in image pixels (0-based, as `info` reports)")
    seg.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y[,1|0]",
        help="a point to refine the mask: 1 (default) inside, 0 outside; repeat for several",
    )
    add_frame_option(seg)
    seg.add_argument("--propagate", metavar="FIRST:LAST", help="1-based frame range to carry the mask through")
    seg.add_argument(
        "--plane",
        choices=("axial", "coronal", "sagittal"),
        help="segment a reformatted plane of the series' volume (--box in that plane's display pixels, as the "
        "three-plane view shows it); the mask is put back on every frame the plane crosses",
    )
    seg.add_argument("--slice", type=int, help="1-based slice of --plane (default: the middle one); not with --frame")
    seg.add_argument("--model", required=True, help="folder of a SAM-family checkpoint (SamModel: SAM, MedSAM)")
    seg.add_argument("--label", default="segment", help="the mask's label (default: segment)")
    seg.add_argument("--out", required=True, help="output file: .dcm, .nii.gz, .png or .json")
    add_window_option(seg, "window the model sees, as displayed")
    add_device_option(seg)
    add_dtype_option(seg)
    seg.set_defaults(func=run_segment)


def run_segment(args: argparse.Namespace) -> int:
    from engine.imaging import ImageLoadError, VolumeError, initial_window, open_image, render_rgb
    from engine.segmentation import SegmenterError, load_segmenter, propagate

    out_format = _out_format(args.out)
    if out_format is None:
        return fail(f"--out {args.out} must end in one of {', '.join(OUTPUTS)}.")
    if args.plane is not None and args.propagate is not None:
        return fail(
            "--plane and --propagate cannot be used together yet: segment one plane, or propagate through frames."
        )
    if args.slice is not None and args.plane is None:
        return fail("--slice numbers a slice of --plane; give --plane axial, coronal or sagittal with it.")
    try:
        window = window_arg(args)
        box = _numbers(args.box, "--box", 4)
        points = [_point(text) for text in args.point]
        stack = open_image(args.image)
        if args.plane is not None:
            segmenter = load_segmenter(args.model, device=args.device, dtype=args.dtype or "auto")
            masks, scores, shown, where = _segment_plane(args, stack, segmenter, window, box, points)
            return _finish(args, out_format, stack, segmenter, masks, scores, shown, where)
        start = frame_index(args, stack)
        frames = _frame_range(args.propagate, stack.n_frames, start)
        shown = window if window is not None else initial_window(stack.frame(start))
        segmenter = load_segmenter(args.model, device=args.device, dtype=args.dtype or "auto")

        def displayed(index: int):
            return render_rgb(stack.frame(index), shown)

        if frames is None:
            result = segmenter.segment(displayed(start), box, points)
            masks = {start: result.mask} if not result.empty else {}
            scores = [result.score]
        else:
            run = propagate(segmenter, displayed, start, frames, box=box, points=points, progress=_progress)
            masks, scores = run.masks, list(run.scores.values())
    except (ImageLoadError, VolumeError, SegmenterError, ValueError) as exc:
        return fail(str(exc))
    return _finish(args, out_format, stack, segmenter, masks, scores, shown, f"frame {args.frame}")


def _segment_plane(args, stack, segmenter, window, box, points) -> tuple[dict, list, Any, str]:
    """Segment one plane of the volume as displayed, and put the mask back on the stack's frames.

    The model sees ``Volume.plane_frame`` rendered with the window, exactly what the three-plane
    view shows; every display pixel of its mask sets the voxel its centre falls in
    (``plane_mask_to_frames``), so a coronal mask becomes one row of voxels on many frames.
    """
    from engine.imaging import Plane, initial_window, load_volume, render_rgb
    from engine.imaging.volume_labels import plane_mask_to_frames

    if args.frame != 1:
        raise ValueError("--frame picks a frame of the series; with --plane give the plane's slice with --slice.")
    volume = load_volume(stack)
    plane = Plane(args.plane)
    n = volume.axes(plane).n_positions
    number = args.slice if args.slice is not None else n // 2 + 1
    if not 1 <= number <= n:
        raise ValueError(f"--slice {number} is out of range: the {plane.value} plane has {n} slices.")
    frame = volume.plane_frame(plane, number - 1)
    shown = window if window is not None else initial_window(frame)
    result = segmenter.segment(render_rgb(frame, shown), box, points)
    masks = {} if result.empty else plane_mask_to_frames(volume, plane, number - 1, result.mask)
    return masks, [result.score], shown, f"{plane.value} slice {number}"


def _finish(args, out_format, stack, segmenter, masks, scores, shown, where: str) -> int:
    """Write the mask as pending model output with its provenance, and say what was written."""
    from engine.annotations import AddAnnotations, AnnotationDocument, Provenance, image_ref_from_stack

    if not masks:
        return fail(f"the model found nothing inside --box {args.box} on {where}; nothing was written.")

    doc = AnnotationDocument()
    ref = image_ref_from_stack(stack)
    doc.add_image(ref)
    provenance = Provenance(
        run="",
        key="",
        model=segmenter.info.model_id,
        task="segment",
        question=json.dumps(
            {
                "box": _numbers(args.box, "--box", 4),
                "points": [_point(text) for text in args.point],
                "frame": args.frame,
                "propagate": args.propagate,
                "plane": args.plane,
                "slice": args.slice,
            }
        ),
        window=f"{shown.center:g},{shown.width:g}" if shown is not None else "",
    )
    values = _values(stack, masks)
    mask = doc.new_mask(
        ref.image_id,
        masks,
        args.label,
        source="model",
        score=max(scores),
        provenance=provenance,
        values=values,
    )
    doc.execute(AddAnnotations(ref.image_id, [mask]))
    try:
        written = _write(doc, out_format, Path(args.out))
    except (OSError, ValueError) as exc:
        return fail(f"could not write {args.out}: {exc}", EXIT_WRITE_FAILED)
    print(_summary(mask, values, written))
    return EXIT_OK


def _out_format(out: str) -> str | None:
    name = out.lower()
    return next((fmt for suffix, fmt in OUTPUTS.items() if name.endswith(suffix)), None)


def _numbers(text: str, option: str, count: int) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"{option} takes {count} numbers separated by commas, not {text!r}.")
    return values


def _point(text: str) -> tuple[float, float, int]:
    parts = text.split(",")
    if len(parts) == 2:
        parts.append("1")
    x, y, label = _numbers(",".join(parts), "--point", 3)
    if label not in (0, 1):
        raise ValueError(f"--point {text}: the third number is 1 (inside) or 0 (outside).")
    return x, y, int(label)


def _frame_range(text: str | None, n_frames: int, start: int) -> tuple[int, int] | None:
    """``FIRST:LAST`` (1-based) as 0-based indices, checked against the image and --frame."""
    if text is None:
        return None
    first_last = text.split(":")
    try:
        first, last = (int(v) for v in first_last)
    except ValueError:
        raise ValueError(f"--propagate takes FIRST:LAST frame numbers, not {text!r}.") from None
    if not 1 <= first <= start + 1 <= last <= n_frames:
        raise ValueError(
            f"--propagate {text} must hold --frame {start + 1} and lie within the image's 1..{n_frames} frames."
        )
    return first - 1, last - 1


def _values(stack, masks) -> tuple:
    """Volume (several frames of a volume) or area (one frame), longest diameter and the
    statistics of the values inside; nothing in mm where the image has no pixel spacing."""
    from engine.annotations.measure import modality_unit
    from engine.imaging import VolumeError, load_volume
    from engine.segmentation import mask_values, measure_mask, measure_slice

    unit = modality_unit(stack.modality)
    if len(masks) > 1:
        try:
            volume = load_volume(stack)
        except VolumeError as exc:
            print(
                f"warning: no volume from these frames ({exc}); the mask is written without measurements",
                file=sys.stderr,
            )
            return ()
        return mask_values(measure_mask(masks, volume.geometry, volume.modality_values(volume.data)), unit)
    if stack.spacing is None:
        return ()  # a picture without pixel spacing: pixels only, no mm
    [(index, mask)] = masks.items()
    frame = stack.frame(index)
    values = None if frame.is_color else frame.modality_values()
    return mask_values(measure_slice(mask, stack.spacing.row_mm, stack.spacing.col_mm, values), unit)


def _write(doc, out_format: str, out: Path) -> list[Path]:
    """Export through the annotation formats; a folder format's one file is moved to ``out``."""
    from engine.annotations.formats import FORMATS

    spec = FORMATS[out_format]
    # the mask is pending model output, and it is what the user asked this command for
    if not spec.writes_folder:
        return spec.export(doc, out, include_pending=True)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as folder:
        files = spec.export(doc, folder, include_pending=True)
        main = [f for f in files if f.suffix != ".json"] or files
        if out_format == "png" and len(main) > 1:  # one PNG per frame: OUT names a stem
            targets = [out.with_name(f"{out.stem}-{f.stem}{f.suffix}") for f in main]
        else:
            targets = [out]
        for source, target in zip(main[: len(targets)], targets, strict=True):
            shutil.move(source, target)
        return targets


def _summary(mask, values, written: Sequence[Path]) -> str:
    lines = [f"mask {mask.label!r} on {len(mask.frames)} frame(s): " + ", ".join(str(f.frame + 1) for f in mask.frames)]
    lines += [f"  {v.name}: {v.value:.4g} {v.unit}" for v in values]
    lines += [f"wrote {path}" for path in written]
    return "\n".join(lines)


def _progress(done: int, total: int) -> None:
    print(f"\rsegmenting {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `segment` standalone (tests and scripts); main.py uses `register`."""
    parser = argparse.ArgumentParser(prog="clinlens")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
