"""The ``clinlens`` command; ``python main.py`` and ``python -m clinlens`` run the same ``main``."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from cli.help import ClinLensParser, examples, join_negative_values

OVERVIEW = """ClinLens: medical image viewer, annotation, grounded questions (ClinKD) and zero-shot
classification (KPL). Research use only, not for diagnosis.

  %(prog)s                      open the desktop app on the bundled demo image
  %(prog)s FILE_OR_FOLDER ...   open the desktop app on these images
  %(prog)s COMMAND ...          run a command-line tool (%(prog)s COMMAND --help)"""

# Each module adds its sub-commands with register(subparsers), set_defaults(func=handler);
# a handler returns the exit code.
COMMAND_MODULES = (
    "cli.imaging",
    "cli.annotations",
    "cli.clinkd",
    "cli.kpl",
    "cli.evaluation",
    "cli.training",
    "cli.desktop",
    "cli.pacs",
    "cli.segmentation",
    "cli.annotate",
    "cli.report",
)


def build_parser(prog: str = "clinlens") -> argparse.ArgumentParser:
    """The whole command line: the ``gui`` command and every module's sub-commands."""
    parser = ClinLensParser(prog=prog, description=OVERVIEW)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ClinLensParser)
    gui = subparsers.add_parser(
        "gui",
        help="open the desktop app (the default command)",
        description="Open the desktop app on the given images, or on the bundled demo CT when none are given.",
        epilog=examples("", "~/scans/chest.dcm", "~/scans/ct-series/ photo.png"),
    )
    gui.add_argument("paths", nargs="*", help="DICOM files or folders, PNG/JPEG/TIFF images")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers by name (argparse has no public accessor)."""
    return dict(parser._subparsers._group_actions[0].choices)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line ``argv`` (default: this process's); returns the exit code."""
    if prog is None:
        name = os.path.basename(sys.argv[0]) if argv is None else ""
        prog = name if name.endswith(".py") and name != "__main__.py" else "clinlens"
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(prog)
    if not argv or (argv[0] not in commands(parser) and not argv[0].startswith("-")):
        argv = ["gui", *argv]
    args = parser.parse_args(argv)
    if args.command == "gui":
        from app.application import run_gui

        return run_gui(args.paths)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `clinlens info x | head` ends quietly
    return args.func(args)
