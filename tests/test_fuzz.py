"""Random values and bytes through the command line and every file reader: a user error is one
line and exit status 2 (or one SnnasError), never a traceback, and a password never comes back."""
from __future__ import annotations

import io
import json
import os
import socket
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnas import Genotype
from snnas.checkpoint import load_model, safe_load
from snnas.cli import main
from snnas.compiler import resolve_genotype
from snnas.data import read_manifest
from snnas.errors import SnnasError
from snnas.groundtruth import Table
from snnas.spaces import load_space

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECRET = "Fz7qK"
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
junk = st.one_of(st.binary(max_size=400), text.map(lambda s: s.encode("utf-8")),
                 st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # nesting
                 st.integers(1, 3000).map(lambda n: b"x = " + b"[" * n + b"]" * n))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _closed_port()


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's exit
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code: int, out: str, err: str) -> None:
    assert code == 2, (code, out, err)
    assert err.startswith("snnas: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err + out


# Commands with one bad value each, so no training can start whatever the random part is.
COMMANDS = {
    "show": lambda v: ["show", v],
    "show --classes": lambda v: ["show", "danet_a_resnet18", "--classes", v],
    "show --width-mult": lambda v: ["show", "danet_a_resnet18", "--width-mult", v],
    "retrain --genotype": lambda v: ["retrain", "--genotype", v, "--data", "fashion-99", "--out", "o"],
    "retrain --epochs": lambda v: ["retrain", "--genotype", "nope", "--data", "fashion-2", "--epochs", v],
    "retrain --data": lambda v: ["retrain", "--genotype", "danet_a_resnet18", "--data", "fashion-" + v + "x"],
    "search --space": lambda v: ["search", "--space", v + ".toml", "--data", "fashion-99"],
    "search --trials": lambda v: ["search", "--trials", v + "x"],
    "inspect": lambda v: ["inspect", v + "|x"],
    "export --rank": lambda v: ["export", "--study", "s", "--storage", "sqlite:///:memory:", "--rank", v + "x",
                                "--out", "e"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@FUZZ
@given(value=text.filter(lambda v: not v.startswith("-") and "\x00" not in v))
def test_command_line_values(command, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(COMMANDS[command](value))
    if code != 0 or err:  # a value that happens to be valid (show --classes 1) is no error
        assert_one_error_line(code, out, err)


@FUZZ
@given(password=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
       where=st.sampled_from(["userinfo", "query"]))
def test_storage_urls_never_show_their_password(password, where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = SECRET + password
    url = (f"postgresql://snnas:{secret}@127.0.0.1:{PORT}/db" if where == "userinfo"
           else f"postgresql://snnas@127.0.0.1:{PORT}/db?password={secret}")
    code, out, err = run_cli(["study", "check", url])
    assert_one_error_line(code, out, err)
    assert SECRET not in out + err


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=junk)
def test_file_readers_raise_one_clear_error(data, tmp_path):
    readers = {
        "genotype.json": lambda p: resolve_genotype(str(p)),
        "space.toml": load_space,
        "manifest.json": read_manifest,
        "model.pt": load_model,
        "checkpoint.pt": safe_load,
        "groundtruth.json": Table.read,
    }
    for name, read in readers.items():
        path = _write(tmp_path, name, data)
        try:
            read(path)
        except SnnasError as exc:
            assert "\n" not in str(exc).strip() or name == "space.toml", (name, str(exc))
            assert len(str(exc)) < 2000, name
        # a reader may also accept what happens to be valid; anything else fails the test


@FUZZ
@given(data=st.one_of(text, st.binary(max_size=300)))
def test_genotype_strings_and_json(data):
    for parse in (Genotype.from_json, Genotype.from_str):
        try:
            parse(data)
        except SnnasError as exc:
            assert len(str(exc)) < 2000


def test_a_huge_input_is_not_echoed_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["show", "x" * 10_000_000])
    assert_one_error_line(code, out, err)
    assert len(err) < 1000
    big = tmp_path / "g.json"
    big.write_text(json.dumps({"format": 1, "stages": "y" * 10_000_000}))
    code, out, err = run_cli(["show", str(big)])
    assert_one_error_line(code, out, err)
    assert len(err) < 1000 and os.path.getsize(big) > 1e7
