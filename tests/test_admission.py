"""cae.admission: the one queue's policy (order, priority, round-robin, one job per owner, slots,
the memory budget), admit() as a ticket, the file that survives a restart; the job manager over
it with real worker processes; the experiment caps."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cae.admission import (
    AdmissionError,
    Entry,
    PendingStep,
    Scheduler,
    admissible,
    admit,
    memory_budget,
    queue_order,
    training_slots,
)
from cae.experiments import MAX_QUEUED_HOURS, ExperimentCapError, grid_rows
from cae.jobs import JobManager
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.studies import StudyQueue
from cae.sweep import parse_vary
from cae.training import TrainConfig

GB = 10**9


def entry(name: str, owner: str, kind: str = "experiment", at: float = 0.0, nbytes: int = 0):
    return Entry(entry_id=name, owner=owner, kind=kind, label=name, bytes=nbytes, queued_at=at)


def test_interactive_first_then_experiment_runs_round_robin_between_owners():
    queued = [
        entry("a1", "ann", at=1),
        entry("a2", "ann", at=2),
        entry("a3", "ann", at=3),
        entry("b1", "ben", at=4),
        entry("b2", "ben", at=5),
        entry("t1", "cat", "train", at=6),
        entry("u1", "dan", "upload", at=7),
    ]
    order = [e.entry_id for e in queue_order(queued)]
    assert order == ["t1", "u1", "a1", "b1", "a2", "b2", "a3"]
    # ann's last run started later than ben's: ben goes first in the next round
    order = [e.entry_id for e in queue_order(queued, {"ann": 100.0, "ben": 50.0})]
    assert order[2:] == ["b1", "a1", "b2", "a2", "a3"]


def test_one_short_step_per_owner_and_the_training_slots():
    ordered = queue_order(
        [entry("a1", "ann", at=1), entry("a2", "ann", at=2), entry("b1", "ben", at=3)]
    )
    started = admissible(ordered, [], slots=1, budget=GB)
    assert [e.entry_id for e in started] == ["a1"]
    started = admissible(ordered, [], slots=2, budget=GB)
    assert [e.entry_id for e in started] == ["a1", "b1"]  # ben's first before ann's second
    # a baseline takes no training slot, only the budget
    running = [entry("r", "zoe", "train")]
    started = admissible([entry("p", "ann", "baseline")], running, slots=1, budget=GB)
    assert [e.entry_id for e in started] == ["p"]
    # a student's own training does not hold their evaluation; their second short step waits
    running = [entry("t", "ann", "train")]
    steps = [entry("e1", "ann", "evaluate", at=1), entry("e2", "ann", "upload", at=2)]
    assert [e.entry_id for e in admissible(steps, running, slots=1, budget=GB)] == ["e1"]
    running.append(entry("e1", "ann", "evaluate"))
    assert admissible(steps[1:], running, slots=1, budget=GB) == []
    assert admissible([entry("t2", "ann", "train", at=3)], running, slots=1, budget=GB) == []


def test_a_students_extra_training_takes_a_slot_that_would_stay_idle():
    # ann's search holds one slot of four and has three more trials queued; nobody else waits
    running = [entry("a1", "ann")]
    ordered = queue_order([entry(f"a{n}", "ann", at=n) for n in (2, 3, 4)])
    started = admissible(ordered, running, slots=4, budget=10 * GB)
    assert [e.entry_id for e in started] == ["a2", "a3", "a4"]  # work-conserving
    assert admissible(ordered, running, slots=2, budget=10 * GB) == ordered[:1]  # within slots
    # the extra runs still fit the budget: the first that does not holds the ones behind it
    heavy = [entry("a2", "ann", at=2, nbytes=6 * GB), entry("a3", "ann", at=3)]
    assert admissible(heavy, [entry("a1", "ann", nbytes=5 * GB)], slots=4, budget=10 * GB) == []
    # a Train click of a student whose experiment runs takes an idle slot too
    click = [entry("t", "ann", "train", at=5)]
    assert admissible(click, running, slots=2, budget=GB) == click


def test_a_newcomers_training_takes_the_next_free_slot_before_anyones_second():
    # ann holds two slots of three; ann's third run queued long before ben's first
    running = [entry("a1", "ann"), entry("a2", "ann")]
    queued = [entry("a3", "ann", at=1), entry("a4", "ann", at=2), entry("b1", "ben", at=9)]
    started = admissible(queue_order(queued), running, slots=3, budget=10 * GB)
    assert [e.entry_id for e in started] == ["b1"]
    # ann runs a1; free slots go to the firsts (ben's, cat's), then the seconds in the queue's
    # order, ann's before ben's (she holds one, he then holds one too)
    queued = [
        entry("a2", "ann", at=1),
        entry("a3", "ann", at=2),
        entry("b1", "ben", at=3),
        entry("b2", "ben", at=4),
        entry("c1", "cat", at=5),
    ]
    started = admissible(queue_order(queued), [entry("a1", "ann")], slots=4, budget=10 * GB)
    assert [e.entry_id for e in started] == ["b1", "c1", "a2"]
    started = admissible(queue_order(queued), [entry("a1", "ann")], slots=5, budget=10 * GB)
    assert [e.entry_id for e in started] == ["b1", "c1", "a2", "b2"]
    # a newcomer held by the budget holds the extra runs behind it too
    queued = [entry("b1", "ben", at=1, nbytes=8 * GB), entry("a2", "ann", at=0)]
    running = [entry("a1", "ann", nbytes=5 * GB)]
    assert admissible(queue_order(queued), running, slots=4, budget=10 * GB) == []


def test_the_estimated_start_and_place_follow_the_newcomer_rule():
    queue = Scheduler(slots=2, budget=10 * GB)
    a1 = queue.submit("ann", "experiment", GB, "a1", seconds=100)
    a2 = queue.submit("ann", "experiment", GB, "a2", seconds=100)  # an idle slot: it starts
    a3 = queue.submit("ann", "experiment", GB, "a3", seconds=100)
    b1 = queue.submit("ben", "experiment", GB, "b1", seconds=40)
    assert [queue.get(e.entry_id).state for e in (a1, a2, a3, b1)] == [
        "running",
        "running",
        "queued",
        "queued",
    ]
    # ann's a3 came first, but ben holds none: his b1 takes the first slot that frees
    place, seconds = queue.where(b1.entry_id)
    assert place == 1 and 95 <= seconds <= 100
    place, seconds = queue.where(a3.entry_id)
    assert place == 2 and 95 <= seconds <= 100  # the second slot frees at the same time
    rows = [row for row in queue.entries() if row["state"] == "queued"]
    assert [(row["label"], row["place"]) for row in rows] == [("b1", 1), ("a3", 2)]
    # a newcomer's preview: place 2, before ann's third run
    assert queue.preview("cat", "experiment", GB)[0] == 2
    queue.release(a1.entry_id)
    assert queue.get(b1.entry_id).state == "running" and queue.where(a3.entry_id)[0] == 1
    place, seconds = queue.where(a3.entry_id)  # ben's 40 s end first: a3 then takes ben's slot
    assert 35 <= seconds <= 40
    queue.release(a2.entry_id)
    assert queue.get(a3.entry_id).state == "running"  # ann's second again, nobody waits


def test_the_budget_admits_what_fits_and_holds_the_line_behind_what_does_not():
    running = [entry("r", "zoe", "train", nbytes=6 * GB)]
    ordered = [entry("big", "ann", "train", nbytes=5 * GB), entry("small", "ben", "train", at=1)]
    assert admissible(ordered, running, slots=8, budget=10 * GB) == []  # big waits, small too
    assert [e.entry_id for e in admissible(ordered, [], slots=8, budget=10 * GB)] == [
        "big",
        "small",
    ]
    alone = [entry("huge", "ann", "train", nbytes=50 * GB)]
    assert admissible(alone, [], slots=1, budget=10 * GB) == alone  # alone, it always starts


def test_the_budget_is_a_share_of_the_memory_or_the_variable(monkeypatch):
    monkeypatch.setenv("CAE_MEMORY_BUDGET", "3e9")
    assert memory_budget() == 3 * GB
    monkeypatch.delenv("CAE_MEMORY_BUDGET")
    assert 0 < memory_budget() < 2**50
    assert training_slots(1) == 1 and training_slots(2) == 1 and training_slots(8) == 4
    assert training_slots(64) == 8


def test_place_and_estimated_start_are_known_at_once():
    queue = Scheduler(slots=1, budget=10 * GB)
    first = queue.submit("ann", "train", GB, "first", seconds=100)
    second = queue.submit("ben", "train", GB, "second", seconds=50)
    third = queue.submit("cat", "experiment", GB, "third", seconds=10)
    assert queue.get(first.entry_id).state == "running"
    place, seconds = queue.where(second.entry_id)
    assert place == 1 and 95 <= seconds <= 100
    place, seconds = queue.where(third.entry_id)
    assert place == 2 and 145 <= seconds <= 150
    queue.release(first.entry_id)
    assert queue.get(second.entry_id).state == "running" and queue.where(third.entry_id)[0] == 1
    assert queue.stop(third.entry_id) and queue.get(third.entry_id).state == "stopped"


def test_a_step_knows_its_place_before_anyone_waits_and_a_preview_queues_nothing():
    queue = Scheduler(slots=1, budget=4 * GB)
    holder = admit("ann", "upload", 3 * GB, "ann's zip", scheduler=queue)
    assert queue.preview("ben", "upload", GB) is None  # fits beside it: starts at once
    assert queue.preview("ben", "upload", 2 * GB) == (1, 0.0)  # the budget holds it
    assert queue.preview("ann", "evaluate", GB) == (1, 0.0)  # ann's own step holds it
    assert len(queue.active()) == 1  # a preview queues nothing
    pending = PendingStep(queue, "ben", "upload", 2 * GB, "ben's zip")
    assert pending.place() == (1, 0.0)  # queued at once, before anyone waits on it
    holder.release()
    ticket = pending.wait(5)
    assert ticket.entry.state == "running" and pending.place() is None
    ticket.release()


def test_admit_waits_for_its_turn_and_gives_the_budget_back():
    queue = Scheduler(slots=1, budget=4 * GB)
    holder = admit("ann", "upload", 3 * GB, "ann's zip", scheduler=queue)
    with pytest.raises(AdmissionError, match="its wait ran out.*bytes=2000000000"):
        admit("ben", "upload", 2 * GB, "ben's zip", timeout=0.2, scheduler=queue)
    got = []
    waiter = threading.Thread(
        target=lambda: got.append(admit("ben", "baseline", 2 * GB, "b", scheduler=queue))
    )
    waiter.start()
    time.sleep(0.2)
    assert not got
    with holder:
        pass  # leaving the block releases it
    waiter.join(5)
    assert got and got[0].entry.state == "running"
    got[0].release()
    assert queue.active() == []


def test_the_queue_survives_a_restart(tmp_path):
    path = tmp_path / ".queue.json"
    queue = Scheduler(path, slots=1, budget=10 * GB)
    running = queue.submit("ann", "train", GB, "running", payload={"request": {"x": 1}})
    waiting = queue.submit("ben", "train", GB, "waiting", payload={"request": {"y": 2}})
    on_disk = json.loads(path.read_text())
    assert {row["label"]: row["state"] for row in on_disk["entries"]} == {
        "running": "running",
        "waiting": "queued",
    }
    again = Scheduler(path, slots=1, budget=10 * GB)  # the server came back
    requeue = again.restore()
    assert [(e.entry_id, e.payload) for e in requeue] == [(waiting.entry_id, {"request": {"y": 2}})]
    interrupted = again.get(running.entry_id)
    assert interrupted.state == "interrupted" and "server stopped" in interrupted.message
    assert not list(tmp_path.glob(".*.queue.json.*"))  # written atomically, no temp file left


def small(name: str, epochs: int = 1) -> TrainRequest:
    config = TrainConfig(epochs=epochs, batch_size=32, validation_split=0.0, preview_count=0)
    return TrainRequest(preset("classic"), DataRecipe("mnist-sample", limit=64), config, name)


@pytest.mark.slow
def test_two_owners_and_one_slot_take_turns_in_real_workers(tmp_path):
    jobs = JobManager(Scheduler(tmp_path / ".queue.json", slots=1, budget=20 * GB))
    first = jobs.start("ann", small("first", epochs=300), root=tmp_path, auto_save=False)
    second = jobs.start("ben", small("second"), root=tmp_path)
    assert first.launched and second.queued
    message = second.snapshot().message
    assert "place 1" in message and "estimated start" in message
    rows = jobs.scheduler.entries()
    assert [(r["owner"], r["state"], r["place"]) for r in rows] == [
        ("ann", "running", None),
        ("ben", "queued", 1),
    ]
    time.sleep(1.0)
    assert second.queued  # ann's job holds the only slot
    jobs.scheduler.stop(rows[0]["entry_id"])  # as the admin page does
    assert first.wait(120) and second.wait(120)
    assert second.run_id is not None and second.result.epochs_completed == 1
    assert second.created < (first.ended or 0) + 1


def test_a_queued_job_stops_without_starting(tmp_path):
    jobs = JobManager(Scheduler(slots=1, budget=20 * GB))
    jobs.scheduler.submit("zoe", "train", 0, "holds the slot")
    job = jobs.start("ann", small("waits"), root=tmp_path)
    assert job.queued
    job.stop()
    assert job.done and not job.launched and job.snapshot().state == "stopped"
    assert jobs.scheduler.active(owner="ann") == []


def test_a_students_experiments_are_capped(tmp_path, monkeypatch):
    import cae.experiments

    monkeypatch.setattr(cae.experiments, "MAX_QUEUED_RUNS", 3)
    jobs = JobManager(Scheduler(slots=1, budget=20 * GB))
    holder = jobs.scheduler.submit("zoe", "train", 0, "holds the slot")
    queue = StudyQueue(jobs)
    args = (preset("classic"), TrainConfig(epochs=1), DataRecipe(limit=100))
    first = queue.submit_grid(
        "ann", "first", *args, [parse_vary("code=1,2")], num_train=90, root=tmp_path
    )
    with pytest.raises(
        ExperimentCapError, match="at most 3 experiment runs.*Received: runs=2, already_queued=2"
    ):
        queue.submit_grid(
            "ann", "second", *args, [parse_vary("code=3,4")], num_train=90, root=tmp_path
        )
    other = queue.submit_grid(
        "ben", "his", *args, [parse_vary("code=3,4")], num_train=90, root=tmp_path
    )
    assert other.active  # the cap is per student
    long = (preset("deep"), TrainConfig(epochs=10_000), DataRecipe())
    with pytest.raises(ExperimentCapError, match=f"at most {MAX_QUEUED_HOURS:g} estimated hours"):
        queue.submit_grid(
            "cat", "too long", *long, [parse_vary("code=1")], num_train=4500, root=tmp_path
        )
    for experiment in (first, other):
        queue.stop(experiment.id)
        assert queue.wait(experiment.id, 10) and experiment.state == "stopped"
    assert [row["state"] for row in grid_rows(first.study())] == [
        "stopped",
        "not run",
    ]  # never asked
    jobs.scheduler.release(holder.entry_id)
