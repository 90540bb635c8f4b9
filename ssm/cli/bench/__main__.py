"""``python -m ssm.cli.bench``: the same as ``ssm-bench``."""

from . import main

raise SystemExit(main())
