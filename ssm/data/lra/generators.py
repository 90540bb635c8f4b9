"""Offline generators that write LRA-style data in the release formats, so the same loaders read
real and generated data. Deterministic in ``seed``; nothing is downloaded.

ListOps (Nangia & Bowman, arXiv 1804.06028; the LRA variant, arXiv 2011.04006): a tree whose
nodes below ``max_depth`` are an operator with probability ``operator_p`` = 0.25 (else a digit);
an operator (MIN, MAX, MED, SM uniformly) takes 2..``max_args`` arguments. Trees are kept when
``min_length`` < tokens < ``max_length`` (tokens = digits, operators and closing brackets) and
not seen before; LRA used depth 10, 10 arguments, lengths 500-2000 and 96k/2k/2k examples.
Written as ``basic_{train,val,test}.tsv`` in the release's parenthesised pair nesting.

Pathfinder (after Linsley et al., arXiv 1805.08315, redrawn here from scratch): two long dashed
curves ("snakes") of ``n_dashes`` dashes whose heading turns by at most ``max_turn`` per dash,
plus shorter distractor snakes. Label 1: both marker dots sit on the two ends of one snake (the
other long snake is unmarked); label 0: one dot on an end of each long snake. Snakes are kept
more than ``link_radius`` apart and dash gaps are shorter than it, so connectivity is decidable
from the pixels (``ssm.data.lra.checks.pathfinder_connected``). Paths are drawn at gray
``path_level``, markers at 255. Written as ``imgs/<n>/sample_<k>.png`` + ``metadata/<n>.npy``
rows ``imgs/<n> sample_<k>.png <index> <label> <max_turn> <n_dashes> <distractor_dashes> <dash>
<width> <gap> 1``; labels are balanced.

Command line::

    python -m ssm.data.lra.generators listops --root DIR --n-train 96000 --n-val 2000 --n-test 2000
    python -m ssm.data.lra.generators pathfinder --root DIR --resolution 32 --n 200000

``GeneratedListOps`` / ``GeneratedPathfinder`` are the loaders with ``generate_if_missing``: the
first construction writes the files (each file atomically, a manifest last), later ones read
them, and a manifest written with other settings is an error rather than silently stale data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_args

import numpy as np

from .base import resolve_root
from .cache import atomic_write_text
from .listops import HEADER, ListOps
from .pathfinder import Difficulty, Pathfinder

MANIFEST = "ssm_generated.json"

# -- ListOps -----------------------------------------------------------------------------------

LISTOPS_OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")


def _listops_tree(rng: random.Random, depth: int, max_depth: int, max_args: int, operator_p: float):
    """(tree, token count): a tree is a digit or (operator, [children])."""
    if depth < max_depth and rng.random() < operator_p:
        children, length = [], 2  # the operator and its closing bracket
        for _ in range(rng.randint(2, max_args)):
            child, n = _listops_tree(rng, depth + 1, max_depth, max_args, operator_p)
            children.append(child)
            length += n
        return (rng.choice(LISTOPS_OPERATORS), children), length
    return rng.randrange(10), 1


def listops_value(tree) -> int:
    if isinstance(tree, int):
        return tree
    op, children = tree
    values = [listops_value(c) for c in children]
    if op == "[MIN":
        return min(values)
    if op == "[MAX":
        return max(values)
    if op == "[MED":
        return int(np.median(values))  # as LRA's generator: the mean of the middle two, truncated
    return int(np.sum(values)) % 10


def listops_source(tree) -> str:
    """The release's serialisation: an operator applied to a1..an is the left-nested pairs
    ``( ( ( op a1 ) a2 ) ... an ) ]`` each wrapped in parentheses."""
    if isinstance(tree, int):
        return str(tree)
    op, children = tree
    out = "( " * (len(children) + 1) + op + " " + listops_source(children[0]) + " )"
    for child in children[1:]:
        out += " " + listops_source(child) + " )"
    return out + " ] )"


def generate_listops(n: int, *, seed: int = 0, max_depth: int = 10, max_args: int = 10, min_length: int = 500,
                     max_length: int = 2000, operator_p: float = 0.25, max_tries: int | None = None) -> list[tuple[str, int]]:
    """``n`` distinct (source, value) pairs."""
    if not (max_depth >= 1 and max_args >= 2 and 0 <= min_length < max_length - 1 and 0 < operator_p < 1):
        raise ValueError("generate_listops: need max_depth >= 1, max_args >= 2, 0 <= min_length < max_length - 1, "
                         f"0 < operator_p < 1; got {max_depth}, {max_args}, {min_length}, {max_length}, {operator_p}")
    rng = random.Random(seed)
    seen, out = set(), []
    tries, limit = 0, max_tries if max_tries is not None else 10_000 * max(n, 1)
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise RuntimeError(f"generate_listops: only {len(out)} of {n} distinct trees with {min_length} < length < "
                               f"{max_length} after {limit} tries; widen the length range or raise max_depth/max_args")
        tree, length = _listops_tree(rng, 1, max_depth, max_args, operator_p)
        if not min_length < length < max_length:
            continue
        source = listops_source(tree)
        if source in seen:
            continue
        seen.add(source)
        out.append((source, listops_value(tree)))
    return out


@dataclass(frozen=True)
class ListOpsSpec:
    n_train: int = 96_000
    n_val: int = 2_000
    n_test: int = 2_000
    seed: int = 0
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500
    max_length: int = 2000


def write_listops(data_dir: str | os.PathLike, spec: ListOpsSpec) -> Path:
    """Write ``basic_{train,val,test}.tsv`` (+ a manifest) into ``data_dir``."""
    data_dir = Path(data_dir)
    examples = generate_listops(spec.n_train + spec.n_val + spec.n_test, seed=spec.seed, max_depth=spec.max_depth,
                                max_args=spec.max_args, min_length=spec.min_length, max_length=spec.max_length)
    bounds = {"train": (0, spec.n_train), "val": (spec.n_train, spec.n_train + spec.n_val),
              "test": (spec.n_train + spec.n_val, len(examples))}
    for split, (a, b) in bounds.items():
        lines = ["\t".join(HEADER)] + [f"{source}\t{value}" for source, value in examples[a:b]]
        atomic_write_text(data_dir / f"basic_{split}.tsv", "\r\n".join(lines) + "\r\n")  # csv.writer's line ends
    atomic_write_text(data_dir / MANIFEST, json.dumps({"task": "listops", **asdict(spec)}, indent=1, sort_keys=True))
    return data_dir


# -- Pathfinder --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathfinderStyle:
    """Drawing parameters in pixels; ``for_resolution`` scales the 32x32 defaults."""

    resolution: int = 32
    n_dashes: int = 6
    distractor_dashes: int = 2
    n_distractors: int = 2
    dash: float = 3.0
    gap: float = 1.5
    half_width: float = 0.0   # brush radius beyond the nearest pixel
    marker_radius: float = 1.5
    max_turn: float = 0.6     # radians per dash
    path_level: int = 200
    min_marker_distance: float = 8.0

    @classmethod
    def for_resolution(cls, resolution: int) -> PathfinderStyle:
        s = resolution / 32
        return cls(resolution=resolution, n_distractors=max(2, round(2 * s)), dash=3.0 * s, gap=1.5 * s,
                   half_width=0.0 if s < 2 else 0.25 * s, marker_radius=1.5 * s, min_marker_distance=8.0 * s)

    @property
    def link_radius(self) -> float:
        """Largest pixel distance across a dash gap: the gap plus sqrt(2) of rounding, with slack."""
        return self.gap + 1.5

    @property
    def separation(self) -> float:
        """Distinct snakes keep every pair of their pixels further apart than this."""
        return self.link_radius + 0.5


def _disk(radius: float) -> np.ndarray:
    r = math.ceil(radius)
    return np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius])


def _dilate(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    H, W = mask.shape
    for dy, dx in offsets:
        out[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] |= mask[max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


class _Canvas:
    """An image being drawn, and the pixels a new snake may not touch (flat pixel indices)."""

    def __init__(self, style: PathfinderStyle):
        self.style, self.S = style, style.resolution
        self.image = np.zeros(self.S * self.S, dtype=np.uint8)
        self.forbidden = np.zeros((self.S, self.S), dtype=bool)
        self.sep = _disk(style.separation)
        self.brush = _disk(style.half_width + 0.5) if style.half_width > 0 else None
        self.marker_disk = _disk(style.marker_radius + 1)
        steps = max(2, math.ceil(style.dash / 0.25) + 1)
        self.t = np.linspace(0.0, style.dash, steps)[:, None]

    def _pixels(self, points: np.ndarray, offsets: np.ndarray | None, radius: float) -> np.ndarray | None:
        """Flat indices of the pixels nearest to ``points`` (x, y), plus those whose centres lie
        within ``radius`` of a point (candidates ``offsets`` around it); None if any is off-canvas."""
        centre = points[:, ::-1]  # (P, 2) row, col
        base = np.rint(centre).astype(np.int64)
        pix = base
        if offsets is not None:
            cand = (base[:, None, :] + offsets[None]).reshape(-1, 2)
            keep = ((cand - np.repeat(centre, len(offsets), axis=0)) ** 2).sum(1) <= radius * radius
            pix = np.concatenate([base, cand[keep]])
        if pix.min() < 0 or pix.max() >= self.S:
            return None
        return pix[:, 0] * self.S + pix[:, 1]

    def snake(self, rng: np.random.Generator, n_dashes: int):
        """Dash pixels and the two end points of a random snake, or None if it cannot fit: the
        curve is drawn first, then moved to a uniform position where its bounding box fits."""
        st, S = self.style, self.S
        pad = st.marker_radius + 1
        theta = rng.uniform(0, 2 * math.pi)
        p, dashes = np.zeros(2), []
        for k in range(n_dashes):
            if k:
                theta += rng.uniform(-st.max_turn, st.max_turn)
            u = np.array([math.cos(theta), math.sin(theta)])
            dashes.append(p + self.t * u)
            p = p + (st.dash + st.gap) * u
        points = np.concatenate(dashes)  # (P, 2) x, y
        low, high = points.min(0), points.max(0)
        room = (S - 1 - 2 * pad) - (high - low)
        if (room < 0).any():
            return None
        points = points + (pad - low + rng.uniform(0, 1, size=2) * room)
        pix = self._pixels(points, self.brush, self.style.half_width)
        return None if pix is None else (pix, points[0], points[-1])

    def place(self, pix: np.ndarray, markers: list[np.ndarray]) -> bool:
        """Draw a snake (and its markers) if it keeps its distance from everything drawn."""
        marker_pix = [self._pixels(m[None], self.marker_disk, self.style.marker_radius) for m in markers]
        if any(m is None for m in marker_pix):
            return False
        every = np.concatenate([pix, *marker_pix])
        if self.forbidden.reshape(-1)[every].any():
            return False
        self.image[pix] = self.style.path_level
        for m in marker_pix:
            self.image[m] = 255
        mask = np.zeros(self.S * self.S, dtype=bool)
        mask[every] = True
        self.forbidden |= _dilate(mask.reshape(self.S, self.S), self.sep)
        return True


def render_pathfinder(style: PathfinderStyle, label: int, rng: np.random.Generator, *, max_tries: int = 100) -> np.ndarray:
    """One (S, S) uint8 image with ``label`` 1 (dots on one snake) or 0 (dots on two snakes)."""
    for _ in range(max_tries):
        canvas = _Canvas(style)
        a = canvas.snake(rng, style.n_dashes)
        if a is None or np.hypot(*(a[1] - a[2])) < style.min_marker_distance:
            continue
        end_a = a[1 + rng.integers(2)]
        if not canvas.place(a[0], [a[1], a[2]] if label == 1 else [end_a]):
            continue
        for _ in range(50):  # the second long snake: unmarked (label 1) or carrying the other dot
            b = canvas.snake(rng, style.n_dashes)
            if b is None:
                continue
            end_b = b[1 + rng.integers(2)]
            if label == 0 and np.hypot(*(end_a - end_b)) < style.min_marker_distance:
                continue
            if canvas.place(b[0], [] if label == 1 else [end_b]):
                break
        else:
            continue
        placed = 0
        for _ in range(50 * max(style.n_distractors, 1)):
            if placed == style.n_distractors:
                break
            d = canvas.snake(rng, style.distractor_dashes)
            if d is not None and canvas.place(d[0], []):
                placed += 1
        if placed == style.n_distractors:
            return canvas.image.reshape(style.resolution, style.resolution)
    raise RuntimeError(f"render_pathfinder: could not place the snakes in {max_tries} tries at {style.resolution}x"
                       f"{style.resolution}; use fewer/shorter snakes (n_dashes, n_distractors)")


def write_pathfinder(data_dir: str | os.PathLike, *, n: int, style: PathfinderStyle, seed: int = 0,
                     per_dir: int = 1000) -> Path:
    """Write ``n`` images with balanced labels in the release layout under ``data_dir``
    (``.../pathfinder<res>/<difficulty>``): ``imgs/<b>/sample_<k>.png`` and ``metadata/<b>.npy``."""
    from PIL import Image as PILImage

    if n < 1 or per_dir < 1:
        raise ValueError(f"write_pathfinder: `n` and `per_dir` must be >= 1, got {n}, {per_dir}")
    data_dir = Path(data_dir)
    labels = np.random.default_rng([seed, 1]).permutation(np.arange(n) % 2)
    for b in range((n + per_dir - 1) // per_dir):
        (data_dir / "imgs" / str(b)).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(b * per_dir, min(n, (b + 1) * per_dir)):
            image = render_pathfinder(style, int(labels[i]), np.random.default_rng([seed, 0, i]))
            name = f"sample_{i - b * per_dir}.png"
            tmp = data_dir / "imgs" / str(b) / f".{name}.{os.getpid()}.tmp"
            PILImage.fromarray(image, mode="L").save(tmp, format="PNG")
            os.replace(tmp, data_dir / "imgs" / str(b) / name)
            rows.append(f"imgs/{b} {name} {i} {int(labels[i])} {style.max_turn} {style.n_dashes} "
                        f"{style.distractor_dashes} {style.dash} {2 * style.half_width + 1} {style.gap} 1")
        atomic_write_text(data_dir / "metadata" / f"{b}.npy", "\n".join(rows) + "\n")
    atomic_write_text(data_dir / MANIFEST, json.dumps({"task": "pathfinder", "n": n, "seed": seed, "per_dir": per_dir,
                                                       **asdict(style)}, indent=1, sort_keys=True))
    return data_dir


# -- loaders that generate on first use --------------------------------------------------------


def _manifest_matches(data_dir: Path, expected: dict, owner: str) -> bool:
    """True if generated data with these settings is complete; False if absent; an error if the
    directory holds data generated with other settings."""
    path = data_dir / MANIFEST
    if not path.is_file():
        return False
    found = json.loads(path.read_text())
    if found != expected:
        diff = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
        raise ValueError(f"{owner}: {data_dir} holds data generated with other settings (found, wanted): {diff}; "
                         "delete the directory or choose another `subdir`")
    return True


class GeneratedListOps(ListOps):
    """``ListOps`` over generated files in ``<root>/<subdir>``, written first if missing."""

    task = "listops_generated"

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, subdir: str = "listops_generated",
                 n_train: int = 10_000, n_val: int = 1_000, n_test: int = 1_000, seed: int = 0, max_depth: int = 10,
                 max_args: int = 10, min_length: int = 500, max_length: int = 2000, l_max: int = 2048,
                 append_eos: bool = True, max_vocab: int | None = None, generate_if_missing: bool = True,
                 cache_dir: str | os.PathLike | None = None):
        spec = ListOpsSpec(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, max_depth=max_depth,
                           max_args=max_args, min_length=min_length, max_length=max_length)
        data_dir = resolve_root(root) / subdir
        if not _manifest_matches(data_dir, {"task": "listops", **asdict(spec)}, type(self).__name__) and generate_if_missing:
            write_listops(data_dir, spec)
        super().__init__(split, root=root, subdir=subdir, l_max=l_max, append_eos=append_eos, max_vocab=max_vocab,
                         cache_dir=cache_dir)


class GeneratedPathfinder(Pathfinder):
    """``Pathfinder`` over generated images in ``<root>/<subdir>/pathfinder<res>/<difficulty>``,
    drawn first if missing (``PathfinderStyle.for_resolution`` defaults)."""

    def __init__(self, split: str = "train", *, root: str | os.PathLike | None = None, resolution: int = 32,
                 n: int = 10_000, seed: int = 0, per_dir: int = 1000, subdir: str = "pathfinder_generated",
                 difficulty: Difficulty = "curv_contour_length_14", val_split: float = 0.1, test_split: float = 0.1,
                 split_seed: int = 42, generate_if_missing: bool = True, cache_dir: str | os.PathLike | None = None):
        style = PathfinderStyle.for_resolution(resolution)
        data_dir = resolve_root(root) / subdir / f"pathfinder{resolution}" / difficulty
        expected = {"task": "pathfinder", "n": n, "seed": seed, "per_dir": per_dir, **asdict(style)}
        if not _manifest_matches(data_dir, expected, type(self).__name__) and generate_if_missing:
            write_pathfinder(data_dir, n=n, style=style, seed=seed, per_dir=per_dir)
        super().__init__(split, root=root, resolution=resolution, difficulty=difficulty, subdir=subdir,
                         val_split=val_split, test_split=test_split, split_seed=split_seed, cache_dir=cache_dir)


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssm.data.lra.generators", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", required=True)
    lo = sub.add_parser("listops", help="write basic_{train,val,test}.tsv into ROOT/SUBDIR")
    lo.add_argument("--root", default=None, help="data root (default $SSM_DATA_ROOT or ./data)")
    lo.add_argument("--subdir", default="listops")
    for name, default in (("n-train", 96_000), ("n-val", 2_000), ("n-test", 2_000), ("seed", 0), ("max-depth", 10),
                          ("max-args", 10), ("min-length", 500), ("max-length", 2000)):
        lo.add_argument(f"--{name}", type=int, default=default)
    pf = sub.add_parser("pathfinder", help="write ROOT/SUBDIR/pathfinder<res>/<difficulty>/{imgs,metadata}")
    pf.add_argument("--root", default=None, help="data root (default $SSM_DATA_ROOT or ./data)")
    pf.add_argument("--subdir", default="pathfinder")
    pf.add_argument("--resolution", type=int, default=32)
    pf.add_argument("--difficulty", default="curv_contour_length_14", choices=get_args(Difficulty))
    pf.add_argument("--n", type=int, default=200_000)
    pf.add_argument("--per-dir", type=int, default=1000)
    pf.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = resolve_root(args.root)
    if args.task == "listops":
        spec = ListOpsSpec(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
                           max_depth=args.max_depth, max_args=args.max_args, min_length=args.min_length,
                           max_length=args.max_length)
        out = write_listops(root / args.subdir, spec)
    else:
        out = write_pathfinder(root / args.subdir / f"pathfinder{args.resolution}" / args.difficulty, n=args.n,
                               style=PathfinderStyle.for_resolution(args.resolution), seed=args.seed, per_dir=args.per_dir)
    print(f"wrote {args.task} to {out}")


if __name__ == "__main__":
    main()
