"""Every experiment config composes and instantiates; the docs name only experiments that exist; bad
config input fails before training."""

import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from ssm.train.cli import build, config_dir

EXPERIMENTS = sorted(str(p.relative_to(config_dir() / "experiment").with_suffix(""))
                     for p in (config_dir() / "experiment").rglob("*.yaml"))


def test_there_are_experiments():
    assert {"marker-s4", "marker-s5", "sine-lm", "seasonal-forecast"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", [None, *EXPERIMENTS])
def test_experiment_composes_and_instantiates(compose_cfg, name):
    cfg = compose_cfg([f"experiment={name}"] if name else [])
    _, module, trainer = build(cfg)  # data files are only read in setup(), so file-based data composes too
    target = module.hparams["config"]["model"]["_target_"]
    assert target.startswith("ssm.models.")
    # what was built is what the config asks for
    assert type(module.model).__name__ == target.rsplit(".", 1)[1], (type(module.model), target)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert sum(p.numel() for p in module.model.parameters()) > 0


REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "experiments").rglob("README.md"))]
# in commands, `experiment=lra/s4-listops`, or in tables, `lra/s4-listops` in backticks; a name followed
# by `{` or `<` is a pattern such as lra/{s4,s5}-x, skipped
NAMED = re.compile(r"experiment=([\w/.-]+)(?![\w{<])|`((?:lra|audio|forecasting)/[\w.-]+)`")


def test_docs_name_only_existing_experiments():
    named = {(doc.relative_to(REPO), a or b) for doc in DOCS for a, b in NAMED.findall(doc.read_text())}
    named = {(doc, m) for doc, m in named if not m.endswith(("/", "-"))}
    assert len(named) > 40, named  # the READMEs do name experiments: the pattern still matches them
    missing = sorted((str(doc), name) for doc, name in named if name not in EXPERIMENTS)
    assert not missing, f"docs name experiments with no configs/experiment/<name>.yaml: {missing}"


def test_unknown_layer_names_the_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["model/layer=s6"])
    message = str(err.value)
    assert "model/layer" in message and "s4d" in message and "s5" in message


def test_typo_in_override_names_the_key(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_cfg(["trainer.max_epoch=3"])


def test_missing_checkpoint_for_resume(compose_cfg, tmp_path):
    from ssm.train.cli import resolve_ckpt

    cfg = compose_cfg(["ckpt_path=last"])
    with pytest.raises(FileNotFoundError, match="no .*last.ckpt yet"):
        resolve_ckpt(cfg)
