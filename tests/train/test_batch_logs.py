"""Logs that work in a batch job: with stdout redirected to a file, ``ssm-train`` prints a plain
line per epoch while it runs (not a progress bar that shows nothing until the end), writes the
same lines to ``cli.log`` in the run directory, and leaves out third-party noise."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_redirected_stdout_gets_epoch_lines_before_the_run_ends(tmp_path):
    run, out = tmp_path / "run", tmp_path / "stdout.txt"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [sys.executable, "-m", "ssm.train.cli", "trainer.max_epochs=200", "data.dataset.size=100",
            "data.dataset.length=64", "model.d_model=8", "model.n_layers=1", "model.layer.d_state=4",
            "trainer.log_every_n_steps=1", f"hydra.run.dir={run}"]
    with out.open("w") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline, text = time.monotonic() + 240, ""
        while time.monotonic() < deadline and proc.poll() is None:
            text = out.read_text()
            if "epoch 2/200 step" in text and "val/loss" in text:
                break
            time.sleep(0.2)
        running = proc.poll() is None  # 200 epochs: far from done when the second epoch's line is there
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert running, text[-3000:]
    lines = text.splitlines()
    epoch_line = next(line for line in lines if line.startswith("epoch 1/200 step") and "val/loss" in line)
    assert "train/loss" in epoch_line and "samples/s" in epoch_line and "ETA" in epoch_line
    assert any(line.startswith("epoch 1/200 step 1 train/loss") for line in lines)  # every log_every_n_steps
    assert "━" not in text  # no progress bar in a file
    assert "Tip" not in text and "LeafSpec" not in text and "TensorBoard is not installed" not in text
    log = (run / "cli.log").read_text()
    assert epoch_line in log.splitlines()
