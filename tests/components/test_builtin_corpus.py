"""Tests for the built-in English -> Vesperic synthetic corpus."""

from __future__ import annotations

import unicodedata
from collections import defaultdict

import pytest

from components import builtin_corpus as bc
from components.builtin_corpus import Clause, NounPhrase, Sentence

N_LARGE = 20000


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str]]:
    return list(bc.generate_pairs(N_LARGE, seed=0))


def _words(sentence: str) -> list[str]:
    assert sentence.endswith(".") and not sentence.endswith(" .")
    return sentence[:-1].split(" ")


# --- determinism ----------------------------------------------------------------------
def test_same_seed_gives_identical_pairs() -> None:
    assert list(bc.generate_pairs(200, seed=7)) == list(bc.generate_pairs(200, seed=7))


def test_different_seed_gives_different_pairs() -> None:
    assert list(bc.generate_pairs(200, seed=7)) != list(bc.generate_pairs(200, seed=8))


def test_prefix_property() -> None:
    assert list(bc.generate_pairs(300, seed=3))[:40] == list(bc.generate_pairs(40, seed=3))


def test_pinned_first_pair_for_seed_zero() -> None:
    # Guards cross-process/machine reproducibility: nothing may depend on hash().
    english, target = next(bc.generate_pairs(1, seed=0))
    assert english == (
        "The brave dog pulls hungry umbrellas because proud heavy pigs eat a sweet"
        " brush in a hard man."
    )
    assert target == (
        "Sa gadad vonuda krubrolin fimönas pakrédat zan fovimi färetas stobetas ena"
        " mokas rarata ston en stostoden brododo lobrokant."
    )


def test_zero_and_negative_counts() -> None:
    assert list(bc.generate_pairs(0, seed=0)) == []
    with pytest.raises(ValueError):
        bc.generate_pairs(-1, seed=0)


def test_target_lexicon_is_fixed_and_unique() -> None:
    lexicon = bc.target_lexicon()
    assert lexicon["dog"] == "gadad"
    assert lexicon["woman"] == "zorid"
    assert lexicon["see"] == "fagal"
    assert lexicon["in"] == "ston"
    assert len(set(lexicon.values())) == len(lexicon)
    assert any(not stem.isascii() for stem in lexicon.values())


def test_target_word_forms_are_unambiguous() -> None:
    # No inflected form of a lemma may equal a form of another lemma or function word.
    lemmas_by_form: dict[str, set[str]] = defaultdict(set)
    stems = bc.target_lexicon()
    for noun, gender in bc._GENDER.items():
        for number in ("", bc._NOUN_PLURAL[gender]):
            for case in ("nom", "acc", "dat"):
                lemmas_by_form[bc._with_case(stems[noun] + number, case)].add(noun)
    for adj in bc._ADJECTIVES:
        for suffix in (*bc._ADJ_SUFFIX[False], *bc._ADJ_SUFFIX[True]):
            lemmas_by_form[stems[adj] + suffix].add(adj)
    for verb in bc._VERB_PAST:
        for tense in bc._TENSE_SUFFIX.values():
            for person in bc._PERSON_SUFFIX.values():
                lemmas_by_form[stems[verb] + tense + person].add(verb)
    for word in (*bc._ADVERBS, *bc._PREPOSITIONS):
        lemmas_by_form[stems[word]].add(word)
    for pronoun, (_, _, _, stem) in bc._PRONOUNS.items():
        for case in ("nom", "acc", "dat"):
            lemmas_by_form[bc._with_case(stem, case)].add(pronoun)
    for det in (*bc._DEF_DET[False], *bc._DEF_DET[True], *bc._INDEF_DET):
        lemmas_by_form[det].add("<determiner>")
    for conjunction, word in bc._CONJUNCTIONS.items():
        lemmas_by_form[word].add(conjunction)
    assert {form: ls for form, ls in lemmas_by_form.items() if len(ls) > 1} == {}
    assert len(lemmas_by_form) == 2334  # well under the ~6000 budget


def test_english_word_forms_are_unambiguous() -> None:
    lemmas_by_form: dict[str, set[str]] = defaultdict(set)
    for noun in bc._NOUNS:
        for form in (noun, bc._plural(noun)):
            lemmas_by_form[form].add(noun)
    for verb in bc._VERB_PAST:
        for form in (verb, bc._add_s(verb), bc._past(verb)):
            lemmas_by_form[form].add(verb)
    for pronoun, (nominative, objective, _, _) in bc._PRONOUNS.items():
        lemmas_by_form[nominative].add(pronoun)
        lemmas_by_form[objective].add(pronoun)
    for word in (
        *bc._ADJECTIVES,
        *bc._ADVERBS,
        *bc._PREPOSITIONS,
        *bc._FUNCTION_LEMMAS,
    ):
        lemmas_by_form[word].add(word)
    assert {form: ls for form, ls in lemmas_by_form.items() if len(ls) > 1} == {}
    assert all(verb != bc._past(verb) for verb in bc._VERB_PAST)


# --- lexicon size and coverage --------------------------------------------------------
def test_lexicon_size_and_coverage(corpus: list[tuple[str, str]]) -> None:
    assert bc.SOURCE_LEXICON_SIZE == len(bc.SOURCE_LEMMAS) == 362
    tokens = {word.lower() for english, _ in corpus for word in _words(english)}
    assert len(tokens) >= 300
    # Every lemma's citation form shows up (singular noun, verb base form, subject
    # pronoun), so each lemma of the lexicon is really used.
    assert tokens >= bc.SOURCE_LEMMAS


def test_duplicates_are_rare(corpus: list[tuple[str, str]]) -> None:
    assert len(set(corpus)) >= 0.98 * len(corpus)


# --- surface form ---------------------------------------------------------------------
def test_surface_form_of_every_pair(corpus: list[tuple[str, str]]) -> None:
    for pair in corpus:
        for side in pair:
            words = _words(side)
            assert bc.MIN_WORDS <= len(words) <= bc.MAX_WORDS, side
            assert all(words), side  # single spaces only
            assert side[0].isupper(), side
            assert side[1:] == side[1:].lower(), side
            assert unicodedata.is_normalized("NFC", side), side


def test_target_is_a_function_of_the_english(corpus: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for english, target in corpus:
        assert seen.setdefault(english, target) == target, english


def test_target_uses_non_ascii_letters(corpus: list[tuple[str, str]]) -> None:
    assert any(not target.isascii() for _, target in corpus[:200])


# --- exact renderings of hand-built structures ----------------------------------------
@pytest.mark.parametrize(
    ("sentence", "english", "target"),
    [
        pytest.param(
            # Adjective after the noun, accusative object, verb-final, gender 0.
            Sentence(
                Clause(
                    NounPhrase("cat", adjs=("small",)),
                    "see",
                    obj=NounPhrase("apple", det="a", adjs=("red",)),
                )
            ),
            "The small cat sees a red apple.",
            "So {cat} {small}o en {apple}en {red}o {see}at.",
            id="svo-to-sov",
        ),
        pytest.param(
            # Plural agreement on det/noun/adjective, bare plural object, past 3pl.
            Sentence(
                Clause(
                    NounPhrase("child", plural=True, adjs=("old",)),
                    "carry",
                    past=True,
                    obj=NounPhrase("knife", plural=True, det="", adjs=("sharp",)),
                )
            ),
            "The old children carried sharp knives.",
            "Sér {child}ö {old}es {knife}an {sharp}os {carry}ént.",
            id="plural-past",
        ),
        pytest.param(
            # Ditransitive: dative recipient before accusative object; past 1pl.
            Sentence(
                Clause(
                    NounPhrase("we"),
                    "give",
                    past=True,
                    obj=NounPhrase("book", adjs=("red",)),
                    recipient=NounPhrase("woman", adjs=("young",)),
                )
            ),
            "We gave the red book to the young woman.",
            "Nu sé {woman}el {young}e sé {book}en {red}e {give}ému.",
            id="ditransitive",
        ),
        pytest.param(
            # Postposition after its noun phrase; adverb before the verb; present 1sg.
            Sentence(
                Clause(
                    NounPhrase("i"),
                    "sleep",
                    prep="in",
                    prep_obj=NounPhrase("house", adjs=("old",)),
                    adverb="quietly",
                )
            ),
            "I sleep in the old house quietly.",
            "Mi sé {house} {old}e {in} {quietly} {sleep}am.",
            id="postposition",
        ),
        pytest.param(
            # Complement clause nested before the main verb; past 2sg inside.
            Sentence(
                Clause(
                    NounPhrase("she"),
                    "say",
                    complement=Clause(
                        NounPhrase("you"),
                        "find",
                        past=True,
                        obj=NounPhrase("key", plural=True),
                    ),
                )
            ),
            "She says that you found the keys.",
            "Ha tu sér {key}ön {find}és ke {say}at.",
            id="says-that",
        ),
        pytest.param(
            # Mirror adjective order, pronoun objects, "a"/"an", "because".
            Sentence(
                Clause(
                    NounPhrase("owl", det="a", adjs=("big", "red")),
                    "watch",
                    obj=NounPhrase("he"),
                ),
                "because",
                Clause(NounPhrase("unicorn", det="a"), "help", obj=NounPhrase("they")),
            ),
            "A big red owl watches him because a unicorn helps them.",
            "Ené {owl} {red}e {big}e hon {watch}at zan ena {unicorn} zin {help}at.",
            id="because",
        ),
        pytest.param(
            # "an" before a vowel sound, "me", "and", a pronoun inside a postposition.
            Sentence(
                Clause(NounPhrase("man", det="a", adjs=("honest",)), "sleep", past=True),
                "and",
                Clause(
                    NounPhrase("owl", det="a"),
                    "see",
                    obj=NounPhrase("i"),
                    prep="with",
                    prep_obj=NounPhrase("she"),
                ),
            ),
            "An honest man slept and an owl sees me with her.",
            "Ena {man} {honest}a {sleep}ét ku ené {owl} ha {with} min {see}at.",
            id="and",
        ),
    ],
)
def test_exact_rendering(sentence: Sentence, english: str, target: str) -> None:
    assert bc.render_english(sentence) == english
    assert bc.render_target(sentence) == target.format(**bc.target_lexicon())
    assert bc.translate_english(sentence) == bc.render_target(sentence)


def test_exact_rendering_literal() -> None:
    # Fully spelled out, so the stems themselves are pinned too.
    sentence = Sentence(
        Clause(
            NounPhrase("dog", adjs=("small",)),
            "see",
            obj=NounPhrase("ball", det="a", adjs=("red",)),
        )
    )
    assert bc.render_english(sentence) == "The small dog sees a red ball."
    assert bc.render_target(sentence) == "Sa gadad breruma ené hagiden gebate fagalat."


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("watch", "watches"),
        ("carry", "carries"),
        ("play", "plays"),
        ("box", "boxes"),
        ("city", "cities"),
        ("key", "keys"),
    ],
)
def test_regular_s_forms(word: str, expected: str) -> None:
    assert bc._add_s(word) == expected


@pytest.mark.parametrize(
    ("noun", "expected"),
    [
        ("man", "men"),
        ("child", "children"),
        ("mouse", "mice"),
        ("wolf", "wolves"),
        ("potato", "potatoes"),
        ("dish", "dishes"),
    ],
)
def test_noun_plurals(noun: str, expected: str) -> None:
    assert bc._plural(noun) == expected


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("give", "gave"),
        ("carry", "carried"),
        ("play", "played"),
        ("arrive", "arrived"),
        ("drop", "dropped"),
        ("walk", "walked"),
    ],
)
def test_past_tense(verb: str, expected: str) -> None:
    assert bc._past(verb) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("apple", "an"), ("ball", "a"), ("unicorn", "a"), ("honest", "an"), ("old", "an")],
)
def test_article(word: str, expected: str) -> None:
    assert bc._article(word) == expected


def test_invalid_noun_phrases_are_rejected() -> None:
    with pytest.raises(ValueError):
        NounPhrase("dog", plural=True, det="a")
    with pytest.raises(ValueError):
        NounPhrase("dog", det="")
    with pytest.raises(ValueError):
        NounPhrase("unknownword")
