"""The progress bar's text, its ETA (weighted by pixels), its quiet mode and the work the engine reports."""

import re

import pytest
import torch

from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, Progress, build_objective
from inceptionism.models import load_model
from inceptionism.progress import Eta, ProgressBar, format_eta, work


def run_progress(sizes, steps, step_cost, startup=0.0):
    """The Progress values of a run whose steps take ``step_cost(h * w)`` seconds, after ``startup`` seconds."""
    pixels = [h * w for h, w in sizes]
    total_work = steps * sum(pixels)
    elapsed, done_work, events = startup, 0, []
    for o, (size, px) in enumerate(zip(sizes, pixels, strict=True)):
        for s in range(steps):
            elapsed += step_cost(px)
            done_work += px
            events.append(
                Progress(
                    octave=o + 1,
                    octaves=len(sizes),
                    step=s + 1,
                    steps=steps,
                    done=o * steps + s + 1,
                    total=len(sizes) * steps,
                    score=1.0 + o,
                    size=size,
                    tile_size=512,
                    elapsed=elapsed,
                    work_done=done_work,
                    work_total=total_work,
                )
            )
    return events


def step_count_eta(p):
    """The estimate the bar gave before: elapsed time per step, times the steps left."""
    return p.elapsed * (p.total - p.done) / p.done


def test_eta_weights_large_late_octaves_by_their_pixels():
    # Two small octaves, then two with 10× the pixels; a step costs a fixed overhead plus a time per pixel.
    events = run_progress([(100, 100)] * 2 + [(316, 316)] * 2, steps=10, step_cost=lambda px: 0.002 + 1e-6 * px)
    finish = events[-1].elapsed
    eta = Eta()
    estimates = [eta.update(p) for p in events]
    for p, estimate in zip(events, estimates, strict=True):
        true_left = finish - p.elapsed
        if p.done == p.total:
            assert estimate == 0.0
        else:
            assert 0.7 * true_left <= estimate <= 1.5 * true_left, (p.octave, p.step, estimate, true_left)
    # Halfway through the steps, most of the time is still ahead: counting steps says 10× too little.
    half = events[19]
    true_left = finish - half.elapsed
    assert step_count_eta(half) < 0.15 * true_left
    assert estimates[19] == pytest.approx(true_left, rel=0.25)


def test_eta_errs_long_during_the_first_octave_and_corrects_after_it():
    events = run_progress([(100, 100), (200, 200)], steps=5, step_cost=lambda px: 1e-5 * px, startup=2.0)
    finish = events[-1].elapsed
    eta = Eta()
    estimates = [eta.update(p) for p in events]
    first, second = estimates[:5], estimates[5:9]
    assert all(e > finish - p.elapsed for e, p in zip(first, events[:5], strict=True))
    assert all(e == pytest.approx(finish - p.elapsed) for e, p in zip(second, events[5:9], strict=True))


def test_eta_counts_steps_when_no_pixels_are_reported():
    p = Progress(
        octave=1, octaves=2, step=2, steps=4, done=2, total=8, score=0.5, size=(8, 8), tile_size=64, elapsed=4.0
    )
    assert work(p) == (2, 8)
    assert Eta().update(p) == pytest.approx(12.0)


def test_eta_starts_over_for_a_new_run():
    events = run_progress([(10, 10), (20, 20)], steps=2, step_cost=lambda px: 0.01 * px)
    eta = Eta()
    for p in events:
        eta.update(p)
    again = eta.update(events[0])  # the same object fed the first step of a second run
    assert again == pytest.approx(Eta().update(events[0]))


def test_format_eta():
    assert format_eta(None) == "ETA …"
    assert format_eta(40.4) == "00:40 left"
    assert format_eta(3725) == "1:02:05 left"


def final_line(err):
    """The last state tqdm drew (it redraws in place with carriage returns)."""
    return err.rstrip("\n").split("\r")[-1]


def test_bar_shows_octave_size_step_score_and_eta_on_stderr_only(capsys):
    events = run_progress([(96, 128), (192, 256)], steps=3, step_cost=lambda px: 1e-4 * px)
    with ProgressBar() as bar:
        for p in events[:3]:  # the first octave only, then the bar closes
            bar(p)
    out, err = capsys.readouterr()
    assert out == ""
    line = final_line(err)
    assert "octave 1/2 128×96 step 3/3" in line
    assert "score 1 " in line and "tile 512" in line
    # 20 % of the work (by pixels) is done, in 3.7 s; the rest takes 4× that, not the 3.7 s a step count gives.
    assert re.search(r"\b20%", line)
    assert "00:04 elapsed, 00:15 left" in line


def test_bar_ends_its_line_at_the_end_of_a_run(capsys):
    events = run_progress([(24, 32), (48, 64)], steps=2, step_cost=lambda px: 1e-3)
    with ProgressBar() as bar:
        for p in events:
            bar(p)
    assert bar._bar is None
    bar.close()  # closing again is harmless
    out, err = capsys.readouterr()
    assert out == "" and err.endswith("\n")
    line = final_line(err)
    assert "octave 2/2 64×48 step 2/2" in line and "100%" in line and "00:00 left" in line


def test_bar_closes_when_the_run_fails(capsys):
    events = run_progress([(24, 32)], steps=3, step_cost=lambda px: 1e-3)
    with pytest.raises(KeyboardInterrupt), ProgressBar() as bar:
        bar(events[0])
        raise KeyboardInterrupt
    assert bar._bar is None
    assert capsys.readouterr().err.endswith("\n")


def test_a_reused_bar_draws_each_run_on_its_own_line(capsys):
    events = run_progress([(24, 32)], steps=2, step_cost=lambda px: 1e-3)
    with ProgressBar() as bar:
        for p in events + events:
            bar(p)
    err = capsys.readouterr().err
    assert err.count("\n") == 2


def test_disabled_bar_writes_nothing(capsys):
    with ProgressBar(enabled=False) as bar:
        for p in run_progress([(24, 32), (48, 64)], steps=2, step_cost=lambda px: 1e-3):
            bar(p)
    assert capsys.readouterr() == ("", "")


def test_engine_reports_work_in_pixel_steps():
    model = load_model("efficientnet-lite0")
    cfg = DreamConfig(octaves=3, steps=2, min_size=16, tile_size=64).validate()
    events = []
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    Dreamer(model, build_objective(cfg, model), cfg, torch.device("cpu")).run(image, events.append)
    pixels = [p.size[0] * p.size[1] for p in events]
    assert len(set(pixels)) == 3 and pixels[-1] == 40 * 56
    assert all(p.work_total == sum(pixels) for p in events)
    assert [p.work_done for p in events] == [sum(pixels[: i + 1]) for i in range(len(events))]
