"""What the printed report shows, without Qt: an HTML page and its key images as PNG files.

The PDF itself is drawn by Qt (``app/report/pdf.py``: QTextDocument onto a QPdfWriter), which the
engine and the command line must not import; so the engine writes the page here, once, for both
the window and ``main.py report --pdf``. Key images are the frames the findings cite, rendered
with the window (and inversion) they had on screen when cited, the cited outline drawn over them.
The page ends with the line every ClinLens output carries: AI-assisted, for research use.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.annotations.document import AnnotationDocument
from engine.annotations.model import Box, Measurement, value_text
from engine.files import write_bytes_atomic, write_text_atomic
from engine.imaging import ImageLoadError, Window, open_paths, render
from engine.report.model import SECTION_TITLES, SECTIONS, Evidence, FindingSource, Report
from engine.report.signoff import evidence_annotation

AI_NOTICE = (
    "AI-assisted report: findings marked AI were proposed by ClinKD or KPL and reviewed by the radiologist. "
    "ClinLens is for research use only, not for diagnosis."
)
KEY_IMAGE_SIDE = 512  # pixels of the longer side of a key image in the PDF
OUTLINE = (255, 210, 0)


@dataclass(frozen=True)
class KeyImage:
    name: str  # file name the page refers to
    caption: str
    png: bytes


@dataclass(frozen=True)
class Printable:
    html: str
    images: tuple[KeyImage, ...]

    def write(self, folder: Path) -> Path:
        """``folder/report.html`` and its images beside it (atomic writes); returns the HTML path.

        The page names its images by absolute file URL: QTextDocument prints a clone of itself,
        and the clone forgets the base URL a relative name would need (the page then prints blank).
        """
        page = self.html
        for image in self.images:
            target = folder.absolute() / image.name
            write_bytes_atomic(target, image.png)
            page = page.replace(f"src='{image.name}'", f"src='{target.as_uri()}'")
        path = folder / "report.html"
        write_text_atomic(path, page)
        return path


def _key_image(doc: AnnotationDocument, evidence: Evidence) -> np.ndarray | None:
    """The cited frame as displayed, the evidence outlined; None when its file cannot be read."""
    ref = doc.image(evidence.image_id)
    try:
        stacks = open_paths(list(ref.paths)).stacks
        stack = next((s for s in stacks if s.key == ref.image_id), stacks[0] if stacks else None)
        if stack is None:
            return None
        window = None if evidence.window is None else Window(*evidence.window)
        pixels = render(stack.frame(evidence.frame), window, invert=evidence.invert)
    except (ImageLoadError, OSError, ValueError, IndexError):
        return None
    picture = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 256))
    for x1, y1, x2, y2 in evidence.boxes:
        draw.rectangle((x1, y1, x2, y2), outline=OUTLINE, width=width)
    annotation = evidence_annotation(doc, evidence)
    if isinstance(annotation, Measurement) and annotation.placement is None:
        draw.line([tuple(p) for p in annotation.points], fill=OUTLINE, width=width)
    elif isinstance(annotation, Box) and not evidence.boxes:
        draw.rectangle((annotation.x1, annotation.y1, annotation.x2, annotation.y2), outline=OUTLINE, width=width)
    picture.thumbnail((KEY_IMAGE_SIDE, KEY_IMAGE_SIDE))
    return np.asarray(picture)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _measurement_rows(doc: AnnotationDocument, report: Report) -> list[tuple[str, str, str]]:
    rows = []
    for finding in report.findings:
        for evidence in finding.evidence:
            annotation = evidence_annotation(doc, evidence)
            values = getattr(annotation, "values", ())
            for value in values:
                where = doc.image(evidence.image_id).title or evidence.image_id
                rows.append(
                    (annotation.label, f"{value.name} {value_text(value)}", f"{where}, frame {evidence.frame + 1}")
                )
    return rows


def printable(doc: AnnotationDocument, report: Report, institution: str = "") -> Printable:
    """The report as a page: header, sections, findings, measurement table, key images, sign-off, notice."""
    e = html.escape
    ref = next((doc.image(i) for i in doc.study_images(report.study_key)), None)
    title = f"{report.modality} report" if report.modality else "Imaging report"
    status = "DRAFT, not verified"
    if report.is_final and report.verifier:
        where = f" ({report.verifier.organization})" if report.verifier.organization else ""
        when = report.verified[:16].replace("T", " ")
        status = e(f"Final, verified by {report.verifier.name.replace('^', ', ')}{where} on {when} UTC")
    header = f"{e(institution)}<br/>" if institution else ""
    amends = "<br/>Amends an earlier report." if report.replaces else ""
    parts = [
        "<html><body style='font-family: sans-serif; font-size: 10pt'>",
        f"<h1>{e(title)}</h1>",
        f"<p>{header}Study: {e(ref.title if ref else report.study_key)}<br/>Status: <b>{status}</b>{amends}</p>",
        f"<p><small><i>{e(AI_NOTICE)}</i></small></p>",  # on the first page, however long the report
    ]
    for name in SECTIONS:
        text = report.section(name).strip()
        findings = report.findings if name == "findings" else ()
        if not text and not findings:
            continue
        parts.append(f"<h2>{SECTION_TITLES[name]}</h2>")
        if text:
            parts.append("<p>" + e(text).replace("\n", "<br/>") + "</p>")
        if findings:
            parts.append("<ol>")
            for finding in findings:
                mark = "" if finding.source is FindingSource.USER else " <i>[AI, reviewed]</i>"
                parts.append(f"<li>{e(finding.text)}{mark}</li>")
            parts.append("</ol>")
    rows = _measurement_rows(doc, report)
    if rows:
        parts.append("<h2>Measurements</h2><table border='1' cellpadding='4' cellspacing='0'>")
        parts.append("<tr><th>Finding</th><th>Value</th><th>Image</th></tr>")
        parts += [f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in rows]
        parts.append("</table>")
    images = []
    seen = set()
    for finding in report.findings:
        for evidence in finding.evidence:
            key = (evidence.image_id, evidence.frame, evidence.annotation_id, evidence.boxes)
            if key in seen or not doc.has_image(evidence.image_id):
                continue
            seen.add(key)
            pixels = _key_image(doc, evidence)
            if pixels is not None:
                images.append(KeyImage(f"key-{len(images) + 1}.png", evidence.title, _png(pixels)))
    if images:
        parts.append("<h2>Key images</h2>")
        for image in images:
            parts.append(f"<p><img src='{image.name}' width='320'/><br/><small>{e(image.caption)}</small></p>")
    parts.append("</body></html>")
    return Printable("\n".join(parts), tuple(images))
