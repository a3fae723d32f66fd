"""The command line reads well and takes what people type: help, examples, negative windows, desktop entry."""

from __future__ import annotations

import argparse
import configparser
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.help import join_negative_values
from clinlens.command import build_parser, commands, main
from engine.paths import resources_dir

ROOT = Path(__file__).resolve().parent.parent
DEMO = resources_dir() / "demo" / "CT_small.dcm"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["render", "a.dcm", "o.png", "--window", "-600,1500"], ["render", "a.dcm", "o.png", "--window=-600,1500"]),
        (["ask", "x.png", "--box", "-5,10.5,20,30"], ["ask", "x.png", "--box=-5,10.5,20,30"]),
        (["render", "a.dcm", "o.png", "--window", "40,400"], ["render", "a.dcm", "o.png", "--window", "40,400"]),
        (["render", "--window=-600,1500"], ["render", "--window=-600,1500"]),
        (["x", "--frame", "-3"], ["x", "--frame", "-3"]),  # argparse reads this one itself
        (["x", "-h", "-600,1500"], ["x", "-h", "-600,1500"]),  # only long options take it
        (["x", "--", "--a", "-1,2"], ["x", "--", "--a", "-1,2"]),  # nothing after "--" is an option
    ],
)
def test_negative_number_lists_are_joined_to_the_option_before_them(argv, expected):
    assert join_negative_values(argv) == expected


def test_render_takes_a_negative_window_centre_as_typed(tmp_path, capsys):
    typed, joined = tmp_path / "typed.png", tmp_path / "joined.png"
    assert main(["render", str(DEMO), str(typed), "--window", "-600,1500"]) == 0
    assert main(["render", str(DEMO), str(joined), "--window=-600,1500"]) == 0
    assert main(["render", str(DEMO), str(tmp_path / "soft.png"), "--window", "40,400"]) == 0
    lung = np.asarray(Image.open(typed))
    assert np.array_equal(lung, np.asarray(Image.open(joined)))
    assert not np.array_equal(lung, np.asarray(Image.open(tmp_path / "soft.png")))  # the window was applied


def _is_acronym_or_code(word: str) -> bool:
    return sum(c.isupper() for c in word) >= 2 or not word[:1].isalpha()


def test_every_command_has_a_summary_a_description_and_examples():
    parser = build_parser()
    summaries = {action.dest: action.help for action in parser._subparsers._group_actions[0]._choices_actions}
    for name, sub in commands(parser).items():
        summary = summaries[name]
        assert summary and not summary.endswith(".") and "\n" not in summary, name
        assert summary[0].islower() or _is_acronym_or_code(summary.split()[0]), (name, summary)
        assert sub.description and sub.description.rstrip().endswith("."), name
        assert sub.epilog and sub.epilog.startswith("examples:"), name
        assert f"usage: clinlens {name}" in sub.format_help()
        assert f"  clinlens {name}" in sub.format_help()  # examples name the command


def _actions_of(name: str, parser: argparse.ArgumentParser):
    """Every option and argument of a command, its nested actions (``pacs find``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child, sub in action.choices.items():
                yield from _actions_of(f"{name} {child}", sub)
        yield name, action


def test_option_help_speaks_in_one_voice():
    for command, sub in commands(build_parser()).items():
        for name, action in _actions_of(command, sub):
            if action.dest == "help":
                continue
            text = action.help or ""
            where = (name, action.option_strings or action.dest, text)
            assert text, where
            assert not text.endswith("."), where  # phrases, not sentences
            assert text[0].islower() or _is_acronym_or_code(text.split()[0]), where


def test_main_py_still_runs_from_the_checkout():
    result = subprocess.run(
        [sys.executable, "main.py", "info", str(DEMO)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Modality:        CT" in result.stdout
    usage = subprocess.run(
        [sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert usage.startswith("usage: main.py") and "install-desktop" in usage


def test_install_desktop_writes_an_entry_and_icon_into_xdg_data_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert main(["install-desktop"]) == 0
    entry = tmp_path / "share" / "applications" / "clinlens.desktop"
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "clinlens.svg"
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(entry)
    keys = desktop["Desktop Entry"]
    assert keys["Type"] == "Application" and keys["Name"] == "ClinLens" and keys["Icon"] == "clinlens"
    assert keys["Exec"].endswith(" -m clinlens %F") and "application/dicom" in keys["MimeType"]
    executable = keys["Exec"].removesuffix(" -m clinlens %F").strip('"')
    assert Path(executable) == Path(sys.executable)
    assert Path(keys["Path"]) == ROOT  # a checkout runs from its root
    assert ET.parse(icon).getroot().tag.endswith("svg")
    assert str(entry) in capsys.readouterr().out

    assert main(["install-desktop", "--uninstall"]) == 0
    assert not entry.exists() and not icon.exists()


def test_the_desktop_entry_command_starts_clinlens(tmp_path, monkeypatch):
    """What the menu entry runs (Exec in Path) reaches the same command line (here: its help)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["install-desktop"]) == 0
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(tmp_path / "applications" / "clinlens.desktop")
    keys = desktop["Desktop Entry"]
    result = subprocess.run(
        [sys.executable, "-m", "clinlens", "--help"],
        cwd=keys["Path"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: clinlens")
