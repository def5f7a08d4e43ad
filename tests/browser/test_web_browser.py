# SPDX-License-Identifier: MIT
"""The web page in a real headless Chromium against a real master with local slaves:
submit from the page, frames appear live without a reload, cancel, slaves change state."""

import sqlite3
import time
from hashlib import sha256
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from afarm.store import discovered
from tests.browser.chrome import (
    chromium,
    color_scheme,
    console_problems,
    screenshot,
    wait_for,
)
from tests.farm import MasterProcess


def open_page(driver: webdriver.Chrome, farm: MasterProcess, path: str) -> None:
    driver.get(f"http://127.0.0.1:{farm.results_port}{path}")
    wait_for("the page's script", lambda: driver.execute_script(
        "return document.documentElement.classList.contains('js')"))


def use_token(driver: webdriver.Chrome, farm: MasterProcess) -> None:
    token = farm.local_token()
    assert token
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait_for("the token kept", lambda: driver.execute_script(
        "return sessionStorage.getItem('afarm-token')") == token)
    assert token not in driver.current_url


def mark(driver: webdriver.Chrome) -> float:
    """Leave a marker in the page: it survives live updates, not a reload."""
    driver.execute_script("window.afarmTestMarker = 'still here'")
    return float(driver.execute_script("return window.afarmPageLoaded"))


def not_reloaded(driver: webdriver.Chrome, loaded: float) -> bool:
    return bool(driver.execute_script("return window.afarmTestMarker") == "still here"
                and driver.execute_script("return window.afarmPageLoaded") == loaded)


def images(driver: webdriver.Chrome) -> int:
    return int(driver.execute_script(
        "return Array.from(document.querySelectorAll('#frames img'))"
        ".filter((i) => i.complete && i.naturalWidth > 0).length"))


def test_a_job_submitted_from_the_page_shows_its_frames_live_without_a_reload(
        farm: MasterProcess, browser: webdriver.Chrome, picture: Path,
        artefacts: Path) -> None:
    d = browser
    open_page(d, farm, "/")
    use_token(d, farm)
    loaded = mark(d)
    Select(d.find_element(By.ID, "s-app")).select_by_value("hue")
    d.find_element(By.ID, "s-file").send_keys(str(picture))
    d.find_element(By.ID, "s-name").send_keys("hues <b>of</b> a test card")
    d.find_element(By.ID, "s-items").send_keys("0\n60\n120\n180\n240\n300")
    # Both slaves busy for a while: the new job waits, so its frames come after the page.
    blocker = farm.submit("--app", "sleep", "--items", "4,4", "--name", "blocker")
    d.find_element(By.ID, "s-submit").click()
    state = wait_for("the job accepted", lambda: "accepted" in d.find_element(
        By.ID, "submit-state").text and d.find_element(By.ID, "submit-state").text,
        driver=d)
    job = int(state.split()[1])
    row = f"#job-row-{job}"
    wait_for("the new job's row, live", lambda: d.find_elements(By.CSS_SELECTOR, row))
    assert "hues <b>of</b> a test card" in d.find_element(By.CSS_SELECTOR, f"{row} .name").text
    assert not_reloaded(d, loaded)
    screenshot(d, artefacts, "01-jobs-after-submit")

    d.find_element(By.CSS_SELECTOR, f"{row} .name a").click()
    wait_for("the job page", lambda: d.find_elements(By.ID, "frames"))
    loaded = mark(d)
    before = images(d)
    assert before < 6, "the frames were done before the page showed the job"
    wait_for("six frames in the grid, live", lambda: images(d) == 6, timeout=90, driver=d)
    assert not_reloaded(d, loaded)
    wait_for("the title at 100%", lambda: d.title.startswith("[100%]"))
    wait_for("the idle favicon", lambda: "favicon-idle" in d.find_element(
        By.ID, "favicon").get_attribute("href"))
    # Times are shown in the browser's zone, the UTC original kept as the tooltip.
    t = d.find_element(By.CSS_SELECTOR, "#job-summary time")
    assert "UTC" not in t.text and t.get_attribute("title").endswith("Z")
    screenshot(d, artefacts, "02-job-frames-light")
    color_scheme(d, "dark")
    screenshot(d, artefacts, "03-job-frames-dark")
    assert d.execute_script("return getComputedStyle(document.body).backgroundColor") \
        == "rgb(13, 17, 23)"
    color_scheme(d, "light")

    # A deep link to one frame, and the job's tasks all done.
    open_page(d, farm, f"/jobs/{job}/frames/3")
    img = d.find_element(By.CSS_SELECTOR, "img.full")
    wait_for("the full frame", lambda: d.execute_script(
        "return arguments[0].naturalWidth", img) == 160)
    screenshot(d, artefacts, "04-frame-deep-link")
    assert farm.wait(blocker)["status"] == "completed"
    assert farm.wait(job)["status"] == "completed"
    assert console_problems(d) == []  # no CSP refusal, no script error on the way
    open_page(d, farm, "/")
    cells = d.find_elements(By.CSS_SELECTOR, f"#job-row-{job} td")
    kwh, cost = cells[8].text, cells[9].text
    assert float(kwh) > 0 and cost.endswith("EUR"), (kwh, cost)
    assert farm.client.get(f"/api/v1/jobs/{job}")["energy"]["kwh"] > 0


def test_a_slave_turns_busy_live_and_a_job_is_canceled_from_the_page(
        farm: MasterProcess, browser: webdriver.Chrome, artefacts: Path) -> None:
    d = browser
    open_page(d, farm, "/slaves")
    use_token(d, farm)
    loaded = mark(d)

    def states() -> list[str]:
        return [r.get_attribute("data-state") for r in d.find_elements(
            By.CSS_SELECTOR, "#slaves-body tr")]

    # Shown as afarmctl slaves shows them: a connected slave without a task is idle.
    wait_for("both slaves idle", lambda: states() == ["idle", "idle"], driver=d)
    job = farm.submit("--app", "sleep", "--items", "30,30", "--name", "long sleep")
    wait_for("both slaves busy, live", lambda: states() == ["busy", "busy"], driver=d)
    assert not_reloaded(d, loaded)
    running = d.find_element(By.CSS_SELECTOR, "#slaves-body tr td:nth-child(4)").text
    assert running == f"job {job}: item 1" or running == f"job {job}: item 2", running
    screenshot(d, artefacts, "05-slaves-busy")

    open_page(d, farm, "/")
    loaded = mark(d)
    row = f"#job-row-{job}"
    d.find_element(By.CSS_SELECTOR, f"{row} button[data-job-action=cancel]").click()
    wait_for("the job canceled, live", lambda: d.find_element(
        By.CSS_SELECTOR, row).get_attribute("data-status") == "canceled", driver=d)
    assert not_reloaded(d, loaded)
    assert farm.client.get(f"/api/v1/jobs/{job}")["status"] == "canceled"
    screenshot(d, artefacts, "06-jobs-canceled")

    open_page(d, farm, "/slaves")
    wait_for("both slaves idle again", lambda: states() == ["idle", "idle"],
             timeout=60, driver=d)
    # Test a slave again from its button (the job port's slave test).
    wait_for("the test button clicked", lambda: d.find_element(
        By.CSS_SELECTOR, "button[data-slave-action=test][data-slave=local-1]").click() or True)
    wait_for("the test's answer", lambda: "test local-1: done" in d.find_element(
        By.ID, "toast").text, timeout=60, driver=d)
    # Wake goes to the job port's real endpoint, whose refusal the page shows (local
    # slaves have no mac, so the page itself offers no Wake button for them).
    assert d.find_elements(By.CSS_SELECTOR, "button[data-slave-action=wake]") == []
    d.execute_script(
        "const b = document.createElement('button'); b.id = 'wake'; b.textContent = 'Wake';"
        " b.dataset.slaveAction = 'wake'; b.dataset.slave = 'local-2';"
        " document.getElementById('main').append(b);")
    d.find_element(By.ID, "wake").click()
    wait_for("the wake refusal", lambda: "wake local-2: slave local-2 has no mac" in
             d.find_element(By.ID, "toast").text, driver=d)
    # A button whose endpoint this master lacks says so instead of failing silently.
    d.execute_script(
        "const b = document.createElement('button'); b.id = 'fake'; b.textContent = 'x';"
        " b.dataset.slaveAction = 'no-such-verb'; b.dataset.slave = 'local-2';"
        " document.getElementById('main').append(b);")
    d.find_element(By.ID, "fake").click()
    wait_for("the missing endpoint explained", lambda: "does not offer" in d.find_element(
        By.ID, "toast").text, driver=d)


def test_an_action_without_a_token_says_what_to_do_and_changes_nothing(
        farm: MasterProcess, browser: webdriver.Chrome) -> None:
    d = browser
    job = farm.submit("--app", "sleep", "--items", "20", "--name", "untouched")
    open_page(d, farm, "/")
    d.find_element(By.CSS_SELECTOR, f"#job-row-{job} button[data-job-action=pause]").click()
    wait_for("the hint", lambda: "token" in d.find_element(By.ID, "toast").text)
    assert farm.client.get(f"/api/v1/jobs/{job}")["status"] in ("queued", "active")
    farm.ctl("cancel", str(job))


def test_a_task_log_shows_warnings_and_errors_highlighted(
        farm: MasterProcess, browser: webdriver.Chrome, artefacts: Path) -> None:
    code = (r"import sys; sys.stderr.write('Warning: the denoiser is missing\n');"
            r" sys.stderr.write('Error: out of memory\n'); print('rendered')")
    job = farm.submit("--app", "talk", "--items", code)
    farm.wait(job)
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]["id"]
    open_page(browser, farm, f"/jobs/{job}/tasks/{task}/log")
    errors = browser.find_elements(By.CSS_SELECTOR, "pre.log .err")
    err = next(e for e in errors if e.text == "Error: out of memory")
    warn = browser.find_element(By.CSS_SELECTOR, "pre.log .warn")
    assert "denoiser" in warn.text
    assert err.value_of_css_property("color") != warn.value_of_css_property("color")
    screenshot(browser, artefacts, "07-task-log")


def test_a_job_whose_task_warned_turns_completed_with_warnings_live(
        farm: MasterProcess, browser: webdriver.Chrome, artefacts: Path) -> None:
    d = browser
    code = (r"import sys; import time; time.sleep(4);"
            r" sys.stderr.write('afarm: warning: plate p_0002.png is not in the job\n')")
    job = farm.submit("--app", "talk", "--items", code, "--name", "warned")
    open_page(d, farm, f"/jobs/{job}")
    loaded = mark(d)
    wait_for("completed-with-warnings, live", lambda: d.find_element(
        By.CSS_SELECTOR, "#job-summary .status").text == "completed-with-warnings",
        timeout=60, driver=d)
    assert not_reloaded(d, loaded)
    warning = d.find_element(By.CSS_SELECTOR, "#task-warnings li.warn")
    assert warning.text == "plate p_0002.png is not in the job"
    assert warning.value_of_css_property("background-color") != d.find_element(
        By.TAG_NAME, "body").value_of_css_property("background-color")
    assert d.title.startswith("⚠ [100%] warned")
    assert d.find_element(By.ID, "favicon").get_attribute("href").endswith(
        "/static/favicon-warnings.svg")
    screenshot(d, artefacts, "13-job-warnings")


def test_pause_resume_and_priority_from_the_job_page_show_live(
        farm: MasterProcess, browser: webdriver.Chrome, artefacts: Path) -> None:
    d = browser
    job = farm.submit("--app", "sleep", "--items", "1,1,1", "--require-tag", "nowhere",
                      "--name", "waits for a tag")
    open_page(d, farm, f"/jobs/{job}")
    use_token(d, farm)
    loaded = mark(d)

    def status() -> str:
        return str(d.find_element(By.CSS_SELECTOR, "#job-summary .status").text)

    for action, after in (("pause", "paused"), ("resume", "queued")):
        d.find_element(By.CSS_SELECTOR, f"#job-summary button[data-job-action={action}]").click()
        wait_for(f"{after}, live", lambda after=after: status() == after, driver=d)
    field = d.find_element(By.ID, f"priority-{job}")
    field.clear()
    field.send_keys("87")
    d.find_element(By.CSS_SELECTOR, f"button[data-priority-job='{job}']").click()
    wait_for("priority 87, live", lambda: farm.client.get(f"/api/v1/jobs/{job}")["priority"]
             == 87 and "87" in d.find_element(By.CSS_SELECTOR, "#job-summary dl").text,
             driver=d)
    assert not_reloaded(d, loaded)
    screenshot(d, artefacts, "08-job-actions")
    d.find_element(By.CSS_SELECTOR, "#job-summary button[data-job-action=cancel]").click()
    wait_for("canceled, live", lambda: status() == "canceled", driver=d)


def test_the_read_only_views_work_without_javascript(
        farm: MasterProcess, artefacts: Path) -> None:
    job = farm.submit("--app", "talk", "--items", "print(1),print(2)", "--name", "no script")
    farm.wait(job)
    d = chromium(javascript=False)
    try:
        d.get(f"http://127.0.0.1:{farm.results_port}/")
        row = d.find_element(By.CSS_SELECTOR, f"#job-row-{job}")
        assert "no script" in row.text and "completed" in row.text
        # What needs the script (token, actions, submit) is not shown without it.
        assert not d.find_element(By.ID, "token-form").is_displayed()
        assert not d.find_element(By.ID, "submit").is_displayed()
        d.find_element(By.CSS_SELECTOR, f"#job-row-{job} .name a").click()
        assert "2/2 tasks" in d.find_element(By.ID, "job-summary").text
        d.find_element(By.CSS_SELECTOR, "#frames a[href$='/frames/2']").click()
        assert "item_000002.out" in d.find_element(By.TAG_NAME, "h1").text
        d.find_element(By.LINK_TEXT, "Slaves").click()
        assert len(d.find_elements(By.CSS_SELECTOR, "#slaves-body tr")) == 2
        screenshot(d, artefacts, "12-slaves-without-javascript")
    finally:
        d.quit()


def test_a_file_with_files_and_a_folder_beside_it_is_uploaded_from_the_page(
        farm: MasterProcess, browser: webdriver.Chrome, picture: Path, tmp_path: Path) -> None:
    d = browser
    beside = tmp_path / "lut.txt"
    beside.write_text("a lookup table\n")
    folder = tmp_path / "textures"
    (folder / "wood").mkdir(parents=True)
    (folder / "wood" / "oak.txt").write_text("oak\n")
    (folder / "stone.txt").write_text("")  # an empty file is an input too
    open_page(d, farm, "/")
    use_token(d, farm)
    Select(d.find_element(By.ID, "s-app")).select_by_value("hue")
    d.find_element(By.ID, "s-file").send_keys(str(picture))
    d.find_element(By.ID, "s-extra").send_keys(str(beside))
    d.find_element(By.ID, "s-dir").send_keys(str(folder))
    d.find_element(By.ID, "s-items").send_keys("30")
    d.find_element(By.ID, "s-submit").click()
    state = wait_for("the job accepted", lambda: "accepted" in d.find_element(
        By.ID, "submit-state").text and d.find_element(By.ID, "submit-state").text,
        driver=d)
    job = farm.client.get(f"/api/v1/jobs/{int(state.split()[1])}")
    names = {f["name"]: f["sha256"] for f in job["files"]}
    assert names == {
        "input.png": sha256(picture.read_bytes()).hexdigest(),
        "lut.txt": sha256(b"a lookup table\n").hexdigest(),
        "textures/wood/oak.txt": sha256(b"oak\n").hexdigest(),
        "textures/stone.txt": sha256(b"").hexdigest()}
    assert farm.wait(job["id"])["status"] == "completed"


XSS = "<img src=x onerror=\"window.afarmXss=1\"><script>window.afarmXss=2</script>"


def test_markup_in_names_and_logs_stays_text_and_times_follow_the_browsers_zone(
        farm: MasterProcess, browser: webdriver.Chrome) -> None:
    d = browser
    code = "import sys; sys.stderr.write('Error: ' + sys.argv[0] + '\\n')"
    job = farm.submit("--app", "talk", "--items", code, "--name", XSS)
    farm.wait(job)
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]["id"]
    d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    for path in ("/", f"/jobs/{job}", f"/jobs/{job}/frames/1",
                 f"/jobs/{job}/tasks/{task}/log"):
        open_page(d, farm, path)
        assert d.execute_script("return window.afarmXss") is None, path
        assert not d.find_elements(By.CSS_SELECTOR, "main img[src=x]"), path
    open_page(d, farm, f"/jobs/{job}")
    assert XSS in d.find_element(By.CSS_SELECTOR, "h1 .name").text
    assert XSS in d.title
    t = d.find_element(By.CSS_SELECTOR, "#job-summary time")
    utc = t.get_attribute("datetime")  # 2026-12-01T23:40:00Z
    shown = d.execute_script(
        "return new Date(arguments[0]).toLocaleString(undefined, {timeZone: 'Asia/Tokyo'})",
        utc)
    assert t.text == shown and "UTC" not in t.text
    assert console_problems(d) == []


def test_accepting_a_pending_slave_asks_to_confirm_its_host_key_first(
        farm: MasterProcess, browser: webdriver.Chrome) -> None:
    d = browser
    # A slave found by discovery, as the browser of announcements records it.
    db = sqlite3.connect(farm.state / "afarm.db", timeout=10)
    discovered.put(db, discovered.Discovered(
        "new-1", discovered.PENDING, "SHA256:k3y", "192.0.2.7", 22, 7071, (), "0.3.0",
        time.time() - 300, time.time()))
    db.commit()
    db.close()
    open_page(d, farm, "/slaves")
    use_token(d, farm)
    row = d.find_element(By.ID, "slave-new-1")
    assert row.get_attribute("data-state") == "pending"
    assert "5 min" in row.text and "SHA256:k3y" in row.text
    button = row.find_element(By.CSS_SELECTOR, "button[data-slave-action=accept]")
    button.click()
    alert = d.switch_to.alert
    assert "SHA256:k3y" in alert.text
    alert.dismiss()
    button.click()
    d.switch_to.alert.accept()
    # The job port's accept endpoint took the confirmed key and refused for a reason of
    # this test master: its job port is on loopback, which no slave can reach.
    wait_for("the answer", lambda: "accept new-1: the job port listens on 127.0.0.1"
             in d.find_element(By.ID, "toast").text, driver=d)
