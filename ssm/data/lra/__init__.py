"""Long Range Arena (Tay et al., arXiv 2011.04006) from the official release files, plus offline
generators, checkers and long-range memory tasks.

One data root holds every task (constructor ``root``, Hydra ``data_root``; default
``$SSM_DATA_ROOT``, then ``./data``)::

    <root>/listops/basic_{train,val,test}.tsv                       ListOps       L 2048
    <root>/aclImdb/{train,test}/{pos,neg}/*.txt                      Text          L 4096
    <root>/aan/new_aan_pairs.{train,eval,test}.tsv                   Retrieval     L 4000 per document
    <root>/cifar-10-batches-py/{data_batch_1..5,test_batch}          Image         L 1024
    <root>/pathfinder/pathfinder{32,64,128}/curv_contour_length_14/  Pathfinder    L 1024 / 4096 / 16384 (Path-X)
    <root>/.ssm_cache/<task>/<key>/                                  tokenised/decoded arrays (built once)

Every dataset is ``Cls(split="train"|"val"|"test", *, root=..., ...)`` and returns
``(x, y, length)``; formats, special tokens and split conventions are in ``base`` and in each
module's docstring.
"""

from .base import LRAFormatError, Vocab
from .checks import check_listops, pathfinder_connected
from .image import Image
from .listops import ListOps
from .pathfinder import Pathfinder, PathX
from .retrieval import Retrieval
from .synthetic import Adding, Copying, SelectiveCopying
from .text import Text

# The generators load on first use, so `python -m ssm.data.lra.generators` runs them as __main__
# without a second copy already imported by this package.
_GENERATORS = ("GeneratedListOps", "GeneratedPathfinder", "PathfinderStyle", "write_listops", "write_pathfinder")


def __getattr__(name: str):
    if name in _GENERATORS:
        from . import generators

        return getattr(generators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Adding", "Copying", "GeneratedListOps", "GeneratedPathfinder", "Image", "LRAFormatError", "ListOps", "PathX",
    "Pathfinder", "PathfinderStyle", "Retrieval", "SelectiveCopying", "Text", "Vocab", "check_listops",
    "pathfinder_connected", "write_listops", "write_pathfinder",
]
