"""The ``ptacl`` command: generate, prepare-ukb, train, evaluate, run-notebooks, study, demo, export, predict."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from .geometry import GEOMETRY_FIELDS, add_geometry_arguments


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Expose every field of a config dataclass as ``--field-name`` (booleans as on/off flags).

    A field's metadata may carry ``help``, ``choices`` and ``required``; ``cli=False`` keeps it off the
    command line (it keeps its default); ``geometry`` (``geometry.GEOMETRY_FIELD``) adds the input-geometry
    flags, which ``dataclass_from_args`` resolves into one ``Geometry``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        if f.metadata.get("geometry"):
            add_geometry_arguments(parser)
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        extra: dict[str, Any] = {"help": f.metadata.get("help")}
        if f.metadata.get("required"):
            extra["required"] = True
        if "choices" in f.metadata:
            extra["choices"] = f.metadata["choices"]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **extra)
        elif typing.get_origin(kind) in (tuple, list):
            inner = typing.get_args(kind)[0]
            parser.add_argument(flag, nargs="+", type=inner, default=default, **extra)
        else:
            base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            parser.add_argument(flag, type=base if base in (int, float, str) else str, default=default, **extra)


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build a config dataclass from parsed arguments (the inverse of ``add_dataclass_arguments``); the
    geometry flags are resolved here, once, against the config's model preset."""
    from .geometry import geometry_from_args

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    if any(f.metadata.get("geometry") for f in dataclasses.fields(cls)):
        values["geometry"] = geometry_from_args(args, values.get("model", "small"))
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})


def _cmd_generate(args: argparse.Namespace) -> None:
    from .data.synthetic import generate_cohort, store_geometry_for
    from .geometry import STORED_DEFAULT, resolve_geometry

    base = store_geometry_for(resolve_geometry(args.geometry)) if args.geometry else STORED_DEFAULT
    geometry = base.overridden(**{k: getattr(args, k) for k in GEOMETRY_FIELDS})
    path = generate_cohort(args.out, n_subjects=args.n, seed=args.seed, geometry=geometry, progress=True)
    print(f"cohort written: {path}")


def _cmd_prepare_ukb(args: argparse.Namespace) -> None:
    from .data.prepare_ukb import prepare_options, prepare_ukb

    options = prepare_options(args, paths=("ecg_dir", "cmr_dir", "idp_csv", "out", "func", "command"))
    print(prepare_ukb(args.ecg_dir, args.cmr_dir, args.idp_csv, args.out, **options))


def _cmd_train(args: argparse.Namespace) -> None:
    from .train import fit
    from .train_config import TrainConfig

    print(f"run directory: {fit(dataclass_from_args(TrainConfig, args))}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import discover_runs, evaluate_runs, format_table

    runs = [args.run_dir] if args.run_dir else discover_runs(args.run_root)
    out = args.out or (args.run_dir if args.run_dir else args.run_root)
    _, summary = evaluate_runs(runs, args.manifest, out, device=args.device)
    print(format_table(summary, task="regression", metric="r2").to_string())
    print(f"comparison.csv and summary.csv written to {out}")


def _cmd_run_notebooks(args: argparse.Namespace) -> None:
    from .notebook_runner import execute_notebooks, find_notebook, list_notebooks

    names = [find_notebook(k) for k in args.only] if args.only else list_notebooks()
    params = dict(args.param or [])
    if args.jobs > 1 and params.get("train") and len(names) > 1:
        raise ValueError("-p train=true makes notebook 02 train runs that the other notebooks read: run it alone "
                         "first (--only 02), or use --jobs 1")
    results = execute_notebooks(names, args.out, common=params, jobs=args.jobs)
    failed = [r for r in results if not r.ok]
    for r in results:
        print(f"  {'ok    ' if r.ok else 'FAILED'} {r.name} -> {r.output}" + (f"  ({r.error})" if r.error else ""))
    if failed:
        raise ValueError(f"{len(failed)} of {len(results)} notebook(s) failed: {', '.join(r.name for r in failed)}")


def _cmd_study(args: argparse.Namespace) -> None:
    from .study import StudyConfig, run_study

    _report_study(run_study(dataclass_from_args(StudyConfig, args)))


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import DEFAULT_OUT, DemoConfig, default_scale, run_demo

    scale = "fast" if args.fast else (args.scale if args.scale != "auto" else default_scale())
    _report_study(run_demo(DemoConfig(out=str(args.out or DEFAULT_OUT), scale=scale, test_subjects=args.test_subjects)))


def _cmd_export(args: argparse.Namespace) -> None:
    from .inference import export_bundle

    options = {k: getattr(args, k) for k in ("coverage", "method") if getattr(args, k) is not None}
    out = export_bundle(args.study, args.out, arm=args.arm, reference=args.reference, onnx=args.onnx,
                        device=args.device, **options)
    print(f"model bundle written: {out} (model card: {out / 'README.md'})")


def _cmd_predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from .inference import Predictor, default_workers, ecg_files

    if args.ecg_manifest:
        table = pd.read_csv(args.ecg_manifest, dtype=str)
        if "path" not in table.columns:
            raise ValueError(f"{args.ecg_manifest} needs a 'path' column (and optionally 'id')")
        paths = [p if Path(p).is_absolute() else str(args.ecg_manifest.parent / p) for p in table["path"]]
        ids = table["id"].tolist() if "id" in table.columns else None
    else:
        paths, ids = (list(args.ecg) if args.ecg else ecg_files(args.ecg_dir)), None
    if not paths:
        raise ValueError("no ECG file to predict")
    predictor = Predictor.from_bundle(args.model, device=args.device, mains_hz=args.mains_hz, coverage=args.coverage)
    workers = args.workers or default_workers()
    result = predictor.predict(paths, sampling_rate=args.sampling_rate, units=args.units, workers=workers,
                               k=args.k, progress=args.progress, ids=ids)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(args.out, index=False)
    failed = result[result["status"] != "ok"]
    print(f"{len(result) - len(failed)} of {len(result)} ECGs predicted -> {args.out}")
    for _, row in failed.head(10).iterrows():
        print(f"  error {row['id']}: {row['reason']}")
    if len(failed) == len(result):
        raise ValueError("no ECG could be predicted (the reasons are in the table)")


def _report_study(result: object) -> None:
    import os

    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the study
        return
    print(f"report: {result.report}")  # type: ignore[attr-defined]
    if result.failed_notebooks:  # type: ignore[attr-defined]
        raise ValueError(f"the study finished, but notebook(s) failed: {', '.join(result.failed_notebooks)}"  # type: ignore[attr-defined]
                         " (executed copies with the error are in the study's notebooks/ folder)")


def _parse_param(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it parses (numbers, lists, booleans)."""
    import json

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ptacl`` command."""
    parser = argparse.ArgumentParser(prog="ptacl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write a synthetic paired ECG-CMR cohort")
    p.add_argument("--n", type=int, default=2000, help="number of subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="cohort directory")
    add_geometry_arguments(p, help="store what a run at this input geometry reads (demo or ukb; the overrides then "
                                   "set single fields); empty: the generator's default, 500 Hz, 50 frames of 64 px, "
                                   "1 slice, which a demo-geometry run reads")
    p.set_defaults(func=_cmd_generate)

    from .data.prepare_ukb import add_prepare_arguments

    p = sub.add_parser("prepare-ukb", argument_default=argparse.SUPPRESS,
                       help="UK Biobank ECG XML + cine zips + IDP CSV -> manifest and array store",
                       description="Options left out take the defaults of ptacl_lib.data.prepare_ukb.prepare_ukb.")
    p.add_argument("--ecg-dir", type=Path, required=True, help="field 20205 XMLs (or .dcm / WFDB .hea)")
    p.add_argument("--cmr-dir", type=Path, required=True, help="field 20209 zips (or DICOM folders / sa.nii.gz)")
    p.add_argument("--idp-csv", type=Path, required=True, help="UKB table with fields 24100-24109")
    p.add_argument("--out", type=Path, required=True, help="cohort directory (re-run to resume)")
    add_prepare_arguments(p)
    p.set_defaults(func=_cmd_prepare_ukb)

    from .train_config import TrainConfig

    p = sub.add_parser("train", help="pretrain one arm (ptacl, global, ecg_ssl, supervised, none); torchrun-ready")
    add_dataclass_arguments(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="retrieval + regression probes for trained runs, compared with CIs")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--run-root", type=Path, help="a demo layout: evaluates every <root>/arms/<arm>/seed<k>")
    where.add_argument("--run-dir", type=Path, help="one run directory")
    p.add_argument("--manifest", type=Path, required=True, help="the cohort the runs were trained on")
    p.add_argument("--out", type=Path, default=None, help="where comparison.csv/summary.csv go")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("run-notebooks", help="execute the ordered notebooks headlessly (papermill)")
    p.add_argument("--out", type=Path, default=Path("runs/notebooks"), help="folder for executed copies")
    p.add_argument("--only", nargs="+", help="notebook prefixes, e.g. 01 03")
    p.add_argument("-p", "--param", type=_parse_param, action="append", metavar="KEY=VALUE",
                   help="notebook parameter (repeatable); values are parsed as JSON when possible")
    p.add_argument("--jobs", type=int, default=1, help="notebooks run side by side, each kernel with its share "
                                                       "of the cores (not with -p train=true)")
    p.set_defaults(func=_cmd_run_notebooks)

    from .study import StudyConfig

    p = sub.add_parser("study", help="every arm x seed on your cohort: train, evaluate, notebooks, report.md")
    add_dataclass_arguments(p, StudyConfig)
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("demo", help="the whole study on the synthetic cohort (make demo)")
    p.add_argument("--scale", choices=("auto", "cpu", "gpu", "fast"), default="auto",
                   help="auto: gpu when CUDA is present, else cpu")
    p.add_argument("--fast", action="store_true", help="same as --scale fast (tests, DEMO_FAST=1)")
    p.add_argument("--out", type=Path, default=None, help="demo folder (default runs/demo)")
    p.add_argument("--test-subjects", type=int, default=-1,
                   help="size of the held-out test cohort (-1: the scale's; 0: score the cohort's own test split)")
    p.set_defaults(func=_cmd_demo)

    from .data.schema import UNIT_TO_MV
    from .train_config import MAINS_HZ

    p = sub.add_parser("export", help="a finished study's arm as a self-describing model bundle (for ptacl predict)")
    p.add_argument("--study", type=Path, required=True, help="the study folder (ptacl study --out)")
    p.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    p.add_argument("--arm", default="ptacl", help="which arm's seed ensemble to export")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="include the training subjects' embeddings, ids and phenotypes (similar patients, OOD flag)")
    p.add_argument("--onnx", action="store_true", help="also write every seed's ECG encoder as ONNX")
    p.add_argument("--coverage", type=float, default=None, help="the intervals' default coverage (0.9)")
    p.add_argument("--method", default=None, help="the conformal score: absolute (the default) or seed_scaled")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="CMR phenotypes, calibrated intervals and similar patients from ECG files")
    p.add_argument("--model", type=Path, required=True, help="a model bundle (ptacl export)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ecg", type=Path, nargs="+", help="ECG files (CardioSoft XML, DICOM, WFDB .hea, .npy)")
    source.add_argument("--ecg-dir", type=Path, help="a folder of ECG files")
    source.add_argument("--ecg-manifest", type=Path, help="a CSV with a 'path' column (and optionally 'id')")
    p.add_argument("--out", type=Path, required=True, help="the predictions CSV")
    p.add_argument("--sampling-rate", type=float, default=None, help=".npy input: its sampling rate (Hz)")
    p.add_argument("--units", choices=sorted(UNIT_TO_MV), default="mV", help=".npy input: its amplitude units")
    p.add_argument("--mains-hz", type=int, choices=MAINS_HZ, default=None,
                   help="the recordings' mains frequency (default: the training recordings', from the bundle)")
    p.add_argument("--coverage", type=float, default=None, help="interval coverage (default: the bundle's, 0.9)")
    p.add_argument("--k", type=int, default=5, help="similar reference patients per ECG")
    p.add_argument("--workers", type=int, default=0, help="reader processes; 0: one per CPU, at most 8")
    p.add_argument("--device", default="cpu")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    p.set_defaults(func=_cmd_predict)

    from .cxr.cli import add_cxr_parser

    add_cxr_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptacl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:  # bad input: a clear message, not a traceback
        print(f"ptacl {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
