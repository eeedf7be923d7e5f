"""The ``wanlab`` command: generate, sweep, verify, models, serve and the demo, with one-line errors (exit code 2).

Every request field, LoRA path and output file is checked before a model loads (on 14B loading
costs minutes): the model's native settings come from its identity, which needs no weights.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ParamError, WanlabError
from .inputs import AccelLike
from .models.registry import DEFAULT_MODEL
from .params import RULES, LoRA, Params

EXIT_ERROR = 2
FIELD_FLAGS = ("prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift",
               "num_frames")


class _Parser(argparse.ArgumentParser):
    """argparse with wanlab's error convention: one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"wanlab: error: {message}\n")


def _lora_arg(text: str) -> LoRA:
    path, sep, scale = text.rpartition(":")
    if not sep or not path or "/" in scale:  # a URL's "https:" is not a scale
        return LoRA(text)
    try:
        value = float(scale)
    except ValueError:
        raise ParamError("--lora", "PATH or PATH:SCALE with a number for SCALE", text) from None
    return LoRA(path, value)


def _add_params(parser: argparse.ArgumentParser) -> None:
    """One option per request field; help texts from Params' own rules and defaults."""
    defaults = Params.defaults()
    types = {"width": int, "height": int, "seed": int, "steps": int, "num_frames": int, "guidance_scale": float,
             "flow_shift": float}
    for name in FIELD_FLAGS:
        default = f"; default: the model's native setting, else {defaults[name]!r}" if name in defaults else ""
        parser.add_argument(f"--{name.replace('_', '-')}", type=types.get(name, str), required=name == "prompt",
                            metavar=name.split("_")[-1].upper(), help=f"{RULES[name]}{default}")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help=f"a LoRA (.safetensors file, hub repo or https URL) and its scale (repeatable): "
                             f"{RULES['loras']}")


def _model_args(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL) -> None:
    where = f"default: {default} (trained on moving shapes; 'tiny' is random weights, for tests)" if default else \
        "default: the sweep file's model, else toy"
    parser.add_argument("--model", default=default,
                        help=f"a built-in model (toy, tiny; see `wanlab models`), a local diffusers folder or a hub "
                             f"id from the local Hugging Face cache; {where}")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on CUDA)")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {name: getattr(args, name) for name in FIELD_FLAGS if getattr(args, name) is not None}
    if args.lora:
        fields["loras"] = [_lora_arg(text) for text in args.lora]
    return fields


def _one_line(params: Params) -> str:
    parts = [f"{params.width}x{params.height}", f"{params.num_frames} frames", f"{params.steps} steps",
             f"guidance {params.guidance_scale:g}", f"shift {params.flow_shift:g}",
             "seed drawn" if params.seed == -1 else f"seed {params.seed}"]
    if params.loras:
        parts.append("loras " + ", ".join(f"{Path(lo.path).name}:{lo.scale:g}" for lo in params.loras))
    return ", ".join(parts)


def cmd_generate(args: argparse.Namespace) -> int:
    """``wanlab generate``: one video from the command line's request, saved to ``--out``.

    Every field, LoRA path and the output's suffix is checked before the model loads.

    Args:
        args: the parsed command line.

    Returns:
        The exit code, 0.

    Raises:
        ParamError: a bad field, option or output file (printed as one line, exit code 2).
    """
    from .backend import request
    from .backends import open_from_args
    from .lora import describe
    from .models.identity import identity
    from .video import check_suffix

    check_suffix(args.out)
    request({}, **_fields(args))  # every field given is in its range: refused here, before torch is imported
    accel = _accel_arg(args.accel)
    if args.remote:
        return _generate_remote(args, accel)
    args.model = args.model or DEFAULT_MODEL
    model = identity(args.model, device=args.device, dtype=args.dtype)
    params = request(model.native, **_fields(args))
    describe(params.loras)  # every LoRA file is there and readable
    if model.native and any(params.to_dict()[k] != v for k, v in Params.defaults().items() if k in model.native):
        print(f"wanlab: {model.model_id} request: {_one_line(params)} (the model's native settings fill what is "
              "not given)", file=sys.stderr)
    with _quiet(args.quiet):
        pipe = open_from_args(args, args.model, progress=not args.quiet)
        video = pipe.generate(params, progress=not args.quiet, accel=accel)
    path = video.save(args.out)
    stats = video.record.get("accel_stats") or {}
    work = (f", accel {accel.label}: {stats['calls_skipped']} of {stats['calls']} transformer calls from the cache"
            if accel is not None and stats.get("calls") else f", accel {accel.label}" if accel is not None else "")
    print(f"wrote {path} (seed {video.seed}, {video.num_frames} frames, {video.width}x{video.height}, "
          f"{video.timings['total']:.2f} s{work})")
    return 0


def _generate_remote(args: argparse.Namespace, accel: AccelLike) -> int:
    """``wanlab generate --remote URL``: one task on the service, its video downloaded and verified."""
    with _connect(args, args.model) as remote:
        params = remote.params(**_fields(args))
        accel = remote.check_accel(accel)
        print(f"wanlab: {remote.kind} service {remote.base_url} ({remote.identity.model_id}) request: "
              f"{_one_line(params)}", file=sys.stderr)
        with _quiet(args.quiet):
            video = remote.generate(params, progress=not args.quiet, accel=accel)
    path = _save_as_served(video, args.out)
    service = video.record.get("service") or {}
    exact = "exact frames" if video.record.get("exact", True) else "frames decoded from the service's lossy mp4"
    print(f"wrote {path} (seed {video.seed}, {video.num_frames} frames, {video.width}x{video.height}, task "
          f"{service.get('task_id')}, {exact})")
    return 0


def _save_as_served(video: Any, out: str) -> Path:
    """Save a downloaded video; an ``.mp4`` is the file the service served, byte for byte."""
    import shutil

    from .fsutil import atomic_file
    from .video import RUN_MP4

    path = video.save(out)
    served = video.files.get(RUN_MP4)
    if path.suffix.lower() == ".mp4" and served is not None:
        with atomic_file(path) as tmp:
            shutil.copyfile(served, tmp)
    return path


def _connect(args: argparse.Namespace, model: str | None = None, where: str = "--model",
             max_in_flight: int | None = None) -> Any:
    """The service of ``--remote``, with the key of ``--api-key-file`` (else the environment).

    A model asked for (``--model``, or the sweep file's, named by ``where``) must be the one it
    serves.
    """
    from .backends import open_from_args

    return open_from_args(args, model, model_named_by=where, max_in_flight=max_in_flight)


def _quiet(on: bool) -> Any:
    from .quiet import quiet

    return quiet(on)


def _accel_arg(text: str | None) -> Any:
    """``--accel``: None, a preset name, or a JSON object (validated here, before any model loads)."""
    from .accel.setting import Accel

    if text is None:
        return None
    if text.lstrip().startswith("{"):
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParamError("accel", "a preset name or a JSON object", f"{text} ({exc.msg})") from None
        return Accel.coerce(data)
    return Accel.coerce(text)


def cmd_models(args: argparse.Namespace) -> int:
    """``wanlab models``: the built-in models, their native settings, size on disk and what each is for.

    Args:
        args: the parsed command line.

    Returns:
        The exit code, 0.
    """
    from .models.registry import builtins
    from .models.scope import Scope, size_text

    for name, spec in builtins().items():
        size = spec.size_bytes
        where = f"{size / 1e6:.1f} MB on disk ({spec.folder})" if size is not None else "built from fixed seeds"
        native = ", ".join(f"{k}={v}" for k, v in spec.native.items()) or "the hosted API's defaults"
        print(f"{name}: {spec.description}\n    native: {native}; max_sequence_length {spec.max_sequence_length}; "
              f"{where}")
        scope = Scope(dict(spec.vocabulary), dict(spec.trained))
        if scope.vocabulary:
            print("    knows only these words (others warn): " + "; ".join(
                f"{kind}: {', '.join(words)}" for kind, words in scope.vocabulary.items()))
        if scope.trained:
            print(f"    trained at {size_text(scope.trained)} (other sizes warn: colours and shapes break down there)")
    print("real weights: a local diffusers folder or a hub id in the local Hugging Face cache "
          "(Wan-AI/Wan2.1-T2V-1.3B-Diffusers, Wan-AI/Wan2.1-T2V-14B-Diffusers), at the API's defaults")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``wanlab demo``: the demo sweep (on the offline toy model unless ``--model``) and its report.

    Args:
        args: the parsed command line.

    Returns:
        The exit code, 0.
    """
    from .demo import run_demo

    with _quiet(args.quiet):
        report = run_demo(out=Path(args.out), model=args.model, progress=not args.quiet)
    print(f"report: {report}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``wanlab verify RUN``: re-generate a stored run and print the report (``--json``: as JSON).

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 when the run is identical, 1 when it differs.
    """
    import json

    from .reproduce import format_report, to_json, verify

    with _quiet(True):
        result = verify(args.run, model=args.model, device=args.device, store=args.store)
    print(json.dumps(to_json(result), indent=2, default=str) if args.json else format_report(result))
    return 0 if result["identical"] else 1


def _metrics_option(args: argparse.Namespace) -> Any:
    """``--no-metrics`` / ``--metrics a,b`` as ``Sweep.run``'s ``metrics`` (True: the sweep's own)."""
    if args.no_metrics and args.metrics:
        raise ParamError("--metrics", "left out with --no-metrics", args.metrics)
    if args.no_metrics:
        return False
    return [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else True


def cmd_measure(args: argparse.Namespace) -> int:
    """``wanlab measure STORE``: compute metric sets for the runs of a store.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 when every set was computed (or already there), 1 when some failed.

    Raises:
        ParamError: the store is not a folder, or a metric set is unknown.
    """
    from .sweep.measure import measure_store

    if not Path(args.store).is_dir():
        raise ParamError("store", "an existing run store folder", args.store)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    with _quiet(True):
        counts = measure_store(args.store, names, redo=args.redo, device=args.device, progress=not args.quiet)
    print(f"{counts['measured']} measured, {counts['failed']} with a failed metric (kept with the run), "
          f"{counts['skipped']} already measured")
    return 1 if counts["failed"] else 0


def _print_dry_run(sweep: Any, keyer: Any, store: str, shard: tuple[int, int], mine: set[int], model: str,
                   remote: Any, args: argparse.Namespace) -> None:
    """``wanlab sweep --dry-run``: the points, which are done, and what a run would generate (nothing loads)."""
    result = sweep.result(keyer, store)
    df = result.df
    table = df[["point", *sweep.swept, "status", "key"]].copy()
    if shard != (0, 1):
        table.insert(1, "shard", ["this" if i in mine else "other" for i in df["point"]])
    if "loras" in table.columns:
        table["loras"] = table["loras"].replace("", "-")
    counts = df[df["point"].isin(mine)]["status"].value_counts().to_dict()
    print(f"sweep {sweep.name}: {len(sweep)} points, model {model}, store {store}"
          + (f", shard {shard[0]}/{shard[1]} ({len(mine)} points)" if shard != (0, 1) else ""))
    if sweep.question:
        print(f"question: {sweep.question}")
    print(table.to_string(index=False))
    done, failed, pending = (int(counts.get(k, 0)) for k in ("done", "failed", "pending"))
    todo = pending + (0 if args.no_retry else failed)
    billed = f" (each a task {remote.base_url} runs and may bill)" if remote is not None else ""
    print(f"{'this shard' if shard != (0, 1) else 'points'}: {done} done, {failed} failed, {pending} pending; "
          f"a run would generate {todo}{billed} (dry run: nothing was run)")


def cmd_sweep(args: argparse.Namespace) -> int:
    """``wanlab sweep FILE``: run (or with ``--dry-run``, list) a TOML sweep.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 when every point of this shard is done, 1 when some failed or are left pending
        (an error before running exits 2, through :func:`main`).
    """
    from .backends import check_args, open_from_args
    from .models.identity import identity
    from .sweep import Sweep, check_shard

    sweep = Sweep.load(args.file)
    if args.model and args.model != sweep.model:
        sweep = sweep.replace(model=args.model)  # said on the command line: the study runs on this model
    if args.probes is not None:
        sweep = sweep.replace(probes=[name.strip() for name in args.probes.split(",") if name.strip()] or None)
    check_args(args)  # --remote, --ray, --workers, --device and --dtype agree
    shard = check_shard(args.shard) if args.shard else (0, 1)
    store = args.store or str(sweep.default_store())
    mine = set(sweep.shard(*shard))
    if args.remote:
        where = "--model" if args.model else f"model (in {args.file})"
        remote = _connect(args, args.model or sweep.model, where, max_in_flight=args.max_in_flight)
        model, keyer = remote.identity.model_id, remote
    else:
        remote, model = None, args.model or sweep.model or DEFAULT_MODEL
        keyer = identity(model, device=args.device, dtype=args.dtype)
    if args.dry_run:  # nothing loads: keys come from the model's identity
        _print_dry_run(sweep, keyer, store, shard, mine, model, remote, args)
        return 0
    sweep.result(keyer, store)  # every point checked before loading (or before the service runs any)
    if not Path(store).exists():
        print(f"wanlab: runs go to {Path(store).resolve()}", file=sys.stderr)
    with _quiet(True):
        backend = remote if remote is not None else open_from_args(args, model)
        try:
            result = sweep.run(backend, store=store, metrics=_metrics_option(args), progress=not args.quiet,
                               max_failures=args.max_failures, shard=shard, retry_failed=not args.no_retry,
                               retry_uncertain=args.retry_uncertain,
                               max_in_flight=None if remote is not None else args.max_in_flight)
        finally:
            if remote is not None or args.ray is not None:  # the connection, or the Ray workers
                backend.close()
    print(result.summary())
    df = result.df
    for _, row in df[(df["status"] == "failed") & df["point"].isin(mine)].iterrows():
        print(f"  failed: point {row['point']} ({sweep.label(int(row['point']), result.points[int(row['point'])])}): "
              f"{row['error']}")
    if "accel" in sweep.swept:
        _print_accel_summary(result)
    if args.csv:
        print(f"wrote {result.to_csv(args.csv)}")
    if args.report:
        from .report import write_sweep_report

        print(f"report: {write_sweep_report(result, Path(args.report))}")
    mine_df = df[df["point"].isin(mine)]
    return 0 if (mine_df["status"] == "done").all() else 1


def _print_accel_summary(result: Any) -> None:
    """For a sweep over ``accel``: one line per setting against the exact runs (when they are done)."""
    from .accel.tradeoff import summarize

    try:
        study = result.accel_study()
    except ValueError as exc:
        print(f"acceleration: {exc}")
        return
    table = summarize(study)[["setting", "points", "speedup", "psnr", "ssim", "rel_l2", "skipped", "pareto"]]
    print(f"acceleration, against {study.attrs['reference']} (single runs; wanlab.accel.study repeats them):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


def _native_text(name: str) -> str:
    """A built-in model's native settings in words, from its card (e.g. ``64x64, 17 frames, 25 steps, ...``)."""
    from .models.registry import builtin

    n = builtin(name).native
    words = [f"{n['width']}x{n['height']}" if "width" in n and "height" in n else "",
             f"{n['num_frames']} frames" if "num_frames" in n else "", f"{n['steps']} steps" if "steps" in n else "",
             f"guidance {n['guidance_scale']:g}" if "guidance_scale" in n else "",
             f"shift {n['flow_shift']:g}" if "flow_shift" in n else ""]
    return ", ".join(w for w in words if w)


def _add_generate(sub: Any) -> None:
    """``wanlab generate``: one video."""
    from .backends import add_backend_args

    gen = sub.add_parser("generate", help="generate one video",
                         description="Generate one video from a request with the hosted Wan 2.1 T2V API's fields and "
                                     "rules, on the built-in toy model unless --model says otherwise. Fields not "
                                     f"given come from the model's native settings (toy: {_native_text('toy')}), "
                                     "else from the API's defaults; every value is checked before the model loads. "
                                     "Writes the mp4, a lossless copy and the record.")
    _add_params(gen)
    _model_args(gen)
    gen.add_argument("--accel", default=None, metavar="SETTING",
                     help="acceleration: a preset (exact, fbc, fbc-fast, mag, taylorseer, pab, seacache, compile, "
                          "...) or a JSON object such as '{\"cache\": \"first_block\", \"cache_params\": "
                          "{\"threshold\": 0.15}}'")
    gen.add_argument("--out", default="wanlab-video.mp4",
                     help="output file: .mp4 (with NAME.lossless.mkv and NAME.json beside it), .mkv, .gif or .npz; "
                          "default wanlab-video.mp4")
    gen.add_argument("--quiet", action="store_true", help="no progress bar and no library warnings")
    add_backend_args(gen, ray=False)
    gen.set_defaults(func=cmd_generate, model=None)


def _add_models(sub: Any) -> None:
    """``wanlab models``: the built-in models."""
    models = sub.add_parser("models", help="list the built-in models, their native settings and what they are for")
    models.set_defaults(func=cmd_models)


def _add_demo(sub: Any) -> None:
    """``wanlab demo``: the main job."""
    demo = sub.add_parser("demo", help="the main job: a small sweep with videos, frame grid, metrics and report")
    demo.add_argument("--out", default="wanlab-demo", help="output folder (default wanlab-demo)")
    demo.add_argument("--model", default=None, help="model to run (default: the demo sweep's own, toy)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)


def _add_sweep(sub: Any) -> None:
    """``wanlab sweep``: a TOML sweep into a run store."""
    from .backends import add_backend_args

    sw = sub.add_parser("sweep", help="run a TOML sweep into a run store (resumable, shardable)",
                        description="Run the points of a TOML sweep file that are not yet in the store. A re-run "
                                    "skips what is done, so a killed sweep resumes; failed points are recorded "
                                    "and the rest go on. Exit code 0 every point of this shard done, 1 some "
                                    "failed or pending, 2 error.")
    sw.add_argument("file", help="sweep definition (.toml), e.g. sweeps/guidance_x_shift.toml")
    _model_args(sw, default=None)
    sw.add_argument("--store", default=None, help="run store folder (default: runs/NAME, NAME the sweep's name)")
    sw.add_argument("--shard", default=None, metavar="i/N",
                    help="run only share i of N (0 <= i < N): points i, i+N, i+2N, ...; N processes on one "
                         "store together run the whole sweep")
    sw.add_argument("--dry-run", action="store_true", help="list the points and which are done; run nothing, "
                                                           "load nothing")
    sw.add_argument("--no-metrics", action="store_true", help="compute no metrics")
    sw.add_argument("--metrics", default=None, metavar="NAMES",
                    help="comma-separated metric sets to compute (default: the sweep file's `metrics`, else motion): "
                         "motion, adherence, clip_score, subject_consistency, background_consistency, "
                         "aesthetic_quality, quality (the last four)")
    sw.add_argument("--max-failures", type=int, default=None, metavar="K",
                    help="stop after K failures (the rest stay pending)")
    sw.add_argument("--no-retry", action="store_true", help="leave points that failed earlier as failed")
    sw.add_argument("--retry-uncertain", action="store_true",
                    help="with --remote on a service that is not a wanlab server: submit again points whose earlier "
                         "submit got no answer (the service may have accepted them: this may pay twice); a wanlab "
                         "server is asked under the same idempotency key instead, which never pays twice")
    sw.add_argument("--csv", default=None, metavar="PATH", help="also write the sweep table as CSV")
    sw.add_argument("--report", default=None, metavar="DIR",
                    help="also write videos, plots and a self-contained HTML report into DIR")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.add_argument("--probes", default=None, metavar="NAMES",
                    help="record probes inside the model with every run, comma-separated: trajectory, attention, "
                         "features (default: the file's probes = [...]); local and Ray backends only")
    sw.add_argument("--max-in-flight", type=int, default=None, metavar="K",
                    help="points running at once (default: the backend's); with --remote, tasks at the service at "
                         "once (default: the server's queue limit, else 4)")
    add_backend_args(sw)
    sw.set_defaults(func=cmd_sweep)


def _add_measure(sub: Any) -> None:
    """``wanlab measure``: metrics for stored runs."""
    me = sub.add_parser("measure", help="compute metrics for runs already in a store (no regenerating)",
                        description="Measure the runs of a store with the named metric sets, from their stored "
                                    "frames and recorded prompts; sets already stored are skipped. Exit code 0 all "
                                    "measured, 1 some set failed (the reason is kept with the run), 2 error.")
    me.add_argument("store", help="run store folder (e.g. runs/demo)")
    me.add_argument("--metrics", default="motion", metavar="NAMES",
                    help="comma-separated metric sets (default motion): motion, adherence, clip_score, "
                         "subject_consistency, background_consistency, aesthetic_quality, quality")
    me.add_argument("--redo", action="store_true", help="compute again sets already stored or that failed")
    me.add_argument("--device", default=None, help="where evaluators run: cpu, cuda or cuda:N (default: cuda if any)")
    me.add_argument("--quiet", action="store_true", help="no progress bar")
    me.set_defaults(func=cmd_measure)


def _add_verify(sub: Any) -> None:
    """``wanlab verify``: re-generate a stored run and compare."""
    ver = sub.add_parser("verify", help="re-generate a stored run from its record: identical, or what differs",
                         description="Re-generate a stored run (or a saved video, from its .json sidecar) and "
                                     "report 'identical' or what differs (environment, params, settings, "
                                     "per-frame max |delta| and PSNR). Exit code 0 identical, 1 different, 2 error.")
    ver.add_argument("run", help="a run folder, a run key (looked up in --store), or a video saved by wanlab "
                                 "(x.mp4 with its x.json)")
    ver.add_argument("--store", default=None,
                     help="store folder to look the key up in (default: $WANLAB_STORE, runs, runs/*)")
    ver.add_argument("--model", default=None, help="model to re-generate with (default: the record's model id)")
    ver.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the recorded device if present)")
    ver.add_argument("--json", action="store_true", help="print the full comparison as JSON")
    ver.set_defaults(func=cmd_verify)


def build_parser() -> argparse.ArgumentParser:
    """The ``wanlab`` command's parser, with every subcommand.

    Returns:
        The parser; each subcommand sets ``func``, the function that runs it.

    Example:
        >>> build_parser().parse_args(["models"]).func.__name__
        'cmd_models'
    """
    parser = _Parser(prog="wanlab", description="Study Wan 2.1 text-to-video: generate, sweep, measure, verify.")
    parser.add_argument("--version", action="version", version=f"wanlab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    for add in (_add_generate, _add_models, _add_demo, _add_sweep, _add_measure, _add_verify):
        add(sub)
    from .server.cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wanlab`` command; wanlab's errors are printed as one line.

    Args:
        argv: the arguments (None: ``sys.argv[1:]``).

    Returns:
        The exit code: the subcommand's, 2 for an error, 130 when interrupted.

    Example:
        >>> main(["generate", "--steps", "0"])  # doctest: +SKIP
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (WanlabError, ValueError, OSError) as exc:
        print(f"wanlab: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("wanlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
