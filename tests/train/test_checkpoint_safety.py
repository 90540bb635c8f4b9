"""Checkpoints are read safely: a pickled payload or a config ``_target_`` outside the allowlist is
refused by every loader (``ssm.load``, ``ssm-generate``, ``pretrained=``, ``ckpt_path=``) before
anything runs, and loads with the explicit opt-out; damaged files are named; stale temp files
from a killed write are removed at start-up."""

import builtins

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import ssm
from ssm.cli.generate import main as generate_main
from ssm.cli.predict import main as predict_main
from ssm.train.cli import build, config_dir, train
from ssm.train.loading import CheckpointError, UntrustedCheckpointError, read_checkpoint
from ssm.train.pretraining import load_pretrained

TINY = ["model.d_model=8", "model.n_layers=1", "model.layer.d_state=8", "callbacks.progress=null",
        "data.dataset.size=64", "trainer.max_epochs=1", "test=false"]


def _compose(out, overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"output_dir={out}", *TINY, *overrides])
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny run; its last.ckpt is the honest checkpoint the hostile ones start from."""
    out = tmp_path_factory.mktemp("run")
    train(_compose(out))
    return out


class Payload:
    """Unpickling this calls open(path, "w"): the file's existence proves code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


@pytest.fixture
def hostile(run, tmp_path):
    """(pickle-payload checkpoint, bad-target checkpoint, marker files each would create)."""
    honest = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    pickled_marker, target_marker = tmp_path / "pickle-ran", tmp_path / "target-ran"
    pickled = dict(honest, extra=Payload(pickled_marker))
    torch.save(pickled, tmp_path / "pickle.ckpt")
    targeted = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # a data node: ssm.load (which builds only the model) loads it with the opt-out, side-effect free
    targeted["hyper_parameters"]["config"]["data"]["dataset"] = {
        "_target_": "shutil.copyfile", "src": str(run / "summary.json"), "dst": str(target_marker)}
    torch.save(targeted, tmp_path / "target.ckpt")
    assert not pickled_marker.exists() and not target_marker.exists()
    return tmp_path / "pickle.ckpt", tmp_path / "target.ckpt", (pickled_marker, target_marker)


def test_honest_checkpoint_loads_safely(run):
    model = ssm.load(run / "checkpoints" / "last.ckpt")
    assert isinstance(model, ssm.SequenceModel)
    ckpt = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert "RandomState" in ckpt["callbacks"]  # the NumPy generator state is on the allowlist


def test_pickle_payload_and_bad_target_are_refused_by_every_loader(run, hostile, tmp_path, capsys):
    pickled, targeted, markers = hostile
    for path, match in ((pickled, r"pickled object outside the allowlist \(io\.open\)"),
                        (targeted, r"dataset\._target_=shutil\.copyfile")):
        with pytest.raises(UntrustedCheckpointError, match=match) as err:
            ssm.load(path)
        assert str(path) in str(err.value) and "trust_checkpoint=true" in str(err.value)
        assert generate_main([f"checkpoint={path}", f"output_dir={tmp_path / 'gen'}"]) == 2
        err = capsys.readouterr().err
        assert "allowlist" in err and str(path) in err
        assert predict_main([f"checkpoint={path}", f"data={tmp_path / 'new.npz'}", f"output={tmp_path / 'p.csv'}"]) == 2
        err = capsys.readouterr().err
        assert "allowlist" in err and str(path) in err and not (tmp_path / "p.csv").exists()
        with pytest.raises(UntrustedCheckpointError, match=match):
            load_pretrained(ssm.load(run / "checkpoints" / "last.ckpt"), path)
        with pytest.raises(UntrustedCheckpointError, match=match):
            build(_compose(tmp_path / "ft", [f"pretrained={path}"]))
        with pytest.raises(UntrustedCheckpointError, match=match):
            train(_compose(run, [f"ckpt_path={path}"]))
        assert not any(m.exists() for m in markers), "a refused checkpoint ran code"


def test_opt_out_loads_them(run, hostile, tmp_path, capsys):
    pickled, targeted, (pickled_marker, target_marker) = hostile
    assert isinstance(ssm.load(targeted, trust=True), ssm.SequenceModel)
    assert not target_marker.exists()  # only the model node is built
    assert isinstance(ssm.load(pickled, trust=True), ssm.SequenceModel)
    assert pickled_marker.exists()  # trusted: the pickle ran, as the user asked
    assert load_pretrained(ssm.load(run / "checkpoints" / "last.ckpt"), targeted, trust=True)["loaded"]
    # the run it came from is finished: ckpt_path= reads it, says so and trains nothing
    assert train(_compose(run, [f"ckpt_path={targeted}", "trust_checkpoint=true"])) == {}
    assert "already finished" in capsys.readouterr().out
    # with test=true the finished run is evaluated (its best.ckpt), still without training
    tested = train(_compose(run, ["ckpt_path=last", "test=true"]))
    assert "already finished" in capsys.readouterr().out and "test/accuracy" in tested
    # ssm-predict runs the trusted checkpoint (a built-in data set's classifier: x labelled by class index)
    cfg = ssm.load(run / "checkpoints" / "last.ckpt")
    np.savez(tmp_path / "new.npz", x=np.zeros((3, 32, cfg.d_input), dtype=np.float32))
    assert predict_main([f"checkpoint={pickled}", f"data={tmp_path / 'new.npz'}", f"output={tmp_path / 'p.csv'}",
                         "trust_checkpoint=true"]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 3
    # ssm-generate gets past the safety check and stops at the (non-audio) data config
    assert generate_main([f"checkpoint={targeted}", "trust_checkpoint=true", f"output_dir={tmp_path / 'g'}"]) == 2
    err = capsys.readouterr().err
    assert "refused" not in err and "allowlist" not in err and "rate" in err


def test_command_line_targets_are_vouched_for(run, tmp_path):
    """A resumed run's own config may name the user's classes (e.g. a callback): the checkpoint
    naming them is accepted when the command line names them too."""
    honest = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    honest["hyper_parameters"]["config"]["callbacks"]["mine"] = {"_target_": "mypackage.MyCallback"}
    torch.save(honest, tmp_path / "mine.ckpt")
    with pytest.raises(UntrustedCheckpointError, match="mypackage.MyCallback"):
        read_checkpoint(tmp_path / "mine.ckpt")
    assert read_checkpoint(tmp_path / "mine.ckpt", allowed_targets={"mypackage.MyCallback"})


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_checkpoint_is_named_with_the_alternatives(run, tmp_path, damage, capsys):
    good = (run / "checkpoints" / "last.ckpt").read_bytes()
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "best.ckpt").write_bytes(good)
    bad = directory / "last.ckpt"
    bad.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "garbage": b"not a checkpoint" * 10}[damage])
    for call in (lambda: ssm.load(bad), lambda: read_checkpoint(bad, what="ckpt_path")):
        with pytest.raises(CheckpointError, match="damaged") as err:
            call()
        assert str(bad) in str(err.value) and str(directory / "best.ckpt") in str(err.value)
    with pytest.raises(CheckpointError, match="damaged"):
        train(_compose(tmp_path, ["ckpt_path=last"]))
    assert generate_main([f"checkpoint={bad}"]) == 2
    assert "damaged" in capsys.readouterr().err


def test_stale_temp_files_are_removed_at_start(run, tmp_path, capsys):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    stale = directory / ".last.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = directory / "notes.tmp"
    keep.write_text("not ours")
    train(_compose(tmp_path, ["+trainer.max_steps=1"]))
    assert not stale.exists() and keep.exists()
    assert f"removed {stale}" in capsys.readouterr().out
    assert read_checkpoint(directory / "last.ckpt")["global_step"] == 1
