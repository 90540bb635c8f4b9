"""The public surface users type (shared/API.md and the README) resolves: every name, every
console command's entry point."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

import ssm

NAMES = ["ops.cauchy", "ops.vandermonde", "ops.vandermonde_transpose", "ops.fftconv", "ops.scan", "ops.backends",
         "S4", "S4D", "S4PTD", "S5", "S5PTD", "CompanionSSM", "ShiftSSM", "ClosedLoopCompanionSSM",
         "SequenceModel", "SaShiMi", "SpaceTime", "load", "optim.param_groups",
         "models.generation.sample", "models.generation.sample_token", "models.generation.FastStepper"]


@pytest.mark.parametrize("name", NAMES)
def test_public_name_resolves(name):
    obj = ssm
    for part in name.split("."):
        obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(f"{obj.__name__}.{part}")
    assert callable(obj), name


SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_documented_commands_are_the_scripts():
    assert set(SCRIPTS) == {"ssm-train", "ssm-generate", "ssm-bench", "ssm-predict", "ssm-demo"}


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_console_entry_point_imports(command):
    module, func = SCRIPTS[command].split(":")
    assert callable(getattr(importlib.import_module(module), func)), command
