"""Labelled sequences from user files (ssm.data.classify): every format written by the tests,
shapes, inferred counts and labels, the stratified seeded val split, missing values, and errors
that name the file and line."""

import numpy as np
import pytest
import torch
from helpers import ROUNDOFF

from ssm.data.audio import write_wav
from ssm.data.classify import ClassificationFiles, read_labelled, stratified_split

# elementwise: float32 values read from files against the test's own float64 arithmetic, rounded
CLOSE32 = {"rtol": ROUNDOFF[torch.float32], "atol": ROUNDOFF[torch.float32]}


def write_ts(path, cases, labels, *, declared=None, univariate=None, equal=True):
    """cases: list of (C, L_i) lists; labels: strings."""
    dims = len(cases[0])
    lines = ["# written by the tests", "@problemName toy", "@timeStamps false", "@missing false",
             f"@univariate {str(dims == 1 if univariate is None else univariate).lower()}"]
    if dims > 1:
        lines.append(f"@dimensions {dims}")
    lines += [f"@equalLength {str(equal).lower()}", f"@classLabel true {' '.join(declared or sorted(set(labels)))}", "@data"]
    for case, label in zip(cases, labels, strict=True):
        lines.append(":".join(",".join(str(v) for v in dim) for dim in case) + f":{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ts_univariate_equal_length_string_labels(tmp_path):
    path = write_ts(tmp_path / "a.ts", [[[1, 2, 3, 4]], [[0, 0, 1, 1]], [[5, 4, 3, 2]]], ["up", "flat", "down"],
                    declared=["up", "down", "flat"])
    seqs = read_labelled(path)
    assert [v.shape for v in seqs.values] == [(4, 1)] * 3
    assert seqs.labels == ["up", "flat", "down"] and seqs.declared == ("up", "down", "flat")
    np.testing.assert_array_equal(seqs.values[2][:, 0], [5, 4, 3, 2])


def test_ts_multivariate_unequal_lengths_padded_with_lengths(tmp_path):
    cases = [[[1, 2, 3], [4, 5, 6]], [[1, 2], [3, 4]], [[9, 8, 7, 6, 5], [1, 1, 1, 1, 1]], [[0, 1], [1, 0]]]
    train = write_ts(tmp_path / "tr.ts", cases, ["b", "a", "b", "a"], equal=False)
    test = write_ts(tmp_path / "te.ts", cases[:2], ["b", "a"], equal=False)
    data = ClassificationFiles("train", train=train, test=test, val=train, standardize=False)
    assert (data.d_input, data.d_output, data.labels) == (2, 2, ["a", "b"])
    assert data.x.shape == (4, 5, 2)
    x, y, length = data[1]
    assert length == 2 and y == 0  # "a"
    torch.testing.assert_close(x[:2], torch.tensor([[1.0, 3.0], [2.0, 4.0]]), **CLOSE32)
    assert (x[2:] == 0).all()  # padding
    assert data.describe()["labels"] == ["a", "b"]


def test_ts_missing_values_policy(tmp_path):
    path = tmp_path / "m.ts"
    path.write_text("@problemName m\n@univariate true\n@classLabel true x y\n@data\n1,2,3:x\n1,?,3:y\n")
    with pytest.raises(ValueError, match=r"m\.ts, line 6: missing value at step 2"):
        read_labelled(path)
    np.testing.assert_allclose(read_labelled(path, missing="interpolate").values[1][:, 0], [1, 2, 3], rtol=ROUNDOFF[torch.float64])
    np.testing.assert_allclose(read_labelled(path, missing="zero").values[1][:, 0], [1, 0, 3], rtol=ROUNDOFF[torch.float64])


@pytest.mark.parametrize("text, match", [
    ("@univariate true\n@classLabel true x y\n@data\n1,2,3:x\n1,a,3:y\n", r"line 5, dimension 1, value 2: 'a' is not a number"),
    ("@dimensions 2\n@classLabel true x y\n@data\n1,2:3,4:x\n1,2,3:y\n", r"line 5: 1 dimensions, expected 2"),
    ("@dimensions 2\n@classLabel true x y\n@data\n1,2:3,4,5:x\n", r"line 4: ragged case"),
    ("@univariate true\n@classLabel true x y\n@data\n1,2:z\n", r"line 4: label 'z' is not one of the @classLabel"),
    ("@univariate true\n1,2:x\n", r"line 2: expected an @-header line"),
])
def test_ts_malformed_lines_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.ts, " + match):
        read_labelled(path)


def test_unknown_label_in_test_names_file_and_line(tmp_path):
    train = write_ts(tmp_path / "tr.ts", [[[1, 2]], [[2, 1]], [[1, 1]], [[2, 2]]], ["a", "b", "a", "b"])
    test = write_ts(tmp_path / "te.ts", [[[1, 2]], [[2, 1]]], ["a", "c"], declared=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"te\.ts, line 10: label 'c' is not one of the 2 training labels"):
        ClassificationFiles("test", train=train, test=test, val=train)


def test_npz_with_lengths_and_numeric_labels(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 7, 3))
    np.savez(tmp_path / "d.npz", x=x, y=np.array([2, 10, 2, 10, 1, 1]), lengths=np.array([7, 5, 7, 7, 3, 7]))
    data = ClassificationFiles("val", train=tmp_path / "d.npz", test=None, val=tmp_path / "d.npz", standardize=False)
    assert data.labels == ["1", "2", "10"]  # numeric order, kept as text
    assert data.x.shape == (6, 7, 3) and data.lengths.tolist() == [7, 5, 7, 7, 3, 7]
    assert data.y.tolist() == [1, 2, 1, 2, 0, 0]
    torch.testing.assert_close(data.x[1, :5], torch.from_numpy(x[1, :5]).float(), **CLOSE32)
    assert (data.x[1, 5:] == 0).all()
    np.savez(tmp_path / "bad.npz", x=x, y=np.zeros(5))
    with pytest.raises(ValueError, match=r"bad\.npz: y has shape \(5,\), expected \(6,\)"):
        read_labelled(tmp_path / "bad.npz")


def test_csv_wide_and_long_layouts(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("label,t0,t1,t2\ncat,1,2,3\ndog,4,5,\ncat,7,8,9\n")
    seqs = read_labelled(wide)
    assert [len(v) for v in seqs.values] == [3, 2, 3] and seqs.labels == ["cat", "dog", "cat"]
    long = tmp_path / "long.csv"
    long.write_text("id,time,a,b,label\ns1,1,1,10,cat\ns2,0,5,50,dog\ns1,0,0,0,cat\ns1,2,2,20,cat\ns2,1,6,60,dog\n")
    seqs = read_labelled(long, id_column="id")
    assert seqs.ids == ["s1", "s2"] and seqs.labels == ["cat", "dog"]
    np.testing.assert_array_equal(seqs.values[0], [[0, 0], [1, 10], [2, 20]])  # sorted by time
    np.testing.assert_array_equal(seqs.values[1], [[5, 50], [6, 60]])
    bad = tmp_path / "badlong.csv"
    bad.write_text("id,time,a,label\ns1,0,1,cat\ns1,1,2,dog\n")
    with pytest.raises(ValueError, match=r"badlong\.csv, line 3: id 's1' has label 'dog' here but 'cat' on line 2"):
        read_labelled(bad, id_column="id")
    bad.write_text("label,t0,t1\ncat,1,2\ndog,1,x\n")
    with pytest.raises(ValueError, match=r"badlong\.csv, line 3, column 3: 'x' is not a number"):
        read_labelled(bad)
    bad.write_text("label,t0,t1\ncat,1,2\ndog,1\n")
    with pytest.raises(ValueError, match=r"badlong\.csv, line 3: 2 fields, expected 3"):
        read_labelled(bad)


def test_wav_class_folders_resampled_and_padded(tmp_path):
    root = tmp_path / "wavs"
    t = torch.arange(800) / 8000
    for label, freq in (("low", 200.0), ("high", 1000.0)):
        for k, n in enumerate((800, 600)):
            (root / label).mkdir(parents=True, exist_ok=True)
            write_wav(root / label / f"{k}.wav", 0.5 * torch.sin(2 * torch.pi * freq * t[:n])[None], 8000)
    data = ClassificationFiles("val", train=root, val=root, rate=4000, standardize=False)
    assert data.labels == ["high", "low"] and data.d_input == 1
    assert data.x.shape == (4, 400, 1) and data.lengths.tolist() == [400, 300, 400, 300]  # resampled to half
    assert data.y.tolist() == [0, 0, 1, 1]


def test_stratified_split_is_seeded_and_stratified():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = stratified_split(y, 0.1, seed=3)
    assert np.bincount(y[va]).tolist() == [5, 3, 2]
    assert set(tr) | set(va) == set(range(100)) and not set(tr) & set(va)
    assert np.array_equal(stratified_split(y, 0.1, seed=3)[1], va)
    assert not np.array_equal(stratified_split(y, 0.1, seed=4)[1], va)


def test_held_out_split_and_train_only_standardisation(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(40, 16, 2))
    y = np.array(["a", "b"] * 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    kw = dict(train=tmp_path / "d.npz", test=tmp_path / "d.npz", val_fraction=0.25, seed=7)
    train, val = ClassificationFiles("train", **kw), ClassificationFiles("val", **kw)
    assert (len(train), len(val)) == (30, 10) and val.y.tolist().count(0) == 5
    assert not set(train.ids) & set(val.ids)
    raw_train = x[[int(i) for i in train.ids]].reshape(-1, 2)
    # fitted on the training split only
    np.testing.assert_allclose(train.mean, raw_train.mean(0), rtol=ROUNDOFF[torch.float64])
    torch.testing.assert_close(train.x.reshape(-1, 2).mean(0), torch.zeros(2), atol=ROUNDOFF[torch.float32], rtol=0)
    assert [ClassificationFiles("val", **kw).ids] == [val.ids]


def test_unlabelled_ts_reads_for_prediction_but_not_for_training(tmp_path):
    path = tmp_path / "new.ts"
    path.write_text("@problemName new\n@univariate true\n@classLabel false\n@data\n1,2,3\n4,5\n")
    seqs = read_labelled(path)
    assert seqs.labels == [None, None] and [len(v) for v in seqs.values] == [3, 2]
    with pytest.raises(ValueError, match=r"new\.ts, line 5: no label; the training file must label every case"):
        ClassificationFiles("train", train=path, val=path)
    stamped = tmp_path / "stamped.ts"
    stamped.write_text("@timeStamps true\n@classLabel true a\n@data\n(0,1),(1,2):a\n")
    with pytest.raises(ValueError, match=r"stamped\.ts: @timeStamps true is not supported"):
        read_labelled(stamped)
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(ValueError, match=r"cannot tell the format from the extension '\.txt'"):
        read_labelled(tmp_path / "x.txt")
