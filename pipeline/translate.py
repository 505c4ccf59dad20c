"""Translate with an exported SavedModel from the command line.

    python -m pipeline.translate workdir/serving/translator/1 "The dog runs." "A cat sleeps."
    echo "The dog runs." | python -m pipeline.translate workdir/serving/translator/1 --beam

Sentences come from the arguments, or one per line from stdin when there are none. Each
prints one line, in order; a blank line prints a blank line, so output lines match input lines.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Translate sentences with a SavedModel.")
    parser.add_argument(
        "model_dir", help="a SavedModel directory, e.g. workdir/serving/translator/1"
    )
    parser.add_argument("sentences", nargs="*", help="sentences (default: lines of stdin)")
    parser.add_argument("--beam", action="store_true", help="use the beam_search signature")
    parser.add_argument("--batch-size", type=_positive, default=32)
    # Intermixed: sentences may follow the options (`MODEL --beam "A sentence."`).
    args = parser.parse_intermixed_args(argv)
    if not os.path.isfile(os.path.join(args.model_dir, "saved_model.pb")):
        print(f"{args.model_dir}: no saved_model.pb here", file=sys.stderr)
        return 2
    sentences = args.sentences or [line.rstrip("\r\n") for line in sys.stdin]
    # Blank sentences are not sent to the model: their translation is a blank line.
    texts = [text for text in sentences if text.strip()]

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    model = tf.saved_model.load(args.model_dir)
    signature = model.signatures["beam_search" if args.beam else "serving_default"]
    translations = iter([])
    done = 0
    for sentence in sentences:
        if not sentence.strip():
            print(flush=True)
            continue
        if done % args.batch_size == 0:
            batch = texts[done : done + args.batch_size]
            translations = iter(signature(text=tf.constant(batch))["translation"].numpy())
        done += 1
        print(next(translations).decode("utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
