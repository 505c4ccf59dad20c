"""Built-in synthetic parallel corpus: English -> Vesperic (a constructed language).

Every Vesperic sentence is a deterministic function of the English sentence, so a model
can learn the mapping exactly, but translating needs attention: clauses are verb-final
(SOV), adjectives follow the noun in mirror order, prepositions become postpositions,
and words agree in gender, number, case, tense and person.

Vesperic grammar, in short:
  * nouns: stem (+ plural suffix by gender) (+ case suffix: accusative -n, dative -l,
    with an "e" inserted after a consonant); three genders, fixed per noun;
  * determiners: definite by gender and number, indefinite singular by gender, none for
    an English bare plural;
  * adjectives: stem + gender/number suffix, after the noun, in reverse English order;
  * verbs: stem + tense suffix + person suffix (1sg, 2sg, 3sg, 1pl, 3pl);
  * clause order: subject, postpositional phrase, recipient (dative), object
    (accusative), complement clause + "ke", adverb, verb.

English "I" is written "i" inside a sentence: the corpus convention is that only the
first letter of a sentence is upper-case.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MIN_WORDS = 3
MAX_WORDS = 25

# --------------------------------------------------------------------------------------
# English lexicon. "lemma:form" gives an irregular plural (nouns) or past (verbs).
# Lemmas are disjoint across parts of speech and no inflected form of one lemma equals
# a form of another, so the English surface string determines the structure.
# --------------------------------------------------------------------------------------
_ANIMATE_NOUN_SPEC = """
man:men woman:women child:children person:people boy girl baby lady teacher doctor
farmer student king queen soldier friend neighbor baker singer driver sailor hunter
painter writer nurse judge guard merchant thief:thieves prince princess wizard witch
giant pilot fisherman:fishermen uncle aunt
dog cat horse bird mouse:mice wolf:wolves fox bear lion tiger rabbit cow goat duck
snake frog owl eagle monkey donkey goose:geese ox:oxen pig camel elephant spider bee
whale dragon unicorn
"""
_THING_NOUN_SPEC = """
book ball apple letter box key cup bottle chair table bed door window knife:knives hat
coat shoe ring coin basket bag lamp candle clock mirror picture map pen plate spoon bowl
sword shield stone flower tree leaf:leaves egg cake orange pear banana carrot
potato:potatoes tomato:tomatoes rope wheel boat ship car train bicycle drum guitar
violin flag gift toy doll kite blanket pillow bucket ladder hammer brush glass dish
umbrella shelf:shelves loaf:loaves jewel crown feather bell envelope ticket radio
house garden river forest city village school market church castle bridge tower island
mountain valley lake field farm road street kitchen room palace cave hill beach harbor
library hospital shop station park temple tent barn office museum desert ocean
"""
_ADJECTIVE_SPEC = """
big small old young red blue green yellow black white brown gray happy sad angry tired
hungry quiet tall short long heavy beautiful ugly clever brave kind strange rich poor
warm cold dark bright clean dirty new empty full soft hard sharp wild proud honest
famous lazy busy sick strong weak wet dry round thin sweet wise ancient elegant purple
"""
_INTRANSITIVE_SPEC = """
run:ran sleep:slept walk swim:swam dance laugh cry smile jump fall:fell arrive wait work
play sit:sat stand:stood shout fly:flew rest travel whisper sneeze hide:hid cough
"""
_TRANSITIVE_SPEC = """
see:saw find:found take:took hold:held carry watch like love want need open close push
pull wash build:built break:broke paint buy:bought catch:caught eat:ate drink:drank
follow visit help touch kick lift draw:drew write:wrote drop:dropped steal:stole hate
fix chase call climb greet hug:hugged admire forget:forgot keep:kept choose:chose
"""
_DITRANSITIVE_SPEC = """
give:gave send:sent show:showed bring:brought throw:threw sell:sold offer lend:lent
"""
_SPEECH_SPEC = "say:said think:thought know:knew believe hope hear:heard"
_ADVERB_SPEC = """
quickly slowly quietly loudly happily sadly carefully calmly badly well again here there
outside gently eagerly
"""
_PREPOSITION_SPEC = "in on under near with behind beside without"
_FUNCTION_LEMMAS = ("the", "a", "and", "because", "that", "to")

# lemma -> (English nominative, English object form, person, Vesperic stem)
_PRONOUNS = {
    "i": ("i", "me", "1sg", "mi"),
    "you": ("you", "you", "2sg", "tu"),
    "he": ("he", "him", "3sg", "ho"),
    "she": ("she", "her", "3sg", "ha"),
    "we": ("we", "us", "1pl", "nu"),
    "they": ("they", "them", "3pl", "zi"),
}
# Vowel letters that do not start with a vowel sound, and vice versa, for "a"/"an".
_ARTICLE_EXCEPTIONS = frozenset({"unicorn", "honest"})
_VOWEL_LETTERS = "aeiou"


def _parse(spec: str) -> dict[str, str | None]:
    """Parse "lemma" / "lemma:irregular" entries, keeping their order."""
    entries = (item.partition(":") for item in spec.split())
    return {lemma: (form or None) for lemma, _, form in entries}


_ANIMATES = _parse(_ANIMATE_NOUN_SPEC)
_NOUNS = {**_ANIMATES, **_parse(_THING_NOUN_SPEC)}
_ADJECTIVES = tuple(_parse(_ADJECTIVE_SPEC))
_ADVERBS = tuple(_parse(_ADVERB_SPEC))
_PREPOSITIONS = tuple(_parse(_PREPOSITION_SPEC))
_VERB_GROUPS = {
    kind: _parse(spec)
    for kind, spec in (
        ("intransitive", _INTRANSITIVE_SPEC),
        ("transitive", _TRANSITIVE_SPEC),
        ("ditransitive", _DITRANSITIVE_SPEC),
        ("speech", _SPEECH_SPEC),
    )
}
_VERB_PAST = {v: p for group in _VERB_GROUPS.values() for v, p in group.items()}
_VERB_LISTS = {kind: tuple(group) for kind, group in _VERB_GROUPS.items()}
_NOUN_LIST = tuple(_NOUNS)
_ANIMATE_LIST = tuple(_ANIMATES)  # subjects and recipients, so sentences stay plausible
_PRONOUN_LIST = tuple(_PRONOUNS)

SOURCE_LEMMAS: frozenset[str] = frozenset(
    [
        *_NOUNS,
        *_ADJECTIVES,
        *_VERB_PAST,
        *_ADVERBS,
        *_PREPOSITIONS,
        *_PRONOUNS,
        *_FUNCTION_LEMMAS,
    ]
)
SOURCE_LEXICON_SIZE: int = len(SOURCE_LEMMAS)

# --------------------------------------------------------------------------------------
# Vesperic lexicon and morphology. Stems come from a SHA-256 of the English lemma, so
# the language is identical for every corpus seed, process and machine (unlike hash()).
# --------------------------------------------------------------------------------------
_ONSETS = (*"bdfghklmnprstvz", "br", "dr", "kr", "st")
# Mostly ASCII vowels; the rare non-ASCII ones exercise Unicode handling downstream.
_VOWELS = (*("aeiou" * 6), "ä", "ö", "é")
_CODAS = tuple("nrlstkmd")

# Tables indexed [is_plural][gender] or [gender].
_DEF_DET = {False: ("so", "sa", "sé"), True: ("sor", "sar", "sér")}
_INDEF_DET = ("en", "ena", "ené")
_NOUN_PLURAL = ("a", "i", "ö")
_ADJ_SUFFIX = {False: ("o", "a", "e"), True: ("os", "as", "es")}
_CASE_SUFFIX = {"nom": "", "acc": "n", "dat": "l"}
_TENSE_SUFFIX = {False: "a", True: "é"}  # keyed by "is past"
_PERSON_SUFFIX = {"1sg": "m", "2sg": "s", "3sg": "t", "1pl": "mu", "3pl": "nt"}
_CONJUNCTIONS = {"and": "ku", "because": "zan", "that": "ke"}
_TARGET_VOWELS = frozenset("aeiouäöé")


def _digest_rng(key: str) -> random.Random:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _make_stem(lemma: str, syllables: int, taken: set[str]) -> str:
    """Derive a fresh consonant-final stem for ``lemma``; retries on collisions."""
    for attempt in itertools.count():
        rng = _digest_rng(f"stem:{lemma}:{attempt}")
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        stem += rng.choice(_CODAS)
        if stem not in taken:
            taken.add(stem)
            return stem
    raise AssertionError("unreachable")


def _build_stems() -> dict[str, str]:
    # Function words are reserved first so no content stem can shadow them.
    taken = {*_DEF_DET[False], *_DEF_DET[True], *_INDEF_DET, *_CONJUNCTIONS.values()}
    taken |= {p[3] + suffix for p in _PRONOUNS.values() for suffix in ("", "n", "l")}
    content = [*_NOUNS, *_ADJECTIVES, *_VERB_PAST, *_ADVERBS]
    stems = {lemma: _make_stem(lemma, 2, taken) for lemma in content}
    stems.update({prep: _make_stem(prep, 1, taken) for prep in _PREPOSITIONS})
    return stems


_STEMS = _build_stems()
_GENDER = {noun: _digest_rng(f"gender:{noun}").randrange(3) for noun in _NOUNS}


def target_lexicon() -> dict[str, str]:
    """Return the fixed English-lemma -> Vesperic-stem table (content words only)."""
    return dict(_STEMS)


# --------------------------------------------------------------------------------------
# Sentence structures
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NounPhrase:
    """A noun with determiner and adjectives, or a pronoun.

    ``det`` is "the", "a" (singular only) or "" (bare plural only); a pronoun ``head``
    is one of "i", "you", "he", "she", "we", "they" and ignores the other fields.
    """

    head: str
    plural: bool = False
    det: str = "the"
    adjs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.head in _PRONOUNS:
            return
        if self.head not in _NOUNS or any(a not in _STEMS for a in self.adjs):
            raise ValueError(f"unknown noun phrase words: {self}")
        if self.det not in ("the", "" if self.plural else "a"):
            raise ValueError(f"determiner {self.det!r} does not fit plural={self.plural}")


@dataclass(frozen=True)
class Clause:
    """One clause; ``complement`` is only used with speech verbs ("says that ...")."""

    subj: NounPhrase
    verb: str
    past: bool = False
    obj: NounPhrase | None = None
    recipient: NounPhrase | None = None
    prep: str | None = None
    prep_obj: NounPhrase | None = None
    adverb: str | None = None
    complement: Clause | None = None


@dataclass(frozen=True)
class Sentence:
    """A main clause, optionally followed by "and"/"because" and a second clause."""

    main: Clause
    link: str | None = None
    second: Clause | None = None


def _person(np: NounPhrase) -> str:
    if np.head in _PRONOUNS:
        return _PRONOUNS[np.head][2]
    return "3pl" if np.plural else "3sg"


# --------------------------------------------------------------------------------------
# English rendering
# --------------------------------------------------------------------------------------
def _add_s(word: str) -> str:
    """Regular noun plural / verb 3rd person singular."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWEL_LETTERS:
        return word[:-1] + "ies"
    return word + "s"


def _plural(noun: str) -> str:
    return _NOUNS[noun] or _add_s(noun)


def _past(verb: str) -> str:
    if _VERB_PAST[verb]:
        return _VERB_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in _VOWEL_LETTERS:
        return verb[:-1] + "ied"
    return verb + "ed"


def _article(next_word: str) -> str:
    vowel_sound = (next_word[0] in _VOWEL_LETTERS) != (next_word in _ARTICLE_EXCEPTIONS)
    return "an" if vowel_sound else "a"


def _english_np(np: NounPhrase, subject: bool) -> list[str]:
    if np.head in _PRONOUNS:
        return [_PRONOUNS[np.head][0 if subject else 1]]
    words = [*np.adjs, _plural(np.head) if np.plural else np.head]
    if np.det == "a":
        words.insert(0, _article(words[0]))
    elif np.det:
        words.insert(0, np.det)
    return words


def _english_verb(clause: Clause) -> str:
    if clause.past:
        return _past(clause.verb)
    return _add_s(clause.verb) if _person(clause.subj) == "3sg" else clause.verb


def _english_clause(c: Clause) -> list[str]:
    words = [*_english_np(c.subj, subject=True), _english_verb(c)]
    if c.obj:
        words += _english_np(c.obj, subject=False)
    if c.recipient:
        words += ["to", *_english_np(c.recipient, subject=False)]
    if c.prep and c.prep_obj:
        words += [c.prep, *_english_np(c.prep_obj, subject=False)]
    if c.adverb:
        words.append(c.adverb)
    if c.complement:
        words += ["that", *_english_clause(c.complement)]
    return words


# --------------------------------------------------------------------------------------
# Vesperic rendering
# --------------------------------------------------------------------------------------
def _with_case(word: str, case: str) -> str:
    suffix = _CASE_SUFFIX[case]
    # Epenthetic "e" keeps case endings pronounceable after consonant-final forms.
    if suffix and word[-1] not in _TARGET_VOWELS:
        suffix = "e" + suffix
    return word + suffix


def _target_np(np: NounPhrase, case: str) -> list[str]:
    if np.head in _PRONOUNS:
        return [_with_case(_PRONOUNS[np.head][3], case)]
    gender = _GENDER[np.head]
    noun = _STEMS[np.head] + (_NOUN_PLURAL[gender] if np.plural else "")
    words = [_with_case(noun, case)]
    suffix = _ADJ_SUFFIX[np.plural][gender]
    words += [_STEMS[adj] + suffix for adj in reversed(np.adjs)]
    if np.det == "the":
        words.insert(0, _DEF_DET[np.plural][gender])
    elif np.det == "a":
        words.insert(0, _INDEF_DET[gender])
    return words


def _target_clause(c: Clause) -> list[str]:
    words = _target_np(c.subj, "nom")
    if c.prep and c.prep_obj:
        words += [*_target_np(c.prep_obj, "nom"), _STEMS[c.prep]]
    if c.recipient:
        words += _target_np(c.recipient, "dat")
    if c.obj:
        words += _target_np(c.obj, "acc")
    if c.complement:
        words += [*_target_clause(c.complement), _CONJUNCTIONS["that"]]
    if c.adverb:
        words.append(_STEMS[c.adverb])
    words.append(_STEMS[c.verb] + _TENSE_SUFFIX[c.past] + _PERSON_SUFFIX[_person(c.subj)])
    return words


def _finish(words: list[str]) -> str:
    text = " ".join(words)
    return unicodedata.normalize("NFC", text[0].upper() + text[1:] + ".")


def _render(
    sentence: Sentence,
    clause_fn: Callable[[Clause], list[str]],
    link_fn: Callable[[str], str],
) -> str:
    words = clause_fn(sentence.main)
    if sentence.link and sentence.second:
        words += [link_fn(sentence.link), *clause_fn(sentence.second)]
    return _finish(words)


def render_english(sentence: Sentence) -> str:
    """Render the English side, e.g. "The small dog sees a red ball ."."""
    return _render(sentence, _english_clause, lambda link: link)


def render_target(sentence: Sentence) -> str:
    """Render the Vesperic translation of ``sentence`` (deterministic)."""
    return _render(sentence, _target_clause, _CONJUNCTIONS.__getitem__)


def translate_english(sentence: Sentence) -> str:
    """Alias of :func:`render_target`: the translation of a sentence structure."""
    return render_target(sentence)


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------
def _sample_np(rng: random.Random, pronoun_rate: float, animate: bool = False) -> NounPhrase:
    if rng.random() < pronoun_rate:
        return NounPhrase(rng.choice(_PRONOUN_LIST))
    plural = rng.random() < 0.35
    det = "the" if rng.random() < 0.6 else ("" if plural else "a")
    n_adjs = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
    adjs = tuple(rng.sample(_ADJECTIVES, n_adjs))
    return NounPhrase(rng.choice(_ANIMATE_LIST if animate else _NOUN_LIST), plural, det, adjs)


def _sample_clause(rng: random.Random) -> Clause:
    subj = _sample_np(rng, 0.25, animate=True)
    past, kind = rng.random() < 0.5, rng.random()
    obj = recipient = prep = prep_obj = None
    if kind < 0.3:
        verb = rng.choice(_VERB_LISTS["intransitive"])
    elif kind < 0.8:
        verb, obj = rng.choice(_VERB_LISTS["transitive"]), _sample_np(rng, 0.1)
    else:
        verb, obj = rng.choice(_VERB_LISTS["ditransitive"]), _sample_np(rng, 0.0)
        recipient = _sample_np(rng, 0.15, animate=True)
    if recipient is None and rng.random() < 0.4:
        prep, prep_obj = rng.choice(_PREPOSITIONS), _sample_np(rng, 0.05)
    adverb = rng.choice(_ADVERBS) if rng.random() < 0.35 else None
    return Clause(subj, verb, past, obj, recipient, prep, prep_obj, adverb)


def sample_sentence(rng: random.Random) -> Sentence:
    """Draw one random sentence structure (length is not checked here)."""
    r = rng.random()
    if r < 0.5:
        return Sentence(_sample_clause(rng))
    if r < 0.65:
        subj = _sample_np(rng, 0.3, animate=True)
        verb, past = rng.choice(_VERB_LISTS["speech"]), rng.random() < 0.5
        return Sentence(Clause(subj, verb, past, complement=_sample_clause(rng)))
    link = "and" if r < 0.82 else "because"
    return Sentence(_sample_clause(rng), link, _sample_clause(rng))


def word_count(sentence: str) -> int:
    """Count whitespace-separated words; the final period is attached to the last word."""
    return len(sentence.split())


def _sample_pair(rng: random.Random) -> tuple[str, str]:
    # Resampling (rather than truncating) keeps every pair grammatical.
    while True:
        sentence = sample_sentence(rng)
        pair = render_english(sentence), render_target(sentence)
        if all(MIN_WORDS <= word_count(side) <= MAX_WORDS for side in pair):
            return pair


def generate_pairs(num_pairs: int, seed: int) -> Iterator[tuple[str, str]]:
    """Yield ``num_pairs`` (english, vesperic) pairs.

    The same (num_pairs, seed) gives the same sequence on any machine or process, and
    the first k pairs of a longer run equal ``generate_pairs(k, seed)``. Only a private
    ``random.Random(seed)`` is used, so the global random state is untouched.
    """
    if num_pairs < 0:
        raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
    rng = random.Random(seed)
    return (_sample_pair(rng) for _ in range(num_pairs))
