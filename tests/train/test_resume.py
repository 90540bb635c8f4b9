"""Runs that survive interruption. A run killed with SIGKILL mid-epoch, or stopped with SIGTERM
(what SLURM and Kubernetes send before preemption), and resumed with ``ckpt_path=last`` ends with
exactly the weights of an uninterrupted run with the same seed (model, optimizer, scheduler, step
counters, data position and random generators are all restored), and with the same
``metrics.csv`` and ``summary.json``. Dropout is on, so the random-state restore is exercised too.

One uninterrupted run serves every test of the module (subprocess runs are the expensive part)."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

HELPERS = textwrap.dedent(
    """
    import os, signal
    import lightning as L

    class KillAt(L.Callback):  # SIGKILL at the end of a step (step < 0: never)
        def __init__(self, step):
            self.step = step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)


    class SignalAt(L.Callback):  # a signal in the middle of a step: before its forward pass
        def __init__(self, step, name="SIGTERM"):
            self.step, self.name = step, name

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), getattr(signal, self.name))


    class SaveFinal(L.Callback):  # the weights at the very end
        def __init__(self, path):
            self.path = path

        def on_train_end(self, trainer, pl_module):
            import torch
            torch.save({"step": trainer.global_step, "state_dict": pl_module.state_dict()}, self.path)


    class Progress(L.Callback):  # one stdout line per finished step, for a parent that kills at a step
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            print(f"ssm-soak-step {trainer.global_step}", flush=True)


    class KillDuringSave(L.Callback):  # SIGKILL a few ms into the n-th checkpoint write of this process
        def __init__(self, at=-1, delay_ms=0.0):
            self.at, self.delay_ms, self.saves = at, delay_ms, 0

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            self.saves += 1
            if self.saves == self.at:  # the file is written right after this hook returns
                import threading
                threading.Timer(self.delay_ms / 1000, os.kill, (os.getpid(), signal.SIGKILL)).start()


    class StepHash(L.Callback):  # a fingerprint of the weights after every step, to find where runs part
        def __init__(self, path):
            self.path = path

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            import torch
            flat = torch.cat([p.detach().flatten().double() for p in pl_module.parameters()])
            with open(self.path, "a") as f:
                f.write(f"{trainer.global_step} {flat.sum().item()!r} {flat.abs().sum().item()!r}\\n")


    class RecordSaves(L.Callback):  # the global step of every checkpoint written
        def __init__(self, path):
            self.path = path

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            with open(self.path, "a") as f:
                f.write(f"{trainer.global_step}\\n")
    """
)
COMMON = [
    sys.executable, "-m", "ssm.train.cli", "trainer.max_epochs=2", "data.dataset.size=512", "model.d_model=16",
    "model.n_layers=2", "model.dropout=0.2", "callbacks.progress=null", "test=false", "+checkpoint_every_n_steps=3",
    "+callbacks.final._target_=helpers.SaveFinal",
]
STEPS_PER_EPOCH = 8


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    (tmp / "helpers.py").write_text(HELPERS)
    return tmp


def run(work, name, *extra):
    directory = work / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(COMMON + [f"hydra.run.dir={directory}", f"+callbacks.final.path={directory}.pt", *extra],
                          capture_output=True, text=True, timeout=600, env=env)


# the resumed runs name the test's callbacks too (never firing), which vouches for the targets the
# interrupted run's stored config names, so the resume reads its checkpoint with the safe loader
NEVER = ["+callbacks.killer._target_=helpers.KillAt", "+callbacks.killer.step=-1",
         "+callbacks.signal._target_=helpers.SignalAt", "+callbacks.signal.step=-1"]


@pytest.fixture(scope="module")
def straight(work):
    saves = work / "straight-saves.txt"
    done = run(work, "straight", "+callbacks.saves._target_=helpers.RecordSaves", f"+callbacks.saves.path={saves}")
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "straight"


def rows(directory):
    """metrics.csv as a list of {column: value} with the empty cells left out ([] before any row)."""
    if not (directory / "logs" / "metrics.csv").is_file():
        return []
    with open(directory / "logs" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def assert_same_run(straight, other):
    a, b = torch.load(f"{straight}.pt"), torch.load(f"{other}.pt")
    assert a["step"] == b["step"] == 2 * STEPS_PER_EPOCH
    a, b = a["state_dict"], b["state_dict"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"resumed weights differ from the uninterrupted run in {differing[:5]}"
    # the whole history: every row of the uninterrupted run, once, with the same values (the
    # interrupted epoch's training means included: EpochAggregates carries them)
    assert rows(other) == rows(straight)
    assert (other / "learning_curve.png").stat().st_size > 1000
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (straight, other))
    assert sa["epochs"] == sb["epochs"] == 2 and sa["global_step"] == sb["global_step"] == 2 * STEPS_PER_EPOCH
    assert sb["best"] == sa["best"] is not None
    assert sb["seconds_per_epoch"] > 0


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(work, straight):
    # SIGKILL mid-epoch 1 of 2 (8 steps per epoch); the SIGTERM test below stops in epoch 2
    killed = run(work, "killed", *NEVER[2:], "+callbacks.killer._target_=helpers.KillAt", "+callbacks.killer.step=5")
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = work / "killed" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 3  # the last multiple of 3 before the kill, intact
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"seed": 0, "epoch": 0, "batches_done": 3}]
    before = rows(work / "killed")
    assert max((int(r["step"]) for r in before), default=0) <= 3  # nothing past the checkpoint is kept

    resumed = run(work, "killed", *NEVER, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    assert rows(work / "killed")[: len(before)] == before  # nothing earlier was deleted
    assert_same_run(straight, work / "killed")


def test_sigterm_mid_step_saves_that_step_exits_nonzero_and_resumes_exactly(work, straight):
    stopped = run(work, "termed", *NEVER[:2], "+callbacks.signal._target_=helpers.SignalAt", "+callbacks.signal.step=10")
    assert stopped.returncode == 128 + 15, stopped.stderr[-3000:]
    assert "preempted by SIGTERM" in stopped.stderr and "resume with ckpt_path=last" in stopped.stderr
    ckpt = torch.load(work / "termed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 11  # the step the signal arrived in, finished and saved
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"seed": 0, "epoch": 1, "batches_done": 3}]
    assert not (work / "termed.pt").exists()  # the run did not reach its end
    before = rows(work / "termed")
    assert {r.get("epoch") for r in before} >= {"0", "1"}  # epoch 0's rows and step 9's are on disk

    resumed = run(work, "termed", *NEVER, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(work / "termed")[: len(before)] == before  # nothing earlier was deleted
    assert_same_run(straight, work / "termed")


def test_step_and_epoch_checkpoints_and_a_finished_run_is_not_trained_again(work, straight):
    saves = [int(s) for s in (work / "straight-saves.txt").read_text().split()]
    for step in (3, 6, 9, 12, 15):  # every 3 steps, epoch 0 included
        assert step in saves, saves
    for step in (STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH):  # and the epoch ends
        assert step in saves, saves
    last = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * STEPS_PER_EPOCH
    assert last["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 2
    final = torch.load(f"{straight}.pt")["state_dict"]
    assert all(torch.equal(final[k], last["state_dict"][k]) for k in final)  # last.ckpt is the true last state

    history, weights = rows(straight), (straight.parent / "straight.pt").read_bytes()
    again_saves = work / "again-saves.txt"
    again = run(work, "straight", "+callbacks.saves._target_=helpers.RecordSaves",
                f"+callbacks.saves.path={again_saves}", "ckpt_path=last")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stdout and "nothing to train" in again.stdout
    assert not again_saves.exists()  # no checkpoint written: no training step ran
    assert rows(straight) == history and (straight.parent / "straight.pt").read_bytes() == weights


# -- soak: many interruptions ------------------------------------------------------------------------

HELPER_TARGETS = {f"helpers.{c}" for c in ("KillAt", "SignalAt", "SaveFinal", "Progress", "KillDuringSave", "StepHash")}
SOAK = ["trainer.max_epochs=6", "+callbacks.progress_lines._target_=helpers.Progress",
        "+callbacks.chaos._target_=helpers.KillDuringSave"]  # 48 steps, a checkpoint every 3


@pytest.mark.slow
def test_soak_ten_random_kills_end_equal_to_the_uninterrupted_run(work):
    """10 interruptions of one run at random moments: SIGKILL after a random step, SIGTERM after a
    random step, and SIGKILL a few milliseconds into a checkpoint write. After each, last.ckpt
    loads with the safe reader; at the end the weights equal the uninterrupted run's and
    metrics.csv holds each of its rows once. Figures are printed (run with -s) and written to
    soak.json in the test's directory. Seed: SSM_SOAK_SEED (default 0).

        PYTHONPATH=$PWD python -m pytest -m slow -s tests/train/test_resume.py -k soak
    """
    import random
    import time

    from ssm.train.loading import read_checkpoint

    rng = random.Random(int(os.environ.get("SSM_SOAK_SEED", "0")))
    never = SOAK + NEVER + ["+callbacks.chaos.at=-1", "+callbacks.hash._target_=helpers.StepHash"]
    straight = run(work, "soak-straight", *never, f"+callbacks.hash.path={work / 'soak-straight.hash'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    kinds = ["sigkill", "sigkill", "sigkill", "sigkill", "sigterm", "sigterm", "sigterm", "write", "write", "write"]
    rng.shuffle(kinds)
    directory, last = work / "soak", work / "soak" / "checkpoints" / "last.ckpt"
    never = never + [f"+callbacks.hash.path={work / 'soak.hash'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")])}
    figures, started = [], time.perf_counter()
    for kind in kinds:
        before = read_checkpoint(last, allowed_targets=HELPER_TARGETS)["global_step"] \
            if last.is_file() else 0
        extra = list(never if kind != "write" else [a for a in never if not a.startswith("+callbacks.chaos.at")]
                     + [f"+callbacks.chaos.at={rng.randint(1, 3)}", f"+callbacks.chaos.delay_ms={rng.uniform(0, 4):.2f}"])
        cmd = COMMON + [f"hydra.run.dir={directory}", f"+callbacks.final.path={directory}.pt", *extra]
        cmd += ["ckpt_path=last"] if last.is_file() else []
        target = before + rng.randint(1, 4)
        with open(work / "soak-stderr.txt", "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            for line in proc.stdout:
                if kind != "write" and line.startswith("ssm-soak-step ") and int(line.split()[1]) >= target:
                    time.sleep(rng.uniform(0, 0.2))  # somewhere inside the next step
                    proc.send_signal(9 if kind == "sigkill" else 15)
                    break
            proc.stdout.read()  # keep draining: a closed pipe would fail the child's next print
            proc.stdout.close()
            rc = proc.wait(timeout=600)
        temp_left = sorted(p.name for p in (directory / "checkpoints").glob(".*.tmp"))
        after = read_checkpoint(last, allowed_targets=HELPER_TARGETS)["global_step"]
        figures.append({"kind": kind, "target": target, "rc": rc, "last_step_before": before, "last_step_after": after,
                        "temp_file_left": bool(temp_left)})
        assert rc in ({"sigkill": -9, "write": -9, "sigterm": 143}[kind], 0), (kind, rc, (work / "soak-stderr.txt").read_text()[-3000:])
        if kind == "sigterm" and rc == 143:
            assert after >= target, f"SIGTERM after step {target} saved only step {after}"
        if rc == 0:
            break  # finished before the interruption came
    final = run(work, "soak", *never, "ckpt_path=last")
    assert final.returncode == 0, final.stderr[-3000:]
    assert not list((directory / "checkpoints").glob(".*.tmp")), "stale temp files were not removed"
    report = {"interruptions": figures, "seconds": round(time.perf_counter() - started, 1),
              "temp_files_left_by_kills": sum(f["temp_file_left"] for f in figures),
              "sigterm_saved_at_the_step_it_stopped": [f["last_step_after"] for f in figures if f["kind"] == "sigterm"]}
    (work / "soak.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    reference = dict(line.split(" ", 1) for line in (work / "soak-straight.hash").read_text().splitlines())
    parted = [line for line in (work / "soak.hash").read_text().splitlines()
              if line.split(" ", 1)[1] != reference.get(line.split(" ", 1)[0])]
    assert not parted, f"weights differ from the uninterrupted run's after steps {parted[:3]}; {figures}"
    a, b = torch.load(work / "soak-straight.pt"), torch.load(work / "soak.pt")
    assert a["step"] == b["step"] == 6 * STEPS_PER_EPOCH
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert rows(directory) == rows(work / "soak-straight")
    assert sum(f["rc"] != 0 for f in figures) == 10, f"the run finished after fewer than 10 interruptions: {figures}"
