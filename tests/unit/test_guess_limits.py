"""The wrong-guess rule shared by the app check-in and the agent's staff PIN: free
guesses, then a doubling wait up to a cap, per key, in a table of bounded size."""

from __future__ import annotations

from protocol.guess_limits import GuessRules, GuessTable, minutes_left

RULES = GuessRules(free=3, first_wait_s=30.0, max_wait_s=120.0, max_keys=4)


def test_the_wait_starts_after_the_free_guesses_and_doubles_up_to_the_cap() -> None:
    table = GuessTable(RULES)
    assert [table.wrong("10.0.0.1", 0.0) for _ in range(2)] == [None, None]
    assert table.wrong("10.0.0.1", 0.0) == 30.0
    assert table.waits_until("10.0.0.1", 29.0) == 30.0
    assert table.wrong("10.0.0.1", 29.0) == 30.0  # refused unseen: not counted
    assert table.wrong_count("10.0.0.1", 29.0) == 3
    assert table.wrong("10.0.0.1", 30.0) == 90.0
    assert table.wrong("10.0.0.1", 90.0) == 210.0  # 120 s: the cap
    assert table.waits_until("10.0.0.2", 90.0) is None  # another key is not held up


def test_a_right_guess_or_a_quiet_spell_starts_a_key_again() -> None:
    table = GuessTable(RULES)
    for _ in range(2):
        table.wrong("a", 0.0)
    table.right("a")
    assert table.wrong_count("a", 0.0) == 0
    for _ in range(2):
        table.wrong("b", 0.0)
    assert table.wrong_count("b", 119.0) == 2
    assert table.wrong_count("b", 120.0) == 0


def test_the_table_never_holds_more_than_max_keys() -> None:
    table = GuessTable(RULES)
    for n in range(1000):
        table.wrong(f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(table) == RULES.max_keys
    assert table.wrong_count("10.0.3.231", 999.0) == 1  # the newest are kept
    assert table.wrong_count("10.0.0.0", 999.0) == 0


def test_minutes_left_rounds_up_and_is_never_zero() -> None:
    assert [minutes_left(until, 0.0) for until in (1.0, 60.0, 61.0)] == [1, 1, 2]
