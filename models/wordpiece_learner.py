"""A fast WordPiece vocabulary learner working from word counts.

Algorithm: bottom-up byte-pair-encoding style merges on the word -> count table, with pieces
spelled the WordPiece way. Every word starts as its first character followed by its other
characters as continuation pieces (``"low"`` -> ``l ##o ##w``). The most frequent adjacent pair
of pieces (count weighted by word count; ties broken by the pieces' strings) is merged into one
piece, spelled as the left piece plus the right piece without its joiner (``l`` + ``##o`` ->
``lo``, ``##e`` + ``##s`` -> ``##es``), so a piece is word-initial exactly when its left part is.
Pair counts live in a dict and are updated incrementally: a merge only revisits the words that
hold the merged pair (an index pair -> words), and a lazy max-heap of (count, pair) entries
gives the next merge (entries are pushed when a count grows; one found too high on top is
re-queued at the current count).

Budget: many learned pieces only serve as steps towards longer ones (``##es`` on the way to
``##est``) and no longer occur in any word's current segmentation. The learner tracks how many
learned pieces are still in use and keeps merging until the next merge would put more of them
in use than the vocabulary has room for (or no pair is left). The vocabulary takes every piece
in use. Room is left only when no pair is left, i.e. every counted word has become one piece
(so greedy longest-match keeps it whole whatever else is added); it is filled with the earliest
learned of the other pieces, which help with rare and unseen words.

The vocabulary is: reserved tokens, then every character of the alphabet as a word-initial
token, then as a continuation token (both most frequent first, ties by string), then the chosen
pieces in the order they were learned. Because every alphabet character is there in both
forms, greedy longest-match WordPiece (tensorflow-text ``BertTokenizer``) can always fall back
to single characters and never produces ``[UNK]`` for a word made of alphabet characters.

The alphabet is the ``max_unique_chars`` most frequent characters (count weighted by word
count, ties by string) over all non-reserved words, including rare ones. Only words with count
``>= min_count``, at most ``max_token_length`` characters long and made only of alphabet
characters take part in the merges; so do not words that start with the joiner (their first
pieces would be spelled like continuation pieces; a punctuation-splitting pretokenizer such as
BERT's never produces them). The result does not depend on the order of the input.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


def learn_wordpiece_vocab(
    word_counts: Iterable[tuple[str, int]],
    vocab_size: int,
    reserved_tokens: list[str],
    min_count: int = 2,
    max_token_length: int = 50,
    max_unique_chars: int = 1000,
    joiner: str = "##",
) -> list[str]:
    """A WordPiece vocabulary of at most `vocab_size` tokens, reserved tokens first.

    Args:
        word_counts: (word, count) pairs; a word listed twice has its counts added.
        vocab_size: the maximum vocabulary size, reserved tokens included.
        reserved_tokens: tokens placed first, in order (e.g. ``["[PAD]", "[UNK]"]``).
        min_count: words counted fewer times only contribute characters to the alphabet.
        max_token_length: longer words only contribute characters to the alphabet.
        max_unique_chars: the size limit of the alphabet (most frequent characters kept).
        joiner: the prefix of continuation pieces.

    Raises:
        ValueError: if `vocab_size` cannot hold the reserved tokens and the alphabet.
    """
    reserved = set(reserved_tokens)
    counts: dict[str, int] = {}
    for word, count in word_counts:
        if word and word not in reserved and count > 0:
            counts[word] = counts.get(word, 0) + count

    char_counts: dict[str, int] = {}
    for word, count in counts.items():
        for char in word:
            char_counts[char] = char_counts.get(char, 0) + count
    ranked = sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))
    alphabet = [char for char, _ in ranked[:max_unique_chars]]

    vocab = list(dict.fromkeys(reserved_tokens))
    known = set(vocab)
    for token in alphabet + [joiner + char for char in alphabet]:
        if token not in known:
            known.add(token)
            vocab.append(token)
    if len(vocab) > vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} cannot hold the {len(reserved_tokens)} reserved tokens "
            f"and the {len(alphabet)} characters in both forms ({len(vocab)} tokens)"
        )

    allowed = set(alphabet)
    words = sorted(
        word
        for word, count in counts.items()
        if count >= min_count
        and len(word) <= max_token_length
        and allowed.issuperset(word)
        and not word.startswith(joiner)  # its first pieces would read as continuations
    )
    learned = _merge(
        [[word[0]] + [joiner + char for char in word[1:]] for word in words],
        [counts[word] for word in words],
        vocab_size - len(vocab),
        known,
        len(joiner),
    )
    return vocab + learned


def _merge(
    pieces: list[list[str]], freqs: list[int], budget: int, known: set[str], joiner_len: int
) -> list[str]:
    """Greedy pair merges on `pieces` (one list per word, updated in place).

    Returns the chosen new pieces (at most `budget`) in the order they were learned; `known`
    holds the tokens already in the vocabulary and gets the learned ones added.
    """
    pair_counts: dict[tuple[str, str], int] = {}  # weighted by word count
    where: dict[tuple[str, str], set[int]] = {}  # word indices; may hold stale ones
    usage: dict[str, int] = {}  # occurrences in the current segmentation (unweighted)
    for index, (word, freq) in enumerate(zip(pieces, freqs)):
        for piece in word:
            usage[piece] = usage.get(piece, 0) + 1
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + freq
            if pair in where:
                where[pair].add(index)
            else:
                where[pair] = {index}
    heap = [(-count, left, right) for (left, right), count in pair_counts.items()]
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush

    learned: list[str] = []
    is_learned: set[str] = set()
    live = 0  # learned pieces with usage > 0
    while heap:
        neg_count, left, right = heappop(heap)
        pair = (left, right)
        count = pair_counts.get(pair)
        if count != -neg_count:
            # Stale entry. Decreases push nothing, so the entry that was too high re-queues
            # the pair at its current count.
            if count is not None and count < -neg_count:
                heappush(heap, (-count, left, right))
            continue
        merged = left + right[joiner_len:]

        # The merged segmentations of the words holding the pair (non-overlapping, left to right).
        updates: list[tuple[int, list[str]]] = []
        merges = 0
        for index in where[pair]:
            word = pieces[index]
            new_word: list[str] = []
            i, n = 0, len(word)
            while i < n:
                if i + 1 < n and word[i] == left and word[i + 1] == right:
                    new_word.append(merged)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            if len(new_word) != n:
                updates.append((index, new_word))
                merges += n - len(new_word)

        # Stop before the learned pieces still in use would overflow the budget.
        consumed = {left: merges}
        consumed[right] = consumed.get(right, 0) + merges
        new_live = live
        if (merged in is_learned or merged not in known) and not usage.get(merged):
            new_live += 1
        for piece, uses in consumed.items():
            if piece in is_learned and usage[piece] == uses:
                new_live -= 1
        if new_live > budget:
            break
        live = new_live
        if merged not in known:
            known.add(merged)
            is_learned.add(merged)
            learned.append(merged)
        for piece, uses in consumed.items():
            usage[piece] -= uses
        usage[merged] = usage.get(merged, 0) + merges

        # Incremental pair counts: only the words that held the pair change. An entry is
        # pushed only when a count grows; a count that shrinks leaves its old entry (too high).
        del where[pair]
        delta: dict[tuple[str, str], int] = {}
        for index, new_word in updates:
            word = pieces[index]
            freq = freqs[index]
            for old in zip(word, word[1:]):
                delta[old] = delta.get(old, 0) - freq
            for new in zip(new_word, new_word[1:]):
                delta[new] = delta.get(new, 0) + freq
                if new[0] == merged or new[1] == merged:  # the only pairs new to the word
                    if new in where:
                        where[new].add(index)
                    else:
                        where[new] = {index}
            pieces[index] = new_word
        for key, change in delta.items():
            if change:
                count = pair_counts.get(key, 0) + change
                if count <= 0:
                    del pair_counts[key]
                    continue
                pair_counts[key] = count
                if change > 0:
                    heappush(heap, (-count, key[0], key[1]))

    # Every piece in use; room left over goes to the earliest of the pieces that were only steps.
    spare = budget - live
    chosen = []
    for piece in learned:
        if usage[piece] > 0:
            chosen.append(piece)
        elif spare > 0:
            chosen.append(piece)
            spare -= 1
    return chosen
