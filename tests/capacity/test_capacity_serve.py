"""`python -m capacity serve`: the JSON endpoint and the page in headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from capacity_test_paths import get, planner_server
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from capacity import plan


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with planner_server() as url:
        yield url


def test_plan_endpoint_answers_with_the_python_model(server: str) -> None:
    status, body, ctype = get(server + "api/plan?tasks_per_month=50000&avg_audio_minutes=3")
    assert (status, ctype) == (200, "application/json")
    answer = json.loads(body)
    assert answer["plan"] == plan(50_000, 3.0).model_dump(mode="json")
    series = answer["series"]
    assert series["tasks_per_month"][0] == 1_000
    assert series["tasks_per_month"][-1] == 1_000_000
    assert len(series["managed_monthly_usd"]) == len(series["tasks_per_month"])


def test_bad_input_gets_a_json_error_naming_the_field(server: str) -> None:
    status, body, _ = get(server + "api/plan?tasks_per_month=-1")
    assert status == 400
    assert "tasks_per_month" in json.loads(body)["error"]["message"]
    status, body, _ = get(server + "api/plan?avg_audio_minutes=abc")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    "query",
    [
        "tasks_per_month=nan",
        "tasks_per_month=inf",
        "tasks_per_month=-inf",
        "tasks_per_month=1e309",
        "tasks_per_month=1e30",
        "avg_audio_minutes=nan",
        "avg_audio_minutes=Infinity",
        "avg_audio_minutes=1e309",
        "avg_audio_minutes=-0",
        "from_usage=abc",
        "from_usage=0",
        "from_usage=1e309",
    ],
)
@pytest.mark.parametrize("path", ["api/plan", "api/chart.png"])
def test_every_bad_number_is_a_400_json_answer(server: str, path: str, query: str) -> None:
    status, body, ctype = get(f"{server}{path}?{query}")
    assert (status, ctype) == (400, "application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_input"
    name = query.split("=", 1)[0]
    assert name.replace("from_usage", "days") in error["message"]


def test_inputs_outside_the_briefs_ranges_come_with_warnings(server: str) -> None:
    status, body, _ = get(server + "api/plan?tasks_per_month=5000000&avg_audio_minutes=0.2")
    assert status == 200
    answer = json.loads(body)
    assert len(answer["warnings"]) == 2
    assert answer["plan"]["warnings"] == answer["warnings"]
    status, body, _ = get(server + "api/plan?tasks_per_month=50000&avg_audio_minutes=3")
    assert json.loads(body)["warnings"] == []


def test_usage_without_a_database_is_a_503_json_answer(server: str) -> None:
    status, body, _ = get(server + "api/plan?from_usage=30")
    assert status == 503
    assert "DATABASE_URL" in json.loads(body)["error"]["message"]


def test_chart_endpoint_returns_a_png(server: str) -> None:
    status, body, ctype = get(server + "api/chart.png?tasks_per_month=50000&avg_audio_minutes=3")
    assert (status, ctype) == (200, "image/png")
    assert body.startswith(b"\x89PNG")


def _answers(driver: webdriver.Chrome) -> dict[str, str]:
    ids = ("phase", "stt-gpus", "llm-gpus", "self-hosted", "managed", "savings", "crossover")
    return {i: driver.find_element(By.ID, i).text for i in ids}


def _wait_for_update(driver: webdriver.Chrome, after: int) -> None:
    WebDriverWait(driver, 20).until(
        lambda d: (
            int(d.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) > after
        )
    )


def test_moving_a_slider_changes_the_answer(
    server: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.get(server)
    _wait_for_update(browser, 0)
    first = _answers(browser)
    assert first["phase"] == "Phase 2: Growth"
    assert (first["stt-gpus"], first["llm-gpus"]) == ("1", "1")
    assert first["managed"].startswith("$3,")

    slider = browser.find_element(By.ID, "tasks")
    updates = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0)
    slider.send_keys(Keys.END)  # all the way to 1M tasks/month
    _wait_for_update(browser, updates)
    WebDriverWait(browser, 20).until(lambda d: _answers(d)["phase"] == "Phase 3: Scale")
    big = _answers(browser)
    assert browser.find_element(By.ID, "tasks-value").text == "1,000,000"
    assert int(big["stt-gpus"]) > 1
    assert big["managed"] != first["managed"]

    audio = browser.find_element(By.ID, "audio")
    updates = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0)
    audio.send_keys(Keys.END)  # 10 minutes: the crossover comes sooner
    _wait_for_update(browser, updates)
    assert browser.find_element(By.ID, "audio-value").text == "10.0 min"
    longer = _answers(browser)
    assert int(longer["crossover"].replace(",", "")) < int(big["crossover"].replace(",", ""))

    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('chart'); return i.complete && i.naturalWidth > 0;"
        )
    )
    shot = tmp_path / "planner.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000
