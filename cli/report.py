"""report: the report of a study as a DICOM SR (and a PDF), from a project, optionally signed off.

    clinlens report ~/ct/series1 --annotations project.json --out report.dcm --pdf report.pdf
    clinlens report ~/ct/series1 --out report.dcm --verify "Doe^Jane" --organization "General Hospital"
    clinlens report ~/ct/series1 --out report.dcm --pdf-dicom report-pdf.dcm --no-save

The report is the study's current one in the project (the one the app's Report panel edits); a
study without a report gets a draft from the modality's template with a finding for every
annotation a person stands behind (user annotations, accepted or corrected model output). With
--verify the draft is signed off by that observer under the same rules as in the app (no
unreviewed model findings, no deleted evidence, no template blank such as [region] left: the
draft's template fields come from the DICOM header, and --field body_part=chest fills one the
header does not say). A report the project did not hold yet (the new
draft, or the newly signed one) is saved into the project file, atomically (temporary file,
then rename), so the app shows what was written; --no-save leaves the project file untouched.
--pdf-dicom writes the printed report as an Encapsulated PDF DICOM object for a PACS.
The PDF is drawn by Qt in a child process (``python -m app.report.pdf``): the command line never
loads Qt itself. Bad input exits with code 2, one sentence on stderr, nothing changed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset

from cli.annotations import ProjectError, open_project
from cli.help import examples
from cli.options import add_annotations_option, add_observer_options, fail
from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import ExportError
from engine.annotations.persistence import save_document
from engine.files import write_bytes_atomic
from engine.imaging.dicom_index import read_header
from engine.imaging.errors import ImageLoadError
from engine.report.commands import PutReport
from engine.report.fields import field_values
from engine.report.model import Observer, Report
from engine.report.pdf_dicom import build_report_pdf_dicom, dicom_bytes
from engine.report.printable import printable
from engine.report.signoff import SignOffError, accepted_findings, new_report, sign
from engine.report.sr import build_report_sr
from engine.report.templates import read_templates

EXIT_WRITE_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a study's report as DICOM SR (and PDF), optionally signed off",
        description="Write the report of the study the given images belong to as a DICOM Comprehensive 3D SR "
        "(TID 1500 measurement groups of its evidence and the text sections) and, with --pdf, as a printable PDF. "
        "The report is the study's current report in the project; without one, a draft is started from the "
        "modality's template with a finding per accepted annotation. --verify signs it off. A new or newly signed "
        "report is saved into the project file (atomically) unless --no-save is given. "
        "Bad input exits with code 2.",
        epilog=examples(
            "~/ct/series1 --annotations project.json --out report.dcm --pdf report.pdf",
            '~/ct/series1 --out report.dcm --verify "Doe^Jane" --organization "General Hospital"',
            "~/ct/series1 --out report.dcm --pdf-dicom report-pdf.dcm --no-save",
            '~/ct/series1 --out report.dcm --field body_part=chest --verify "Doe^Jane"',
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES_OR_SERIES", help="the study's files and/or folders")
    add_annotations_option(parser)
    parser.add_argument("--out", required=True, type=Path, help="the DICOM SR file to write")
    parser.add_argument("--pdf", type=Path, metavar="FILE", help="also write the printable report as PDF")
    parser.add_argument(
        "--pdf-dicom",
        type=Path,
        metavar="FILE",
        help="also write the printable report as an Encapsulated PDF DICOM object (for a PACS)",
    )
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="leave the project file as it is (by default a new or newly signed report is saved into it)",
    )
    parser.add_argument(
        "--field",
        type=_field,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill a template field of a new draft that the DICOM header does not say, e.g. body_part=chest "
        "(repeatable; a field left blank, like [region], blocks --verify)",
    )
    add_observer_options(parser)
    parser.set_defaults(func=run_report)


def _headers(doc: AnnotationDocument, image_ids: list[str]) -> list[Dataset]:
    """The headers (no pixels) of the given images, then of the study's other series; unreadable skipped."""
    study = doc.study_images(doc.study_key(image_ids[0]))
    headers = []
    for image_id in dict.fromkeys([*image_ids, *study]):
        ref = doc.image(image_id)
        if ref.kind == "dicom":
            try:
                headers.append(read_header(ref.paths[0]))
            except (OSError, ImageLoadError):
                continue
    return headers


def _field(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. body_part=chest), got {text!r}")
    return name.strip(), value.strip()


def study_report(doc: AnnotationDocument, image_ids: list[str], fields: dict[str, str] | None = None) -> Report:
    """The study's current report, or a new draft of its accepted annotations; ValueError when neither.

    A new draft's template fields come from the study's headers; ``fields`` fills (or overrides)
    what the headers do not say."""
    study = doc.study_key(image_ids[0])
    current = doc.current_report(study)
    if current is not None:
        return current
    findings = accepted_findings(doc, study)
    if not findings:
        raise ValueError(
            "nothing accepted in this study and no report yet: accept model output or annotate in the app, "
            "or write the report in its Report panel"
        )
    headers = _headers(doc, image_ids)
    modality = str(headers[0].get("Modality", "")) if headers else ""
    values = {**field_values(headers), **(fields or {})}
    report = new_report(doc, image_ids[0], read_templates().for_modality(modality), modality, values)
    for finding in findings:
        report = report.with_finding(finding, doc.now())
    return report


def write_pdf(doc: AnnotationDocument, report: Report, out: Path) -> None:
    """The PDF through ``python -m app.report.pdf`` (Qt, offscreen); OSError with its reason."""
    with tempfile.TemporaryDirectory(prefix="clinlens-report-") as folder:
        page = printable(doc, report).write(Path(folder))
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
        done = subprocess.run(
            [sys.executable, "-m", "app.report.pdf", str(page), str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise OSError((done.stderr.strip().splitlines() or ["the PDF writer failed"])[-1].removeprefix("error: "))


def run_report(args: argparse.Namespace) -> int:
    try:
        source, doc, image_ids = open_project(args.images, args.annotations)
    except ProjectError as err:
        return fail(str(err))
    studies = {doc.study_key(i) for i in image_ids}
    if len(studies) > 1:
        return fail(f"the images belong to {len(studies)} studies; write the report of one study at a time")
    try:
        report = study_report(doc, image_ids, dict(args.field))
        if args.verify and not report.is_final:
            report = sign(doc, report, Observer(args.verify, args.organization))
        sr = build_report_sr(doc, report)
    except (ValueError, SignOffError, ExportError) as err:
        return fail(str(err))
    saved = False
    try:
        write_bytes_atomic(args.out, dicom_bytes(sr))
        if args.pdf:
            write_pdf(doc, report, args.pdf)
        if args.pdf_dicom:
            write_pdf_dicom(doc, report, args.pdf_dicom, args.pdf)
        if not args.no_save and doc.find_report(report.id) != report:  # a new or newly signed report joins
            doc.execute(
                PutReport(image_ids[0], report.id, report, "Sign report" if report.is_final else "Start report")
            )
            save_document(doc, source)  # atomic: a crash leaves the project as it was
            saved = True
    except ExportError as err:
        return fail(str(err))
    except (OSError, subprocess.TimeoutExpired) as err:
        return fail(f"could not write the report: {err}", EXIT_WRITE_FAILED)
    state = f"final, verified by {report.verifier.name}" if report.is_final else "draft"
    written = ", ".join(str(p) for p in (args.out, args.pdf, args.pdf_dicom) if p)
    print(
        f"report ({state}, {len(report.findings)} finding(s)) written to {written}"
        + (f"; saved in {source}" if saved else "")
    )
    return 0


def write_pdf_dicom(doc: AnnotationDocument, report: Report, out: Path, pdf: Path | None) -> None:
    """The PDF (the one just written, else drawn now) as Encapsulated PDF DICOM, written atomically."""
    with tempfile.TemporaryDirectory(prefix="clinlens-report-") as folder:
        if pdf is None:
            pdf = Path(folder) / "report.pdf"
            write_pdf(doc, report, pdf)
        write_bytes_atomic(out, dicom_bytes(build_report_pdf_dicom(doc, report, pdf.read_bytes())))
