"""The dataset pipeline: featurize_dataset, the zarr store, resume, Dask, bad data, the CLI."""

from __future__ import annotations

import functools
import json
import re
import select
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.db import connect

import atomdesc
import atomdesc.io
from atomdesc import examples, pipeline
from atomdesc.io import FrameReadError, FrameSource, Position
from atomdesc.store import StoreWriter

HYPERS = json.loads(examples.ACSF_N2P2.read_text())


@pytest.fixture(scope="module")
def frames():
    """A small, mixed slice of the bundled examples (molecules and periodic cells)."""
    everything = ase.io.read(examples.STRUCTURES, ":")
    return everything[:12] + everything[-12:]


@pytest.fixture
def dataset(tmp_path, frames):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames)
    return path


@pytest.fixture(scope="module")
def d():
    return atomdesc.descriptor_from_hypers(HYPERS)


def store_arrays(path: Path) -> dict[str, bytes]:
    """Every file of a store (data and metadata) as bytes, by relative path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("append_bytes, appends", [(0, 5), (None, 1)])
def test_round_trip_features_and_gradients(tmp_path, dataset, frames, d, monkeypatch,
                                           append_bytes, appends):
    if append_bytes is not None:  # 0: every computed chunk appended on its own
        monkeypatch.setattr(pipeline, "APPEND_BYTES", append_bytes)
    out = tmp_path / "out.zarr"
    summary = atomdesc.featurize_dataset(dataset, d, out, gradients=True,
                                         strain_gradients=True, chunk_size=5, progress=False)
    assert summary.structures == len(frames) and summary.atoms == sum(map(len, frames))
    store = atomdesc.open_features(out)
    # 24 structures, 5 per computed chunk; by default the chunks (far below
    # the append budget) are written as one append
    assert store.progress.chunks == appends
    expected = d.compute(frames, gradients=True, strain_gradients=True)
    assert len(store) == len(frames)
    np.testing.assert_array_equal(store.features[:],
                                  np.concatenate([r.features for r in expected]))
    np.testing.assert_array_equal(store.offsets,
                                  np.cumsum([0] + [len(a) for a in frames]))
    for i, r in enumerate(expected):
        got = store[i]
        np.testing.assert_array_equal(got.features, r.features)
        np.testing.assert_array_equal(got.centers, r.centers)
        np.testing.assert_array_equal(got.gradient_pairs, r.gradient_pairs)
        np.testing.assert_array_equal(got.gradient_values, r.gradient_values)
        np.testing.assert_array_equal(got.strain_gradients, r.strain_gradients)
        assert got.n_atoms == len(frames[i])
        assert store.provenance(i) == (str(dataset), i)
    # metadata: hypers, labels, version, inputs
    assert store.descriptor() == d
    assert store.feature_labels == [tuple(json.loads(json.dumps(lab))) for lab in d.feature_labels]
    assert store.attrs["atomdesc_version"] == atomdesc.__version__
    assert store.inputs == [str(dataset)]
    np.testing.assert_array_equal(store.frame_index, np.arange(len(frames)))
    # the flat gradient arrays refer to rows of the flat features
    rows = store.gradient_pairs[:, 0]
    assert rows.min() == 0 and rows.max() == store.features.shape[0] - 1


def test_average_and_center_species(tmp_path, dataset, frames, d):
    out = tmp_path / "mean.zarr"
    atomdesc.featurize_dataset(dataset, d, out, gradients=True, average="mean", progress=False)
    store = atomdesc.open_features(out)
    assert store.features.shape == (len(frames), d.n_features)
    for i in (0, len(frames) - 1):
        r = d.compute(frames[i], gradients=True).reduce("mean")
        np.testing.assert_array_equal(store[i].features, r.features)
        np.testing.assert_array_equal(store[i].gradient_values, r.gradient_values)

    out = tmp_path / "si.zarr"
    atomdesc.featurize_dataset(dataset, d, out, center_species=["Si"], progress=False)
    store = atomdesc.open_features(out)
    n_si = [int((a.numbers == 14).sum()) for a in frames]
    np.testing.assert_array_equal(np.diff(store.offsets), n_si)
    i = next(i for i, a in enumerate(frames) if (a.numbers == 14).any())
    si = np.flatnonzero(frames[i].numbers == 14)
    np.testing.assert_array_equal(store[i].features, d.compute(frames[i], centers=si).features)


def test_resume_after_interruption(tmp_path, dataset, frames, d, monkeypatch):
    monkeypatch.setattr(pipeline, "APPEND_BYTES", 0)  # one append per computed chunk
    reference = tmp_path / "ref.zarr"
    atomdesc.featurize_dataset(dataset, d, reference, gradients=True, chunk_size=4,
                               progress=False)

    out = tmp_path / "out.zarr"
    calls = {"n": 0}
    save = StoreWriter._save_progress

    def killed_on_third_chunk(self):
        calls["n"] += 1
        if calls["n"] == 3:  # the third chunk's data are on disk, its record is not
            raise KeyboardInterrupt
        save(self)

    monkeypatch.setattr(StoreWriter, "_save_progress", killed_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        atomdesc.featurize_dataset(dataset, d, out, gradients=True, chunk_size=4,
                                   progress=False)
    monkeypatch.setattr(StoreWriter, "_save_progress", save)

    with pytest.raises(ValueError, match="incomplete"):
        atomdesc.open_features(out)
    partial = atomdesc.open_features(out, allow_incomplete=True)
    assert len(partial) == 8 and partial.progress.chunks == 2
    np.testing.assert_array_equal(partial[7].features, atomdesc.open_features(reference)[7].features)
    # a run killed mid-write (kill -9) leaves zarr's temporary files: resuming removes them
    leftovers = [out / "zarr.0123456789abcdef0123456789abcdef.partial",
                 out / "gradient_values" / "c.0.0.0.fedcba9876543210fedcba9876543210.partial"]
    for p in leftovers:
        p.write_bytes(b"half a chunk")

    summary = atomdesc.featurize_dataset(dataset, d, out, gradients=True, chunk_size=4,
                                         progress=False)
    assert summary.resumed and summary.computed_structures == len(frames) - 8
    assert not any(p.exists() for p in leftovers)
    assert store_arrays(out) == store_arrays(reference)  # every file, and no other

    # a finished store: nothing to do, unless overwrite
    again = atomdesc.featurize_dataset(dataset, d, out, gradients=True, progress=False)
    assert again.up_to_date and again.computed_structures == 0
    fresh = atomdesc.featurize_dataset(dataset, d, out, gradients=True, overwrite=True,
                                       progress=False)
    assert fresh.computed_structures == len(frames)
    # a different computation is refused without overwrite
    with pytest.raises(ValueError, match="other options"):
        atomdesc.featurize_dataset(dataset, d, out, progress=False)


def test_resume_with_several_chunks_per_append(tmp_path, dataset, frames, d, monkeypatch):
    """Appends gather computed chunks; an interrupted run resumes at the last append."""
    chunk = pipeline.compute_chunk(d, frames[:3], pipeline._check_options(d, True, False, None,
                                                                         None))
    # about two chunks of 3 structures per append (the first structures are alike)
    monkeypatch.setattr(pipeline, "APPEND_BYTES", 2 * chunk.nbytes)
    reference = tmp_path / "ref.zarr"
    atomdesc.featurize_dataset(dataset, d, reference, gradients=True, chunk_size=3,
                               progress=False)
    full = atomdesc.open_features(reference)
    assert 1 < full.progress.chunks < 8  # 8 computed chunks, fewer appends

    out = tmp_path / "out.zarr"
    save = StoreWriter._save_progress
    records: list[int] = []

    def killed_on_second_append(self):
        if len(records) == 1:
            raise KeyboardInterrupt
        records.append(self.progress.structures)
        save(self)

    monkeypatch.setattr(StoreWriter, "_save_progress", killed_on_second_append)
    with pytest.raises(KeyboardInterrupt):
        atomdesc.featurize_dataset(dataset, d, out, gradients=True, chunk_size=3,
                                   progress=False)
    monkeypatch.setattr(StoreWriter, "_save_progress", save)
    partial = atomdesc.open_features(out, allow_incomplete=True)
    assert len(partial) == records[0] and len(partial) % 3 == 0 and len(partial) >= 6
    summary = atomdesc.featurize_dataset(dataset, d, out, gradients=True, chunk_size=3,
                                         progress=False)
    assert summary.resumed and summary.computed_structures == len(frames) - records[0]
    assert store_arrays(out) == store_arrays(reference)


def test_dask_local_cluster_gives_identical_store(tmp_path, dataset, d):
    distributed = pytest.importorskip("dask.distributed")
    local = tmp_path / "local.zarr"
    atomdesc.featurize_dataset(dataset, d, local, gradients=True, strain_gradients=True,
                               chunk_size=5, progress=False)
    remote = tmp_path / "dask.zarr"
    hypers = tmp_path / "h.json"
    hypers.write_text(json.dumps(HYPERS))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            atomdesc.featurize_dataset(dataset, d, remote, client, gradients=True,
                                       strain_gradients=True, chunk_size=5, progress=False)
        # the CLI's --scheduler path: a separate process connects by address
        done_on_workers = cluster.scheduler.task_prefixes["compute_chunk"].state_counts
        before = done_on_workers["memory"]
        cli = tmp_path / "cli.zarr"
        done = run_cli("featurize", str(dataset), "--hypers", str(hypers), "-o", str(cli),
                       "--gradients", "--strain-gradients", "--chunk-size", "5",
                       "--scheduler", cluster.scheduler_address)
        assert done.returncode == 0, done.stderr
        assert "featurized 24 structures" in done.stdout
        assert done_on_workers["memory"] - before == 5  # its 5 chunks ran on the workers
    assert store_arrays(remote) == store_arrays(local)
    assert store_arrays(cli) == store_arrays(local)


@pytest.mark.parametrize("parse_in_child", [False, True], ids=["thread", "child process"])
def test_bad_file_and_bad_frame(tmp_path, frames, d, monkeypatch, parse_in_child):
    if parse_in_child:
        monkeypatch.setattr(pipeline, "PARSE_IN_CHILD_BYTES", 0)
        monkeypatch.setattr(atomdesc.io, "_READ_WHILE_CHILD_STARTS", False)
    good = tmp_path / "good.extxyz"
    ase.io.write(good, frames[:3])
    bad_frame = tmp_path / "bad_frame.extxyz"
    iron = molecule("H2O")
    iron.symbols[0] = "Fe"  # not in the descriptor's species
    ase.io.write(bad_frame, [frames[0], iron, frames[1]])
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("3\nnot an extxyz comment\nthis is not a structure\n")

    with pytest.raises(FrameReadError, match=r"bad_frame\.extxyz, frame 1: .*Fe"):
        atomdesc.featurize_dataset([good, bad_frame], d, tmp_path / "a.zarr", progress=False)
    # the chunks gathered before the bad frame are written before the error
    with pytest.raises(FrameReadError, match=r"bad_frame\.extxyz, frame 1: .*Fe"):
        atomdesc.featurize_dataset([good, bad_frame], d, tmp_path / "a2.zarr", chunk_size=2,
                                   progress=False)
    before = atomdesc.open_features(tmp_path / "a2.zarr", allow_incomplete=True)
    assert len(before) == 4 and before.provenance(3) == (str(bad_frame), 0)
    with pytest.raises(FrameReadError, match=r"garbage\.extxyz, frame 0: cannot read"):
        atomdesc.featurize_dataset([garbage, good], d, tmp_path / "b.zarr", progress=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        atomdesc.featurize_dataset(tmp_path / "missing.xyz", d, tmp_path / "c.zarr")

    out = tmp_path / "skip.zarr"
    summary = atomdesc.featurize_dataset([good, bad_frame, garbage], d, out, skip_invalid=True,
                                         chunk_size=2, progress=False)
    store = atomdesc.open_features(out)
    assert len(store) == 5 and len(summary.skipped) == 2
    assert [(s["file"], s["index"]) for s in store.skipped] == [(str(bad_frame), 1),
                                                                (str(garbage), 0)]
    assert [store.provenance(i) for i in range(5)] == [
        (str(good), 0), (str(good), 1), (str(good), 2), (str(bad_frame), 0), (str(bad_frame), 2)]
    np.testing.assert_array_equal(store[4].features, d.compute(frames[1]).features)


def test_many_formats_and_globs(tmp_path, d):
    si = bulk("Si", "diamond", 5.43)
    water = molecule("H2O")
    ase.io.write(tmp_path / "a.cif", si)
    ase.io.write(tmp_path / "POSCAR", si * (1, 1, 2), format="vasp")
    with connect(tmp_path / "set.db") as db:
        db.write(water)
        db.write(si)
    ase.io.write(tmp_path / "m1.xyz", water)
    ase.io.write(tmp_path / "m2.xyz", [water, water])
    inputs = [tmp_path / "a.cif", tmp_path / "POSCAR", tmp_path / "set.db",
              str(tmp_path / "m*.xyz")]
    out = tmp_path / "out.zarr"
    summary = atomdesc.featurize_dataset(inputs, d, out, progress=False)
    store = atomdesc.open_features(out)
    assert summary.structures == 7 and len(store.inputs) == 5
    expected = [si, si * (1, 1, 2), water, si, water, water, water]
    for i, atoms in enumerate(expected):
        np.testing.assert_allclose(store[i].features, d.compute(atoms).features, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("name, fmt", [("a.extxyz", "extxyz"), ("a.xyz", "extxyz"),
                                       ("a.XYZ.gz", "extxyz"), ("a.cif", None),
                                       ("POSCAR", None), ("a.xyz.cif", None)])
def test_format_from_name_agrees_with_ase(tmp_path, name, fmt):
    """Where the name settles the format, it is the format ASE finds reading the file."""
    from ase.io.formats import filetype

    from atomdesc.io import format_from_name

    path = tmp_path / name
    ase.io.write(path, bulk("Si", "diamond", 5.43), format=fmt or filetype(str(path), read=False))
    assert format_from_name(str(path)) == fmt
    if fmt is not None:
        assert filetype(str(path)) == fmt
        path.write_text("")
        assert format_from_name(str(path)) is None  # ASE's error for an empty file


def test_in_memory_structures_and_empty_input(tmp_path, d):
    structures = [molecule("CH4"), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])]
    out = tmp_path / "mem.zarr"
    atomdesc.featurize_dataset(structures, d.hypers, out, progress=False)
    store = atomdesc.open_features(out)
    assert store.provenance(1) == ("<memory>", 1)
    np.testing.assert_array_equal(store[0].features, d.compute(structures[0]).features)

    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    summary = atomdesc.featurize_dataset(empty, d, tmp_path / "e.zarr", progress=False,
                                         skip_invalid=True)
    assert summary.structures == 0


def test_progress_bar_counts_structures_and_atoms_per_second(tmp_path, dataset, frames, d,
                                                             capsys):
    atomdesc.featurize_dataset(dataset, d, tmp_path / "bar.zarr", progress=True, chunk_size=5)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert f"{len(frames)}/" not in bar and f"{len(frames)} structures" in bar  # no total: lazy
    assert re.search(r"[\d,]+ atoms/s", bar), bar
    atomdesc.featurize_dataset(dataset, d, tmp_path / "quiet.zarr")  # stderr not a terminal
    assert capsys.readouterr().err == ""


def test_store_refuses_to_delete_other_directories(tmp_path, dataset, d):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match="not an atomdesc feature store"):
        atomdesc.featurize_dataset(dataset, d, other, overwrite=True, progress=False)
    assert (other / "thesis.tex").exists()


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "atomdesc.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_cli_end_to_end(tmp_path, dataset, frames, d):
    hypers = tmp_path / "h.json"
    hypers.write_text(json.dumps(HYPERS))
    out = tmp_path / "out.zarr"
    args = ["featurize", str(dataset), "-d", "acsf", "--hypers", str(hypers), "-o", str(out),
            "--gradients", "--chunk-size", "7", "--threads", "2"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"featurized {len(frames)} structures" in done.stdout
    assert "atomdesc.open_features" in done.stdout and str(out) in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    store = atomdesc.open_features(out)
    assert store.has_gradients and not store.has_strain_gradients
    np.testing.assert_array_equal(store[3].gradient_values,
                                  d.compute(frames[3], gradients=True).gradient_values)

    again = run_cli(*args)
    assert again.returncode == 0 and "already complete" in again.stdout
    quiet = run_cli(*args, "--overwrite", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""

    bad = tmp_path / "bad.extxyz"
    bad.write_text("2\n\nH 0 0 0\n")
    failed = run_cli("featurize", str(bad), "--hypers", str(hypers), "-o",
                     str(tmp_path / "bad.zarr"))
    assert failed.returncode == 1
    assert "bad.extxyz, frame 0" in failed.stderr and "--skip-invalid" in failed.stderr


def test_cli_example_command(tmp_path):
    done = run_cli("example", "-o", "ex.zarr", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "202 structures" in done.stdout and "open_features('ex.zarr')" in done.stdout
    store = atomdesc.open_features(tmp_path / "ex.zarr")
    assert len(store) == 202 and store.has_gradients


# ------------------------------------------------ the store's format and writer

BLOSC_SHUFFLE = {"name": "blosc", "configuration": {"typesize": 8, "cname": "lz4", "clevel": 1,
                                                    "shuffle": "shuffle", "blocksize": 0}}


@pytest.mark.parametrize("compressor, separator", [("lz4", "."), ("zstd", "."), (None, "."),
                                                   ("blosc-shuffle", "/"), ("lz4", "/")])
@pytest.mark.parametrize("tail, dtype", [((), "int64"), ((2,), "int64"), ((3, 5), "float64")])
def test_row_arrays_write_the_files_zarr_writes(tmp_path, compressor, separator, tail, dtype):
    """The store is written without zarr: every file must be byte for byte zarr's own.

    If this fails after a zarr or numcodecs upgrade, ``atomdesc.rowarrays``
    no longer writes what zarr writes (and reads): fix it before releasing.
    """
    import zarr
    from zarr.core.metadata.v3 import ArrayV3Metadata

    from atomdesc import rowarrays

    rng = np.random.default_rng(1)
    data = (rng.normal(scale=1e3, size=(45, *tail)) * (rng.random((45, *tail)) < 0.2)).astype(dtype)
    data[8:16] = 0  # a chunk of zeros is written too (zarr: write_empty_chunks)
    if compressor == "blosc-shuffle":  # what stores of atomdesc 0.1.0 (git 446f110) use
        codecs = [{"name": "bytes", "configuration": {"endian": "little"}}, BLOSC_SHUFFLE]
    else:
        codecs = rowarrays.codec_metadata(compressor, dtype)
    ours = tmp_path / "ours.zarr"
    ours.mkdir()
    rowarrays.write_json(ours / "zarr.json", rowarrays.group_metadata({"x": [1.5, "a"]}))
    meta = rowarrays.array_metadata((1000, *tail), (8, *tail), dtype, codecs, separator)
    if separator == ".":
        array = rowarrays.RowArray.create(ours / "a", (1000, *tail), (8, *tail), dtype, codecs)
        assert array.meta == meta
    else:  # an array of an earlier store (chunk files in directories), appended to
        (ours / "a").mkdir()
        rowarrays.write_json(ours / "a" / "zarr.json", meta)
        array = rowarrays.RowArray(ours / "a", 0)
    # appends of every kind: inside a chunk, across chunks, several pieces, whole chunks
    array.append([data[:3]])
    array.append([data[3:5], data[5:20]])
    reopened = rowarrays.RowArray(ours / "a", 20)  # as a resumed run: the partial chunk read back
    reopened.append([data[20:24], data[24:40], data[40:41]])
    reopened.append([data[41:45]])
    reopened.resize(45)

    theirs = tmp_path / "theirs.zarr"
    group = zarr.open_group(str(theirs), mode="w", zarr_format=3, attributes={"x": [1.5, "a"]})
    meta = ArrayV3Metadata.from_dict(meta)
    z = group.create_array("a", shape=meta.shape, chunks=(8, *tail), dtype=dtype,
                           compressors=meta.codecs[1:] or None, fill_value=0,
                           chunk_key_encoding={"name": "default", "separator": separator},
                           config={"write_empty_chunks": True})
    z[:45] = data
    z.resize((45, *tail))
    assert store_arrays(ours) == store_arrays(theirs)
    np.testing.assert_array_equal(zarr.open_array(str(ours / "a"), mode="r")[:], data)


def test_only_files_holding_valid_data_are_replaced_atomically(tmp_path, monkeypatch):
    """A file that may hold valid rows is written under a temporary name and renamed;
    a chunk file wholly after the valid rows (and a new array's metadata) in place."""
    from atomdesc import rowarrays

    writes = []
    write_file = rowarrays.write_file
    monkeypatch.setattr(rowarrays, "write_file", lambda path, data, atomic=True: (
        writes.append((path.relative_to(tmp_path).as_posix(), atomic)),
        write_file(path, data, atomic))[-1])
    array = rowarrays.RowArray.create(tmp_path / "a", (1000,), (8,), "int64",
                                      rowarrays.codec_metadata("lz4", "int64"))
    each = []
    array.append([np.arange(3)])  # a new chunk, partly filled
    each.append(set(writes))
    array.append([np.arange(3, 20)])  # fills chunk 0 (3 valid rows), chunk 1, half of 2
    each.append(set(writes) - set().union(*each))  # (files are written on several threads)
    array.resize(20)
    assert each == [{("a/zarr.json", False), ("a/c.0", False)},
                    {("a/c.0", True), ("a/c.1", False), ("a/c.2", False)}]
    assert writes[-1] == ("a/zarr.json", True) and len(writes) == 6
    np.testing.assert_array_equal(rowarrays.RowArray(tmp_path / "a", 20)._buffer[:4],
                                  np.arange(16, 20))
    assert not list(tmp_path.rglob("*.partial"))


def test_failed_chunk_write_records_nothing_and_leaves_no_write_running(tmp_path, d, frames,
                                                                        monkeypatch):
    import threading
    import time

    from atomdesc import rowarrays

    options = pipeline._check_options(d, True, False, None, None)
    chunk = pipeline.compute_chunk(d, frames[:4], options)
    writer = StoreWriter.create(tmp_path / "s.zarr", n_features=d.n_features, attrs={},
                                gradients=True, strain_gradients=False)
    running, lock = [0], threading.Lock()
    write_file = rowarrays.write_file

    def failing(path, data, atomic=True):
        with lock:
            running[0] += 1
        try:
            if "features" in path.parts:
                raise OSError(28, "No space left on device")
            time.sleep(0.05)  # the other arrays' files are still being written
            write_file(path, data, atomic)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(rowarrays, "write_file", failing)
    with pytest.raises(OSError, match="No space left"):
        writer.append(chunk, [(0, i) for i in range(4)], (0, 4), [])
    assert running[0] == 0
    assert writer.progress.chunks == 0 and writer.progress.structures == 0


def test_chunk_files_are_the_same_bytes_every_time(tmp_path, monkeypatch):
    """Blosc's internal threads (numcodecs uses them on the main thread) store a chunk's
    blocks in the order they finish; the store's files must not depend on that."""
    import numcodecs.blosc

    from atomdesc import rowarrays

    # numcodecs' default; importing zarr (as these tests do) turns the threads off
    monkeypatch.setattr(numcodecs.blosc, "use_threads", None)

    rng = np.random.default_rng(2)
    data = rng.normal(size=(4096, 3, 40)) * (rng.random((4096, 3, 40)) < 0.2)  # 3.9 MB
    files = set()
    for run in range(12):
        array = rowarrays.RowArray.create(tmp_path / str(run), (1 << 20, 3, 40), (4096, 3, 40),
                                          "float64", rowarrays.codec_metadata("lz4", "float64"))
        array.append([data])
        files.add((tmp_path / str(run) / "c.0.0.0").read_bytes())
    assert len(files) == 1


def test_store_written_by_previous_version_opens(d):
    """A store written by atomdesc 0.1.0 (git 446f110, through zarr, Blosc with shuffle).

    Made with ``featurize_dataset(frames[:5], d, path, gradients=True,
    chunk_size=2)`` on the first five bundled example structures.
    """
    store = atomdesc.open_features(Path(__file__).parent / "data" / "store_written_by_0.1.0.zarr")
    frames = ase.io.read(examples.STRUCTURES, ":5")
    expected = d.compute(frames, gradients=True)
    assert len(store) == 5 and store.has_gradients and store.descriptor() == d
    # the values were computed by the baseline kernels; another kernel variant
    # (FMA) may differ from them in the last bits, never more
    same = functools.partial(np.testing.assert_allclose, rtol=1e-13, atol=1e-13)
    same(store.features[:], np.concatenate([r.features for r in expected]))
    for i, r in enumerate(expected):
        got = store[i]
        same(got.features, r.features)
        np.testing.assert_array_equal(got.gradient_pairs, r.gradient_pairs)
        same(got.gradient_values, r.gradient_values)
        assert store.provenance(i) == ("<memory>", i)


#: featurize_dataset in a child process, one append per chunk of 3 structures,
#: pausing before each progress record (where a kill hurts most: data written,
#: not yet counted).
_KILLABLE = r"""
import json, sys, time
import atomdesc
from atomdesc import pipeline, store
pipeline.APPEND_BYTES = 0
save = store.StoreWriter._save_progress
def slow(self):
    time.sleep(0.05)
    save(self)
store.StoreWriter._save_progress = slow
atomdesc.featurize_dataset(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], gradients=True,
                           chunk_size=3, progress=False)
"""


def test_killed_process_resumes_to_the_same_store(tmp_path, dataset):
    import os
    import signal
    import time

    def run(out):
        return subprocess.Popen([sys.executable, "-c", _KILLABLE, str(dataset),
                                 json.dumps(HYPERS), str(out)])

    reference = tmp_path / "ref.zarr"
    assert run(reference).wait(timeout=300) == 0
    out = tmp_path / "out.zarr"
    child = run(out)
    deadline = time.monotonic() + 300
    chunks = 0
    while chunks < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
        try:
            chunks = json.loads((out / "zarr.json").read_text())["attributes"]["progress"]["chunks"]
        except (OSError, ValueError, KeyError):
            pass
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    partial = atomdesc.open_features(out, allow_incomplete=True)
    assert not partial.progress.complete and 3 <= partial.progress.chunks < 8
    assert run(out).wait(timeout=300) == 0
    assert store_arrays(out) == store_arrays(reference)



def test_last_chunk_gets_the_threads_no_other_chunk_uses(d, monkeypatch):
    """The last chunk runs on every idle thread, never on cores another chunk is using."""
    import threading

    started, release, threads = threading.Event(), threading.Event(), {}

    def compute_chunk(descriptor, structures, options, n_threads=1):
        threads[structures[0]] = n_threads
        if structures[0] == "first":
            started.set()
            assert release.wait(10)
        return n_threads

    monkeypatch.setattr(pipeline, "compute_chunk", compute_chunk)
    runner = pipeline._LocalRunner(d, 3)
    try:
        first = runner.submit(["first"], {}, last=False)
        assert started.wait(10)
        assert runner.submit(["last, beside another"], {}, last=True).result() == 2
        release.set()
        first.result()
        assert runner.submit(["last, alone"], {}, last=True).result() == 3
        assert runner.submit(["not last"], {}, last=False).result() == 1
    finally:
        release.set()
        runner.close()
    assert threads["first"] == 1


def test_chunks_close_at_the_atoms_or_the_estimated_bytes():
    from atomdesc.io import Frame

    def chunk_lengths(structures):
        frames = (Frame(a, 0, i) for i, a in enumerate(structures))
        estimate = pipeline.structure_bytes(116, True, False)
        return [len(c) for c, _ in pipeline._chunks(frames, 10_000, 512, 1, estimate)]

    # molecules: 3 atoms have at most 3 pairs each, so 512 atoms close a chunk
    assert chunk_lengths([molecule("H2O")] * 300) == [171, 129]
    # periodic: 64 pairs per atom assumed, 8 * 116 * (1 + 3 * 64) bytes an atom
    per_cell = 8 * 8 * 116 * (1 + 3 * 64)
    full = -(-pipeline.CHUNK_BYTES // per_cell)
    assert chunk_lengths([bulk("Si", cubic=True)] * 60)[0] == full


@pytest.mark.parametrize("average", [None, "mean"])
def test_chunk_of_mixed_structures_holds_each_structure_in_input_order(frames, d, average):
    """Batches of molecules are stored as computed, periodic cells between them in place."""
    bad = frames[0].copy()
    bad.numbers[0] = 79  # Au: not a species of the descriptor
    structures = [frames[-2], frames[0], frames[-1], frames[1], bad, frames[2]]
    options = pipeline._check_options(d, True, True, average, None)
    chunk = pipeline.compute_chunk(d, structures, options, n_threads=2)
    assert [pos for pos, _ in chunk.errors] == [4]
    good = [s for s in structures if s is not bad]
    expected = [d.compute(s, gradients=True, strain_gradients=True) for s in good]
    if average:
        expected = [r.reduce(average) for r in expected]
    np.testing.assert_array_equal(chunk.n_atoms, [len(s) for s in good])
    np.testing.assert_array_equal(chunk.n_rows, [len(r.features) for r in expected])
    np.testing.assert_array_equal(chunk.n_pairs, [len(r.gradient_pairs) for r in expected])
    row = np.r_[0, np.cumsum(chunk.n_rows)]
    pair = np.r_[0, np.cumsum(chunk.n_pairs)]
    features = np.concatenate(chunk.features)
    values = np.concatenate(chunk.gradient_values)
    strain = np.concatenate(chunk.strain_gradients)
    for k, r in enumerate(expected):
        rows, pairs = slice(row[k], row[k + 1]), slice(pair[k], pair[k + 1])
        np.testing.assert_array_equal(features[rows], r.features)
        np.testing.assert_array_equal(chunk.centers[rows], r.centers)
        np.testing.assert_array_equal(chunk.gradient_pairs[pairs] - [row[k], 0], r.gradient_pairs)
        np.testing.assert_array_equal(values[pairs], r.gradient_values)
        np.testing.assert_array_equal(strain[rows], r.strain_gradients)

    # the whole chunk computed at once (no invalid structure): the same blocks
    whole = pipeline.compute_chunk(d, good, options, n_threads=1)
    assert not whole.errors
    np.testing.assert_array_equal(np.concatenate(whole.features), features)
    np.testing.assert_array_equal(whole.gradient_pairs, chunk.gradient_pairs)
    np.testing.assert_array_equal(np.concatenate(whole.gradient_values), values)


@pytest.mark.parametrize("read_while_child_starts", [False, True])
def test_frames_parsed_in_a_child_process_are_those_parsed_here(tmp_path, frames, monkeypatch,
                                                                 read_while_child_starts):
    first, second = tmp_path / "first.extxyz", tmp_path / "second.xyz"
    ase.io.write(first, frames[:6])
    ase.io.write(second, frames[-3:])
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("3\nnot an extxyz comment\nthis is not a structure\n")
    source = FrameSource([first, garbage, second])
    starts = (Position(), Position(0, 4), Position(2, 1))
    expected = {start: list(source.frames(start)) for start in starts}
    monkeypatch.setattr(atomdesc.io, "_READ_WHILE_CHILD_STARTS", read_while_child_starts)
    if read_while_child_starts:
        # the child takes over after three frames read here (whenever it is ready)
        polls = []

        def ready_after_three(readers, *args):
            polls.append(1)
            return (readers, [], []) if len(polls) == 3 else ([], [], [])

        monkeypatch.setattr(select, "select", ready_after_three)
        starts = (Position(),)
    for start in starts:
        here, there = expected[start], list(source.frames(start, in_process=True))
        if read_while_child_starts:  # some frames read here, the others by the child
            kinds = {type(f.atoms).__name__ for f in there if f.atoms is not None}
            assert kinds == {"Atoms", "Structure"}
        assert [(f.file_number, f.index, f.error) for f in there] == [
            (f.file_number, f.index, f.error) for f in here]
        assert any(f.error for f in here) == (start.file_number < 2)
        for a, b in zip(here, there):
            if a.atoms is None:
                assert b.atoms is None
                continue
            assert len(b.atoms) == len(a.atoms)
            np.testing.assert_array_equal(b.atoms.numbers, a.atoms.numbers)
            np.testing.assert_array_equal(b.atoms.positions, a.atoms.positions)
            np.testing.assert_array_equal(b.atoms.cell[:], a.atoms.cell[:])
            np.testing.assert_array_equal(b.atoms.pbc, a.atoms.pbc)


def test_store_is_the_same_when_a_child_process_parses(tmp_path, dataset, monkeypatch):
    here, there = tmp_path / "here.zarr", tmp_path / "there.zarr"
    d = atomdesc.descriptor_from_hypers(HYPERS)
    atomdesc.featurize_dataset(dataset, d, here, gradients=True, chunk_size=5, progress=False)
    children = []
    popen = subprocess.Popen

    def recorded(*args, **kwargs):
        children.append(popen(*args, **kwargs))
        return children[-1]

    monkeypatch.setattr(pipeline, "PARSE_IN_CHILD_BYTES", 0)
    monkeypatch.setattr(atomdesc.io, "_READ_WHILE_CHILD_STARTS", False)  # the child reads all
    monkeypatch.setattr(subprocess, "Popen", recorded)
    atomdesc.featurize_dataset(dataset, d, there, gradients=True, chunk_size=5, progress=False)
    assert len(children) == 1 and children[0].returncode == 0
    assert store_arrays(there) == store_arrays(here)

    # a run that stops early (here: an invalid frame) stops its reading process
    bad = tmp_path / "bad.extxyz"
    iron = molecule("H2O")
    iron.symbols[0] = "Fe"
    ase.io.write(bad, [iron] + [molecule("H2O")] * 2000)
    with pytest.raises(FrameReadError, match="frame 0"):
        atomdesc.featurize_dataset(bad, d, tmp_path / "bad.zarr", chunk_size=1, progress=False)
    assert len(children) == 2 and children[1].poll() is not None


def test_frames_are_read_here_when_the_child_cannot_start(tmp_path, frames, monkeypatch):
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames)
    monkeypatch.setattr(atomdesc.io, "_CHILD", "raise SystemExit(3)")
    for read_while_child_starts in (False, True):
        monkeypatch.setattr(atomdesc.io, "_READ_WHILE_CHILD_STARTS", read_while_child_starts)
        got = list(FrameSource(path).frames(in_process=True))
        assert [f.index for f in got] == list(range(len(frames)))
        np.testing.assert_array_equal(got[-1].atoms.positions, frames[-1].positions)


def test_child_process_takes_over_between_single_frame_files(tmp_path, monkeypatch):
    """POSCAR files hold one frame, and ASE cannot start reading one at frame 1."""
    cells = [bulk("Si", "diamond", 5.43 + 0.01 * k) for k in range(4)]
    for k, cell in enumerate(cells):
        ase.io.write(tmp_path / f"POSCAR_{k}", cell, format="vasp")
    source = FrameSource(str(tmp_path / "POSCAR_*"), format="vasp")
    # starting after a file's only frame: nothing more from it, and no error
    assert [(f.file_number, f.index, f.error) for f in source.frames(Position(1, 1))] == [
        (2, 0, None), (3, 0, None)]
    polls = []

    def ready_at_once(readers, *args):
        polls.append(1)
        return readers, [], []

    monkeypatch.setattr(select, "select", ready_at_once)
    monkeypatch.setattr(atomdesc.io, "_READ_WHILE_CHILD_STARTS", True)
    got = list(source.frames(in_process=True))
    assert polls == [1]  # the child took over after the first file's frame
    assert [(f.file_number, f.index, f.error) for f in got] == [(k, 0, None) for k in range(4)]
    for frame, cell in zip(got, cells):
        np.testing.assert_allclose(frame.atoms.cell[:], cell.cell[:])
