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


def _descriptor_from_args(args: argparse.Namespace) -> Any:
    import atomdesc
    from atomdesc import examples

    hypers_path = args.hypers
    if hypers_path is None and args.descriptor is None and args.example:
        hypers_path = str(examples.ACSF_N2P2)
    family = args.descriptor
    if family is None:
        if hypers_path is None:
            raise SystemExit("atomdesc: give the family with -d NAME (or a --hypers file "
                             "that names its 'family')")
        try:
            family = json.loads(Path(hypers_path).read_text()).get("family")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise SystemExit(f"atomdesc: cannot read hyper-parameters from {hypers_path}: "
                             f"{exc}") from None
        if not family:
            raise SystemExit(f"atomdesc: {hypers_path} has no 'family': give -d NAME")
    return atomdesc.descriptor(family, **_load_hypers(hypers_path, family))


def cmd_featurize(args: argparse.Namespace) -> int:
    from atomdesc import examples

    inputs = list(args.inputs)
    if args.example:
        inputs.append(str(examples.STRUCTURES))
    if not inputs:
        raise SystemExit("atomdesc: give input files (or --example for the bundled structures)")
    d = _descriptor_from_args(args)
    if args.output.endswith(".npz"):
        return _featurize_npz(args, inputs, d)
    return _featurize_store(args, inputs, d)


def _featurize_store(args: argparse.Namespace, inputs: list[str], d: Any) -> int:
    from atomdesc.io import FrameReadError
    from atomdesc.pipeline import featurize_dataset

    client = None
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise SystemExit("atomdesc: --scheduler needs dask.distributed: "
                             "pip install 'atomdesc[dask]'") from None
        client = Client(args.scheduler)
    try:
        summary = featurize_dataset(
            inputs, d, args.output, client,
            gradients=args.gradients, strain_gradients=args.strain_gradients,
            average=args.average,
            center_species=args.center_species.split(",") if args.center_species else None,
            n_threads=args.threads, chunk_size=args.chunk_size, chunk_atoms=args.chunk_atoms,
            skip_invalid=args.skip_invalid, overwrite=args.overwrite,
            progress=False if args.quiet else None, format=args.format,
        )
    except FileNotFoundError as exc:
        raise SystemExit(f"atomdesc: {exc}") from None
    except FrameReadError as exc:
        print(f"atomdesc: error: {exc}", file=sys.stderr)
        print("  (use --skip-invalid to record such frames in the store and go on; "
              "re-running resumes after the last complete chunk)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\natomdesc: interrupted; {args.output} keeps every append finished so far: "
              "run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        print(summary)
        print(f"output: {Path(args.output).resolve()}")
        print("load it with:\n"
              "    import atomdesc\n"
              f"    store = atomdesc.open_features({args.output!r})\n"
              "    store.features          # (rows, features), lazy; store.offsets per structure\n"
              "    store[0]                # structure 0 as a DescriptorResult")
    return 0


def _featurize_npz(args: argparse.Namespace, inputs: list[str], d: Any) -> int:
    """Everything in memory, one .npz file: for small sets (kept from the first CLI)."""
    import ase.io

    from .io import format_from_name

    started = time.perf_counter()
    frames: list[Any] = []
    for path in inputs:
        try:
            read = ase.io.read(path, index=args.index,
                               format=args.format or format_from_name(path))
        except Exception as exc:
            raise SystemExit(f"atomdesc: cannot read {path}: {exc}") from None
        frames.extend(read if isinstance(read, list) else [read])
    results = d.compute(frames, gradients=args.gradients, strain_gradients=args.strain_gradients,
                        n_threads=args.threads)
    if args.average:
        results = [r.reduce(args.average) for r in results]
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
    ref: Any = "default"
    if args.reference and args.reference.lower() == "none":
        ref = None
    elif args.reference:
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
    """The bundled example structures through the dataset pipeline (ACSF, with gradients)."""
    from .examples import ACSF_N2P2, STRUCTURES

    print(f"featurizing the bundled examples: {STRUCTURES.name} with {ACSF_N2P2.name}")
    parser = build_parser()
    argv = ["featurize", "--example", "--gradients", "-o", args.output]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.overwrite:
        argv.append("--overwrite")
    return cmd_featurize(parser.parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atomdesc", description="Local atomic-environment descriptors with exact derivatives."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("families", help="list the registered descriptor families")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser(
        "featurize", help="compute descriptors of structures ASE can read",
        description="Featurize structures into a chunked zarr store (OUT.zarr: any size, "
        "resumable, Dask-capable) or, for small sets, one .npz file.",
        epilog="example: atomdesc featurize --example -o example.zarr  (the bundled "
        "structures with the bundled ACSF hyper-parameters)",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="structure files or globs (extxyz, ASE db, CIF, POSCAR, ...)")
    p.add_argument("--example", action="store_true",
                   help="also read the example structures that ship with atomdesc "
                   "(with the bundled ACSF hypers unless -d/--hypers are given)")
    p.add_argument("-d", "--descriptor", help="family name, e.g. acsf (default: the "
                   "'family' of the --hypers file)")
    p.add_argument("--hypers", help="JSON file of hyper-parameters")
    p.add_argument("-o", "--output", required=True, help="output store OUT.zarr (or OUT.npz)")
    p.add_argument("--format", help="ASE format of the inputs, if not clear from their names")
    p.add_argument("--gradients", action="store_true", help="also store position gradients")
    p.add_argument("--strain-gradients", action="store_true", help="also store strain gradients")
    p.add_argument("--average", choices=["mean", "sum"],
                   help="store one row per structure: the mean or sum over centres")
    p.add_argument("--center-species", metavar="H,O",
                   help="describe only atoms of these species (comma-separated)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--chunk-size", type=int, default=10_000,
                   help="most structures per chunk (default 10000)")
    p.add_argument("--chunk-atoms", type=int, default=None,
                   help="most atoms per chunk (default: ~32 MB of results per chunk)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="compute on a Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip unreadable or invalid frames, recording them in the store")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute an existing store from scratch")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--index", default=":",
                   help="frames to read, ASE index syntax (.npz output only; default all)")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("audit", help="score a descriptor on the six criteria (report + plots)")
    p.add_argument("-d", "--descriptor", required=True, help="family name, e.g. acsf")
    p.add_argument("--hypers", help="JSON file of hyper-parameters")
    p.add_argument("-o", "--output", required=True, help="report directory")
    p.add_argument("--quick", action="store_true", help="smaller grids and datasets")
    p.add_argument("--reference", help="higher body-order family to classify null directions (default: "
                        "bispectrum for soap, with its hyper-parameters; 'none' for none)")
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
    p.add_argument("-o", "--output", default="atomdesc-example.zarr",
                   help="output store (default atomdesc-example.zarr; .npz for one file)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="recompute an existing store")
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
