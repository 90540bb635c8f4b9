import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ssm.train.cli import config_dir


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(overrides) -> the composed config, with output_dir in a temp directory."""

    def _compose(overrides=()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[f"output_dir={tmp_path}", *overrides])
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
