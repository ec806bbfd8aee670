"""No secret is ever printed: the one URL redactor, and every command that takes a storage URL."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from snnas.cli import main
from snnas.data import FASHION_DEFAULT_DIR
from snnas.search import synthetic
from snnas.redact import redact_text, redact_url

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Zq9xW"  # a fragment every tricky password below contains


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://alice:{SECRET}/1@db:5432/nas", "postgresql://alice:***@db:5432/nas"),
    (f"postgresql://alice:{SECRET}#1@db/nas", "postgresql://alice:***@db/nas"),
    (f"postgresql://alice:{SECRET}?1@db/nas", "postgresql://alice:***@db/nas"),
    (f"postgresql://alice:{SECRET}@1@db/nas", "postgresql://***@db/nas"),
    (f"postgresql://alice@db/nas?password={SECRET}&sslmode=require", "postgresql://alice@db/nas?password=***&sslmode=require"),
    (f"postgresql://alice@db/nas?sslmode=require&PWD={SECRET}", "postgresql://alice@db/nas?sslmode=require&PWD=***"),
    (f"postgresql://alice:{SECRET}@db:99999999/nas", "postgresql://alice:***@db:99999999/nas"),
    (f"postgresql://alice:{SECRET}@db:abc/nas", "postgresql://***@db:abc/nas"),  # does not parse: the fallback
    ("sqlite:///runs/x.db", "sqlite:///runs/x.db"),
])
def test_redact_url_hides_every_kind_of_password(url, shown):
    assert redact_url(url) == shown and SECRET not in redact_url(url)


def test_redact_text_keeps_the_message_around_the_url():
    text = f"error at postgresql://u:{SECRET}/x@h/db: refused (see sqlite:///a.db)."
    assert redact_text(text) == "error at postgresql://u:***@h/db: refused (see sqlite:///a.db)."


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _urls() -> list[str]:
    port = _closed_port()
    return [f"postgresql://snnas:{SECRET}/a@127.0.0.1:{port}/snnas",
            f"postgresql://snnas:{SECRET}#a@127.0.0.1:{port}/snnas",
            f"postgresql://snnas:{SECRET}?a@127.0.0.1:{port}/snnas",
            f"postgresql://snnas@127.0.0.1:{port}/snnas?password={SECRET}",
            f"postgresql://snnas:{SECRET}@a@127.0.0.1:{port}/snnas"]


def _in_process(entry, argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = entry(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _search_argv(url, tmp):
    return ["search", "--storage", url, "--data", "fashion-2", "--resolution", "16", "--train-per-class", "8",
            "--val-per-class", "2", "--batch-size", "8", "--out", str(tmp / "runs"), "--no-progress"]


COMMANDS = {  # every entry point that takes a storage URL: (in-process call, the command a user types)
    "study check": (lambda url, tmp: (main, ["study", "check", url]),
                    lambda url, tmp: [sys.executable, "-m", "snnas", "study", "check", url]),
    "export": (lambda url, tmp: (main, ["export", "--study", "s", "--storage", url, "--out", str(tmp / "exports")]),
               lambda url, tmp: [sys.executable, "scripts/export.py", "--study", "s", "--storage", url,
                                 "--out", str(tmp / "exports")]),
    "workers": (lambda url, tmp: (synthetic.main, ["--storage", url, "--study", "s", "--budget", "1"]),
                lambda url, tmp: [sys.executable, "-m", "snnas.search.synthetic", "--storage", url, "--study", "s",
                                  "--budget", "1"]),
    "search": (lambda url, tmp: (main, _search_argv(url, tmp)),
               lambda url, tmp: [sys.executable, "scripts/search.py", *_search_argv(url, tmp)[1:]]),
}


def _check(code, out, err, url):
    shown = out + err
    assert code == 2, (url, shown)
    assert SECRET not in shown, (url, shown)
    assert err.startswith("snnas: error:") and err.count("\n") == 1, shown
    if "@a@" in url:
        assert "%40" in err  # the unencoded @ is named, not mistaken for a host
    else:
        assert "127.0.0.1" in err  # the right host is named


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_prints_a_storage_password(command, tmp_path):
    if command == "search" and not FASHION_DEFAULT_DIR.is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    in_process, typed = COMMANDS[command]
    urls = _urls()
    for url in urls:
        entry, argv = in_process(url, tmp_path)
        _check(*_in_process(entry, argv), url)
    done = subprocess.run(typed(urls[0], tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    _check(done.returncode, done.stdout, done.stderr, urls[0])  # and once as the user types it
    assert not (tmp_path / "runs").exists()  # a search that cannot start leaves no run directory
