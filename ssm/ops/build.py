"""Build (or rebuild) the compiled ops now and report every backend: ``python -m ssm.ops.build``.

Options: ``--cuda`` also compiles and links the CUDA library even without a GPU (a compile
check; needs nvcc: a system toolkit, or PyPI's through ``pip install "ssm[cuda]"``),
``--verbose`` shows the compiler's output.
"""

from __future__ import annotations

import argparse
import sys

from . import _extension
from ._dispatch import backends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssm.ops.build", description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="compile and link the CUDA library even without a GPU")
    parser.add_argument("--verbose", action="store_true", help="print the compiler's output")
    args = parser.parse_args(argv)
    path = _extension.jit_build("cpu", load=False, verbose=args.verbose)
    print(f"cpu library: {path}")
    if args.cuda:
        try:
            path = _extension.jit_build("cuda", load=False, verbose=args.verbose)
        except RuntimeError as err:  # e.g. no toolkit: the message names the fix
            print(f"cuda library: not built: {err}", file=sys.stderr)
            return 1
        print(f"cuda library (compiled and linked, not loaded): {path}")
    for name, status in backends().items():
        print(f"{name:6s} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
