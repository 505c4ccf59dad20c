"""The ingest stage's per-row rules: normalization, validation reasons, split assignment, origins.

Plain functions, testable without Beam; components/ingest.py applies them in a pipeline.
"""

from __future__ import annotations

import re
import unicodedata

from components.records import stable_hash
from components.sources import RawPair

# Reasons a row is rejected for, beyond the readers' own ("malformed") and "undecodable".
SOURCE_IN_OTHER_SPLIT = "source_in_other_split"
DUPLICATE = "duplicate"
# Which split keeps a source sentence that occurs in several: a given test file over a given
# validation file over the main input (whatever split its hash gives a row), so no evaluation
# sentence is ever trained on and no test sentence is used for model selection.
SPLIT_RANK = {"": 0, "validation": 1, "test": 2}


def normalize_text(text: str, form: str) -> str:
    """Unicode normal form with runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize(form, text).split())


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# Control characters other than whitespace (which normalization turns into spaces) mean a
# broken or binary row, never a sentence.
_WHITESPACE = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85")


def has_control_characters(text: str) -> bool:
    """True when `text` holds a Unicode control character (category Cc) that is not whitespace."""
    return any(unicodedata.category(ch) == "Cc" and ch not in _WHITESPACE for ch in text)


def validate_pair(
    pair: RawPair,
    form: str,
    max_words: int,
    max_length_ratio: float = 9.0,
    reject_identical: bool = True,
) -> tuple[str, str] | str:
    """The normalized (source, target), or the reason the row is rejected.

    Reasons, checked in this order: the reader's own (e.g. "malformed"), "undecodable",
    "control_characters", "empty_source", "empty_target", "too_long", "length_ratio",
    "identical".
    """
    if pair.problem:  # found while reading, e.g. "malformed"
        return pair.problem
    try:
        source, target = _decode(pair.source), _decode(pair.target)
    except UnicodeDecodeError:
        return "undecodable"
    if has_control_characters(source) or has_control_characters(target):
        return "control_characters"
    source, target = normalize_text(source, form), normalize_text(target, form)
    if not source:
        return "empty_source"
    if not target:
        return "empty_target"
    source_words, target_words = len(source.split()), len(target.split())
    if max(source_words, target_words) > max_words:
        return "too_long"
    if max(source_words, target_words) > max_length_ratio * min(source_words, target_words):
        return "length_ratio"
    if reject_identical and source == target:
        return "identical"
    return source, target


def other_split_keeping(source_split: str, splits_of_given_sources: dict[str, str], source: str):
    """The split that keeps `source` instead of a row of `source_split`, or None.

    `splits_of_given_sources` maps each source sentence of the given validation and test files
    to the highest-ranked given split it occurs in.
    """
    other = splits_of_given_sources.get(source)
    return other if other and SPLIT_RANK[other] > SPLIT_RANK[source_split] else None


def highest_split(splits) -> str:
    """The split that keeps a source sentence found in all of `splits` (see SPLIT_RANK)."""
    return max(splits, key=SPLIT_RANK.__getitem__)


def split_of(source: str, validation: float, test: float) -> str:
    """Deterministic split from a hash of the source sentence, so a sentence has one split."""
    position = stable_hash(source) / 2**64
    if position < test:
        return "test"
    return "validation" if position < test + validation else "train"


def origin_order(origin: str) -> str:
    """A sort key for origins: file name, then line or record number ("a:9" before "a:10")."""
    name, _, position = origin.rpartition(":")
    return f"{name}\0{re.sub(r'[0-9]+', lambda m: m.group().zfill(20), position)}"


def file_of(origin: str) -> str:
    """The file name part of an origin ("train.en:17" -> "train.en")."""
    return origin.rpartition(":")[0]


def rejection(pair: RawPair, reason: str, detail: str = "") -> dict:
    """The rejected-rows record of `pair`: reason, origin, both sides and any detail."""

    def show(value: bytes | str) -> str:
        return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value

    record = {
        "reason": reason,
        "origin": pair.origin,
        "source": show(pair.source),
        "target": show(pair.target),
    }
    if detail or pair.detail:
        record["detail"] = detail or pair.detail
    return record
