"""Offline generators agree with the independent checkers, write files the release loaders read,
and are deterministic; the checkers themselves catch what they should; the memory tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import ESTIMATE, ROUNDOFF, rel_err

from ssm.data.lra import (
    Adding,
    Copying,
    GeneratedListOps,
    GeneratedPathfinder,
    ListOps,
    Pathfinder,
    PathfinderStyle,
    SelectiveCopying,
    check_listops,
    pathfinder_connected,
)
from ssm.data.lra.generators import (
    generate_listops,
    listops_source,
    listops_value,
    main,
    render_pathfinder,
)

SMALL = {"max_depth": 5, "max_args": 5, "min_length": 8, "max_length": 120}

# -- ListOps -----------------------------------------------------------------------------------


def test_checker_on_hand_written_expressions():
    assert check_listops("( ( ( [MAX 2 ) 9 ) ] )") == 9
    assert check_listops("[MIN 4 [SM 7 5 ] 3 ]") == 2
    assert check_listops("[MED 1 8 3 ]") == 3
    assert check_listops("[MED 1 8 4 2 ]") == 3  # (2 + 4) // 2, LRA's int(np.median)
    assert check_listops("[SM 9 9 9 ]") == 7
    assert check_listops("5") == 5
    for bad in ("[MAX 1 2", "[MAX ]", "1 2", "[MAX 1 ] ]", "( [MAX 1 ] ) )", "[FOO 1 ]"):
        with pytest.raises(ValueError):
            check_listops(bad)


def test_release_serialisation():
    tree = ("[MAX", [2, ("[MIN", [4, 3]), 9])
    assert listops_source(tree) == "( ( ( ( [MAX 2 ) ( ( ( [MIN 4 ) 3 ) ] ) ) 9 ) ] )"
    assert listops_value(tree) == 9 and check_listops(listops_source(tree)) == 9


def test_every_generated_listops_label_matches_the_checker():
    examples = generate_listops(400, seed=3, **SMALL)
    assert len({s for s, _ in examples}) == 400  # distinct
    assert all(check_listops(s) == v for s, v in examples)
    lengths = [len([t for t in s.split() if t not in "()"]) for s, _ in examples]
    assert min(lengths) > 8 and max(lengths) < 120
    assert len({v for _, v in examples}) == 10  # every value occurs
    assert {t for s, _ in examples for t in s.split()} <= {"(", ")", "]", "[MIN", "[MAX", "[MED", "[SM", *"0123456789"}
    assert generate_listops(400, seed=3, **SMALL) == examples and generate_listops(50, seed=4, **SMALL) != examples[:50]


def test_lra_sized_listops_labels_match():
    examples = generate_listops(10, seed=0)  # the LRA grammar: depth 10, 10 args, 500 < length < 2000
    assert all(check_listops(s) == v for s, v in examples)
    assert all(500 < len([t for t in s.split() if t not in "()"]) < 2000 for s, _ in examples)


def test_cli_writes_release_files_the_loader_reads(tmp_path):
    main(["listops", "--root", str(tmp_path), "--n-train", "30", "--n-val", "5", "--n-test", "5", "--max-depth", "5",
          "--max-args", "5", "--min-length", "8", "--max-length", "100", "--seed", "1"])
    lines = (tmp_path / "listops" / "basic_train.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget" and len(lines) == 31
    ds = ListOps("train", root=tmp_path, l_max=128)
    assert len(ds) == 30 and ds.vocab_size <= 18
    for i, line in enumerate(lines[1:]):
        source, target = line.split("\t")
        assert int(ds[i][1]) == int(target) == check_listops(source)
        x, _, n = ds[i]
        assert [ds.vocab.itos[t] for t in x[: int(n) - 1].tolist()] == [t for t in source.split() if t not in "()"]


def test_generated_listops_generates_once_and_checks_settings(tmp_path, monkeypatch):
    kw = dict(root=tmp_path, n_train=20, n_val=4, n_test=4, l_max=128, **SMALL)
    ds = GeneratedListOps("train", **kw)
    assert len(ds) == 20 and len(GeneratedListOps("test", **kw)) == 4
    manifest = json.loads((tmp_path / "listops_generated" / "ssm_generated.json").read_text())
    assert manifest["n_train"] == 20
    import ssm.data.lra.generators as gen

    monkeypatch.setattr(gen, "write_listops", lambda *a, **k: pytest.fail("regenerated"))
    assert len(GeneratedListOps("val", **kw)) == 4
    with pytest.raises(ValueError, match="other settings.*n_train"):
        GeneratedListOps("train", **{**kw, "n_train": 21})
    with pytest.raises(FileNotFoundError, match="basic_train.tsv"):
        GeneratedListOps("train", **{**kw, "subdir": "absent"}, generate_if_missing=False)


# -- Pathfinder --------------------------------------------------------------------------------


def _blank(S=24):
    return np.zeros((S, S), dtype=np.uint8)


def test_pathfinder_checker_on_hand_drawn_images():
    img = _blank()
    img[5, 2:4] = img[5, 20:22] = 255  # two markers
    img[5, 4:8] = img[5, 10:14] = img[5, 16:20] = 200  # dashes with gaps of 2 blank pixels
    assert pathfinder_connected(img, link_radius=3.0)
    assert not pathfinder_connected(img, link_radius=1.5)  # 8-connectivity alone does not bridge the gaps
    img[5, 16:20] = 0
    img[9, 16:20] = 200  # a dash moved 4 rows away breaks the chain
    assert not pathfinder_connected(img, link_radius=3.0)
    flat = (img.reshape(-1, 1).astype(np.float32) / 127.5 - 1)  # as the loader returns it
    assert pathfinder_connected(flat, link_radius=6.0) == pathfinder_connected(img, link_radius=6.0) is True
    img[15, 15] = 255
    with pytest.raises(ValueError, match="expected 2 marker blobs.*found 3"):
        pathfinder_connected(img, link_radius=3.0)


@pytest.mark.parametrize("resolution, n", [(32, 200), (64, 20), (128, 6)])
def test_every_rendered_label_matches_flood_fill(resolution, n):
    style = PathfinderStyle.for_resolution(resolution)
    dashed = 0
    for i in range(n):
        label = i % 2
        image = render_pathfinder(style, label, np.random.default_rng([7, i]))
        assert image.shape == (resolution, resolution) and image.dtype == np.uint8
        assert pathfinder_connected(image, link_radius=style.link_radius) == bool(label), f"image {i}"
        if label:  # the path really is dashed: pixel adjacency alone does not join the dots
            dashed += not pathfinder_connected(image, link_radius=1.5)
    assert dashed >= 0.6 * (n // 2)


def test_pathfinder_generator_writes_the_release_layout(tmp_path):
    main(["pathfinder", "--root", str(tmp_path), "--resolution", "32", "--n", "30", "--per-dir", "12", "--seed", "5"])
    base = tmp_path / "pathfinder" / "pathfinder32" / "curv_contour_length_14"
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    rows = (base / "metadata" / "2.npy").read_text().splitlines()
    assert len(rows) == 6 and rows[0].split()[:4] == ["imgs/2", "sample_0.png", "24", rows[0].split()[3]]
    assert (base / "imgs" / "2" / "sample_5.png").is_file()
    ds = Pathfinder("train", root=tmp_path, resolution=32, val_split=0, test_split=0)
    labels = ds.labels()
    assert len(ds) == 30 and labels.sum() == 15  # balanced
    style = PathfinderStyle.for_resolution(32)
    for i in range(len(ds)):
        x, y, n = ds[i]
        assert x.shape == (1024, 1) and int(n) == 1024
        assert pathfinder_connected(x, link_radius=style.link_radius) == bool(y)


def test_generated_pathfinder_is_deterministic(tmp_path):
    a = GeneratedPathfinder("test", root=tmp_path / "a", n=20, seed=2)
    b = GeneratedPathfinder("test", root=tmp_path / "b", n=20, seed=2)
    c = GeneratedPathfinder("test", root=tmp_path / "c", n=20, seed=3)
    assert len(a) == 2 and all(torch.equal(a[i][0], b[i][0]) for i in range(2))
    assert not all(torch.equal(a[i][0], c[i][0]) for i in range(2))
    assert (tmp_path / "a" / "pathfinder_generated" / "pathfinder32" / "curv_contour_length_14" / "ssm_generated.json").is_file()


# -- memory tasks ------------------------------------------------------------------------------


def test_copying():
    ds = Copying("train", size=50, n_symbols=8, n_copy=5, delay=20, seed=1)
    x, y, n = ds[3]
    assert x.shape == (30,) and y.shape == (5,) and int(n) == 30 and ds.vocab_size == 10
    assert torch.equal(x[:5], y) and int(x[24]) == 9 and (x[5:24] == 0).all() and (x[25:] == 0).all()
    assert ((y >= 1) & (y <= 8)).all()
    assert torch.equal(Copying("train", size=50, n_copy=5, delay=20, seed=1)[3][0], x)
    assert not torch.equal(Copying("val", size=50, n_copy=5, delay=20, seed=1).x, ds.x)


def test_selective_copying():
    ds = SelectiveCopying("test", size=40, n_symbols=4, n_copy=6, body=50, seed=0)
    for i in range(len(ds)):
        x, y, n = ds[i]
        assert x.shape == (56,) and int(n) == 56 and (x[50:] == 5).all()
        body = x[:50]
        assert torch.equal(body[body > 0], y)  # the symbols in order of position
    assert len({tuple(ds[i][0][:50].nonzero().flatten().tolist()) for i in range(40)}) > 30  # positions vary


def test_adding():
    ds = Adding("train", size=100, length=40, seed=0)
    x, y, n = ds[7]
    assert x.shape == (40, 2) and int(n) == 40 and y.shape == ()
    marks = x[:, 1].nonzero().flatten().tolist()
    assert len(marks) == 2 and marks[0] < 20 <= marks[1]
    assert rel_err(y, x[marks, 0].sum()) <= ROUNDOFF[torch.float32]
    assert abs(ds.y.mean() - 1) <= ESTIMATE  # the sum of two uniform draws, 100 targets
