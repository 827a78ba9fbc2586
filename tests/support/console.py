"""What the console tests share besides fixtures: where screenshots go, the XSS probe the
data carries, and ``Watch``, which records what a page did.

In a package of its own so ``test_console.py`` imports it by a name no other directory's
``conftest`` can shadow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCREENSHOTS = Path(__file__).resolve().parents[2] / "console-screenshots"
XSS = "<img src=x onerror=alert(1)>"


class Watch:
    """Everything the page did that a test must see: console errors, page errors, dialogs
    (an alert() would mean injected script ran), and every host a request went to."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.urls: list[str] = []
        self.failed: list[tuple[int, str]] = []
        self.set_cookies: list[str] = []  # the console holds no session: none may be set
        page.on("console", self._console)
        page.on("response", self._response)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        # Chromium logs every 4xx answer as "Failed to load resource"; those are API errors the
        # console shows on purpose (checked through ``failed``), not errors of the console.
        if message.type == "error" and not message.text.startswith(
            "Failed to load resource: the server responded with a status of 4"
        ):
            self.errors.append(message.text)

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append((response.status, response.url))
        cookie = response.headers.get("set-cookie")
        if cookie:
            self.set_cookies.append(f"{response.url}: {cookie}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def foreign(self, base: str) -> list[str]:
        allowed = (base + "/", "blob:" + base + "/", "data:")
        return [u for u in self.urls if not u.startswith(allowed)]
