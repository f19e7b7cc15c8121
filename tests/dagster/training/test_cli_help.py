"""`biodiv --help` says what the tool does; every option has help; `biodiv ui` explains a busy port."""

import argparse
import socket

import pytest

from biodiv_core.run_settings import load_run_settings
from biodiv_dagster.cli import build_parser, main
from biodiv_dagster.cli.ui import ui_commands


def _parsers(parser: argparse.ArgumentParser, name="biodiv"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_help_says_what_the_tool_does_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "species-distribution model" in text and "examples:" in text and "biodiv ui" in text
    assert "console script" not in text


def test_every_option_has_help_and_run_settings_show_their_current_default():
    missing = [
        f"{name} {action.option_strings}"
        for name, parser in _parsers(build_parser())
        for action in parser._actions
        if action.option_strings and action.help in (None, "") and action.dest != "help"
    ]
    assert missing == []
    run = dict(_parsers(build_parser()))["biodiv run"]
    max_evals = next(a for a in run._actions if a.dest == "max_evals")
    current = load_run_settings().max_evals
    assert f"(default: {current}, from config/run.yml or env BIODIV_MAX_EVALS)" in max_evals.help


def test_ui_on_a_busy_port_exits_2_with_one_line(capsys, isolated_state):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"port {port}" in err and "--port" in err and "make ui PORT=" in err


def test_ui_starts_no_mlflow_ui_for_a_tracking_server(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert set(ui_commands(3000, 5000)) == {"dagster-webserver", "dagster-daemon"}
