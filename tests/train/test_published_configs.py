"""Experiment configs that reproduce the s4 reference build its model, not a near relative: where
they cite state-spaces/s4, their S4/S4D layers use the reference layer config's softplus dt."""

import pytest

from ssm.train.cli import build, config_dir

CITING = sorted(str(p.relative_to(config_dir() / "experiment").with_suffix(""))
                for p in (config_dir() / "experiment").rglob("*.yaml") if "state-spaces/s4" in p.read_text())


def test_the_published_settings_configs_are_found():
    assert len(CITING) >= 15 and {"lra/s4-listops", "audio/sashimi-sc09", "forecasting/s4-etth1"} <= set(CITING)


@pytest.mark.parametrize("name", CITING)
def test_published_settings_use_softplus_dt(compose_cfg, name):
    _, module, _ = build(compose_cfg([f"experiment={name}"]))
    cores = [m for m in module.model.modules() if hasattr(m, "dt_transform")]
    assert cores, f"{name}: no S4-family core built"
    assert {c.dt_transform for c in cores} == {"softplus"}, name
