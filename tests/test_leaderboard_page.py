"""The leaderboard page in a real browser: Debian's headless Chromium, driven through chromedriver.

It must load from a file with no console errors and no network request at all, show one table row
per configuration, and sort its table by a column when the column's header is clicked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from synthetic_runs import write_suite

from harness.leaderboard import LeaderboardFiles, build_leaderboard, render_leaderboard
from harness.results import read_runs

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium and chromium-driver (.ci/debian-packages)
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[LeaderboardFiles, int]:
    work = tmp_path_factory.mktemp("work")
    write_suite(work)
    results = read_runs(work)
    files = render_leaderboard(results, work / "leaderboards" / "all", title="Synthetic <suite> & co")
    return files, len(build_leaderboard(results).table)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # needed as root
        "--disable-gpu",
        "--disable-background-networking",  # on a closed network these only add noise and delays
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _column(driver: WebDriver, index: int) -> list[str]:
    """The data-sort values of one column of the leaderboard table, top to bottom."""
    rows = driver.find_elements(By.CSS_SELECTOR, "table#leaderboard tbody tr")
    return [row.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort") or "" for row in rows]


def _header_index(driver: WebDriver, text: str) -> int:
    headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "table#leaderboard thead th")]
    return next(i for i, header in enumerate(headers) if header.rstrip(" ▲▼") == text)


def _click(driver: WebDriver, index: int) -> None:
    driver.find_elements(By.CSS_SELECTOR, "table#leaderboard thead th")[index].click()


def test_page_loads_offline_without_console_errors(
    page: tuple[LeaderboardFiles, int], browser: WebDriver
) -> None:
    files, configurations = page
    browser.get_log("performance")  # drop what the browser did before the page (its new-tab page)
    browser.get(files.html.as_uri())
    assert browser.title == "Synthetic <suite> & co"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requests = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]
    assert files.html.as_uri() in requests
    # The page itself, its embedded images and the browser's own pages; nothing from a network.
    assert {url.split(":", 1)[0] for url in requests} <= {"file", "data", "chrome", "about"}, requests
    assert len(browser.find_elements(By.CSS_SELECTOR, "table#leaderboard tbody tr")) == configurations
    images = browser.find_elements(By.CSS_SELECTOR, "figure img")
    assert len(images) == 3
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 100 for img in images)


def test_clicking_a_header_sorts_the_table_by_it(
    page: tuple[LeaderboardFiles, int], browser: WebDriver
) -> None:
    files, _ = page
    browser.get(files.html.as_uri())
    few_shot = _header_index(browser, "few-shot")
    before = _column(browser, few_shot)
    _click(browser, few_shot)
    ascending = _column(browser, few_shot)
    values = [float(v) for v in ascending]
    assert values == sorted(values) and ascending != before
    _click(browser, few_shot)
    assert [float(v) for v in _column(browser, few_shot)] == sorted(values, reverse=True)

    strategy = _header_index(browser, "strategy")
    _click(browser, strategy)
    names = _column(browser, strategy)
    assert names == sorted(names)

    # Cells without a value ("not reached") sort last whichever way the column is sorted.
    examples = _header_index(browser, "examples ×")
    for _ in range(2):
        _click(browser, examples)
        speedups = _column(browser, examples)
        assert speedups[-1] == "" and "" not in speedups[:-1]
    assert [float(v) for v in speedups[:-1]] == sorted((float(v) for v in speedups[:-1]), reverse=True)
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_every_column_of_every_table_is_in_the_glossary(
    page: tuple[LeaderboardFiles, int], browser: WebDriver
) -> None:
    files, _ = page
    browser.get(files.html.as_uri())
    headers = {
        (h.get_attribute("textContent") or "").strip()
        for h in browser.find_elements(By.CSS_SELECTOR, "table.sortable thead th")
    }
    glossary = {
        (term.get_attribute("textContent") or "").strip()
        for term in browser.find_elements(By.CSS_SELECTOR, "dl.columns dt")
    }
    assert {"vs uniform", "reference spread", "FLOPs (amortised) ×", "examples × (50%)"} <= headers
    assert headers <= glossary, headers - glossary
    tables = [t.get_attribute("id") for t in browser.find_elements(By.CSS_SELECTOR, "table.sortable")]
    assert tables == ["leaderboard", "speedups", "compute", "selection"]
