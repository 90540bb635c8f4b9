"""LRA loaders on tiny fixtures written by hand in each release format: items, vocabularies,
labels, lengths and padding, splits, the array cache, and errors that name the file and line."""

from __future__ import annotations

import importlib
import os
import pickle

import numpy as np
import pytest
import torch
from helpers import ROUNDOFF
from PIL import Image as PILImage

from ssm.data.lra import (
    Image,
    ListOps,
    LRAFormatError,
    Pathfinder,
    PathX,
    Retrieval,
    Text,
)

# -- fixtures in the release formats -----------------------------------------------------------

LISTOPS = {
    "train": [("( ( ( [MAX 2 ) 9 ) ] )", 9),
              ("( ( ( ( [MIN 4 ) ( ( ( [SM 7 ) 5 ) ] ) ) 3 ) ] )", 2),
              ("( ( ( ( [MED 1 ) 8 ) 3 ) ] )", 3)],
    "val": [("( ( ( [SM 9 ) 9 ) ] )", 8)],
    "test": [("( ( ( [MIN 6 ) 5 ) ] )", 5), ("7", 7)],
}


def write_listops(root, data=LISTOPS, subdir="listops"):
    d = root / subdir
    d.mkdir(parents=True, exist_ok=True)
    for split, rows in data.items():
        text = "Source\tTarget\r\n" + "".join(f"{s}\t{t}\r\n" for s, t in rows)  # csv.writer line ends
        (d / f"basic_{split}.tsv").write_text(text)
    return d


IMDB = {
    ("train", "pos"): ["a great film", "great!"],
    ("train", "neg"): ["a bad film", "bad, bad", "film noir é"],
    ("test", "pos"): ["great great"],
    ("test", "neg"): ["zzz bad"],
}


def write_imdb(root):
    for (part, label), docs in IMDB.items():
        d = root / "aclImdb" / part / label
        d.mkdir(parents=True, exist_ok=True)
        for i, doc in enumerate(docs):
            (d / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(doc, encoding="utf-8")


AAN = {
    "train": [("1", "abc", "abd"), ("0.0", "xyz", "a"), ("1.0", "cab", "bca")],
    "eval": [("0", "aq", "b")],
    "test": [("1", "c", "cc"), ("0", "ab", "ba")],
}


def write_aan(root):
    d = root / "aan"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in AAN.items():
        lines = [f"{lab}\tP{i}\tQ{i}\t{t1}\t{t2}" for i, (lab, t1, t2) in enumerate(rows)]
        (d / f"new_aan_pairs.{name}.tsv").write_text("\n".join(lines) + "\n")


def write_cifar(root, n=10, seed=0):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist(),
                 b"batch_label": name.encode()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


def write_pathfinder(root, *, resolution=8, n=20, per_dir=7, seed=0):
    base = root / "pathfinder" / f"pathfinder{resolution}" / "curv_contour_length_14"
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for b in range((n + per_dir - 1) // per_dir):
        (base / "imgs" / str(b)).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(b * per_dir, min(n, (b + 1) * per_dir)):
            img = rng.integers(0, 256, (resolution, resolution), dtype=np.uint8)
            PILImage.fromarray(img, mode="L").save(base / "imgs" / str(b) / f"sample_{i - b * per_dir}.png")
            label = int(rng.integers(2))
            rows.append(f"imgs/{b} sample_{i - b * per_dir}.png {i} {label} 1.8 14 4.666 2 0.5 1 1")
            images.append(img)
            labels.append(label)
        (base / "metadata").mkdir(parents=True, exist_ok=True)
        (base / "metadata" / f"{b}.npy").write_text("\n".join(rows) + "\n")
    return base, np.stack(images), np.array(labels)


def decode(vocab, x, n):
    return [vocab.itos[int(t)] for t in x[:n]]


# -- ListOps -----------------------------------------------------------------------------------


def test_listops_items_vocab_padding(tmp_path):
    write_listops(tmp_path)
    ds = ListOps("train", root=tmp_path, l_max=16)
    assert len(ds) == 3
    assert ds.vocab.itos[:3] == ["<pad>", "<unk>", "<eos>"]
    # train symbols: 2 9 ] 4 7 5 3 1 8 [MAX [MIN [SM [MED
    assert set(ds.vocab.itos[3:]) == {"2", "9", "]", "4", "7", "5", "3", "1", "8", "[MAX", "[MIN", "[SM", "[MED"}
    assert ds.vocab.itos[3] == "]"  # the most frequent train token comes first
    x, y, n = ds[0]
    assert x.shape == (16,) and x.dtype == torch.long and y.dtype == torch.long and y.shape == ()
    assert int(y) == 9 and int(n) == 5
    assert decode(ds.vocab, x, int(n)) == ["[MAX", "2", "9", "]", "<eos>"]
    assert (x[int(n):] == 0).all()
    x, y, n = ds[1]
    assert decode(ds.vocab, x, int(n)) == ["[MIN", "4", "[SM", "7", "5", "]", "3", "]", "<eos>"] and int(y) == 2
    test = ListOps("test", root=tmp_path, l_max=16)
    x, y, n = test[0]
    assert decode(test.vocab, x, int(n)) == ["[MIN", "<unk>", "5", "]", "<eos>"]  # 6 never occurs in train
    assert [int(test[i][1]) for i in range(len(test))] == [5, 7]
    assert len(ListOps("val", root=tmp_path, l_max=16)) == 1


def test_listops_truncation_and_no_eos(tmp_path):
    write_listops(tmp_path)
    ds = ListOps("train", root=tmp_path, l_max=4)
    x, _, n = ds[1]
    assert int(n) == 4 and decode(ds.vocab, x, 4) == ["[MIN", "4", "[SM", "<eos>"]
    ds = ListOps("train", root=tmp_path, l_max=4, append_eos=False)
    assert "<eos>" not in ds.vocab.itos and decode(ds.vocab, ds[1][0], 4) == ["[MIN", "4", "[SM", "7"]


def test_listops_max_vocab(tmp_path):
    write_listops(tmp_path)
    with pytest.raises(ValueError, match="max_vocab.*16"):
        ListOps("train", root=tmp_path, max_vocab=10)
    assert ListOps("train", root=tmp_path, max_vocab=18).vocab_size == 16


@pytest.mark.parametrize("line, what", [
    ("( ( ( [MAX 2 ) 9 ) ] )\t12", "Target must be an integer 0-9"),
    ("( ( ( [MAX 2 ) 9 ) ] )\t9\textra", "expected 2 tab-separated columns"),
    ("( ( ( [MAX 2 ) 9 ) ] )", "expected 2 tab-separated columns"),
    ("( ( ( [MAXX 2 ) 9 ) ] )\t9", "unknown token '\\[MAXX'"),
    ("\t3", "empty Source"),
])
def test_listops_malformed_line_names_file_and_line(tmp_path, line, what):
    d = write_listops(tmp_path)
    (d / "basic_val.tsv").write_text("Source\tTarget\n( ( ( [SM 9 ) 9 ) ] )\t8\n" + line + "\n")
    with pytest.raises(LRAFormatError, match=rf"basic_val\.tsv:3: {what}"):
        ListOps("train", root=tmp_path)


def test_listops_bad_header(tmp_path):
    d = write_listops(tmp_path)
    (d / "basic_test.tsv").write_text("( ( ( [SM 9 ) 9 ) ] )\t8\n")
    with pytest.raises(LRAFormatError, match=r"basic_test\.tsv:1: expected the header"):
        ListOps("test", root=tmp_path)


def test_listops_missing_file_names_it_and_the_layout(tmp_path):
    d = write_listops(tmp_path)
    (d / "basic_val.tsv").unlink()
    with pytest.raises(FileNotFoundError) as err:
        ListOps("train", root=tmp_path)
    msg = str(err.value)
    assert str(d / "basic_val.tsv") in msg and "basic_train.tsv" in msg and "Source<TAB>Target" in msg
    with pytest.raises(FileNotFoundError, match="listops"):
        ListOps("train", root=tmp_path / "nowhere")


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_listops(tmp_path)
    monkeypatch.setenv("SSM_DATA_ROOT", str(tmp_path))
    assert len(ListOps("train")) == 3
    with pytest.raises(ValueError, match="`split` must be one of 'train', 'val', 'test'"):
        ListOps("dev")


# -- Text --------------------------------------------------------------------------------------


def test_text_chars_labels_val_is_test(tmp_path):
    write_imdb(tmp_path)
    ds = Text("train", root=tmp_path, l_max=32, min_freq=1)
    assert len(ds) == 5
    docs = [decode(ds.vocab, *ds[i][::2]) for i in range(5)]
    texts = ["".join(d[:-1]) for d in docs]
    assert all(d[-1] == "<eos>" for d in docs)
    # files are ordered neg then pos, by numeric id
    assert texts == IMDB["train", "neg"] + IMDB["train", "pos"]
    assert [int(ds[i][1]) for i in range(5)] == [0, 0, 0, 1, 1]
    val, test = Text("val", root=tmp_path, l_max=32, min_freq=1), Text("test", root=tmp_path, l_max=32, min_freq=1)
    assert len(val) == len(test) == 2 and all(torch.equal(val[i][0], test[i][0]) for i in range(2))
    x, _y, n = test[0]
    assert "".join(decode(test.vocab, x, int(n))[:-1]) == "zzz bad".replace("z", "<unk>")  # z never in train


def test_text_min_freq_and_bytes(tmp_path):
    write_imdb(tmp_path)
    ds = Text("train", root=tmp_path, l_max=64, min_freq=3)
    counts = {}
    for doc in IMDB["train", "pos"] + IMDB["train", "neg"]:
        for ch in doc:
            counts[ch] = counts.get(ch, 0) + 1
    assert set(ds.vocab.itos[3:]) == {c for c, k in counts.items() if k >= 3}
    bytes_ds = Text("train", root=tmp_path, l_max=64, level="byte", min_freq=1)
    x, _, n = bytes_ds[2]  # "film noir é": é is two UTF-8 bytes
    assert int(n) == len("film noir é".encode()) + 1
    assert decode(bytes_ds.vocab, x, int(n))[-3:-1] == ["0xc3", "0xa9"]


def test_text_val_split_holds_out_train(tmp_path):
    write_imdb(tmp_path)
    train = Text("train", root=tmp_path, val_split=0.4, min_freq=1, l_max=32)
    val = Text("val", root=tmp_path, val_split=0.4, min_freq=1, l_max=32)
    assert (len(train), len(val)) == (3, 2)
    rows = {tuple(train[i][0].tolist()) for i in range(3)} | {tuple(val[i][0].tolist()) for i in range(2)}
    assert len(rows) == 5  # a partition of the 5 training documents


def test_text_bad_utf8_names_file_and_line(tmp_path):
    write_imdb(tmp_path)
    bad = tmp_path / "aclImdb" / "train" / "pos" / "7_9.txt"
    bad.write_bytes(b"fine line\nsecond \xff line\n")
    with pytest.raises(LRAFormatError, match=r"7_9\.txt:2: not valid UTF-8"):
        Text("train", root=tmp_path)


def test_text_missing_directory(tmp_path):
    write_imdb(tmp_path)
    for p in (tmp_path / "aclImdb" / "test" / "neg").iterdir():
        p.unlink()
    (tmp_path / "aclImdb" / "test" / "neg").rmdir()
    with pytest.raises(FileNotFoundError, match=r"test/neg(.|\n)*train/pos/<id>_<rating>.txt"):
        Text("train", root=tmp_path)


# -- Retrieval ---------------------------------------------------------------------------------


def test_retrieval_pairs(tmp_path):
    write_aan(tmp_path)
    ds = Retrieval("train", root=tmp_path, l_max=8)
    assert len(ds) == 3
    x, y, n = ds[1]
    assert x.shape == (2, 8) and n.shape == (2,) and x.dtype == n.dtype == torch.long and int(y) == 0
    assert decode(ds.vocab, x[0], int(n[0])) == ["x", "y", "z", "<eos>"]
    assert decode(ds.vocab, x[1], int(n[1])) == ["a", "<eos>"]
    assert (x[0, 4:] == 0).all() and (x[1, 2:] == 0).all()
    assert [int(ds[i][1]) for i in range(3)] == [1, 0, 1]
    # vocab from both train texts: a b c d x y z
    assert set(ds.vocab.itos[3:]) == set("abcdxyz")
    val = Retrieval("val", root=tmp_path, l_max=8)  # new_aan_pairs.eval.tsv
    x, _, n = val[0]
    assert len(val) == 1 and decode(val.vocab, x[0], int(n[0])) == ["a", "<unk>", "<eos>"]
    assert len(Retrieval("test", root=tmp_path, l_max=8)) == 2


@pytest.mark.parametrize("line, what", [("2\ta\tb\tt1\tt2", "label must be 0 or 1"),
                                        ("1\ta\tb\tt1", "expected 5 tab-separated columns")])
def test_retrieval_malformed_line(tmp_path, line, what):
    write_aan(tmp_path)
    path = tmp_path / "aan" / "new_aan_pairs.test.tsv"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(LRAFormatError, match=rf"new_aan_pairs\.test\.tsv:3: {what}"):
        Retrieval("train", root=tmp_path)


# -- Image -------------------------------------------------------------------------------------


def test_image_grayscale_matches_pil_and_splits(tmp_path):
    batches = write_cifar(tmp_path, n=10)
    train, val, test = (Image(s, root=tmp_path) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (45, 5, 10)
    x, y, n = test[3]
    assert x.shape == (1024, 1) and x.dtype == torch.float32 and int(n) == 1024
    rgb = batches["test_batch"][b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0)
    gray = np.asarray(PILImage.fromarray(rgb, mode="RGB").convert("L"), dtype=np.float32).reshape(-1)
    assert (x[:, 0] - torch.from_numpy((gray - 122.6) / 61.0)).abs().max() <= ROUNDOFF[torch.float32]
    assert int(y) == batches["test_batch"][b"labels"][3]
    # train and val partition the 50 training images
    all_train = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    seen = sorted(tuple(ds[i][0][:8, 0].tolist()) for ds in (train, val) for i in range(len(ds)))
    assert len(set(seen)) == 50 and len(all_train) == 50


def test_image_bad_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(LRAFormatError, match=r"data_batch_3: not a CIFAR-10 python batch"):
        Image("train", root=tmp_path)
    write_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, f)
    with pytest.raises(LRAFormatError, match=r'test_batch: b"labels"\[1\] = 10'):
        Image("test", root=tmp_path)


# -- Pathfinder --------------------------------------------------------------------------------


def test_pathfinder_items_and_s4_split(tmp_path):
    _base, images, labels = write_pathfinder(tmp_path, resolution=8, n=20)
    parts = {s: Pathfinder(s, root=tmp_path, resolution=8) for s in ("train", "val", "test")}
    assert {s: len(p) for s, p in parts.items()} == {"train": 16, "val": 2, "test": 2}
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(42)).tolist()
    assert parts["val"]._indices.tolist() == perm[16:18]  # S4: random_split(..., generator seed 42)
    x, y, n = parts["test"][1]
    j = perm[19]
    assert x.shape == (64, 1) and int(n) == 64 and int(y) == labels[j]
    assert (x[:, 0] - torch.from_numpy(images[j].reshape(-1).astype(np.float32) / 127.5 - 1)).abs().max() <= ROUNDOFF[torch.float32]
    assert x.min() >= -1 and x.max() <= 1


def test_pathx_is_pathfinder128(tmp_path):
    write_pathfinder(tmp_path, resolution=128, n=3, per_dir=3)
    ds = PathX("train", root=tmp_path, val_split=0.0, test_split=0.0)
    assert len(ds) == 3 and ds[0][0].shape == (16384, 1) and int(ds[0][2]) == 16384


def test_pathfinder_errors_name_file_and_line(tmp_path):
    base, _, _ = write_pathfinder(tmp_path, resolution=8, n=10, per_dir=5)
    (base / "imgs" / "1" / "sample_2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(LRAFormatError, match=r"sample_2\.png: unreadable PNG \(listed at .*metadata/1\.npy:3\)"):
        Pathfinder("train", root=tmp_path, resolution=8)
    (base / "imgs" / "1" / "sample_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata/1\.npy:3: lists image .*sample_2\.png"):
        Pathfinder("train", root=tmp_path, resolution=8)
    meta = base / "metadata" / "0.npy"
    rows = meta.read_text().splitlines()
    rows[3] = rows[3].replace(" 3 0 ", " 3 x ").replace(" 3 1 ", " 3 x ")
    meta.write_text("\n".join(rows) + "\n")
    with pytest.raises(LRAFormatError, match=r"metadata/0\.npy:4: label \(column 4\) must be 0 or 1, got 'x'"):
        Pathfinder("train", root=tmp_path, resolution=8)
    meta.write_text("imgs/0 sample_0.png 0\n")
    with pytest.raises(LRAFormatError, match=r"metadata/0\.npy:1: expected at least 4"):
        Pathfinder("train", root=tmp_path, resolution=8)


def test_pathfinder_wrong_size_and_missing_layout(tmp_path):
    base, _, _ = write_pathfinder(tmp_path, resolution=8, n=4, per_dir=4)
    PILImage.fromarray(np.zeros((9, 8), np.uint8), mode="L").save(base / "imgs" / "0" / "sample_1.png")
    with pytest.raises(LRAFormatError, match=r"sample_1\.png: image is 8x9, expected 8x8"):
        Pathfinder("train", root=tmp_path, resolution=8)
    with pytest.raises(FileNotFoundError, match=r"pathfinder32/curv_contour_length_14(.|\n)*metadata/<n>\.npy"):
        Pathfinder("train", root=tmp_path, resolution=32)


# -- the cache ---------------------------------------------------------------------------------

TASKS = {
    "listops": (write_listops, lambda root, **kw: ListOps("train", root=root, l_max=16, **kw), "listops", "parse_listops_file", "basic_train.tsv"),
    "text": (write_imdb, lambda root, **kw: Text("train", root=root, l_max=32, min_freq=1, **kw), "text", "parse_imdb", "aclImdb/train/pos/0_8.txt"),
    "retrieval": (write_aan, lambda root, **kw: Retrieval("train", root=root, l_max=8, **kw), "retrieval", "parse_aan_file", "aan/new_aan_pairs.train.tsv"),
    "image": (write_cifar, lambda root, **kw: Image("train", root=root, **kw), "image", "read_cifar_batch", "cifar-10-batches-py/data_batch_2"),
    "pathfinder": (lambda r: write_pathfinder(r, resolution=8, n=10), lambda root, **kw: Pathfinder("train", root=root, resolution=8, **kw),
                   "pathfinder", "read_png", None),
}


def _items(ds):
    return [tuple(t.clone() for t in ds[i]) for i in range(len(ds))]


def _refuse(*args, **kwargs):
    raise AssertionError("the source was parsed again")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_second_construction_reads_the_cache(tmp_path, monkeypatch, task):
    write, make, module, parser, _ = TASKS[task]
    write(tmp_path)
    first = _items(make(tmp_path))
    cache = tmp_path / ".ssm_cache"
    entries = [p for p in cache.rglob("manifest.json")]
    assert len(entries) == 1 and not [p for p in cache.rglob("*.tmp")]
    monkeypatch.setattr(importlib.import_module(f"ssm.data.lra.{module}"), parser, _refuse)
    second = _items(make(tmp_path))
    assert all(all(torch.equal(a, b) for a, b in zip(u, v, strict=True)) for u, v in zip(first, second, strict=True))
    assert len(first) == len(second)


@pytest.mark.parametrize("task", ["listops", "text", "retrieval", "image"])
def test_changed_source_invalidates_the_cache(tmp_path, monkeypatch, task):
    write, make, module, parser, rel = TASKS[task]
    write(tmp_path)
    make(tmp_path)
    path = tmp_path / (f"listops/{rel}" if task == "listops" else rel)
    if task == "image":
        write_cifar(tmp_path, seed=1)  # same sizes, new content and mtime
    else:
        with open(path, "a") as f:
            f.write({"listops": "( ( ( [MAX 3 ) 4 ) ] )\t4\n", "text": " more", "retrieval": "0\tA\tB\tab\tba\n"}[task])
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    monkeypatch.setattr(importlib.import_module(f"ssm.data.lra.{module}"), parser, _refuse)
    with pytest.raises(AssertionError, match="parsed again"):
        make(tmp_path)


def test_pathfinder_cache_invalidated_by_new_metadata(tmp_path, monkeypatch):
    base, _, _ = write_pathfinder(tmp_path, resolution=8, n=10)
    assert len(Pathfinder("train", root=tmp_path, resolution=8, val_split=0, test_split=0)) == 10
    meta = base / "metadata" / "1.npy"
    meta.write_text("\n".join(meta.read_text().splitlines()[:-1]) + "\n")  # drop one image
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(Pathfinder("train", root=tmp_path, resolution=8, val_split=0, test_split=0)) == 9


def test_settings_select_another_cache_entry_and_pickling(tmp_path):
    write_listops(tmp_path)
    a = ListOps("train", root=tmp_path, l_max=16)
    b = ListOps("train", root=tmp_path, l_max=8)
    assert len(list((tmp_path / ".ssm_cache" / "listops").iterdir())) == 2
    assert a[0][0].shape == (16,) and b[0][0].shape == (8,)
    blob = pickle.dumps(a)  # what DataLoader workers receive: paths, not arrays
    assert len(blob) < 4000
    c = pickle.loads(blob)
    assert torch.equal(c[1][0], a[1][0])
    loader = torch.utils.data.DataLoader(a, batch_size=2)
    x, y, n = next(iter(loader))
    assert x.shape == (2, 16) and y.shape == (2,) and n.tolist() == [5, 9]
    alt = tmp_path / "elsewhere"
    ListOps("train", root=tmp_path, l_max=16, cache_dir=alt)
    assert list(alt.glob("listops/*/manifest.json"))
