"""Search, retrieve from and send to a PACS (DICOMweb or DIMSE) from the command line.

``--url`` is ``http(s)://…`` for DICOMweb or ``dicom://AET@host:port`` for DIMSE; ``--server NAME``
uses an entry saved in the app's settings instead. Secrets never go on the command line: name
the environment variable that holds them (``--password-env``, ``--token-env``). Output never
shows patient identifiers. ``get`` writes ``DIR/<study>/<series>/<sop>.dcm``, each file complete
(written to a temporary name, then renamed). ``send --project`` sends each image's reviewed
annotations as a DICOM SR and its reviewed masks as a DICOM SEG, as the window's Send does (pending
model output stays local; a resend stores nothing new). Exit status: 0 done, 1 the PACS failed
(one sentence on stderr), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from cli.help import examples

EXAMPLES = (
    "echo --url http://pacs:8042/dicom-web",
    "find --url dicom://ORTHANC@pacs:4242 --modality CT --date 20240101-20241231 --json",
    "get --url http://pacs:8042/dicom-web STUDY_UID --series SERIES_UID --out DIR",
    "send --url dicom://ORTHANC@pacs:4242 report.dcm more/*.dcm",
    "send --server hospital --project project.json --image series:1.2.840.113619.2.55.3",
)

EXIT_PACS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pacs",
        help="search, retrieve from and send to a PACS (DICOMweb or DIMSE)",
        description=__doc__,
        epilog=examples(*EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="pacs_command", metavar="ACTION", required=True, help="echo, find, get or send"
    )
    connection = argparse.ArgumentParser(add_help=False)
    where = connection.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="http(s)://host/dicom-web (DICOMweb) or dicom://AET@host:port (DIMSE)")
    where.add_argument("--server", metavar="NAME", help="a PACS entry saved in the app's settings")
    connection.add_argument("--user", default="", help="DICOMweb basic-auth user name")
    connection.add_argument("--password-env", default="", metavar="VAR", help="environment variable with the password")
    connection.add_argument("--token-env", default="", metavar="VAR", help="environment variable with a bearer token")
    connection.add_argument("--aet", default="CLINLENS", help="our AE title for DIMSE (default CLINLENS)")
    connection.add_argument(
        "--storage-port", type=int, default=0, help="our storage port for C-MOVE when a DIMSE PACS has no C-GET"
    )
    connection.add_argument(
        "--storage-bind",
        default="",
        metavar="ADDRESS",
        help="address the C-MOVE storage port listens on (default: loopback for a PACS on this computer, else all)",
    )
    connection.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for an answer (default 20)")

    commands.add_parser("echo", parents=[connection], help="test the connection (QIDO query or C-ECHO)")
    find = commands.add_parser("find", parents=[connection], help="search studies")
    find.add_argument("--patient-id", default="", help="exact patient ID")
    find.add_argument("--patient-name", default="", help="part of the name; * and ? are wildcards")
    find.add_argument("--accession", default="", help="exact accession number")
    find.add_argument("--modality", default="", help="e.g. CT, MR, CR")
    find.add_argument("--date", default="", metavar="FROM-TO", help="YYYYMMDD-YYYYMMDD; either side may be empty")
    find.add_argument("--description", default="", help="part of the study description (case-sensitive)")
    find.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    find.add_argument("--json", action="store_true", help="one JSON object per study and line")
    get = commands.add_parser("get", parents=[connection], help="retrieve a study or one of its series")
    get.add_argument("study", metavar="STUDY_UID", help="the study's Study Instance UID (from pacs find)")
    get.add_argument("--series", metavar="SERIES_UID", help="only this series (default: every series of the study)")
    get.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder to write DIR/<study>/<series>/<sop>.dcm into"
    )
    send = commands.add_parser(
        "send",
        parents=[connection],
        help="store DICOM files, or a project's reviewed annotations as SR and SEG (STOW-RS or C-STORE)",
    )
    send.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="DICOM files to store (an SR from export --format sr, images)",
    )
    send.add_argument(
        "--project",
        type=Path,
        metavar="PROJECT.json",
        help="send each image's reviewed annotations (SR) and reviewed masks (SEG) instead of files",
    )
    send.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="with --project: only this image (its id, e.g. series:UID, or one of its files); repeatable",
    )
    parser.set_defaults(func=run_pacs)


def _server(args: argparse.Namespace):
    from engine.pacs import PacsError, load_pacs_settings, server_from_url

    if args.server:
        server = load_pacs_settings().server(args.server)
        if server is None:
            raise PacsError(f"No PACS named {args.server!r} in the settings.")
        return server
    return server_from_url(
        args.url,
        username=args.user,
        secret_env=args.password_env,
        token_env=args.token_env,
        our_aet=args.aet,
        storage_port=args.storage_port,
        storage_bind=args.storage_bind,
        timeout_s=args.timeout,
    )


def run_pacs(args: argparse.Namespace) -> int:
    from engine.pacs import PacsError, RetrieveCancelled, connect

    try:
        server = _server(args)
        with connect(server) as connection:
            return ACTIONS[args.pacs_command](connection, args)
    except RetrieveCancelled:
        print(
            "interrupted: the instances already written are complete; run the same command to finish", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except PacsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_PACS
    except _BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


class _BadInput(Exception):
    pass


def _echo(connection, _args) -> int:
    print(connection.echo())
    return 0


def _find(connection, args) -> int:
    from engine.pacs import PacsError, StudyQuery, parse_date_range

    try:
        dates = parse_date_range(args.date) if args.date else ""
    except PacsError as err:
        raise _BadInput(str(err)) from None
    studies = connection.find_studies(
        StudyQuery(
            patient_id=args.patient_id,
            patient_name=args.patient_name,
            accession=args.accession,
            date_range=dates,
            modality=args.modality,
            description=args.description,
            limit=args.limit,
        )
    )
    for study in studies:
        if args.json:
            print(json.dumps(study.as_json(), ensure_ascii=False))
        else:
            series = "?" if study.series_count is None else study.series_count
            print(
                f"{study.date or '--------'}  {'/'.join(study.modalities) or '--':8}  {series:>3} series  "
                f"{study.study_uid}  {study.description}"
            )
    if not args.json:
        print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}", file=sys.stderr)
    return 0


def _get(connection, args) -> int:
    from engine.pacs import InstanceCache, retrieve_series
    from engine.pacs.cache import check_uid

    try:
        check_uid(args.study)
        if args.series:
            check_uid(args.series)
    except ValueError as err:
        raise _BadInput(str(err)) from None
    if args.out.exists() and not args.out.is_dir():
        raise _BadInput(f"--out {args.out} is a file, not a folder")
    series_uids = [args.series] if args.series else [s.series_uid for s in connection.find_series(args.study)]
    cache = InstanceCache(args.out, limit_bytes=1 << 62)  # the output folder: written atomically, never evicted
    cancel = threading.Event()
    total = 0
    for series_uid in series_uids:

        def progress(_path, done, expected, series_uid=series_uid):
            print(f"\r{series_uid}: {done}/{expected or '?'}", end="", file=sys.stderr, flush=True)

        try:
            result = retrieve_series(connection, cache, args.study, series_uid, on_instance=progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
        print(file=sys.stderr)
        total += len(result.paths)
    print(f"{total} instance(s) of {len(series_uids)} series in {args.out / args.study}")
    return 0


def _send(connection, args) -> int:
    from engine.pacs import PacsError, read_for_send

    if args.project is not None or args.image:
        return _send_project(connection, args)
    if not args.files:
        raise _BadInput("send needs DICOM files, or --project PROJECT.json")
    missing = [p for p in args.files if not p.is_file()]
    if missing:
        raise _BadInput(f"{missing[0]} does not exist")
    try:
        datasets = read_for_send(args.files)
    except PacsError as err:
        raise _BadInput(str(err)) from None
    print(f"sent {connection.send(datasets)} instance(s)")
    return 0


def _send_project(connection, args) -> int:
    """Each chosen image of the project: one line saying what was stored, already held, or why nothing went."""
    from engine.annotations import DocumentError, load_document
    from engine.pacs import PacsError
    from engine.pacs.writeback import nothing_to_send, send_report

    if args.project is None:
        raise _BadInput("--image needs --project PROJECT.json")
    if args.files:
        raise _BadInput("send takes DICOM files or --project, not both")
    try:
        doc = load_document(args.project)
    except DocumentError as err:
        raise _BadInput(str(err)) from None
    chosen = _chosen_images(doc, args.project, args.image)
    failed = 0
    for ref in chosen:
        name = f"{ref.title or ref.image_id} ({ref.image_id})"
        reason = nothing_to_send(doc, ref.image_id)
        if reason:
            print(f"{name}: {reason}")
            continue
        try:
            sent = send_report(connection, doc, ref.image_id)
        except PacsError as err:
            failed += 1
            print(f"error: {name}: {err}", file=sys.stderr)
            continue
        if sent.already_stored:
            print(f"{name}: already stored, nothing sent again ({sent.objects})")
        else:
            print(f"{name}: stored {sent.objects}")
    return EXIT_PACS if failed else 0


def _chosen_images(doc, project: Path, wanted: list[str]) -> list:
    """The project's images, or those named by id or by one of their files (bad input when one is unknown)."""
    images = list(doc.images)
    if not images:
        raise _BadInput(f"{project} holds no images")
    if not wanted:
        return images
    chosen = []
    for name in wanted:
        path = str(Path(name).absolute())
        found = next((r for r in images if name == r.image_id or path == r.image_id or path in r.paths), None)
        if found is None:
            raise _BadInput(
                f"--image {name} is not an image of {project} (give its id, e.g. series:UID, or one of its files)"
            )
        if found not in chosen:
            chosen.append(found)
    return chosen


ACTIONS = {"echo": _echo, "find": _find, "get": _get, "send": _send}
