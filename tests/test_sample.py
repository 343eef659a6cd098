"""The synthetic offline sample: deterministic, consistent with its world, varied enough."""

from __future__ import annotations

import re

import pytest

from flops_fit.data import sample
from flops_fit.data.sample import SAMPLE_VERSION, SPLIT_SIZES, generate_stories, iter_stories, world
from flops_fit.data.sample_lexicon import PETS


def _hero(story: str) -> dict:
    """The protagonist: the first sentence names them in full ("... named Mia Brook")."""
    full = re.search(r"(?:named|called) (\w+ \w+)", story.split(".")[0]).group(1)
    return next(k for k in world() if k["full"] == full)


def test_api_shape():
    assert isinstance(SAMPLE_VERSION, str) and SAMPLE_VERSION
    assert set(SPLIT_SIZES) == {"train", "validation"}
    assert SPLIT_SIZES["train"] * 300 >= 20_000_000  # >= ~20M tokens at ~300 tokens a story
    assert 1_000 <= SPLIT_SIZES["validation"] <= 20_000


def test_deterministic_and_sliceable():
    a = generate_stories("train", 0, 15)
    assert a == generate_stories("train", 0, 15)
    assert generate_stories("train", 10, 5) == a[10:]
    assert generate_stories("validation", 7, 1)[0] == generate_stories("validation", 0, 8)[7]
    assert next(iter_stories("validation", 3)) == generate_stories("validation", 3, 1)[0]
    last = SPLIT_SIZES["train"] - 1
    assert generate_stories("train", last, 1) and generate_stories("train", 0, 0) == []


def test_splits_differ():
    train, val = set(generate_stories("train", 0, 300)), set(generate_stories("validation", 0, 300))
    assert not train & val


@pytest.mark.parametrize(
    "args, match",
    [
        (("test", 0, 1), "unknown split"),
        (("train", -1, 1), "start"),
        (("train", 0, -2), "count"),
        (("train", 1.5, 1), "start"),
        (("validation", SPLIT_SIZES["validation"] - 1, 2), "past the end"),
    ],
)
def test_range_validation(args, match):
    with pytest.raises(ValueError, match=match):
        generate_stories(*args)


def test_world_is_fixed_and_consistent():
    cast = world()
    assert len(cast) == sample.WORLD_SIZE
    assert len({k["full"] for k in cast}) == len(cast)  # full names identify a child
    for k in cast[:200]:
        friend = cast[k["friend"]]
        assert friend["town"] == k["town"] and friend is not k
        sib = [s for s in cast if s["name"] == k["sib"] and s["last"] == k["last"]]
        assert sib and sib[0]["town"] == k["town"]


def test_stories_use_the_world_and_pronouns_consistently():
    stories = generate_stories("train", 0, 400)
    uses = 0
    for story in stories:
        hero = _hero(story)
        # Every fact the story states about the hero is the world's fact.
        kinds = "|".join(p[0] for p in PETS)
        m = re.search(rf"{hero['name']} had a (?:pet )?({kinds}) (?:named|called) (\w+)\.", story)
        if m:
            assert (m.group(1), m.group(2)) == (hero["petkind"], hero["pet"])
        for m in re.finditer(rf"{hero['name']} lived in ([A-Z][\w ]+?), near", story):
            assert m.group(1) == hero["town"]
        for m in re.finditer(r"(?:His|Her) favorite color was (\w[\w ]*?)\.", story):
            assert m.group(1) == hero["color"]
        for m in re.finditer(rf"{hero['name']} ate ([\w ]+) for dinner", story):
            assert m.group(1) == hero["food"]
        uses += hero["pet"] in story
        # Pronouns follow the hero's gender in the sentences that start with "X ... his/her".
        wrong = "her" if hero["kid"] == "boy" else "his"
        assert not re.search(rf"\b{hero['name']} (?:put|held|wiped|scratched) {wrong}\b", story)
    assert uses / len(stories) > 0.9  # the pet comes back in nearly every story


def test_same_child_same_facts_across_stories():
    seen: dict[str, set] = {}
    for story in generate_stories("validation", 0, 600):
        hero = _hero(story)
        m = re.search(rf"{hero['name']} (?:would say|always said),? \"([^\"]+)\"", story)
        if m:
            seen.setdefault(hero["full"], set()).add(m.group(1))
    assert seen and all(len(v) == 1 for v in seen.values())


def test_variety_and_length():
    stories = generate_stories("train", 1_000, 2_000)
    words = [re.findall(r"[A-Za-z']+", s) for s in stories]
    types = {w.lower() for ws in words for w in ws}
    assert len(types) >= 1_000
    assert len(set(stories)) >= 0.99 * len(stories)
    mean = sum(map(len, words)) / len(words)
    assert 180 <= mean <= 350
    assert min(map(len, words)) >= 100 and max(map(len, words)) <= 450
    heroes = {_hero(s)["full"] for s in stories[:500]}
    assert len(heroes) >= 200  # many protagonists, not a handful
    assert sum('"' in s for s in stories) > 0.9 * len(stories)  # dialogue in nearly every story
