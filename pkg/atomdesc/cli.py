"""The ``atomdesc`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _load_hypers(path: str | None, family: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        hypers = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"atomdesc: cannot read hyper-parameters from {path}: {exc}") from None
    if not isinstance(hypers, dict):
        raise SystemExit(f"atomdesc: {path} must hold a JSON object of hyper-parameters")
    if hypers.pop("family", family) != family:
        raise SystemExit(f"atomdesc: {path} describes another family than {family!r}")
    return hypers


def cmd_families(args: argparse.Namespace) -> int:
    import atomdesc

    rows = atomdesc.families()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['distribution']}  ({r['plugin']})")
    for failure in atomdesc.get_registry().failures:
        print(f"failed to load: {failure.entry_point} from {failure.distribution}: {failure.error}")
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    import ase.io

    import atomdesc

    d = atomdesc.descriptor(args.descriptor, **_load_hypers(args.hypers, args.descriptor))
    started = time.perf_counter()
    try:
        frames = ase.io.read(args.input, index=args.index)
    except Exception as exc:
        raise SystemExit(f"atomdesc: cannot read {args.input}: {exc}") from None
    if not isinstance(frames, list):
        frames = [frames]
    results = d.compute(frames, gradients=args.gradients, strain_gradients=args.strain_gradients,
                        n_threads=args.threads)
    out: dict[str, Any] = {
        "features": np.concatenate([r.features for r in results]),
        "offsets": np.cumsum([0] + [len(r.centers) for r in results]),
        "centers": np.concatenate([r.centers for r in results]),
        "hypers": json.dumps(d.hypers),
        "feature_labels": json.dumps(d.feature_labels),
    }
    if args.gradients:
        out["gradient_pairs"] = np.concatenate([r.gradient_pairs for r in results])
        out["gradient_values"] = np.concatenate([r.gradient_values for r in results])
        out["gradient_offsets"] = np.cumsum([0] + [len(r.gradient_pairs) for r in results])
    if args.strain_gradients:
        out["strain_gradients"] = np.concatenate([r.strain_gradients for r in results])
    np.savez(args.output, **out)
    elapsed = time.perf_counter() - started
    n_atoms = int(out["offsets"][-1])
    print(f"{len(results)} structures, {n_atoms} centres, {d.n_features} features "
          f"in {elapsed:.2f} s -> {args.output}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import atomdesc
    from atomdesc.analysis import audit

    d = atomdesc.descriptor(args.descriptor, **_load_hypers(args.hypers, args.descriptor))
    ref = None
    if args.reference:
        ref = atomdesc.descriptor(args.reference, **_load_hypers(args.reference_hypers,
                                                                 args.reference))
    report = audit(d, args.output, quick=args.quick, reference=ref)
    print(report.text)
    print(f"report and figures in {args.output}")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    import ase.io

    import atomdesc
    from atomdesc.analysis import classify

    d = atomdesc.descriptor(args.descriptor, **_load_hypers(args.hypers, args.descriptor))
    try:
        atoms = ase.io.read(args.input, index=args.index)
    except Exception as exc:
        raise SystemExit(f"atomdesc: cannot read {args.input}: {exc}") from None
    c = classify(d, atoms, args.center, mode="full" if args.full else "centered", rtol=args.rtol)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2))
    else:
        print(c.sensitivity.summary())
        print(c.summary())
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from .examples import ACSF_N2P2, STRUCTURES

    print(f"featurizing the bundled examples: {STRUCTURES.name} with {ACSF_N2P2.name}")
    args = argparse.Namespace(
        input=str(STRUCTURES), descriptor="acsf", hypers=str(ACSF_N2P2), output=args.output,
        index=":", gradients=True, strain_gradients=False, threads=args.threads,
    )
    cmd_featurize(args)
    print(f"load it with: numpy.load({args.output!r}) -> 'features', 'offsets', "
          "'gradient_pairs', 'gradient_values', 'hypers'")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atomdesc", description="Local atomic-environment descriptors with exact derivatives."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("families", help="list the registered descriptor families")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("featurize", help="compute descriptors of structures ASE can read")
    p.add_argument("input", help="structure file (extxyz, CIF, POSCAR, ASE db, ...)")
    p.add_argument("-d", "--descriptor", required=True, help="family name, e.g. acsf")
    p.add_argument("--hypers", help="JSON file of hyper-parameters")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    p.add_argument("--index", default=":", help="frames to read (ASE index syntax, default all)")
    p.add_argument("--gradients", action="store_true", help="also store position gradients")
    p.add_argument("--strain-gradients", action="store_true", help="also store strain gradients")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("audit", help="score a descriptor on the six criteria (report + plots)")
    p.add_argument("-d", "--descriptor", required=True, help="family name, e.g. acsf")
    p.add_argument("--hypers", help="JSON file of hyper-parameters")
    p.add_argument("-o", "--output", required=True, help="report directory")
    p.add_argument("--quick", action="store_true", help="smaller grids and datasets")
    p.add_argument("--reference", help="higher body-order family to classify null directions")
    p.add_argument("--reference-hypers", help="JSON file of the reference's hyper-parameters")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("sensitivity", help="Jacobian singular values at one centre")
    p.add_argument("input", help="structure file ASE can read")
    p.add_argument("-d", "--descriptor", required=True, help="family name, e.g. acsf")
    p.add_argument("--hypers", help="JSON file of hyper-parameters")
    p.add_argument("--center", type=int, default=0, help="centre atom index (default 0)")
    p.add_argument("--index", default="0", help="frame to read (ASE index, default 0)")
    p.add_argument("--full", action="store_true", help="let the centre move too")
    p.add_argument("--rtol", type=float, default=1e-8, help="relative rank tolerance")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("example", help="featurize the bundled example structures (ACSF)")
    p.add_argument("-o", "--output", default="atomdesc-example.npz", help="output .npz file")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.set_defaults(func=cmd_example)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import atomdesc

        print(atomdesc.__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"atomdesc: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
