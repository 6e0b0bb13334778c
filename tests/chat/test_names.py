"""The sample's name rules and its random default."""

from __future__ import annotations

import random
import re

import pytest

from chat.names import INVALID_PROMPT, NAME_PROMPT, is_valid_name, name_problem, random_default_name


@pytest.mark.parametrize("name", ["alice", "Bob Smith", "a_b", "x", "名前", "a&b", "  spaced  "])
def test_accepted_names(name: str) -> None:
    assert is_valid_name(name)
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("", "empty"),
        ("_SYSTEM_", "'_'"),
        ("_x", "'_'"),
        ("a<b", "'<' or '>'"),
        ("a>b", "'<' or '>'"),
        ("<script>", "'<' or '>'"),
    ],
)
def test_rejected_names_say_why(name: str, phrase: str) -> None:
    assert not is_valid_name(name)
    problem = name_problem(name)
    assert problem is not None and phrase in problem


def test_prompts_are_the_samples() -> None:
    assert NAME_PROMPT == "Enter your name:"
    assert INVALID_PROMPT == "Invalid input. Enter your name:"


def test_default_name_is_eight_base36_digits_and_valid() -> None:
    names = {random_default_name() for _ in range(200)}
    assert all(re.fullmatch(r"[0-9a-z]{8}", n) for n in names)
    assert all(is_valid_name(n) for n in names)
    assert len(names) > 190  # random, not a constant


def test_default_name_is_reproducible_with_a_seeded_rng() -> None:
    assert random_default_name(random.Random(7)) == random_default_name(random.Random(7))
