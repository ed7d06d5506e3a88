"""Classify many images and videos from the command line: the inference plugin's parameters, batched, on one process
or many, into a CSV, JSON Lines or Parquet file with each image's (or video frame's) top-k classes.

    python -m resnext_core.predict photos/ --output predictions.csv
    python -m resnext_core.predict "shots/**/*.jpg" list.txt clip.mp4 --output predictions.jsonl \\
        --model_weight_file runs/digits/best.pth --top_k 3
    torchrun --nproc-per-node 4 -m resnext_core.predict photos/ --output predictions.parquet   # a shard per rank

Sources: folders (their images and videos, recursively), glob patterns, .txt files of paths (one a line, relative
to the list's folder) and files. A rerun with the same output skips what it already holds; an unreadable file gets
a row with its error. --config reads a JSON object of the plugin's parameters; the flags override it.
"""
from __future__ import annotations

import argparse

from .common.cli import add_flag, add_parameter_flags, command_parser, parsed_config, run_command
from .common.errors import ResNeXtError
from .common.world import world_from_environment
from .data.sources import BATCH_SIZE
from .inference.bulk import predict_files
from .inference.config import INFER_SCHEMA


def parser() -> argparse.ArgumentParser:
    parsed = command_parser("python -m resnext_core.predict", __doc__)
    parsed.add_argument("sources", nargs="+", help="folders, glob patterns, .txt lists of paths, image or video files")
    add_flag(parsed, "output", required=True, help="results file: .csv, .jsonl or .parquet")
    add_flag(parsed, "batch_size", type=int, default=BATCH_SIZE, help="images per forward")
    add_flag(parsed, "workers", type=int, help="decoding threads (default: auto, from the cores)")
    add_flag(parsed, "no_progress", action="store_true", help="no progress bar")
    add_parameter_flags(parsed, INFER_SCHEMA, "the inference plugin's parameters (top_k: classes per row)")
    return parsed


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1 or (args.workers is not None and args.workers < 0):
        raise ResNeXtError(f"--batch_size must be at least 1 and --workers at least 0, got {args.batch_size} and {args.workers}")
    world = world_from_environment()
    result = predict_files(parsed_config(args, INFER_SCHEMA), args.sources, args.output, args.batch_size, args.workers,
                           world, progress=False if args.no_progress else None)
    print(f"rank {world.rank}: " if world.distributed else "", end="")
    print(f"{result.classified} classified, {result.errors} unreadable, {result.already_done} already in "
          f"{result.output} ({result.images_per_second:.1f} img/s)", flush=True)
    if result.rows is not None:
        print(f"{result.output}: {result.rows} rows", flush=True)
    return 0


if __name__ == "__main__":
    run_command(main)
