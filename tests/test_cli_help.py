"""``python -m gradwidget --help`` and each command's help: words, defaults, how to stop."""

from __future__ import annotations

import pytest

from gradwidget.__main__ import main


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_top_help_describes_every_command_in_plain_text(capsys) -> None:
    text = help_text(capsys)
    assert "demo" in text and "follow" in text and "``" not in text
    assert "train a 10-layer sigmoid network" in text and "print the log of a training job" in text


def test_each_command_says_its_defaults_and_how_it_stops(capsys) -> None:
    demo = help_text(capsys, "demo")
    assert "(default: 600)" in demo and "(default: 0)" in demo and "Ctrl-C" in demo
    follow = " ".join(help_text(capsys, "follow").split())
    assert "(default: 1.0)" in follow and "Ctrl-C" in follow
    assert "Stops by itself when every run has finished" in follow


def test_the_url_make_lab_prints_opens_the_tutorial() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    tutorial = re.search(r"^TUTORIAL := (\S+)$", makefile, re.MULTILINE)
    assert tutorial and (root / tutorial.group(1)).is_file()
    recipe = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "--LabApp.default_url=/lab/tree/$(TUTORIAL)" in recipe  # the printed address
