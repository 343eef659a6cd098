"""Local sources that used to end in tracebacks or lose stories silently:
each is refused in one line naming the file and the fix, or trains with the loss stated.
Real ``datasets`` loading on real files; no Ray."""

from __future__ import annotations

import json

import pytest

from flops_fit.data.preflight import open_split
from flops_fit.errors import PlanError

STORY = "Once upon a time there was a small dog who liked to run in the park with the kids."


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case, expected", [
    ("empty_txt", "is empty; add stories to it or remove it"),
    ("non_utf8_txt", "is not UTF-8 text (byte 0xe9 at offset"),
    ("integer_text", "the 'text' column holds int64 values, not text"),
    ("empty_train_split", "train.jsonl is empty"),
    ("half_missing_text", "stories have no 'text'"),
])
def test_bad_local_sources_are_refused_in_one_line(tmp_path, case, expected):
    src = tmp_path / "src"
    src.mkdir()
    if case == "empty_txt":
        path = src / "stories.txt"
        path.write_text("")
    elif case == "non_utf8_txt":
        path = src / "stories.txt"
        path.write_bytes((STORY + "\n\n").encode() * 20 + b"caf\xe9\n\n" + (STORY + "\n\n").encode() * 20)
    elif case == "integer_text":
        path = jsonl(src / "stories.jsonl", [{"text": i} for i in range(50)])
    elif case == "empty_train_split":
        (src / "train.jsonl").write_text("")
        jsonl(src / "validation.jsonl", [{"text": STORY}] * 20)
        path = src
    else:  # half the rows say "story" instead of "text": 1,500 of 3,000 gone without a word
        path = jsonl(src / "stories.jsonl", [{"text": STORY} if i % 2 else {"story": STORY} for i in range(3000)])
    with pytest.raises(PlanError) as err:
        open_split(str(path), "train", tmp_path / "cache")
    message = str(err.value)
    assert expected in message and "\n" not in message and "Traceback" not in message


def test_a_few_missing_texts_are_stated_not_hidden(tmp_path, capsys):
    rows = [{"text": STORY}] * 97 + [{"text": None}] * 3
    path = jsonl(tmp_path / "stories.jsonl", rows)
    _, count = open_split(str(path), "train", tmp_path / "cache")
    assert count > 0
    assert "3 of 100 stories have no 'text'" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_a_damaged_datasets_cache_is_rebuilt(tmp_path, capsys, suffix):
    # Fault 4: a truncated Arrow file under <cache>/hf failed every run with "Expected to read
    # ... metadata bytes", blamed on the source, until the cache was deleted by hand.
    path = tmp_path / f"stories{suffix}"
    if suffix == ".jsonl":
        jsonl(path, [{"text": f"{STORY} {i}"} for i in range(300)])
    else:
        path.write_text("".join(f"{STORY} {i}\n\n" for i in range(300)))
    _, first = open_split(str(path), "train", tmp_path / "cache")
    arrows = list((tmp_path / "cache" / "hf").rglob("*.arrow"))
    assert arrows
    for arrow in arrows:
        with open(arrow, "r+b") as f:
            f.truncate(100)
    stories, again = open_split(str(path), "train", tmp_path / "cache")
    assert again == first and stories.stories(0, 1)[0].startswith("Once upon a time")
    assert "rebuilt 1 damaged datasets cache dir" in capsys.readouterr().err


def test_a_vocabulary_the_corpus_cannot_fill_is_stated_and_planned_with_its_real_size(tmp_path, capsys):
    # --vocab-size 100000 became 2,842 on the sample without a word.
    from flops_fit.config import DataOptions
    from flops_fit.planning.config import PlanConfig
    from flops_fit.workloads.gpt import ReferenceGPT

    workload = ReferenceGPT.on(DataOptions(source="sample", cache_dir=str(tmp_path)))
    cfg = PlanConfig(budgets=(1e12,), vocab_size=100_000, seq_len=64)
    workload.prepare(cfg)
    specs = workload.plan(cfg)
    real = specs[0].model["vocab_size"]
    assert real < 100_000
    assert f"note: vocab_size 100000 became {real}" in capsys.readouterr().err
