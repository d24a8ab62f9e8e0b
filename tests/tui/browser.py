"""A real headless Chromium driven over its DevTools protocol, for the web control center's tests.

Why the DevTools protocol and nothing bigger: it needs only Debian's `chromium` and a websocket
client, and aiohttp (which textual-serve brings) is one. Selenium would add a package and the
chromedriver process between us and the browser; Playwright downloads browsers of its own, which
this project's machines cannot fetch.

The terminal is drawn by xterm.js on a canvas, so its text is not in the page's DOM. A small script,
installed before the page's own, keeps the xterm `Terminal` that the page creates (xterm hands it to
every add-on it loads) so the test reads the screen through xterm's public buffer API: exactly the
characters the browser shows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1400, 900)
# Each apt-get step; the browser tests' own time limit leaves room for an install on a fresh machine.
INSTALL_SECONDS = 240

# Wraps each add-on's activate(terminal) to keep the terminal: textual-serve's page loads several
# add-ons into its one Terminal, through xterm's AddonManager (which pushes {instance, ...} records).
KEEP_TERMINAL = r"""
(() => {
  const push = Array.prototype.push;
  Array.prototype.push = function (...items) {
    for (const item of items) {
      if (item && typeof item === "object" && "isDisposed" in item && item.instance
          && typeof item.instance.activate === "function" && !item.instance.__tgmsKept) {
        const activate = item.instance.activate;
        item.instance.__tgmsKept = true;
        item.instance.activate = function (terminal) {
          window.__tgmsTerminal = terminal;
          return activate.apply(this, arguments);
        };
      }
    }
    return push.apply(this, items);
  };
})();
"""

SCREEN_TEXT = r"""
(() => {
  const t = window.__tgmsTerminal;
  if (!t) return null;
  const buffer = t.buffer.active, rows = [];
  for (let y = 0; y < t.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\n");
})()
"""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium() -> tuple[str | None, str]:
    """Chromium's path, installing Debian's package when running as root; else (None, why not)."""
    found = find_chromium()
    if found:
        return found, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "chromium is not installed and the tests are not root (apt-get install -y chromium)"
    if shutil.which("apt-get") is None:
        return None, "chromium is not installed and there is no apt-get here to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    try:
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=INSTALL_SECONDS)
        if done.returncode != 0:  # a fresh machine's package lists may be empty
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=INSTALL_SECONDS)
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=INSTALL_SECONDS)
    except subprocess.TimeoutExpired as exc:
        return None, f"{' '.join(exc.cmd)} took over {INSTALL_SECONDS} s"
    found = find_chromium()
    if found:
        return found, ""
    last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"apt-get install chromium failed: {last[0]}"


class Page:
    """One browser tab over the DevTools protocol: commands by id, events ignored."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser closed the DevTools connection"))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self.ws.send_json({"id": self._next, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def open(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINAL)
        await self.call("Page.navigate", url=url)

    async def screen_text(self) -> str:
        """What the terminal shows now, row by row ('' before the terminal exists)."""
        return str(await self.evaluate(SCREEN_TEXT) or "")

    async def wait_for_screen(self, condition: Callable[[str], bool], what: str, timeout: float = 40.0) -> str:
        """Poll the screen until `condition(text)` holds; the last screen is in the error."""
        text = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = await self.screen_text()
            if condition(text):
                return text
            await asyncio.sleep(0.2)
        if not await self.evaluate("Boolean(window.__tgmsTerminal)"):
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}: the page never made an xterm Terminal this "
                "script could see (did textual-serve's bundle change how it loads xterm add-ons?)"
            )
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the browser shows:\n{text}")

    async def press(self, key: str) -> None:
        """Type one printable key into the terminal (xterm's input is its hidden textarea)."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key, unmodifiedText=key)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium(executable: str, log: Path) -> AsyncIterator[Callable[[], Awaitable[Page]]]:
    """A headless Chromium of its own profile; yields a function that opens a new tab."""
    profile = Path(tempfile.mkdtemp(prefix="tgms-chromium-"))
    argv = [
        executable,
        "--headless",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-extensions",
        "--mute-audio",
        "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()}): {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            pages: list[Page] = []

            async def new_page() -> Page:
                async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as reply:
                    target = await reply.json()
                ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
                page = Page(ws)
                pages.append(page)
                return page

            try:
                yield new_page
            finally:
                for page in pages:
                    await page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
