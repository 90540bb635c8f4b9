"""A 2-process DDP run (gloo, CPU) of the default experiment through Lightning's own strategy."""

import json
import subprocess
import sys



def test_two_process_ddp_on_cpu(tmp_path):
    cmd = [
        sys.executable, "-m", "ssm.train.cli",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=1",
        "data.dataset.size=512", "model.d_model=16", "model.n_layers=2", "callbacks.progress=null",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    summary = json.loads((tmp_path / "summary.json").read_text())
    # 512 training examples, batch 64, split over 2 ranks: 4 optimizer steps each, not 8
    assert summary["global_step"] == 4
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
