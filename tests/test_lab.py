"""`make lab`: JupyterLab serves every chapter as a notebook (jupytext) and runs it in a kernel; math renders offline.

A headless JupyterLab is started as `make lab` starts it (genbook.book.lab.lab_command), on a free port with a
token, with the settings overrides in a temporary folder. Through its REST API a chapter is opened as a notebook
and a session starts a kernel; the chapter's first code cell is executed over the kernel's websocket. With
Chromium present, the chapter is also opened in the JupyterLab UI: it opens as a notebook (the default viewer
for .py files) and its formulas are typeset, with no request leaving the machine.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from genbook.book.browser import CHROMIUM_ARGS, REMOTE, browser_available, find_chromium
from genbook.book.execution import read_chapter
from genbook.book.lab import OVERRIDES, install_overrides, lab_command
from genbook.book.manifest import load_manifest
from genbook.paths import REPO_ROOT

CHAPTER = "chapters/00_preface.py"
TOKEN = uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, method: str = "GET", body: dict | None = None, timeout: float = 30):
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1; yields its base URL, stops it afterwards."""
    tmp = tmp_path_factory.mktemp("lab")
    overrides = install_overrides(tmp)  # the overrides `make lab` installs, here in a temporary prefix
    settings = json.loads(overrides.read_text())
    settings["@jupyterlab/docmanager-extension:plugin"]["autosave"] = False  # never write to the chapter
    overrides.write_text(json.dumps(settings))
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "config")}
    env.pop("MPLBACKEND", None)
    cmd = lab_command(["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                       "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
                       f"--LabApp.app_settings_dir={overrides.parent}", f"--LabApp.user_settings_dir={tmp / 'user'}",
                       f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
                       f"--FileCheckpoints.root_dir={tmp / 'checkpoints'}"])  # no .ipynb_checkpoints in chapters/
    log = open(tmp / "lab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                api(base, "/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp / "lab.log").read_text()[-3000:]) from None
                time.sleep(0.25)
        yield base
    finally:
        server.terminate()  # SIGTERM: the server shuts its kernels down and exits
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_lab_command_and_overrides(tmp_path):
    cmd = lab_command(["--no-browser"])
    assert cmd[1:3] == ["-m", "jupyterlab"] and f"--notebook-dir={REPO_ROOT}" in cmd and cmd[-1] == "--no-browser"
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    path = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/docmanager-extension:plugin": {"autosave": False}}))
    assert install_overrides(tmp_path) == path
    merged = json.loads(path.read_text())
    assert merged["@jupyterlab/docmanager-extension:plugin"] == {
        "autosave": False, **OVERRIDES["@jupyterlab/docmanager-extension:plugin"]}  # a reader's settings stay


def test_chapter_opens_as_a_notebook(lab):
    model = api(lab, f"/api/contents/{CHAPTER}?type=notebook&content=1")
    assert model["type"] == "notebook" and model["format"] == "json"
    chapter = read_chapter(REPO_ROOT / CHAPTER)
    assert len(model["content"]["cells"]) == len(chapter.cells)
    assert [c["source"] for c in model["content"]["cells"]] == [c.source for c in chapter.cells]


def execute(base: str, kernel_id: str, code: str, timeout: float = 60) -> tuple[str, str]:
    """Run code in a kernel over the server's websocket; return (status, stdout)."""
    import websocket

    ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={TOKEN}", timeout=timeout)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, status, idle = [], None, False
        deadline = time.monotonic() + timeout
        while status is None or not idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply from the kernel in {timeout} s; output so far: {''.join(stdout)}")
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                stdout.append(msg["content"]["text"])
            elif kind == "error":
                stdout.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return status, "".join(stdout)
    finally:
        ws.close()


def test_first_cell_runs_in_a_kernel(lab):
    model = api(lab, f"/api/contents/{CHAPTER}?type=notebook&content=1")
    first = next(c for c in model["content"]["cells"] if c["cell_type"] == "code")
    name = Path(CHAPTER).name
    session = api(lab, "/api/sessions", "POST", {"path": CHAPTER, "name": name, "type": "notebook",
                                                 "kernel": {"name": "python3"}})
    try:
        status, out = execute(lab, session["kernel"]["id"], first["source"])
        assert status == "ok", out
        assert load_manifest().title in out  # the preface's first cell prints the book's contents
        status, cwd = execute(lab, session["kernel"]["id"], "import os; print(os.getcwd())")
        assert status == "ok" and Path(cwd.strip()) == REPO_ROOT / "chapters"  # a chapter's kernel runs in chapters/
    finally:
        api(lab, f"/api/sessions/{session['id']}", "DELETE")
    assert all(s["id"] != session["id"] for s in api(lab, "/api/sessions"))


def test_chapter_opens_as_a_notebook_in_the_ui_with_math_typeset_offline(lab):
    available, why = browser_available()
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this check, but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    remote = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: remote.append(r.url) if REMOTE.match(r.url) and
                    urlsplit(r.url).hostname not in ("127.0.0.1", "localhost") else None)
            page.goto(f"{lab}/lab/tree/{CHAPTER}?token={TOKEN}", timeout=60_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-MarkdownCell mjx-container", state="attached",
                                   timeout=60_000)
            formulas = page.evaluate("document.querySelectorAll('.jp-NotebookPanel mjx-container').length")
            editors = page.evaluate("document.querySelectorAll('.jp-FileEditor').length")
            sessions = api(lab, "/api/sessions")
            for s in sessions:  # the UI started a kernel for the chapter: shut it down
                api(lab, f"/api/sessions/{s['id']}", "DELETE")
        finally:
            browser.close()
    assert formulas > 0 and editors == 0, (formulas, editors)
    assert not remote, f"JupyterLab asked the network for {remote}"
