"""What every ``ssm-bench`` benchmark shares: timing in turns at given thread counts, peak memory
(CUDA allocator or sampled resident set size), the machine's description and the JSON file."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..args import integers, option

THREADS_HELP = "comma list of torch intra-op thread counts, each measured in turns (none: torch's own count)"


def threads_option():
    """The ``threads=1,2`` field of every benchmark's options."""
    return option(None, integers(1), THREADS_HELP)


def thread_counts(threads: Sequence[int] | None) -> list[int]:
    """The counts to measure at: the given ones, or torch's current one."""
    return list(threads) if threads else [torch.get_num_threads()]


def bench_device(cpu: bool) -> str:
    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---- time ----------------------------------------------------------------------------------------


def time_interleaved(fns: list[Callable[[], object]], repeats: int, device: str) -> list[tuple[float, float]]:
    """(median, IQR) in ms of several functions in round robin (one warm-up each, then ``repeats`` rounds of
    one run each), so that a machine whose speed drifts over minutes slows them all alike and
    their ratios stay side by side."""
    for fn in fns:
        fn()
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            sync(device)
            ts.append((time.perf_counter() - start) * 1e3)
    out = []
    for ts in times:
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out.append((statistics.median(ts), q[2] - q[0]))
    return out


def _at_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with torch set to ``threads`` intra-op threads (setting them costs microseconds)."""
    def run():
        torch.set_num_threads(threads)
        return fn()
    return run


def time_at_threads(runs: list[tuple[int, Callable[[], object]]], repeats: int, device: str) -> list[tuple[float, float]]:
    """``time_interleaved`` of (thread count, function) pairs, each run at its count; torch's
    count is restored afterwards."""
    before = torch.get_num_threads()
    try:
        return time_interleaved([_at_threads(t, fn) for t, fn in runs], repeats, device)
    finally:
        torch.set_num_threads(before)


def time_threads(fn: Callable[[], object], threads: list[int], repeats: int, device: str) -> list[tuple[float, float]]:
    """(median, IQR) in ms of ``fn`` at each thread count, the counts in round robin."""
    return time_at_threads([(t, fn) for t in threads], repeats, device)


# ---- memory --------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 0.5 ms in a background thread."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.extra = self.peak - self.base


def peak_mb(fn: Callable[[], object], device: str) -> float:
    """Peak extra memory of one call of ``fn``: CUDA's allocator peak above its level before, or the
    sampled resident set size on CPU."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as peak:
        fn()
    return peak.extra / 2**20


# ---- reporting -----------------------------------------------------------------------------------


def machine() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),  # torch's default; each record names the count it ran at
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def write_json(path: str | None, options, records: list) -> None:
    """``{"machine", "args", "records"}`` to ``path`` (when given), and say so."""
    if path:
        Path(path).write_text(json.dumps({"machine": machine(), "args": dataclasses.asdict(options),
                                          "records": records}, indent=1))
        print(f"wrote {path}")
