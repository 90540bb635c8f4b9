"""``python -m ssm.ops.gpucheck``: the plan, --dry-run on CPU, step running and the floor figures."""

import json
import sys

import pytest
import torch
from helpers import ROUNDOFF

from ssm.ops import gpucheck


def test_dry_run_prints_the_plan_and_imports_without_hydra_omegaconf_pykeops(capsys):
    assert gpucheck.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for step in ("build", "kernels-check", "pytest-cuda", "bench-kernels", "bench-layers", "bench-generate", "memcheck", "racecheck"):
        assert f"[{step}]" in out, step
    assert "ssm.cli.bench kernels rows=1024 n=32 length=16384" in out
    assert "ssm.cli.bench layers layers=S4,S4D,S5 d_model=256 length=16384 batch=16" in out
    assert "compute-sanitizer --tool memcheck" in out and "compute-sanitizer --tool racecheck" in out
    assert "-m pytest -q -m cuda" in out
    for module in gpucheck.IMPORTS:
        assert f"import {module}: ok" in out
    assert "hidden modules imported: none" in out
    assert "imports with hydra, omegaconf, pykeops hidden: ok" in out


def test_dry_run_fails_when_a_step_needs_a_missing_package(monkeypatch, capsys):
    """The import check really hides the GPU machine's missing packages (here: a step needing hydra)."""
    monkeypatch.setattr(gpucheck, "IMPORTS", [*gpucheck.IMPORTS, "hydra"])
    assert gpucheck.main(["--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "import hydra: FAILED" in out and "imports with hydra, omegaconf, pykeops hidden: FAILED" in out


def test_the_plan_fits_eight_minutes_and_skips_with_a_reason(tmp_path):
    steps = gpucheck.plan(tmp_path, has_gpu=True, sanitizer=None, tests=None)
    assert sum(s.timeout_s for s in steps) <= 8 * 60
    why = {s.name: s.skip for s in steps}
    assert why["build"] == "" and why["bench-kernels"] == ""
    assert why["memcheck"] == why["racecheck"] == "compute-sanitizer not found on PATH"
    assert why["pytest-cuda"].startswith("no tests/ directory")
    assert all(s.skip == "no CUDA device" for s in gpucheck.plan(tmp_path, has_gpu=False, sanitizer="cs", tests=None))


def test_run_step_records_status_and_log(tmp_path):
    ok = gpucheck.run_step(gpucheck.Step("fine", "prints", [sys.executable, "-c", "print('hello')"], 60), tmp_path)
    assert ok.status == "ok" and (tmp_path / "fine.log").read_text().strip() == "hello"
    bad = gpucheck.run_step(gpucheck.Step("bad", "fails", [sys.executable, "-c", "raise SystemExit(3)"], 60), tmp_path)
    assert bad.status == "FAILED (rc 3)"
    slow = gpucheck.run_step(gpucheck.Step("slow", "hangs", [sys.executable, "-c", "import time; time.sleep(30)"], 1), tmp_path)
    assert slow.status.startswith("TIMEOUT")
    skipped = gpucheck.run_step(gpucheck.Step("gone", "n/a", ["true"], 1, skip="no CUDA device"), tmp_path)
    assert skipped.status == "skipped: no CUDA device"


def test_floor_fraction_of_the_kernel_figures(tmp_path):
    """Cauchy fwd at rows 1024, N 32, L 16384 has a 286 us FP32 floor (performance.md sec. 4)."""
    rec = dict(op="cauchy", mode="fwd", backend="cuda", rows=1024, n=32, length=16384, device="cuda", status="ok",
               median_ms=0.5726, iqr_ms=0.01, peak_extra_mb=64.0, max_rel_err=1e-7)
    slow = dict(rec, backend="torch", median_ms=5.726)
    untimed = dict(rec, backend="keops", status="skipped", median_ms=None)
    path = tmp_path / "bench-kernels.json"
    path.write_text(json.dumps({"records": [rec, slow, untimed]}))
    figures = gpucheck.kernel_figures(path)
    floor_ms = 32 * 1024 * 32 * 16384 / 60e12 * 1e3  # 32 flop per term at 60 TFLOP/s: 0.2863 ms
    assert figures[0]["floor_fraction"] == pytest.approx(floor_ms / 0.5726, rel=ROUNDOFF[torch.float64])  # 0.50006
    assert figures[1]["floor_fraction"] == pytest.approx(floor_ms / 5.726, rel=ROUNDOFF[torch.float64])
    assert figures[2]["floor_fraction"] is None
    table = gpucheck.summary_table([gpucheck.Result("bench-kernels", "ok", 1.0, "cmd")], tmp_path)
    assert "50.0%" in table and "5.0%" in table


def test_without_a_gpu_every_step_is_skipped_with_its_reason(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpucheck.main(["--out", str(tmp_path)]) == 1  # nothing validated: not a pass
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == [s.name for s in gpucheck.plan(tmp_path, has_gpu=False, sanitizer=None, tests=None)]
    assert all(s["status"] == "skipped: no CUDA device" for s in summary["steps"])
    out = capsys.readouterr().out
    assert "[build] skipped: no CUDA device" in out and "summary.json" in out
