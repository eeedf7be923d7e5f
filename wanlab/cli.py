"""The ``wanlab`` command: generate, sweep, verify and the demo, with one-line errors (exit code 2)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import WanlabError
from .params import LoRA, Params

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with wanlab's error convention: one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"wanlab: error: {message}\n")


def _lora_arg(text: str) -> LoRA:
    path, sep, scale = text.rpartition(":")
    if not sep or not path:
        return LoRA(text)
    try:
        value = float(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lora: must be PATH or PATH:SCALE; got {text!r}") from None
    return LoRA(path, value)


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--flow-shift", type=float)
    parser.add_argument("--num-frames", type=int)
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="a LoRA .safetensors file and its scale (repeatable, at most 3)")


def _model_args(parser: argparse.ArgumentParser, default: str | None = "tiny") -> None:
    parser.add_argument("--model", default=default, help="tiny, a local diffusers folder or a hub id")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    names = ("prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift",
             "num_frames")
    fields = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.lora:
        fields["loras"] = [_lora_arg(text) for text in args.lora]
    return fields


def cmd_generate(args: argparse.Namespace) -> int:
    from .pipeline import load

    pipe = load(args.model, device=args.device, dtype=args.dtype, progress=not args.quiet)
    params = pipe.params(**_fields(args))
    video = pipe.generate(params, progress=not args.quiet)
    path = video.save(args.out)
    print(f"wrote {path} (seed {video.seed}, {video.num_frames} frames, {video.width}x{video.height}, "
          f"{video.timings['total']:.2f} s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(out=Path(args.out), model=args.model, progress=not args.quiet)
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wanlab", description="Study Wan 2.1 text-to-video: generate, sweep, measure, verify.")
    parser.add_argument("--version", action="version", version=f"wanlab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    gen = sub.add_parser("generate", help="generate one video")
    _add_params(gen)
    _model_args(gen)
    gen.add_argument("--out", default="wanlab-video.mp4", help="output file (.mp4, .mkv, .gif, .npz)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="the main job: a small sweep with videos, frame grid, metrics and report")
    demo.add_argument("--out", default="wanlab-demo", help="output folder")
    demo.add_argument("--model", default=None, help="model to run (default: the demo sweep's own)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (WanlabError, ValueError, FileNotFoundError) as exc:
        print(f"wanlab: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("wanlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
