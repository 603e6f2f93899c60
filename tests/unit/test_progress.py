"""The progress line: long steps print it, task logs show it, the CLI parses it into bars."""

from __future__ import annotations

from tuneloop import progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_line_round_trips_with_its_values():
    line = progress.format_line("lora", 40, 200, loss=1.23456, tokens_per_s=812.4, note="warm up")
    assert line == "tuneloop-progress lora 40/200 loss=1.235 tokens_per_s=812 note=warm_up"
    event = progress.parse("    " + line + "\n")  # as kfp.local streams it: indented
    assert (event.label, event.done, event.total) == ("lora", 40, 200)
    assert event.values == {"loss": 1.235, "tokens_per_s": 812, "note": "warm_up"}
    assert event.fraction == 0.2 and not event.finished
    assert progress.parse("[oss-lora] step 40/200 loss 1.2") is None
    assert progress.parse("tuneloop-progress lora 40/200 loss") is None


def test_lines_are_throttled_and_carry_an_eta_from_the_rate():
    clock, lines = Clock(), []
    p = progress.Progress("self-play", 100, interval_s=10, write=lines.append, clock=clock)
    assert p.update(0) is not None  # the first unit always prints
    for done in range(1, 50):
        clock.t += 0.5  # 2 games a second
        p.update(done)
    # 24.5 s passed: lines at about every 10 s, not 49
    assert 3 <= len(lines) <= 4
    last = progress.parse(lines[-1])
    assert last.values["eta_s"] == round((100 - last.done) * 0.5)  # from the rate since the first tick
    clock.t += 30
    assert p.update(100) is not None  # the last unit always prints
    assert progress.parse(lines[-1]).finished and progress.parse(lines[-1]).values["eta_s"] == 0


def test_tick_keeps_one_reporter_per_label_and_restarts_when_done_goes_back(capsys, monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "3600")
    progress.tick("gauntlet/random", 2, 10, win_rate=1.0)
    progress.tick("gauntlet/random", 4, 10, win_rate=0.75)  # throttled
    progress.tick("gauntlet/random", 10, 10, win_rate=0.8)
    progress.tick("gauntlet/random", 2, 10, win_rate=0.5)  # a new pairing: prints again
    events = [progress.parse(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e.done, e.values["win_rate"]) for e in events] == [(2, 1.0), (10, 0.8), (2, 0.5)]


def test_the_bar_shows_the_numbers_a_person_wants():
    event = progress.parse("tuneloop-progress lora 50/200 loss=0.9876 tokens_per_s=812 eta_s=95")
    bar = progress.render_bar(event, width=20)
    assert bar == "lora [#####...............] 50/200 loss 0.9876 812 tok/s ETA 1m35s"
    done = progress.render_bar(progress.parse("tuneloop-progress gauntlet/heuristic 40/40 win_rate=0.625"), width=4)
    assert done == "gauntlet/heuristic [####] 40/40 win rate 62%"
