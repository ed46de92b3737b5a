"""`python -m capacity serve`: the JSON endpoint and the page in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from capacity_test_paths import REPO
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from capacity import plan

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "capacity", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert found, f"serve did not print its address: {first!r}"
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


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


def test_chart_endpoint_returns_a_png(server: str) -> None:
    status, body, ctype = get(server + "api/chart.png?tasks_per_month=50000&avg_audio_minutes=3")
    assert (status, ctype) == (200, "image/png")
    assert body.startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"headless Chromium is needed for this test; missing {', '.join(missing)}: "
            "run `bash tools/ensure_chromium.sh` (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1400",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


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
