"""`ssm-bench kernels|layers|generate` on tiny sizes: a row per thread count, the thread-scaling
and speed-up lines computed from those rows, the JSON written, bad input named."""

import json

import pytest
import torch

from ssm.cli.bench import main
from ssm.cli.bench.kernels import Record, table

from helpers import ROUNDOFF


@pytest.mark.compiled
def test_kernels_rows_per_thread_count_and_scaling_lines(tmp_path, capsys):
    out = tmp_path / "k.json"
    assert main(["kernels", "rows=4", "n=3", "length=64", "repeats=1", "threads=1,2", "backends=torch,cpp", "ops=cauchy",
                 "modes=fwd", "cpu=true", f"json={out}"]) == 0
    records = json.loads(out.read_text())["records"]
    assert [(r["backend"], r["threads"]) for r in records] == [("torch", 1), ("torch", 2), ("cpp", 1), ("cpp", 2)]
    # complex64 sums of n=3 terms against the float64 reference: a few roundings
    assert all(r["status"] == "ok" and r["median_ms"] > 0 and r["max_rel_err"] < ROUNDOFF[torch.complex64] for r in records)
    by = {(r["backend"], r["threads"]): r["median_ms"] for r in records}
    printed = capsys.readouterr().out
    gain = by[("cpp", 1)] / by[("cpp", 2)]
    assert f"- cauchy fwd, cpp: 2 threads are {gain:.2f}x 1 (parallel efficiency {gain / 2:.0%})" in printed
    assert f"- cauchy fwd, 2 threads: cpp is {by[('torch', 2)] / by[('cpp', 2)]:.1f}x faster than torch" in printed


def test_table_compares_at_the_same_thread_count():
    def rec(backend, threads, ms):
        return Record("cauchy", "fwd", backend, 1, 1, 1, "cpu", "ok", median_ms=ms, threads=threads)

    text = table([rec("naive", 1, 100.0), rec("naive", 2, 60.0), rec("cpp", 1, 10.0), rec("cpp", 2, 5.0)])
    assert "- cauchy fwd, 1 thread: cpp is 10.0x faster than naive" in text
    assert "- cauchy fwd, 2 threads: cpp is 12.0x faster than naive" in text
    assert "- cauchy fwd, cpp: 2 threads are 2.00x 1 (parallel efficiency 100%)" in text
    assert "- cauchy fwd, naive: 2 threads are 1.67x 1 (parallel efficiency 83%)" in text


def test_layers_rows_per_thread_count(tmp_path):
    out = tmp_path / "l.json"
    assert main(["layers", "layers=S4D", "d_model=8", "d_state=4", "length=16", "step_batches=1", "repeats=1",
                 "threads=2,1", "cpu=true", f"json={out}"]) == 0
    rows = json.loads(out.read_text())["records"]
    assert [(r["what"], r["threads"]) for r in rows] == [
        ("fwd+bwd B=1 L=16", 2), ("fwd+bwd B=1 L=16", 1), ("step B=1", 2), ("step B=1", 1)]


@pytest.mark.parametrize("bad", ["0", "two", "1,,2", "-1"])
def test_bad_thread_list_is_named(bad, capsys):
    assert main(["kernels", f"threads={bad}", "backends=torch", "rows=1", "n=1", "length=4"]) == 2
    assert "ssm-bench kernels: error: `threads` must be a comma list of positive integers" in capsys.readouterr().err


def test_generate_speedups_are_against_the_reference_at_the_same_thread_count(tmp_path):
    out = tmp_path / "g.json"
    assert main(["generate", "batches=2", "length=5", "repeats=1", "d_model=8", "n_layers=1", "pool=2", "d_state=4",
                 "threads=1,2", "cpu=true", f"json={out}"]) == 0
    rows = json.loads(out.read_text())["records"]
    assert [(r["threads"], r["path"]) for r in rows] == [(t, p) for t in (1, 2) for p in ("reference", "fast-torch", "fast")]
    for r in rows:
        ref = next(x for x in rows if x["threads"] == r["threads"] and x["path"] == "reference")
        assert r["speedup"] == pytest.approx(r["samples_per_s"] / ref["samples_per_s"])
