"""The trigger form in a real browser: it opens with no field in error, and its own Trigger
button starts a run with the defaults that succeeds.

Drives Debian's chromium through Playwright (``make browser`` installs chromium; Playwright's
own browser download is not used). Screenshots go to a folder the test prints, kept after
the run (``$RECSYS_TEST_ARTIFACTS``, default ``<tmp>/recsys-test-artifacts``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_system import DAG, api, unpause, wait_for, wait_for_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _chromium() -> str:
    path = os.environ.get("RECSYS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium on this machine (make browser installs it with apt-get; it failed or was not run)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (it is in the test extra)")
    return path


@pytest.fixture
def screenshots() -> Path:
    folder = Path(os.environ.get("RECSYS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "recsys-test-artifacts")
    folder = folder / "trigger-form"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the trigger form: {folder}")
    return folder


def test_the_form_triggers_a_default_run_that_succeeds(stack, screenshots):
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    unpause(stack)
    before = {r["dag_run_id"] for r in api(stack, "GET", f"{DAG}/dagRuns").json()["dag_runs"]}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{stack.airflow_url}/dags/recsys_training", wait_until="networkidle", timeout=120_000)
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)  # the form renders its fields after the dialog opens
            dialog.screenshot(path=str(screenshots / "1-form-opened.png"))
            # No field is marked invalid, and the dialog's own Trigger button can be pressed.
            assert dialog.locator("[aria-invalid='true'], [data-invalid]").count() == 0
            submit = dialog.get_by_role("button", name="Trigger").last
            expect(submit).to_be_enabled()
            submit.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(screenshots / "2-after-trigger.png"))

            def new_run():
                runs = api(stack, "GET", f"{DAG}/dagRuns").json()["dag_runs"]
                return next((r["dag_run_id"] for r in runs if r["dag_run_id"] not in before), None)

            run_id = wait_for(new_run, 60, "a run started from the form")
            conf = api(stack, "GET", f"{DAG}/dagRuns/{run_id}").json()["conf"]
            assert conf.get("source", "synthetic") == "synthetic" and conf.get("path") is None
            wait_for_run(stack, run_id)
            page.goto(f"{stack.airflow_url}/dags/recsys_training/runs/{run_id}", wait_until="networkidle",
                      timeout=120_000)
            page.screenshot(path=str(screenshots / "3-run-succeeded.png"))
        finally:
            browser.close()
