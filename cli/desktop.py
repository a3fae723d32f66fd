"""`install-desktop`: a Linux desktop entry and icon, so ClinLens shows up in the application menu.

Files go where the freedesktop.org specifications say per-user ones belong:
``$XDG_DATA_HOME/applications/clinlens.desktop`` and
``$XDG_DATA_HOME/icons/hicolor/scalable/apps/clinlens.svg`` (``XDG_DATA_HOME`` defaults to
``~/.local/share``). The entry starts this very Python with ``-m clinlens``, so it works for an
installed package and for a checkout alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli.help import examples
from engine.files import write_bytes_atomic
from engine.paths import resources_dir

EXIT_OK = 0
EXIT_WRITE_FAILED = 1
APP_ID = "clinlens"
ICON_SOURCE = "icons/clinlens.svg"
MIME_TYPES = ("application/dicom", "image/png", "image/jpeg", "image/tiff")


def register(subparsers: Any) -> None:
    """Add the `install-desktop` sub-command to the clinlens argparse sub-parser set."""
    parser = subparsers.add_parser(
        "install-desktop",
        help="add ClinLens to the Linux application menu (desktop entry and icon)",
        description="Write a freedesktop.org desktop entry and the ClinLens icon into the per-user data "
        "folder ($XDG_DATA_HOME, by default ~/.local/share), so ClinLens appears in the application menu "
        "and can open DICOM, PNG, JPEG and TIFF files. --uninstall removes both files.",
        epilog=examples("", "--uninstall"),
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the desktop entry and icon instead")
    parser.set_defaults(func=run_install_desktop)


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute (the spec's rule)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".local" / "share"


def desktop_entry_path() -> Path:
    return data_home() / "applications" / f"{APP_ID}.desktop"


def icon_path() -> Path:
    return data_home() / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def _quote(argument: str) -> str:
    """Quote an Exec argument as the Desktop Entry Specification asks."""
    if not any(c in argument for c in " \t\n\"'\\><~|&;$*?#()`"):
        return argument
    escaped = "".join(f"\\{c}" if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def desktop_entry() -> str:
    """The entry's text: start this Python with ``-m clinlens`` on the chosen files."""
    checkout = Path(__file__).resolve().parent.parent
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Name=ClinLens",
        "GenericName=Medical image viewer",
        "Comment=View DICOM and images, draw boxes, ask grounded questions, classify with KPL",
        f"Exec={_quote(sys.executable)} -m clinlens %F",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Graphics;MedicalSoftware;Science;",
        f"MimeType={';'.join(MIME_TYPES)};",
        "StartupWMClass=ClinLens",
    ]
    if (checkout / "main.py").is_file():  # a checkout: -m clinlens needs it as working folder
        lines.insert(6, f"Path={checkout}")
    return "\n".join(lines) + "\n"


def run_install_desktop(args: argparse.Namespace) -> int:
    entry, icon = desktop_entry_path(), icon_path()
    try:
        if args.uninstall:
            for path in (entry, icon):
                path.unlink(missing_ok=True)
                print(f"removed {path}")
            return EXIT_OK
        write_bytes_atomic(entry, desktop_entry().encode("utf-8"))
        write_bytes_atomic(icon, (resources_dir() / ICON_SOURCE).read_bytes())
    except OSError as exc:
        print(f"error: could not write the desktop entry: {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
        return EXIT_WRITE_FAILED
    print(f"desktop entry: {entry}\nicon:          {icon}")
    if shutil.which("update-desktop-database"):  # refreshes the MIME cache where the tool exists
        subprocess.run(["update-desktop-database", str(entry.parent)], check=False, capture_output=True)
    return EXIT_OK
