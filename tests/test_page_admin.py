"""The Admin page: refused without the server's own machine or the token; with the token, the
whole queue (owner, kind, state, place, estimated memory) and a Stop that stops a queued job at
once and a running one in its worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.jobs import JOBS
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.training import TrainConfig
from tests.runs import quiet_queue
from ui.admin import admin_access, token_digest

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/7_Admin.py"


def open_admin() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    return app.run().switch_page(PAGE).run()


def test_who_gets_in():
    local = admin_access(remote_ip=None, has_request=True, token="")
    assert local[0]
    for remote_ip, has_request in (("10.0.0.7", True), (None, False)):  # elsewhere; no request
        allowed, why = admin_access(remote_ip=remote_ip, has_request=has_request, token="")
        assert not allowed and "server's own machine" in why and "CAE_ADMIN_TOKEN" in why
    remote = {"remote_ip": "10.0.0.7", "has_request": True, "token": "s3cret"}
    assert not admin_access(**remote, entered="guess")[0]
    assert admin_access(**remote, entered="s3cret")[0]
    assert admin_access(**remote, cookie=token_digest("s3cret"))[0]  # the cookie, next visit
    assert not admin_access(**remote, cookie="s3cret")[0]  # the cookie holds a digest, not it
    assert "s3cret" not in token_digest("s3cret")


def test_refused_without_the_machine_or_the_token(models, monkeypatch):
    monkeypatch.delenv("CAE_ADMIN_TOKEN", raising=False)
    app = open_admin()
    assert not app.exception
    assert "opens on the server's own machine" in app.warning[0].value
    assert not app.dataframe and not app.get("text_input")
    monkeypatch.setenv("CAE_ADMIN_TOKEN", "s3cret")
    app = open_admin()
    app.text_input(key="admin_token").set_value("wrong").run()
    assert "not the admin token" in app.error[0].value and not app.dataframe


def long_request(name: str, epochs: int) -> TrainRequest:
    config = TrainConfig(epochs=epochs, batch_size=32, validation_split=0.0, preview_count=0)
    return TrainRequest(preset("classic"), DataRecipe("mnist-sample", limit=64), config, name)


@pytest.mark.slow
def test_the_token_shows_the_queue_and_stops_anything(models, monkeypatch):
    monkeypatch.setenv("CAE_ADMIN_TOKEN", "s3cret")
    monkeypatch.setattr(JOBS.scheduler, "_slots", 1)
    quiet_queue()  # an earlier page's background step would take a place counted here
    running = JOBS.start("admin-test-ann", long_request("long one", 300), root=models)
    waiting = JOBS.start("admin-test-ben", long_request("waits", 1), root=models)
    try:
        assert running.launched and waiting.queued
        app = open_admin()
        app.text_input(key="admin_token").set_value("s3cret").run()
        assert not app.exception
        table = app.dataframe[0].value
        by_id = {row["id"]: row for row in table.to_dict("records")}
        # by id: the whole queue is listed, ended entries of earlier tests in this process too
        rows = {"long one": by_id[running.entry_id], "waits": by_id[waiting.entry_id]}
        assert rows["long one"]["what"] == "long one" and rows["waits"]["what"] == "waits"
        assert rows["long one"]["state"] == "running" and rows["long one"]["owner"] == "admin-te"
        assert rows["waits"]["state"] == "queued" and rows["waits"]["place"] == 1
        assert rows["waits"]["kind"] == "train" and rows["waits"]["memory"].endswith("MB")
        app.selectbox(key="admin_stop_pick").set_value(rows["waits"]["id"]).run()
        app.button(key="admin_stop").click().run()
        assert waiting.done and not waiting.launched  # left the queue without a worker
        app.selectbox(key="admin_stop_pick").set_value(rows["long one"]["id"]).run()
        app.button(key="admin_stop").click().run()
        assert running.wait(120) and running.stop_requested
        assert running.snapshot().state in ("stopped", "finished")
    finally:
        for job in (running, waiting):
            job.stop()
            job.wait(120)
        for owner in ("admin-test-ann", "admin-test-ben"):
            JOBS.forget(owner)


def test_the_train_page_says_a_queued_jobs_place_and_start(models, monkeypatch):
    monkeypatch.setattr(JOBS.scheduler, "_slots", 1)
    quiet_queue()
    holder = JOBS.scheduler.submit("admin-test-zoe", "train", 0, "holds the slot", seconds=90)
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    owner = app.session_state["owner_id"]
    job = JOBS.start(owner, long_request("mine", 1), root=models)
    try:
        assert job.queued
        app.switch_page("pages/2_Train.py").run()
        assert not app.exception
        bars = [bar.proto.text for bar in app.get("progress")]
        assert any("Queued · place 1 · estimated start in about 1:" in text for text in bars), bars
        captions = " ".join(str(c.value) for c in app.caption)
        assert "Queued: place 1 in the server's queue" in captions
    finally:
        job.stop()
        JOBS.scheduler.release(holder.entry_id)
        JOBS.forget(owner)
