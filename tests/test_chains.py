"""Calls followed from native stack samples (c/_chains.c and its reference, chains.py):
counted only where samples prove them, never twice, never a run of short calls."""

from __future__ import annotations

import random

import pytest

from spangap import chains

_stacks = pytest.importorskip("spangap._stacks", reason="the native stack reader is not built")

THRESHOLD = 0.010
MAX_CORRECTION = 0.0048
ROOT, HANDLER, QUERY = (0x1000, 0xA0, 8), (0x2000, 0xB0, 20), (0x3000, 0xC0, 6)
#: Activations of the threads of these walks when they end: none made.
ENDED = {1: 0}


def both() -> list[object]:
    return [_stacks.Chains(THRESHOLD, MAX_CORRECTION), chains.Chains(THRESHOLD, MAX_CORRECTION)]


def feed(follower: object, walks: list) -> list:
    """Feed (now, threads[, ended]) walks; the records, sorted."""
    for walk in walks:
        now, threads = walk[0], walk[1]
        ended = walk[2] if len(walk) > 2 else ENDED
        follower.observe(now, threads, ended)  # type: ignore[attr-defined]
    return sorted(follower.take())  # type: ignore[attr-defined]


def blocked(start: float, stop: float, stack: list[chains.Frame], cpu: int = 7) -> list:
    """Walks every 5 ms from ``start`` to ``stop`` of a thread standing still in ``stack``."""
    walks = []
    now = start
    while now <= stop + 1e-9:
        walks.append((round(now, 6), [(1, cpu, 0, True, stack)]))
        now += 0.005
    return walks


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
def test_a_call_that_waits_through_the_threshold_is_counted_once_with_its_callers(make) -> None:
    follower = both()[make]
    walks = [(0.0, [(1, 5, 0, True, [HANDLER, ROOT])])]
    walks += blocked(0.005, 0.035, [QUERY, HANDLER, ROOT])
    walks += [(0.040, [(1, 9, 0, True, [HANDLER, ROOT])]), (0.045, [])]
    records = feed(follower, walks)
    by_code = {r[2]: r for r in records}
    query = by_code[QUERY[1]]
    assert query[4:6] == (0.005, 0.035)  # the run that proved it
    assert query[8] == pytest.approx(0.030 + MAX_CORRECTION)
    assert query[10] == (HANDLER[1], ROOT[1])  # callers, nearest first
    assert [c[1] for c in query[11]] == [QUERY[1]]
    # The handler and the root stood still for as long: they are counted too.
    assert set(by_code) == {QUERY[1], HANDLER[1], ROOT[1]}


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
def test_a_thread_that_runs_between_samples_proves_nothing(make) -> None:
    """The CPU clock moves at every sample (CPU-bound work, or short calls one after the
    other at the same place): never a count, however long the frame is seen."""
    follower = both()[make]
    walks = [(i * 0.005, [(1, 100 + i, 0, True, [QUERY, HANDLER, ROOT])]) for i in range(40)]
    assert feed(follower, [*walks, (0.3, [])]) == []


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
def test_calls_back_to_back_at_one_place_are_counted_once_never_twice(make) -> None:
    follower = both()[make]
    walks = blocked(0.0, 0.025, [QUERY, HANDLER, ROOT], cpu=7)
    walks += blocked(0.030, 0.055, [QUERY, HANDLER, ROOT], cpu=8)  # it ran in between
    records = feed(follower, [*walks, (0.06, [])])
    assert [r[2] for r in records].count(QUERY[1]) == 1


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
def test_a_caller_that_moved_on_started_a_new_call(make) -> None:
    follower = both()[make]
    moved = (HANDLER[0], HANDLER[1], HANDLER[2] + 10)
    walks = blocked(0.0, 0.025, [QUERY, HANDLER, ROOT], cpu=7)
    walks += blocked(0.030, 0.055, [QUERY, moved, ROOT], cpu=8)
    records = feed(follower, [*walks, (0.06, [])])
    assert [r[2] for r in records].count(QUERY[1]) == 2


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
@pytest.mark.parametrize("spanned", ["active", "activated"])
def test_a_call_under_a_span_or_during_which_one_was_made_current_is_not_counted(
    make, spanned: str
) -> None:
    follower = both()[make]
    walks = blocked(0.0, 0.040, [QUERY, HANDLER, ROOT])
    tid, cpu, activations, _span_none, stack = walks[4][1][0]
    if spanned == "active":
        walks[4] = (walks[4][0], [(tid, cpu, activations, False, stack)])
    else:  # made current and gone again between two samples: only the count tells
        walks = walks[:4] + [(w[0], [(tid, cpu, 1, True, stack)]) for w in walks[4:]]
    records = feed(follower, [*walks, (0.045, [])])
    assert QUERY[1] not in [r[2] for r in records]


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
def test_a_short_wait_is_not_counted_and_a_missed_sample_keeps_the_calls(make) -> None:
    follower = both()[make]
    returned = (0.01, [(1, 8, 0, True, [HANDLER, ROOT])])
    short = [*blocked(0.0, 0.005, [QUERY, HANDLER, ROOT]), returned]
    assert QUERY[1] not in [r[2] for r in feed(follower, short)]
    walks = blocked(0.1, 0.125, [QUERY, HANDLER, ROOT])
    walks[2] = (walks[2][0], [(1, 7, 0, True, None)])  # a torn read: kept, not ended
    walks += [(0.130, [(1, 9, 0, True, [HANDLER, ROOT])])]
    assert [r[2] for r in feed(follower, walks)].count(QUERY[1]) == 1


def random_walks(rng: random.Random, threads: int, walks: int) -> list:
    """Walks of threads that call, wait, run and return at random, with spans, missed
    samples and threads that end."""
    codes = [0xA0 + i for i in range(6)]
    state = {
        tid: {"stack": [(0x1000, 0xF0, 4)], "cpu": 0, "act": 0} for tid in range(1, threads + 1)
    }
    out = []
    for n in range(walks):
        now = round(n * 0.005 + rng.uniform(0, 0.002), 6)
        sample = []
        ended: dict[int, int] = {}
        for tid, st in list(state.items()):
            roll = rng.random()
            stack = st["stack"]
            if roll < 0.15 and len(stack) < 8:
                stack.append((0x1000 + 0x100 * len(stack), rng.choice(codes), rng.choice((2, 4))))
                st["cpu"] += 1
            elif roll < 0.28 and len(stack) > 1:
                stack.pop()
                st["cpu"] += 1
                if rng.random() < 0.5:  # the caller moves on
                    f, c, lasti = stack[-1]
                    stack[-1] = (f, c, lasti + 2)
            elif roll < 0.36:
                st["cpu"] += 1  # ran in place
            if rng.random() < 0.03:
                st["act"] += 1
            if rng.random() < 0.01 and tid != 1:
                ended[tid] = st["act"] + (rng.random() < 0.3)  # a span at its very end
                del state[tid]
                continue
            torn = rng.random() < 0.03
            cpu = -1 if rng.random() < 0.05 else st["cpu"]
            sample.append(
                (tid, cpu, st["act"], rng.random() > 0.05, None if torn else list(reversed(stack)))
            )
        out.append((now, sample, ended))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_the_c_follower_equals_the_python_reference_on_recorded_walks(seed: int) -> None:
    walks = random_walks(random.Random(seed), threads=4, walks=300)
    c, python = both()
    last = [(10.0, [], {1: walks[-1][1][0][2]})]
    records = feed(c, walks + last)
    assert records  # the walks hold counted calls, so the comparison means something
    assert records == feed(python, walks + last)


@pytest.mark.parametrize("make", [0, 1], ids=["c", "python"])
@pytest.mark.parametrize("how", ["returned", "thread ended"])
def test_a_span_made_current_after_the_last_sample_of_a_call_keeps_it_uncounted(
    make, how: str
) -> None:
    """partly_spanned: dark through the threshold, then a span just before it returns."""
    follower = both()[make]
    walks = blocked(0.0, 0.040, [QUERY, HANDLER, ROOT])
    if how == "returned":
        walks += [(0.045, [(1, 9, 1, True, [HANDLER, ROOT])]), (0.050, [], {1: 1})]
    else:
        walks += [(0.045, [], {1: 1})]
    assert QUERY[1] not in [r[2] for r in feed(follower, walks)]
