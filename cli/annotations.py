"""export: write an image set's annotations as COCO, YOLO, VOC, CSV, ClinLens JSON or DICOM SR.

    clinlens export FOLDER --format coco --out train.json
    clinlens export a.dcm b.dcm --format sr --out reports/ --annotations project.json

The annotations come from where the app autosaves them (engine.annotations.annotation_path) or from
``--annotations``; only images that lie in the given paths are exported. The images themselves
are not decoded (DICOM SR reads their headers). Exports follow review: user annotations and
accepted or corrected model output go by default; pending model output needs --include-pending,
rejected output --include-rejected (see engine.annotations.formats.targets.ReviewScope).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.help import examples
from cli.options import add_annotations_option, fail
from engine.annotations.document import AnnotationDocument
from engine.annotations.persistence import DocumentError, annotation_path, load_document


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.annotations.formats import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export annotations (coco, yolo, voc, csv, json, sr)",
        description="Write an image set's annotations as COCO, YOLO, Pascal VOC, CSV, ClinLens JSON or DICOM SR. "
        "They come from where the app autosaves them (the image set's sidecar, or the user data folder for "
        "read-only images) or from --annotations; only images inside the given paths are exported. Images are "
        "not decoded (DICOM SR reads their headers). Only user annotations and accepted or corrected model output are "
        "exported unless --include-pending / --include-rejected say otherwise. Bad input exits with code 2.",
        epilog=examples(
            "~/cxr --format coco --out ~/cxr-coco.json",
            "~/ct/series1 --format sr --out ~/ct/reports",
            "a.dcm b.dcm --format yolo --out yolo/ --annotations project.json",
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="the image set: files and/or folders")
    parser.add_argument(
        "--format",
        required=True,
        choices=sorted(FORMATS),
        help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()),
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output file (coco, csv, json) or folder (yolo, voc, sr)"
    )
    add_annotations_option(parser)
    parser.add_argument(
        "--include-pending",
        action="store_true",
        help="also export model output nobody has reviewed yet (left out by default, so an export or a PACS send "
        "carries only what a person stands behind)",
    )
    parser.add_argument(
        "--include-rejected",
        action="store_true",
        help="also export annotations a reviewer rejected (never implied by --include-pending)",
    )
    parser.set_defaults(func=run_export)


def _within(path: str, roots: list[str]) -> bool:
    path = os.path.normcase(os.path.abspath(path))
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def selected_image_ids(doc: AnnotationDocument, images: list[str]) -> list[str]:
    """Ids of the document's images that have a file inside the given files/folders."""
    roots = [os.path.normcase(os.path.abspath(p)) for p in images]
    return [ref.image_id for ref in doc.images if any(_within(p, roots) for p in ref.paths)]


class ProjectError(ValueError):
    """The images or their annotations cannot be used; ``str(err)`` is the one sentence to print."""


def open_project(images: list[str], annotations: Path | None) -> tuple[Path, AnnotationDocument, list[str]]:
    """The annotation file of ``images`` (``annotations``, else where the app autosaves them), the
    document read from it and the ids of its images inside ``images``: what ``export`` and
    ``report`` start from, refused in one sentence (``ProjectError``) when any of it is missing."""
    missing = [p for p in images if not os.path.exists(p)]
    if missing:
        raise ProjectError(f"{missing[0]} does not exist")
    source = annotations or annotation_path(images)
    if not source.is_file():
        raise ProjectError(
            f"no annotations found: {source} does not exist"
            + ("" if annotations else " (annotate in the app first, or pass --annotations FILE)")
        )
    try:
        doc = load_document(source)
    except (DocumentError, OSError) as err:
        raise ProjectError(f"cannot read the annotations: {err}") from None
    image_ids = selected_image_ids(doc, images)
    if not image_ids:
        raise ProjectError(f"{source} has no images inside {', '.join(images)}")
    return source, doc, image_ids


def run_export(args: argparse.Namespace) -> int:
    from engine.annotations.formats import FORMATS, ExportError, ReviewScope

    try:
        _source, doc, image_ids = open_project(args.images, args.annotations)
    except ProjectError as err:
        return fail(str(err))
    fmt = FORMATS[args.format]
    if fmt.writes_folder and args.out.is_file():
        return fail(f"--out {args.out} is a file; the {fmt.name} export writes a folder")
    if not fmt.writes_folder and args.out.is_dir():
        return fail(f"--out {args.out} is a folder; the {fmt.name} export writes a file")
    scope = ReviewScope(args.include_pending, args.include_rejected)
    try:
        written = fmt.export(
            doc,
            args.out,
            image_ids=image_ids,
            include_pending=scope.include_pending,
            include_rejected=scope.include_rejected,
        )
    except ExportError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"cannot write {args.out}: {err}")
    print(
        f"exported {len(image_ids)} image(s) as {fmt.name} ({scope.describe()}): "
        f"{len(written)} file(s) written to {args.out}"
    )
    return 0
