"""A run killed with SIGKILL mid-epoch and resumed with ``ckpt_path=last`` ends with exactly the
weights of an uninterrupted run with the same seed (model, optimizer, scheduler, step counters,
data position and random generators are all restored). Dropout is on, so the random-state
restore is exercised too."""

import os
import subprocess
import sys
import textwrap

import torch

KILLER = textwrap.dedent(
    """
    import os, signal
    import lightning as L

    class KillAt(L.Callback):
        def __init__(self, step):
            self.step = step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)


    class SaveFinal(L.Callback):  # the weights at the very end (last.ckpt may predate the final step)
        def __init__(self, path):
            self.path = path

        def on_train_end(self, trainer, pl_module):
            import torch
            torch.save({"step": trainer.global_step, "state_dict": pl_module.state_dict()}, self.path)
    """
)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    common = [
        sys.executable, "-m", "ssm.train.cli", "trainer.max_epochs=2", "data.dataset.size=512", "model.d_model=16",
        "model.n_layers=2", "model.dropout=0.2", "callbacks.progress=null", "test=false", "+checkpoint_every_n_steps=3",
        "+callbacks.final._target_=killer.SaveFinal",
    ]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(directory, *extra):
        return subprocess.run(common + [f"hydra.run.dir={directory}", f"+callbacks.final.path={directory}.pt", *extra],
                              capture_output=True, text=True, timeout=600, env=env)

    straight = run(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = run(tmp_path / "killed", "+callbacks.killer._target_=killer.KillAt", "+callbacks.killer.step=10")
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL, mid-epoch 2 (8 steps per epoch)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 9  # the last multiple of 3 before the kill, intact
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"seed": 0, "epoch": 1, "batches_done": 1}]

    resumed = run(tmp_path / "killed", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr

    a, b = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "killed.pt")
    assert a["step"] == b["step"] == 16  # 2 epochs x 8 steps
    a, b = a["state_dict"], b["state_dict"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"resumed weights differ from the uninterrupted run in {differing[:5]}"
