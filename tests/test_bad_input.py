"""Every class of bad input a clumsy user tried ends as one line and exit 2, before any work starts."""
from __future__ import annotations

import io
import pickle
import resource
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from snnas.checkpoint import load_model, save_model
from snnas.cli import main
from snnas.compiler import build_model
from snnas.compiler.size import SizeError, cgroup_memory_bytes
from snnas.data import FASHION_DEFAULT_DIR
from snnas.errors import SnnasError
from snnas.spaces import load_space

needs_fashion = pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")
TINY_SEARCH = ["--data", "fashion-2", "--resolution", "16", "--train-per-class", "8", "--val-per-class", "2",
               "--no-progress"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def one_line(code, out, err, *needles):
    assert code == 2, (code, out, err)
    assert err.startswith("snnas: error:") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@needs_fashion
@pytest.mark.parametrize("flag, value, needle", [
    ("--batch-size", "0", "batch_size"), ("--width-mult", "-1", "--width-mult"), ("--epochs", "0", "--epochs"),
    ("--recipe", "fast", "unknown recipe"), ("--recipe2", "fast", "unknown recipe"),
    ("--batch-size", "64", "16 images, fewer than one batch of 64"),  # known once the data is loaded, before a trial
])
def test_search_settings_fail_before_any_trial(tmp_path, flag, value, needle):
    one_line(*run_cli(["search", *TINY_SEARCH, "--out", str(tmp_path / "runs"), flag, value]), needle)
    assert not (tmp_path / "runs").exists()  # no study, no empty run directory


@needs_fashion
def test_search_and_retrain_refuse_an_output_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    one_line(*run_cli(["search", *TINY_SEARCH, "--out", str(target)]), "is a file")
    one_line(*run_cli(["retrain", "--genotype", "danet_a_resnet18", "--data", "fashion-2", "--out", str(target)]),
             "--out", "is a file")
    assert target.read_text() == "keep me"


def test_drawings_and_plots_onto_folders_or_unwritable_places(tmp_path):
    one_line(*run_cli(["show", "danet_a_resnet18", "--draw", str(tmp_path)]), "--draw", "is a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    one_line(*run_cli(["show", "danet_a_resnet18", "--draw", str(blocker / "a.png")]), "is a file")
    one_line(*run_cli(["inspect", "danet_a_resnet18", "--plots", str(blocker)]), "--plots", "is a file")
    one_line(*run_cli(["inspect", "danet_a_resnet18", "--plots", "/proc/snnas-plots"]), "--plots", "cannot write")


def test_sizes_that_ask_for_gigabytes_are_refused_with_a_way_out():
    huge = "if|half64|basic.pa_a.65536x4.s1.chain"
    with pytest.raises(SizeError, match="--allow-large"):
        build_model(huge, num_classes=10)
    one_line(*run_cli(["show", huge]), "GiB", "--allow-large")
    assert build_model("if|half64|basic.pa_a.64x2.s1.chain", num_classes=10) is not None


def _limited_snnas(*args: str, address_space: int) -> subprocess.CompletedProcess:
    """`snnas ARGS` in a child under ``ulimit -v`` (the limit this process has is left alone)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    return subprocess.run([sys.executable, "-m", "snnas", *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)


def test_the_memory_check_reads_ulimit_and_a_failed_allocation_is_one_line():
    huge = "if|half64|basic.pa_b.16384x2.s1.chain"  # 27 GiB of weights
    # under the machine's RAM a 2 GiB network passes the check; under `ulimit -v` (torch's mappings
    # included) it does not, and the line names the limit that refused it
    mid = "if|half64|basic.pa_b.4096x2.s1.chain"  # 1.7 GiB of weights
    vm = _limited_snnas("show", mid, address_space=6 * 2**30)
    assert vm.returncode == 2 and vm.stderr.count("\n") == 1, vm.stderr[-2000:]
    assert "ulimit -v" in vm.stderr and "1.7 GiB (459,704,000 parameters)" in vm.stderr
    # past the check (--allow-large), the allocator's refusal is one line naming the size, not a traceback
    big = _limited_snnas("show", "--allow-large", huge, address_space=6 * 2**30)
    assert big.returncode == 2 and big.stderr.count("\n") == 1, big.stderr[-2000:]
    assert "allocating its weights failed" in big.stderr and "27.1 GiB" in big.stderr


def test_cgroup_limits_are_read_from_the_process_own_group(tmp_path):
    proc = tmp_path / "cgroup"
    root = tmp_path / "fs"
    (root / "box" / "inner").mkdir(parents=True)
    (root / "box" / "memory.max").write_text("3221225472\n")  # 3 GiB on the parent
    (root / "box" / "inner" / "memory.max").write_text("max\n")
    proc.write_text("0::/box/inner\n")
    assert cgroup_memory_bytes(proc, root) == 3 * 2**30
    (root / "box" / "memory.max").write_text("max\n")
    assert cgroup_memory_bytes(proc, root) is None
    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)
    (v1 / "memory" / "job" / "memory.limit_in_bytes").write_text(str(2**30))
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    proc.write_text("5:cpu,cpuacct:/job\n4:memory:/job\n")
    assert cgroup_memory_bytes(proc, v1) == 2**30
    assert cgroup_memory_bytes(tmp_path / "missing", root) is None


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path):
    long = "x" * 5000
    one_line(*run_cli(["show", "--space", long]), "too long for this file system", "(5,002 characters)")
    one_line(*run_cli(["search", "--storage", f"sqlite:///{tmp_path}/{long}", "--trials", "1"]),
             "too long for this file system")
    assert list(tmp_path.iterdir()) == []


def test_space_file_with_a_list_where_a_name_belongs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('builder = ["resnet_stages"]\n[genes]\ndepth = ["18"]\n')
    with pytest.raises(SnnasError, match="builder"):
        load_space(str(path))
    path.write_text('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["sew"]\nconnect = ["chain"]\n'
                    'per_stage = [["block"]]\n')
    with pytest.raises(SnnasError, match="per_stage"):
        load_space(str(path))


def test_genotype_files_with_bad_bytes_or_nesting(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"format": 1, "stem": "caf\u00e9"}'.encode("latin-1"))
    one_line(*run_cli(["show", str(latin)]), "not UTF-8")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    one_line(*run_cli(["show", str(deep)]), "nested too deeply")


def test_a_model_file_with_a_deeply_nested_genotype(tmp_path):
    model = build_model("if|small8|basic.pa_a.8x2.s1.chain", num_classes=2)
    path = save_model(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["genotype"] = "[" * 100_000 + "]" * 100_000
    torch.save(payload, path)
    with pytest.raises(SnnasError, match="nested too deeply"):
        load_model(path)


class Gadget:
    def __reduce__(self):
        return (print, ("ran code from a file",))


class Thing:
    pass


def test_a_pickled_checkpoint_is_refused_without_torchs_advice(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model": Thing()}, evil)  # a torch file holding a pickled object
    with pytest.raises(SnnasError) as caught:
        load_model(evil)
    assert "refused" in str(caught.value) and "Thing" in str(caught.value)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"model": Gadget()}))  # a bare pickle that would run code
    for path in (evil, raw):
        with pytest.raises(SnnasError) as caught:
            load_model(path)
        assert "weights_only" not in str(caught.value) and "trust" not in str(caught.value)


@needs_fashion
def test_resume_without_a_checkpoint_says_so(tmp_path):
    code, out, err = run_cli(["retrain", "--genotype", "if|small8|basic.pa_a.8x1.s1.chain", "--data", "fashion-2",
                              "--resolution", "16", "--train-per-class", "16", "--val-per-class", "2",
                              "--test-per-class", "2", "--epochs", "1", "--batch-size", "16", "--width-mult", "0.5",
                              "--resume", "--no-progress", "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert "--resume: no checkpoint in" in out
