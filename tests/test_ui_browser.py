"""`srprior ui` as a researcher meets it: a real store, the real server, the page rendered by headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in NUL,
commands on fd 3, answers on fd 4), so the check needs no WebDriver and no Python package beyond the lock.
Everything is on 127.0.0.1 and every wait has a deadline."""

from __future__ import annotations

import base64
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from srprior import tracking

pytestmark = pytest.mark.slow

RUNS = {"edsr-t/baseline/seed-0": 0.0, "edsr-t/prior/seed-0": 1e-4, "edsr-t/prior/seed-1": 1e-4}
DESCRIPTION = "Table 4.2 smoke: EDSR-T with and without the attribution prior."
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-pipe")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class DevTools:
    """A headless Chromium and one page, over --remote-debugging-pipe."""

    def __init__(self, binary: str, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def _wire() -> None:  # in the child: Chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=_wire)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._ids, self._buffer, self.session = itertools.count(1), b"", None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        """Send one command and return its result (events in between are dropped)."""
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == msg_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout:.0f} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()}) during {method}")
            self._buffer += chunk

    def text(self) -> str:
        return self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                         returnByValue=True)["result"].get("value", "")

    def close(self) -> None:
        try:
            self.session = None
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _make_store(root: Path) -> str:
    client = MlflowClient(tracking.default_tracking_uri(root))
    exp = tracking.experiment_id(client, "srprior/table-demo", description=DESCRIPTION)
    for i, (name, lambda_ap) in enumerate(RUNS.items()):
        run = client.create_run(exp, run_name=name, tags={"table": "demo", "seed": name[-1]}).info.run_id
        client.log_param(run, "lambda_ap", lambda_ap)
        client.log_param(run, "preset", "edsr-t-micro")
        for step in range(5):
            client.log_metric(run, "val/psnr", 28.0 + step * 0.1 + i * 0.01, step=step)
        client.log_metric(run, "psnr_embedded", 28.5 + i * 0.01)
        client.set_terminated(run)
    return exp


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of the server's stdout, or fail after `timeout` s (readline alone could block forever)."""
    if not select.select([proc.stdout], [], [], timeout)[0]:
        pytest.fail(f"srprior ui printed nothing within {timeout:.0f} s")
    return proc.stdout.readline()


def _wait_for(page: DevTools, names: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = page.text()
        if all(name in text for name in names) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def _start_ui(output: Path) -> tuple[subprocess.Popen, int]:
    """`srprior ui` on a free loopback port over `output`'s store, as a user starts it (no MLFLOW_TRACKING_URI)."""
    port = tracking.free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "srprior.cli", "ui", "--output-dir", str(output),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True), port


def test_runs_page_renders_the_runs_in_chromium(tmp_path):
    chromium = _chromium()
    exp = _make_store(tmp_path)
    server, port = _start_ui(tmp_path)
    page = None
    try:
        assert _readline(server, 180).startswith(f"MLflow UI: http://127.0.0.1:{port}")
        link = _readline(server, 30).strip()
        url = tracking.ui_url(f"http://127.0.0.1:{port}", exp)
        assert link == f"Runs of srprior/table-demo (newest): {url}"

        page = DevTools(chromium, tmp_path / "chromium-profile")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=800, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=url)
        text = _wait_for(page, list(RUNS), timeout=90)
        shot = tmp_path / "mlflow-runs.png"
        shot.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {shot}")
        assert all(name in text for name in RUNS), f"run names missing from the page; it shows:\n{text[:2000]}"
        assert DESCRIPTION in text  # experiment_id(..., description=) is what the page shows above the runs
    finally:
        if page is not None:
            page.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


def _make_sweep_store(root: Path) -> tuple[str, dict[str, float]]:
    """A table's experiment as a sweep leaves it: the sweep's parent run, trial runs nested under it with the
    reported metrics, and the runs view the sweep saves (the same call)."""
    from srprior import contracts

    client = MlflowClient(tracking.default_tracking_uri(root))
    exp = tracking.experiment_id(client, contracts.table_experiment("4.2"))
    parent = client.create_run(exp, run_name="table-4.2-smoke", tags={contracts.ROLE: "sweep"}).info.run_id
    reported = {}
    for i, (name, lambda_ap) in enumerate(RUNS.items()):
        run = client.create_run(exp, run_name=f"4.2:{name}", tags={contracts.ROLE: "trial", contracts.PARENT: parent,
                                                                   contracts.ROW: name.rsplit("/", 1)[0]}).info.run_id
        client.log_param(run, "lambda_ap", lambda_ap)
        reported[name] = 34.0625 + 0.25 * i  # binary fractions: the page shows them exactly
        client.log_metric(run, f"{contracts.SELECTED}psnr_embedded", reported[name])
        client.log_metric(run, f"{contracts.BICUBIC}psnr_embedded", 33.5)
        client.log_metric(run, "val/psnr", 30.0 + i)  # logged but not reported: not a column of the view
        client.set_terminated(run)
    client.set_terminated(parent)
    tracking.save_runs_view(client, exp, [f"{contracts.SELECTED}psnr_embedded", f"{contracts.BICUBIC}psnr_embedded"])
    return exp, reported


def test_the_link_srprior_ui_prints_shows_the_reported_metrics(tmp_path):
    """The link a user lands on after a sweep (`srprior ui` prints it) lists the trial runs grouped by table row
    with the report's metric values as columns and each row's mean: the saved runs view, not a folded parent
    run without metric columns."""
    chromium = _chromium()
    exp, reported = _make_sweep_store(tmp_path)
    server, port = _start_ui(tmp_path)
    page = None
    try:
        assert _readline(server, 180).startswith(f"MLflow UI: http://127.0.0.1:{port}")
        link = _readline(server, 30).strip().split(": ", 1)[1]
        assert link == tracking.ui_url(f"http://127.0.0.1:{port}", exp, view=True)
        page = DevTools(chromium, tmp_path / "chromium-profile")
        page.call("Emulation.setDeviceMetricsOverride", width=1600, height=900, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=link)
        values = [f"{v:.4f}" for v in reported.values()]
        prior = [v for name, v in reported.items() if "/prior/" in name]
        mean = f"{sum(prior) / len(prior):.4f} (average)"  # the row's mean, as the report's table cell
        text = _wait_for(page, [f"4.2:{name}" for name in RUNS] + values + [mean], timeout=90)
        shot = tmp_path / "mlflow-view.png"
        shot.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {shot}")
        assert all(f"4.2:{name}" in text for name in RUNS), f"trial runs not listed; the page shows:\n{text[:3000]}"
        assert all(v in text for v in values), f"reported values missing; the page shows:\n{text[:3000]}"
        assert mean in text, f"no row mean; the page shows:\n{text[:3000]}"
        assert "33.5" in text and "table-4.2-smoke" not in text  # bicubic column; the sweep's run filtered out
    finally:
        if page is not None:
            page.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
