"""The study plumbing stands alone (no torch, no genotypes, no search), and the search's trial
attributes are one typed record that every writer goes through."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from snnas.search.attrs import NAMES, RUN_ONLY, TrialAttrs, attr_name, attrs_dict, copy_attrs, set_attrs
from snnas.study.attrs import DETAIL_ATTR, REASON_ATTR

ROOT = Path(__file__).resolve().parent.parent
STUDY_PACKAGE = ROOT / "snnas" / "study"
PLUMBING = sorted(p.stem for p in STUDY_PACKAGE.glob("*.py") if p.stem != "__init__")
FORBIDDEN = ("torch", "spikingjelly", "torchvision", "snnas.search", "snnas.genotype", "snnas.compiler",
             "snnas.presets", "snnas.fit", "snnas.train", "snnas.data", "snnas.spaces")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PLUMBING)
def test_plumbing_modules_import_nothing_of_the_search(module):
    bad = [name for name in _imports(STUDY_PACKAGE / f"{module}.py")
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"snnas.study.{module} imports {bad}"


def test_importing_the_plumbing_loads_no_torch_and_no_genotype():
    modules = ", ".join(f"snnas.study.{m}" for m in PLUMBING)
    code = (f"import sys; import {modules}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'spikingjelly') "
            "or m.startswith(('snnas.genotype', 'snnas.search', 'snnas.compiler'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_record_names_the_plumbings_failure_attributes_as_run_only():
    assert {REASON_ATTR, DETAIL_ATTR} <= RUN_ONLY <= NAMES
    assert {"key", "fidelity", "dedupe_of", "wall_s"} <= RUN_ONLY  # a reuse must not claim another run's identity
    assert "model_artifact" not in RUN_ONLY and "sops" not in RUN_ONLY  # a reuse carries the network's measurements


def test_unknown_attribute_names_are_refused():
    trial = optuna.create_study().ask()
    with pytest.raises(KeyError, match="not a search trial attribute: valacc"):
        set_attrs(trial, valacc=0.5)
    with pytest.raises(KeyError):
        attrs_dict(seedpreset="x")
    with pytest.raises(KeyError):
        attr_name("keys")
    assert trial.user_attrs == {}


def test_record_reads_back_what_was_written_and_copies_without_run_only_fields():
    study = optuna.create_study()
    first = study.ask()
    set_attrs(first, key="k", fidelity="f", val_acc=0.5, sops=10.0, wall_s=3.0, fail_reason="x")
    first.set_user_attr("written_by_another_tool", 1)
    record = TrialAttrs.of(first)
    assert (record.key, record.val_acc, record.sops, record.params) == ("k", 0.5, 10.0, None)
    assert "written_by_another_tool" not in vars(record)
    second = study.ask()
    copy_attrs(second, first.user_attrs)
    assert second.user_attrs == {"val_acc": 0.5, "sops": 10.0}


def test_study_record_reads_phase_twos_own_fidelity_first():
    from snnas.search.attrs import StudyAttrs

    phase1, phase2 = optuna.create_study(), optuna.create_study()
    StudyAttrs(space="s", objectives=["acc"], fidelity_phase1={"data": "a"}, fidelity_phase2={"data": "b"}).write(phase1)
    assert StudyAttrs.of(phase1).fidelity_phase2 == {"data": "b"}
    StudyAttrs(fidelity_phase2={"data": "c"}).write(phase2)
    both = StudyAttrs.of(phase1, phase2)
    assert (both.space, both.objectives, both.fidelity_phase1, both.fidelity_phase2) == ("s", ["acc"], {"data": "a"},
                                                                                      {"data": "c"})
    assert set(phase2.user_attrs) == {"fidelity_phase2"}  # unset fields are not written
