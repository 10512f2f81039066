"""The command line: families listing and a featurize round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule

import atomdesc
from atomdesc.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "atomdesc.cli", *args],
                          capture_output=True, text=True, timeout=300)


def test_families_command(capsys):
    assert main(["families"]) == 0
    assert "acsf" in capsys.readouterr().out
    assert main(["families", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "acsf", "distribution": "atomdesc (built-in)"}.items() <= rows[0].items()


def test_featurize_round_trip(tmp_path):
    frames = [molecule("H2O"), bulk("Si", "diamond", 5.43) * (1, 1, 2)]
    ase.io.write(tmp_path / "in.extxyz", frames)
    hypers = {"species": ["H", "O", "Si"], "r_cut": 4.0, "g2_params": [[0.5, 0.0]],
              "g4_params": [[0.05, 1, -1]]}
    (tmp_path / "h.json").write_text(json.dumps(hypers))
    out = tmp_path / "out.npz"
    done = run_cli("featurize", str(tmp_path / "in.extxyz"), "-d", "acsf", "--hypers",
                   str(tmp_path / "h.json"), "-o", str(out), "--gradients", "--strain-gradients")
    assert done.returncode == 0, done.stderr
    assert "2 structures, 7 centres" in done.stdout

    stored = np.load(out)
    d = atomdesc.descriptor_from_hypers(json.loads(str(stored["hypers"])))
    assert d == atomdesc.descriptor("acsf", **hypers)
    results = [d.compute(a, gradients=True, strain_gradients=True) for a in frames]
    np.testing.assert_array_equal(stored["features"], np.concatenate([r.features for r in results]))
    np.testing.assert_array_equal(stored["offsets"], [0, 3, 7])
    np.testing.assert_array_equal(stored["gradient_values"],
                                  np.concatenate([r.gradient_values for r in results]))
    np.testing.assert_array_equal(stored["strain_gradients"],
                                  np.concatenate([r.strain_gradients for r in results]))
    assert [tuple(x) for x in json.loads(str(stored["feature_labels"]))] == list(d.feature_labels)


@pytest.mark.parametrize(
    "args, message",
    [
        (["featurize", "missing.xyz", "-d", "acsf", "--hypers", "{good_json}", "-o", "x.npz"],
         "cannot read missing.xyz"),
        (["featurize", "{input}", "-d", "nope", "-o", "x.npz"], "unknown descriptor family"),
        (["featurize", "{input}", "-d", "acsf", "--hypers", "{bad_json}", "-o", "x.npz"],
         "cannot read hyper-parameters"),
    ],
)
def test_featurize_errors_are_clear(tmp_path, args, message):
    ase.io.write(tmp_path / "in.xyz", molecule("H2O"))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "good.json").write_text('{"species": ["H", "O"], "r_cut": 3.0}')
    args = [a.format(input=tmp_path / "in.xyz", bad_json=tmp_path / "bad.json",
                     good_json=tmp_path / "good.json") for a in args]
    done = run_cli(*args)
    assert done.returncode != 0
    assert message in done.stderr


def test_interrupted_featurize_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from atomdesc import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "featurize_dataset", interrupted)
    code = main(["featurize", "--example", "-o", str(tmp_path / "out.zarr"), "-q"])
    assert code == 130
    assert "run the same command again to resume" in capsys.readouterr().err
