"""The web UI in a real browser: Debian's Chromium, headless, driven by
Playwright. Started by tests/tests/web_ui.rs, which runs a stock scheduler
and executors, one finished multi-stage job and one job still running, and
names them in the environment."""

import os

from playwright.sync_api import expect, sync_playwright

URL = os.environ["BALLISTA_UI_URL"]
USER = os.environ["BALLISTA_UI_USER"]
PASSWORD = os.environ["BALLISTA_UI_PASSWORD"]
RUNNING_JOB = os.environ["BALLISTA_UI_RUNNING_JOB"]
FINISHED_JOB = os.environ["BALLISTA_UI_FINISHED_JOB"]
EXECUTORS = os.environ["BALLISTA_UI_EXECUTORS"].split(",")
SCREENSHOTS = os.environ["BALLISTA_UI_SCREENSHOTS"]
CHROMIUM = os.environ.get("BALLISTA_CHROMIUM", "/usr/bin/chromium")

# As root, in a container, on a machine with no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_jobs_page_leads_to_a_running_job_its_stages_and_executors():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append("request failed: " + r.url))

        page.goto(URL + "/ui/")
        page.fill("#login-user", USER)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")

        # The jobs list shows the running job, and refreshes on its own.
        running = page.locator(f'tr[data-job="{RUNNING_JOB}"]')
        expect(running).to_be_visible(timeout=15000)
        expect(running.locator(".badge")).to_have_text("running")
        expect(page.locator(f'tr[data-job="{FINISHED_JOB}"] .badge')).to_have_text("succeeded")
        expect(page.locator("#who")).to_have_text(USER)

        # Its page draws its stages and where its tasks run.
        running.locator("a.job-link").click()
        expect(page.locator("h1")).to_have_text("Job " + RUNNING_JOB)
        stages = page.locator("#stage-dag g.stage")
        expect(stages.first).to_be_visible(timeout=15000)
        assert stages.count() >= 1
        lanes = page.locator("#task-timeline text[data-executor]")
        expect(lanes.first).to_be_visible(timeout=15000)
        named = {lanes.nth(i).get_attribute("data-executor") for i in range(lanes.count())}
        assert named and named <= set(EXECUTORS), named
        expect(page.locator("#cancel-job")).to_be_visible()
        page.screenshot(path=os.path.join(SCREENSHOTS, "web-ui-running-job.png"), full_page=True)

        # A finished job: every stage done, its plan with metrics shown.
        page.goto(URL + "/ui/#/jobs/" + FINISHED_JOB)
        expect(page.locator("#stage-dag g.stage.done").first).to_be_visible(timeout=15000)
        # TPC-H q9 joins six tables: many stages, every one done.
        assert page.locator("#stage-dag g.stage").count() >= 4
        assert page.locator("#stage-dag g.stage").count() == page.locator("#stage-dag g.stage.done").count()
        assert page.locator("#stage-dag path.edge").count() >= 3
        expect(page.locator("#stage-detail pre.metrics")).to_contain_text("output_rows=")
        page.locator("#stage-dag g.stage").first.click()
        expect(page.locator("#stage-detail h2").first).to_contain_text("Stage")
        expect(page.locator("#tasks-table tbody tr").first).to_be_visible()
        page.screenshot(path=os.path.join(SCREENSHOTS, "web-ui-job.png"), full_page=True)
        assert "[object" not in page.inner_text("#main")

        # The executors page lists every executor.
        page.click("#nav-executors")
        for executor in EXECUTORS:
            expect(page.locator(f'tr[data-executor="{executor}"]')).to_be_visible(timeout=15000)
        page.screenshot(path=os.path.join(SCREENSHOTS, "web-ui-executors.png"), full_page=True)

        # Cancelling from the UI stops the running job.
        page.goto(URL + "/ui/#/jobs/" + RUNNING_JOB)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#cancel-job").click()
        expect(page.locator(".row .badge")).to_have_text("cancelled", timeout=15000)
        expect(page.locator("#job-facts .error")).to_contain_text("cancelled")
        # Its tasks stopped with it; none is drawn as still running.
        expect(page.locator("#stage-dag g.stage").first).to_contain_text("stopped")
        assert "[object" not in page.inner_text("#main")

        browser.close()
        assert problems == [], problems
