"""The offline sample: a SYNTHETIC corpus of short children's stories.

This is NOT TinyStories. No text here comes from TinyStories (or any dataset); the stories
only mimic its format and style (simple English, one story per document, dialogue in
quotes, a little moral at the end), so every command and test runs with no network.

How it is built
---------------
1. A fixed *world* of ``WORLD_SIZE`` children, drawn once from a fixed seed: families
   (surname, town, grandparent, 2-3 siblings) and, per child, fixed facts: full name,
   gender and pronouns, age, pet (kind and name), favourite colour, food, place, toy and
   activity, birthday month, house and street, favourite animal, catchphrase, and a best
   friend from the same town. Towns have fixed landmarks; pet kinds
   have fixed sounds and habits.
2. Each story picks a protagonist (Zipf-like: a few children appear often, most rarely),
   states some of their facts, then runs one or two of a dozen plot templates (lost toy,
   sharing, baking for grandparent, storm, learning a skill, hurt animal, contest, garden,
   friend's birthday, trip, quarrel, picnic): problem, attempts, resolution, moral. Every
   sentence has several wordings. Plots reuse world facts (the friend's favourite colour
   and food in the birthday plot, the grandparent's town on the trip) and facts introduced
   early come back late (the lost toy is found, the pet finds it, dinner is the favourite
   food), so the text has long-range dependencies.

Why
---
A naive template generator saturates tiny models: the IsoFLOP curve is flat and the
smallest model wins (measured on an earlier template corpus). Here part of the loss is *knowledge*:
grammar and templates are learnt by small models, but predicting ``Mia Brook``'s pet's
name, town or favourite food needs the world memorised (~3,000 children x ~14 facts),
which pays off with capacity -- so bigger models keep getting better for a while and
IsoFLOP curves get valleys at CPU budgets.

Determinism: story ``i`` of ``split`` is a pure function of ``(split, i, SAMPLE_VERSION)``
through a per-story ``random.Random`` seeded with an integer (never Python's salted
``hash()``), so any contiguous shard can be generated lazily, in any order, on any worker.
Bump ``SAMPLE_VERSION`` whenever the output changes (consumers key their caches on it).

Run ``python -m flops_fit.data.sample`` for corpus statistics.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Iterator

from flops_fit.data import sample_lexicon as L

SAMPLE_VERSION = "synthetic-v1"
"""Changes whenever any story's text changes; a cache key for tokenised shards."""
SAMPLE_NAME = f"sample:{SAMPLE_VERSION}"
"""How consumers name this corpus: the token cache's key and a recipe's recorded source."""

SPLIT_SIZES: dict[str, int] = {"train": 400_000, "validation": 5_000}
"""Stories per split. A story averages ~260 words, ~330 BPE tokens at a 2-4k vocabulary
(measured with a byte-level BPE, see ``_main``): train ~130M tokens, validation ~1.6M."""

WORLD_SIZE = 3_000
_WORLD_SEED = 20_261_101  # the world is the same for every split (validation tests it)
_SPLIT_CODE = {"train": 1, "validation": 2}
_VERSION_CODE = 1  # part of every story seed; bump together with SAMPLE_VERSION
_AGES = ("four", "five", "six", "seven", "eight", "nine")


def _alts(s: str) -> tuple[str, ...]:
    return tuple(s.split("|"))


_INTRO_NAME = _alts(L.INTRO_NAME)
_INTRO_FACTS = tuple(_alts(s) for s in L.INTRO_FACTS)
_OPEN = _alts(L.OPEN_SCENE)
_PLOTS = {k: tuple(_alts(s) for s in v) for k, v in L.PLOTS.items()}
_PLOT_NAMES = tuple(sorted(_PLOTS))
_CLOSING = tuple(_alts(s) for s in L.CLOSING)
_FILLERS = _alts(L.FILLERS.replace("\n", ""))
_CONNECTORS = L.CONNECTORS
# A connector ("Then, ...") never goes before these (they already set the time), nor before a
# quote; after it the first word is lower-cased unless it is a name.
_NO_CONNECT = frozenset("Then Soon Suddenly Just At After Later Next Slowly Before First Tomorrow One "
                        "Every Days By In On Once Long It Oops Boom Thunder That So Together From "
                        "Meanwhile Everyone Whenever But Oh Poor".split())
_NAMES = frozenset(L.GIRLS + L.BOYS + L.PET_NAMES + ("Mom", "Dad", "I", "Grandma", "Grandpa"))
_BRIDGES = ("A few days later, something else happened.", "The next day, there was a new adventure.",
            "Later that week, something new happened.")
_PRONOUNS = {"boy": ("he", "him", "his"), "girl": ("she", "her", "her")}


class _Rng(random.Random):
    """A ``random.Random`` that also counts the entropy (nats) of the choices it made.

    The sum is an upper bound on the information in a story given the generator and the
    world: the loss floor a perfect model could reach is ``nats / tokens``."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.nats = 0.0

    def pick(self, seq):
        n = len(seq)
        if n > 1:
            self.nats += math.log(n)
        return seq[int(self.random() * n)]

    def distinct(self, seq, k: int) -> list:
        """k distinct items in random order (our own draw: ``random.sample``'s algorithm is not
        promised to stay the same across Python versions, and the corpus must not move)."""
        pool, out = list(seq), []
        for _ in range(k):
            out.append(pool.pop(int(self.random() * len(pool))))
            self.nats += math.log(len(pool) + 1)
        return out

    def coin(self, p: float) -> bool:
        hit = self.random() < p
        self.nats -= math.log(p if hit else 1.0 - p)
        return hit


@lru_cache(maxsize=1)
def world() -> tuple[dict, ...]:
    """The fixed cast: ``WORLD_SIZE`` children, each a dict of facts (same for all splits)."""
    rng = _Rng(_WORLD_SEED)
    pick = rng.pick
    kids: list[dict] = []
    used: set[tuple[str, str]] = set()
    while len(kids) < WORLD_SIZE:
        surname, (town, landmark) = pick(L.SURNAMES), pick(L.TOWNS)
        gran_town = pick([t for t, _ in L.TOWNS if t != town])
        gran = pick(L.GRANS)
        family = []
        for _ in range(pick((2, 2, 3))):
            kid = pick(("boy", "girl"))
            first = pick(L.BOYS if kid == "boy" else L.GIRLS)
            if (first, surname) in used:
                continue
            used.add((first, surname))
            pet = pick(L.PETS)
            family.append(dict(
                name=first, last=surname, full=f"{first} {surname}", kid=kid, age=pick(_AGES),
                town=town, landmark=landmark, gran=gran, grantown=gran_town,
                petkind=pet[0], petsound=pet[1], petact=pet[2], pet=pick(L.PET_NAMES),
                color=pick(L.COLORS), food=pick(L.FOODS), place=pick(L.PLACES),
                toy=pick(L.TOYS), act=pick(L.ACTIVITIES), month=pick(L.MONTHS),
                phrase=pick(L.PHRASES), house=pick(L.COLORS), street=pick(L.STREETS),
                animal=pick(L.WILD)))
        if len(family) < 2:
            continue
        for k in family:
            sib = next(s for s in family if s is not k)
            k["sib"], k["sibrel"] = sib["name"], "brother" if sib["kid"] == "boy" else "sister"
        kids.extend(family)
    kids = kids[:WORLD_SIZE]
    by_town: dict[str, list[int]] = {}
    for i, k in enumerate(kids):
        by_town.setdefault(k["town"], []).append(i)
    for i, k in enumerate(kids):  # best friend: another child in the same town, not a sibling
        mates = [j for j in by_town[k["town"]] if kids[j]["last"] != k["last"]] or [(i + 1) % len(kids)]
        k["friend"] = pick(mates)
    return tuple(kids)


@lru_cache(maxsize=1)
def _cast_weights() -> tuple[list[float], list[float]]:
    """Zipf-like protagonist frequencies p_r ∝ 1/(r+10): frequent children are learnt by small
    models, rare ones only by models with room to memorise them (a smooth capacity curve)."""
    w = [1.0 / (r + 10) for r in range(WORLD_SIZE)]
    cum, total = [], 0.0
    for x in w:
        total += x
        cum.append(total)
    return cum, [x / total for x in w]


def _seed(split: str, index: int) -> int:
    return (_VERSION_CODE << 40) | (_SPLIT_CODE[split] << 32) | index


def _context(rng: _Rng, cast: tuple[dict, ...], hero: dict) -> dict:
    he, him, his = _PRONOUNS[hero["kid"]]
    fr = cast[hero["friend"]]
    fhe, fhim, fhis = _PRONOUNS[fr["kid"]]
    ctx = dict(hero, He=he.capitalize(), he=he, him=him, his=his, His=his.capitalize(),
               fr=fr["name"], frHe=fhe.capitalize(), frhe=fhe, frhim=fhim, frhis=fhis,
               frcolor=fr["color"], frfood=fr["food"], frpet=fr["pet"], frpetkind=fr["petkind"],
               parent=rng.pick(("Mom", "Dad")))
    return ctx


def _fresh_slots(rng: _Rng, ctx: dict) -> None:
    """Per-plot random slots: what is lost, where, which animal, the weather..."""
    s1, s2, s3 = rng.distinct(L.SPOTS, 3)
    ctx.update(spot1=s1, spot2=s2, spot3=s3, item=rng.pick(L.ITEMS), adj=rng.pick(L.ADJS),
               wild=rng.pick(L.WILD), weather=rng.pick(L.WEATHER), time=rng.pick(L.TIMES),
               skill=rng.pick(L.SKILLS), ride=rng.pick(L.RIDES), feel=rng.pick(L.FEELS),
               sad=rng.pick(L.SADS))


def _story(split: str, index: int) -> tuple[str, float, int]:
    """Story ``index`` of ``split``, the entropy (nats) of the choices that made it, the hero."""
    rng = _Rng(_seed(split, index))
    cast = world()
    cum, _ = _cast_weights()
    r = rng.random() * cum[-1]
    lo, hi = 0, len(cum) - 1
    while lo < hi:  # bisect on cumulative weights
        mid = (lo + hi) // 2
        if cum[mid] < r:
            lo = mid + 1
        else:
            hi = mid
    rng.nats -= math.log(_cast_weights()[1][lo])
    ctx = _context(rng, cast, cast[lo])
    _fresh_slots(rng, ctx)

    def say(alts: tuple[str, ...]) -> str:
        return rng.pick(alts).format_map(ctx)

    def connect(sentence: str) -> str:  # "Then, he ..." on about a quarter of plot sentences
        first = sentence.split(" ", 1)[0]
        if sentence[0] == '"' or first in _NO_CONNECT or not rng.coin(0.3):
            return sentence
        bare = first.split("'")[0]
        return f"{rng.pick(_CONNECTORS)} {first if bare in _NAMES else first.lower()}{sentence[len(first):]}"

    intro = [say(_INTRO_NAME)]
    facts = list(range(len(_INTRO_FACTS)))
    k = 4 + int(rng.random() * 5)  # 4..8 facts up front, in random order
    rng.nats += math.log(5)
    intro += [say(_INTRO_FACTS[j]) for j in rng.distinct(facts, k)]
    plots = [rng.pick(_PLOT_NAMES)]
    if rng.coin(0.6):
        plots.append(rng.pick([p for p in _PLOT_NAMES if p != plots[0]]))
    body = [say(_OPEN)]
    for n, p in enumerate(plots):
        if n:
            _fresh_slots(rng, ctx)
            body.append("\n\n" + rng.pick(_BRIDGES))
        beats = [connect(say(beat)) for beat in _PLOTS[p]]
        rng.nats += math.log(4)
        n_fill = 2 + int(rng.random() * 4) + 2 * (len(plots) == 1)  # 2..5 (4..7 if one plot)
        for filler in rng.distinct(_FILLERS, n_fill):  # at random places
            rng.nats += math.log(len(beats) + 1)
            beats.insert(int(rng.random() * (len(beats) + 1)), filler.format_map(ctx))
        body += beats
    closing = [say(beat) for beat in _CLOSING]
    text = " ".join(intro) + "\n\n" + " ".join(body).replace(" \n\n", "\n\n") + "\n\n" + " ".join(closing)
    return text, rng.nats, lo


def _check(split: str, start: int, count: int) -> None:
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SIZES)}")
    for name, v in (("start", start), ("count", count)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if start + count > SPLIT_SIZES[split]:
        raise ValueError(f"range [{start}, {start + count}) is past the end of split {split!r} "
                         f"({SPLIT_SIZES[split]} stories)")


def generate_stories(split: str, start: int, count: int) -> list[str]:
    """Stories ``start .. start+count-1`` of ``split`` ("train" or "validation").

    Deterministic: ``generate_stories(s, a, n)[i] == generate_stories(s, a + i, 1)[0]``."""
    _check(split, start, count)
    return [_story(split, i)[0] for i in range(start, start + count)]


def iter_stories(split: str, start: int = 0) -> Iterator[str]:
    """Every story of ``split`` from ``start`` on, generated lazily."""
    _check(split, start, 0)
    for i in range(start, SPLIT_SIZES[split]):
        yield _story(split, i)[0]


def _main(n: int = 4000) -> None:  # pragma: no cover - a measurement, not an API
    import collections
    import re
    import time

    world()
    t0 = time.perf_counter()
    out = [_story("train", i) for i in range(n)]
    dt = time.perf_counter() - t0
    texts = [t for t, _, _ in out]
    nats = sum(x for _, x, _ in out) / n
    words = [re.findall(r"[A-Za-z']+", t) for t in texts]
    counts = collections.Counter(w.lower() for ws in words for w in ws)
    total = sum(counts.values())
    h1 = -sum(c / total * math.log(c / total) for c in counts.values())
    chars = sum(map(len, texts)) / n
    cast = world()
    keys = ("pet", "town", "color", "food", "place", "toy", "act", "sib", "gran", "month", "phrase", "street", "animal")
    hits = [sum(cast[h][k] in t for k in keys) for t, _, h in out]
    friend = sum(cast[cast[h]["friend"]]["name"] in t for t, _, h in out)
    heroes = collections.Counter(h for _, _, h in out)
    print(f"{n} stories in {dt:.2f}s: {n / dt:,.0f} stories/s")
    print(f"words/story {total / n:.0f} (min {min(map(len, words))}, max {max(map(len, words))}), "
          f"chars/story {chars:.0f}, distinct word types {len(counts)}, unigram entropy {h1:.2f} nats/word")
    print(f"distinct stories {len(set(texts))}/{n}; choice entropy {nats:.0f} nats/story; "
          f"{len(heroes)} distinct protagonists (top one in {max(heroes.values()) / n:.1%} of stories)")
    print(f"world facts of the protagonist per story: mean {sum(hits) / n:.1f} of {len(keys)}; "
          f">=1: {sum(h >= 1 for h in hits) / n:.0%}, >=5: {sum(h >= 5 for h in hits) / n:.0%}; "
          f"names the fixed best friend: {friend / n:.0%}")
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        print(f"~{chars / 4:.0f} tokens/story at ~4 chars/token")
        return
    for vocab in (2048, 4096):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, show_progress=False))
        ntok = sum(len(e.ids) for e in tok.encode_batch(texts)) / n
        floor = nats / ntok
        print(f"BPE {vocab}: {ntok:.0f} tokens/story, {ntok / (chars / 1):.3f} tokens/char, "
              f"generator-entropy floor ~{floor:.2f} nats/token, {n / dt * ntok / 1e6:.2f}M tokens/s")


if __name__ == "__main__":  # pragma: no cover
    _main()
