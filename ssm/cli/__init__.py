"""The command-line apps, all in one ``key=value`` argument style (``ssm.cli.args``):

- ``ssm-generate`` (``ssm.cli.generate``): sample audio from an ``ssm-train`` checkpoint;
- ``ssm-bench kernels|layers|generate`` (``ssm.cli.bench``): side-by-side benchmarks;
- ``ssm-demo`` (``ssm.cli.demo``): a one-minute tour of the ops.

``ssm-train`` (Hydra) lives in ``ssm.train.cli`` and ``ssm-predict`` in ``ssm.train.predict``;
``ssm-predict`` parses its arguments here too. Every checkpoint is read once, through
``ssm.train.loading.read_checkpoint``.
"""
