"""The command-line apps, all in one ``key=value`` argument style (``ssm.cli.args``):

- ``ssm-generate`` (``ssm.cli.generate``): sample audio from an ``ssm-train`` checkpoint;
- ``ssm-bench kernels|layers|generate`` (``ssm.cli.bench``): side-by-side benchmarks;
- ``ssm-demo`` (``ssm.cli.demo``): a one-minute tour of the ops;
- ``ssm-predict`` (``ssm.cli.predict``): predictions from a checkpoint (``ssm.train.predict``).

``ssm-train`` (Hydra's own ``key=value`` overrides) lives in ``ssm.train.cli``. Every checkpoint
is read once, through ``ssm.train.loading.read_checkpoint``.
"""
