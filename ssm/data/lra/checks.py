"""Independent checkers for generated LRA data: they re-derive a label from what a model sees.

- ``check_listops(expr)`` evaluates a ListOps expression from its token string with an explicit
  stack (the generator evaluates its own tree recursively), so a wrong label, a broken
  serialisation or an unbalanced expression shows up as a disagreement or an error.
- ``pathfinder_connected(image, link_radius=...)`` decides from the pixels alone whether the two
  marker dots lie on one path. Dashes have gaps, so "connected" is defined on a graph whose nodes
  are the foreground pixels (value >= ``threshold``) and whose edges join pixels at Euclidean
  distance <= ``link_radius``: a flood fill over that graph from one marker must reach the other.
  Markers are the pixels >= ``marker_level`` (drawn brighter than paths), which must form exactly
  two 8-connected blobs. The generator draws dash gaps shorter than ``link_radius`` (gap + the
  sqrt(2) of pixel rounding) and keeps distinct paths further than ``link_radius`` apart, which
  is the claim the checker tests on every image.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_OPS = {"[MIN", "[MAX", "[MED", "[SM"}


def _apply(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[SM":
        return sum(args) % 10
    ordered = sorted(args)  # [MED: the median, floored for an even count (LRA's int(np.median))
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2


def check_listops(expr: str) -> int:
    """The value of a ListOps expression in the release's token format (parentheses optional).

    Raises ``ValueError`` for an unknown token, unbalanced brackets or parentheses, an operator
    without arguments, or more than one top-level value.
    """
    frames: list[tuple[str, list[int]]] = []
    result: int | None = None
    depth = 0
    for tok in expr.split():
        if tok == "(":
            depth += 1
            continue
        if tok == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"check_listops: unbalanced ')' in {expr[:80]!r}")
            continue
        if tok in _OPS:
            frames.append((tok, []))
            continue
        if tok == "]":
            if not frames:
                raise ValueError(f"check_listops: ']' without an operator in {expr[:80]!r}")
            op, args = frames.pop()
            if not args:
                raise ValueError(f"check_listops: {op} has no arguments in {expr[:80]!r}")
            value = _apply(op, args)
        elif len(tok) == 1 and tok.isdigit():
            value = int(tok)
        else:
            raise ValueError(f"check_listops: unknown token {tok!r}")
        if frames:
            frames[-1][1].append(value)
        elif result is None:
            result = value
        else:
            raise ValueError(f"check_listops: more than one top-level value in {expr[:80]!r}")
    if frames or depth != 0 or result is None:
        raise ValueError(f"check_listops: unbalanced or empty expression {expr[:80]!r}")
    return result


def _as_square(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 1:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise ValueError(f"pathfinder_connected: a flat image must have a square number of pixels, got {a.size}")
        a = a.reshape(side, side)
    if a.ndim != 2:
        raise ValueError(f"pathfinder_connected: image must be (H, W), (L,) or (L, 1), got shape {a.shape}")
    return a


def _blobs(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    blobs = []
    H, W = mask.shape
    for r, c in zip(*np.nonzero(mask)):
        if seen[r, c]:
            continue
        seen[r, c] = True
        queue, blob = deque([(r, c)]), []
        while queue:
            y, x = queue.popleft()
            blob.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < H and 0 <= u < W and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        queue.append((v, u))
        blobs.append(blob)
    return blobs


def pathfinder_connected(image, *, link_radius: float, marker_level: int = 255, threshold: int = 1) -> bool:
    """Whether the two marker blobs of ``image`` are joined by foreground pixels that are pairwise
    within ``link_radius`` (see the module docstring). ``image``: (H, W), (L,) or (L, 1) uint8
    (float images in [-1, 1], as the loaders return them, are mapped back to 0..255)."""
    a = _as_square(image)
    if a.dtype.kind == "f":
        a = np.rint((a.astype(np.float64) + 1.0) * 127.5).clip(0, 255)
    a = a.astype(np.int64)
    blobs = _blobs(a >= marker_level)
    if len(blobs) != 2:
        raise ValueError(f"pathfinder_connected: expected 2 marker blobs (pixels >= {marker_level}), found {len(blobs)}")
    foreground = a >= threshold
    H, W = a.shape
    reach = math.floor(link_radius)
    offsets = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
               if 0 < dy * dy + dx * dx <= link_radius * link_radius]
    target = set(blobs[1])
    seen = np.zeros_like(foreground)
    queue = deque(blobs[0])
    for y, x in blobs[0]:
        seen[y, x] = True
    while queue:
        y, x = queue.popleft()
        if (y, x) in target:
            return True
        for dy, dx in offsets:
            v, u = y + dy, x + dx
            if 0 <= v < H and 0 <= u < W and foreground[v, u] and not seen[v, u]:
                seen[v, u] = True
                queue.append((v, u))
    return False
