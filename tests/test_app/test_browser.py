"""The app in a real browser (the system's headless Chromium driven by Selenium, nothing downloaded):
train a run to the end and see its curve, stop a run and resume it, classify an image (five
labels; a broken file gets a message), compare two runs (table and bars).

Without Chromium the tests skip, except where ``CI`` or ``REQUIRE_BROWSER`` is set (``make test``
sets it and installs the browser first): there a missing browser fails. A failing test leaves a
screenshot in ``.cache/app-screenshots/``; with ``APP_SCREENSHOTS=DIR`` one screenshot per tab is
saved to DIR (docs/img holds the README's).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FAILED_SHOTS = REPO / ".cache" / "app-screenshots"
pytestmark = pytest.mark.slow  # four training runs in child processes

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401, PLC0415
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, DRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"browser tests required here but {missing}")
        pytest.skip(missing)
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("app_runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--port", "0", "--work-dir", str(work)],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("serving on "), line
    yield line.removeprefix("serving on ")
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def page(browser, app_url, request):
    yield browser
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        FAILED_SHOTS.mkdir(parents=True, exist_ok=True)
        shot = FAILED_SHOTS / f"{request.node.name}.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot of the failure: {shot}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _wait(condition, timeout: float = 120.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = condition()
        except Exception:  # noqa: BLE001  the page is still rendering
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _tab(driver, name: str) -> None:
    driver.find_element("id", f"tab-{name}").click()


def _shot(driver, name: str) -> None:
    folder = os.environ.get("APP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"app_{name}.png"))


def _job_status(driver, row: int = 0) -> str:
    rows = driver.find_elements("css selector", "#jobs-table tbody tr")
    return rows[row].find_element("css selector", ".job-status").text if rows else ""


def _set(driver, key: str, value) -> None:
    field = driver.find_element("css selector", f"#knobs [name='{key}']")
    field.clear()
    field.send_keys(str(value))


def _start(driver, epochs: int, test_every: int = 0) -> None:
    _wait(lambda: driver.find_elements("css selector", "#knobs [name]"), 60, "the form")
    _set(driver, "cl_strategy.train_epochs", epochs)
    _set(driver, "history.test_every", test_every)
    count = len(driver.find_elements("css selector", "#jobs-table tbody tr"))
    driver.find_element("id", "start").click()
    _wait(lambda: len(driver.find_elements("css selector", "#jobs-table tbody tr")) > count, 30)


def test_train_a_run_to_the_end_and_see_its_curve(page, app_url):
    page.get(app_url)
    _wait(lambda: "synthetic" in page.find_element("id", "config").get_attribute("value"), 60)
    _start(page, epochs=1, test_every=1)
    _wait(lambda: _job_status(page).startswith("completed"), 180, "the run to complete")
    points = _wait(lambda: page.find_elements("css selector", "#curve circle.curve-point"), 10)
    assert len(points) == 3 * 6  # one per epoch of the 3 experiences, 6 curves
    legend = page.find_element("id", "legend").text
    assert "test accuracy" in legend and "test lowest recall" in legend
    assert "experience 3/3, epoch 1/1" in page.find_element("id", "progress").text
    _shot(page, "train")


def _newest_job(driver) -> str:
    return driver.find_element("css selector", "#jobs-table tbody tr").get_attribute("data-job")


def test_stop_a_running_job_and_resume_it(page, app_url):
    # an epoch of the synthetic stream takes about 20 ms: 150 epochs leave seconds to click Stop
    _start(page, epochs=150)
    job = _newest_job(page)
    started = f"job {job} (running): experience"  # this job's first epoch, not an earlier job's
    _wait(lambda: page.find_element("id", "progress").text.startswith(started), 120, "an epoch")
    page.find_element("css selector", f"#jobs-table tr[data-job='{job}'] button.stop").click()
    _wait(lambda: _job_status(page).startswith("interrupted"), 120, "the interrupt")
    page.find_element("css selector", "#jobs-table button.resume").click()
    _wait(lambda: _job_status(page).startswith("completed"), 240, "the resumed run")
    assert "epoch 150/150" in page.find_element("id", "progress").text
    _tab(page, "runs")
    rows = _wait(lambda: page.find_elements("css selector", "#runs-table tbody tr"), 20)
    assert len(rows) == 2 and all("completed" in r.text for r in rows)
    _shot(page, "runs")


def _png(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_infer_an_image_shows_five_labels(page, app_url, tmp_path):
    _tab(page, "infer")
    _wait(lambda: page.find_elements("css selector", "#infer-run option"), 20, "a run to choose")
    good = _png(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(io.BytesIO(good.read_bytes()[:30]).getvalue())
    page.find_element("id", "infer-files").send_keys(f"{good}\n{broken}")
    page.find_element("id", "infer-go").click()
    rows = _wait(lambda: page.find_elements("css selector", "tr.pred-row"), 60, "predictions")
    assert len(rows) == 5 and all("%" in r.text for r in rows)
    assert "broken.png" in page.find_element("css selector", ".infer-error").text
    _shot(page, "infer")


def test_compare_two_runs_shows_table_and_bars(page, app_url):
    _tab(page, "compare")
    boxes = _wait(lambda: page.find_elements("css selector", "input.cmp-run"), 20, "runs")
    assert len(boxes) == 2

    def tick(i: int) -> bool:  # found afresh each time: the run list re-renders as runs refresh
        box = page.find_elements("css selector", "input.cmp-run")[i]
        if not box.is_selected():
            box.click()
        return page.find_elements("css selector", "input.cmp-run")[i].is_selected()

    for i in range(2):
        _wait(lambda i=i: tick(i), 20, f"run {i} ticked")
    page.find_element("id", "compare-go").click()
    rows = _wait(lambda: page.find_elements("css selector", "#metric-table tr.cmp-row"), 60)
    assert len(rows) == 2
    bars = page.find_element("id", "compare-bars")
    assert bars.get_attribute("src").startswith("data:image/png;base64,")
    assert _wait(lambda: bars.get_attribute("naturalWidth") not in (None, "0"), 10)
    assert len(page.find_elements("css selector", "table.acc-matrix")) == 2
    _shot(page, "compare")


def test_fine_tune_a_run_with_another_loss_and_compare_both(page, app_url):
    from selenium.webdriver.support.ui import Select  # noqa: PLC0415

    Select(page.find_element("id", "ft-loss")).select_by_visible_text("FocalLoss")
    page.find_element("id", "ft-epochs").clear()
    page.find_element("id", "ft-epochs").send_keys("1")
    source = Select(page.find_element("id", "ft-run")).first_selected_option.text
    page.find_element("id", "ft-go").click()
    _wait(lambda: "fine-tuning" in page.find_element("id", "ft-status").text, 20)

    def compared():
        rows = page.find_elements("css selector", "#metric-table tr.cmp-row")
        names = [r.find_element("css selector", "td").text for r in rows]
        return names if any("finetune_FocalLoss" in n for n in names) else None

    names = _wait(compared, 180, "the fine-tuned run's comparison")
    assert len(names) == 2 and source in names
