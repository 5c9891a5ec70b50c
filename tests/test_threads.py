"""The thread policy: pkn._threads.n_threads / thread_policy."""

import pytest
import torch

from pkn._threads import cpus, n_threads, thread_policy


def test_default_is_cpus_over_concurrency_capped_by_the_current_count():
    c = cpus()
    assert n_threads(env={}, current=1000) == c
    assert n_threads(2, env={}, current=1000) == max(1, c // 2)
    assert n_threads(10_000, env={}, current=1000) == 1  # at least one
    assert n_threads(env={}, current=1) == 1  # a lower torch.set_num_threads wins
    assert n_threads(env={"PKN_CONCURRENCY": "2"}, current=1000) == max(1, c // 2)
    assert n_threads(env={"PKN_CONCURRENCY": "auto"}, current=1000) == c


def test_pkn_threads_overrides_everything():
    assert n_threads(env={"PKN_THREADS": "3"}, current=1) == 3
    assert n_threads(4, env={"PKN_THREADS": " 2 "}, current=8) == 2
    assert n_threads(env={"PKN_THREADS": "auto"}, current=1000) == cpus()
    assert n_threads(env={"PKN_THREADS": ""}, current=1000) == cpus()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_invalid_env_values_name_the_variable_and_value(value):
    with pytest.raises(
        ValueError, match=f"PKN_THREADS must be an integer >= 1 or 'auto', got '{value}'"
    ):
        n_threads(env={"PKN_THREADS": value})
    with pytest.raises(ValueError, match="PKN_CONCURRENCY must be"):
        n_threads(env={"PKN_CONCURRENCY": value})


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_invalid_concurrency(value):
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        n_threads(value, env={})


def test_thread_policy_applies_and_restores(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setenv("PKN_THREADS", "1")
        with thread_policy() as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_filter_runs_single_threaded_unless_pkn_threads_is_set(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.delenv("PKN_THREADS", raising=False)
        with thread_policy(filter=True) as n:
            assert n == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("PKN_THREADS", "2")
        with thread_policy(filter=True) as n:
            assert n == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_busy_elsewhere_reads_proc_and_reuses_a_fresh_answer(monkeypatch):
    import pkn._threads as T

    ticks = iter([(100, 1000), (300, 1200)])  # 200 of 200 jiffies busy: every CPU busy
    monkeypatch.setattr(T, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(T, "_LAST", [float("-inf"), False])
    assert T.busy_elsewhere(sample=0.001) is True
    monkeypatch.setattr(T, "_cpu_ticks", lambda: None)
    assert T.busy_elsewhere(sample=0.001) is True  # reused within a second
    assert T.busy_elsewhere(sample=0.001, reuse=0.0) is False  # no /proc: never busy


def test_thread_policy_drops_to_one_thread_when_others_are_busy(monkeypatch):
    import torch

    import pkn._threads as T

    monkeypatch.delenv("PKN_THREADS", raising=False)
    monkeypatch.delenv("PKN_CONCURRENCY", raising=False)
    monkeypatch.setattr(T, "cpus", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(T, "busy_elsewhere", lambda: True)
        with T.thread_policy() as n:
            assert n == 1
        monkeypatch.setattr(T, "busy_elsewhere", lambda: False)
        with T.thread_policy() as n:
            assert n == 2
        with T.thread_policy(filter=True, pixels=1000) as n:
            assert n == 1  # a small filter stays on one thread
        monkeypatch.setenv("PKN_THREADS", "2")
        monkeypatch.setattr(T, "busy_elsewhere", lambda: True)
        with T.thread_policy(filter=True, pixels=1000) as n:
            assert n == 2  # the override wins
    finally:
        torch.set_num_threads(before)
