"""The operator console in a real headless Chromium against a real gateway.

One browser for the module, one page signed in with the admin key reused by the tests in
order, and a second page for a read-only key. Each screen is screenshotted into
console-screenshots/ (gitignored) for a reviewer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.console import SCREENSHOTS, XSS, Watch

from athena import __version__

pytestmark = pytest.mark.slow

TIMEOUT_MS = 20_000


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/console")
    page.fill("#signin-key", key)
    page.click("#signin-submit")
    page.wait_for_selector("#nav a", timeout=TIMEOUT_MS)


def open_screen(page: Any, screen: str) -> None:
    page.click(f"#nav-{screen}")
    page.wait_for_selector(f"#screen-{screen}", timeout=TIMEOUT_MS)


def modal_submit(page: Any, values: dict[str, str]) -> None:
    dialog = page.locator("dialog[open]")
    dialog.wait_for(timeout=TIMEOUT_MS)
    for name, value in values.items():
        dialog.locator(f"#f-{name}").fill(value)
    dialog.locator("button[type=submit]").click()
    page.locator("dialog[open]").wait_for(state="hidden", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def env(console_env: dict[str, Any]) -> dict[str, Any]:
    return console_env


@pytest.fixture(scope="module")
def base(env: dict[str, Any]) -> str:
    return env["server"].url


@pytest.fixture(scope="module")
def admin_page(browser: Any, base: str, env: dict[str, Any]) -> Iterator[tuple[Any, Watch]]:
    page = browser.new_page()
    watch = Watch(page)
    sign_in(page, base, env["admin_key"])
    yield page, watch
    page.close()


def test_console_is_served_with_a_strict_csp(base: str) -> None:
    response = httpx.get(f"{base}/console")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text  # every script is a file under 'self'
    js = httpx.get(f"{base}/console/assets/js/main.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    plotly = httpx.get(f"{base}/console/assets/vendor/plotly.min.js")
    assert plotly.status_code == 200 and b"plotly.js" in plotly.content[:2000]
    again = httpx.get(plotly.url, headers={"If-None-Match": plotly.headers["etag"]})
    assert again.status_code == 304 and again.content == b""  # revalidated, not re-sent
    for bad in ("../__init__.py", "js/../../__init__.py", "vendor/x.js", "%2e%2e/index.html"):
        assert httpx.get(f"{base}/console/assets/{bad}").status_code == 404, bad


def test_sign_in_keeps_the_key_out_of_urls_and_storage(
    admin_page: tuple[Any, Watch], env: dict[str, Any]
) -> None:
    page, watch = admin_page
    key = env["admin_key"]
    assert page.locator("#who").inner_text() == "admin key"
    shot(page, "01-clients")
    stored = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])"
    )
    assert key not in stored
    assert all(key not in url for url in watch.urls)
    # a wrong key is refused with the API's code
    other = page.context.new_page()
    other.goto(page.url.split("#")[0])
    other.wait_for_selector("#signin-key", timeout=TIMEOUT_MS)
    shot(other, "00-sign-in")
    other.fill("#signin-key", "ath_0000000000000000.nope")
    other.click("#signin-submit")
    assert "invalid_api_key" in other.locator(".error-box").inner_text(timeout=TIMEOUT_MS)
    other.close()


def test_the_key_is_memory_only_no_cookie_is_set_and_inline_script_is_blocked(
    browser: Any, base: str, env: dict[str, Any]
) -> None:
    """The console keeps its key in a JavaScript variable: there is no session cookie, so no
    request can carry an ambient credential and there is nothing for CSRF to ride on; a cookie
    is not an accepted credential either. The CSP is enforced by the browser: an inline script
    injected into the page does not run."""
    page = browser.new_page()
    watch = Watch(page)
    sign_in(page, base, env["admin_key"])
    open_screen(page, "keys")
    assert page.context.cookies(base) == [] and watch.set_cookies == []
    page.reload()  # memory only: a reload forgets the key
    page.wait_for_selector("#signin-key", timeout=TIMEOUT_MS)
    assert page.locator("#nav a").count() == 0
    # a key sent as a cookie (what a forged cross-site request could carry) is no credential
    for name in ("apikey", "athena_key", "session"):
        answer = httpx.get(f"{base}/admin/api-keys", cookies={name: env["admin_key"]})
        assert answer.status_code == 401, (name, answer.text)
    # an inline script (what an injected value would need) is refused by the CSP
    violations = page.evaluate(
        """() => new Promise((resolve) => {
             const seen = [];
             document.addEventListener("securitypolicyviolation", (e) => seen.push(e.violatedDirective));
             const s = document.createElement("script");
             s.textContent = "window.__injected = true";
             document.body.append(s);
             setTimeout(() => resolve({ ran: window.__injected === true, seen }), 200);
           })"""
    )
    assert violations["ran"] is False and violations["seen"], violations
    assert violations["seen"][0].startswith("script-src")
    page.close()


def test_clients_screen_shows_health_and_masks_passwords(admin_page: tuple[Any, Watch]) -> None:
    page, _ = admin_page
    open_screen(page, "clients")
    row = page.locator('#clients tr[data-client="shop"]')
    row.wait_for(timeout=TIMEOUT_MS)
    text = row.inner_text()
    assert "online" in text and "active" in text and "console test shop" in text
    assert "***" in text  # the URI's password is masked by the API and shown so


def test_add_edit_freeze_and_unfreeze_a_client(
    admin_page: tuple[Any, Watch], env: dict[str, Any], base: str
) -> None:
    page, _ = admin_page
    admin = {"apikey": env["admin_key"]}
    uri = env["pg"].app_uri(env["spare_db"])
    page.click("#client-add")
    modal_submit(page, {"client_name": "spare", "pg_uri": uri, "description": "added here"})
    page.wait_for_selector(".toast:has-text('Client added')", timeout=TIMEOUT_MS)
    row = page.locator('#clients tr[data-client="spare"]')
    row.wait_for(timeout=TIMEOUT_MS)
    password = uri.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert "added here" in row.inner_text() and password not in page.content()

    row.locator(".client-edit").click()
    dialog = page.locator("dialog[open]")
    assert dialog.locator("#f-pg_uri").input_value() == ""  # a password is never shown back
    modal_submit(page, {"description": "edited here"})
    page.wait_for_selector(".toast:has-text('Client saved')", timeout=TIMEOUT_MS)
    page.wait_for_selector('#clients tr[data-client="spare"]:has-text("edited here")')

    def spare() -> dict[str, Any]:
        listed = httpx.get(f"{base}/admin/clients", headers=admin).json()["runtime"]
        return next(c for c in listed if c["client_name"] == "spare")

    fetch = {"table_name": "anything"}
    page.locator('#clients tr[data-client="spare"] .client-freeze').click()
    page.locator("dialog[open] button[type=submit]").click()  # freezing asks first
    page.wait_for_selector(".toast:has-text('Client frozen')", timeout=TIMEOUT_MS)
    page.wait_for_selector('#clients tr[data-client="spare"] .badge:text-is("frozen")')
    assert spare()["is_frozen"] is True and spare()["description"] == "edited here"
    frozen = httpx.post(
        f"{base}/gateway/fetch", json=fetch, headers={**admin, "X-Athena-Client": "spare"}
    )
    assert frozen.status_code == 403 and frozen.json()["code"] == "client_frozen", frozen.text
    page.locator('#clients tr[data-client="spare"] .client-freeze:text-is("Unfreeze")').click()
    page.wait_for_selector(".toast:has-text('Client unfrozen')", timeout=TIMEOUT_MS)
    page.wait_for_selector('#clients tr[data-client="spare"] .client-freeze:text-is("Freeze")')
    assert spare()["is_frozen"] is False
    # the other screens offer the new client without signing in again
    open_screen(page, "backups")
    assert "spare" in page.locator("#backup-client option").all_inner_texts()


def test_browse_sort_filter_and_count(admin_page: tuple[Any, Watch]) -> None:
    page, _ = admin_page
    open_screen(page, "tables")
    page.select_option("#table-picker", "orders")
    page.wait_for_selector("#rows tbody tr", timeout=TIMEOUT_MS)
    assert page.locator("#rows tbody tr").count() == 50
    page.wait_for_selector("#row-count:has-text('of 121')", timeout=TIMEOUT_MS)
    page.select_option("#filter-column", "state")
    page.select_option("#filter-operator", "eq")
    page.fill("#filter-value", "paid")
    page.click("#filter-add")
    page.wait_for_selector("#row-count:has-text('of 40')", timeout=TIMEOUT_MS)
    states = page.locator("#rows tbody tr td:nth-child(2)").all_inner_texts()
    assert states and set(states) == {"paid"}
    page.select_option("#filter-column", "amount")
    page.select_option("#filter-operator", "gt")
    page.fill("#filter-value", "150")
    page.click("#filter-add")
    page.wait_for_selector("#row-count:has-text('of 7')", timeout=TIMEOUT_MS)
    # sort by amount, descending (second click)
    page.click("#rows th button:text-is('amount')")
    page.wait_for_selector("#rows th[aria-sort=ascending]", timeout=TIMEOUT_MS)
    page.click("#rows th button:has-text('amount')")
    page.wait_for_selector("#rows th[aria-sort=descending]", timeout=TIMEOUT_MS)
    first = page.locator("#rows tbody tr").first.locator("td").nth(2).inner_text()
    assert first in ("180", "180.00")
    # JSON and array cells are shown as JSON text
    assert (
        page.locator("#rows tbody tr").first.locator("td.json").first.inner_text().startswith("[")
    )
    shot(page, "02-tables")
    # CSV export of the current filter
    with page.expect_download() as download:
        page.click("#export-csv")
    csv = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert csv[0].startswith("id,state,amount") and len(csv) == 8
    # clear the filters again
    for _ in range(2):
        page.locator("#filters button").first.click()
        page.wait_for_timeout(50)
    page.wait_for_selector("#row-count:has-text('of 121')", timeout=TIMEOUT_MS)


def test_xss_row_shows_as_text(admin_page: tuple[Any, Watch]) -> None:
    page, watch = admin_page
    page.select_option("#filter-column", "state")
    page.select_option("#filter-operator", "eq")
    page.fill("#filter-value", "xss")
    page.click("#filter-add")
    page.wait_for_selector("#row-count:has-text('of 1')", timeout=TIMEOUT_MS)
    cell = page.locator("#rows tbody tr td", has_text="<img")
    assert cell.inner_text() == XSS
    assert page.locator("#rows img").count() == 0
    assert watch.dialogs == []
    page.locator("#filters button").first.click()
    page.wait_for_selector("#row-count:has-text('of 121')", timeout=TIMEOUT_MS)


def test_insert_edit_delete_a_row(admin_page: tuple[Any, Watch], admin_api: httpx.Client) -> None:
    page, _ = admin_page

    def rows_via_api(note: str) -> list[dict[str, Any]]:
        body = {"table_name": "orders", "conditions": [{"eq_column": "note", "eq_value": note}]}
        return admin_api.post("/gateway/fetch", json=body).json()["data"]

    page.click("#row-insert")
    modal_submit(
        page, {"state": "open", "amount": "12.34", "note": "from the console", "tags": '["a", "b"]'}
    )
    page.wait_for_selector(".toast:has-text('Row inserted')", timeout=TIMEOUT_MS)
    [row] = rows_via_api("from the console")
    assert row["amount"] in (12.34, "12.34") and row["tags"] == ["a", "b"]

    page.select_option("#filter-column", "id")
    page.fill("#filter-value", str(row["id"]))
    page.select_option("#filter-operator", "eq")
    page.click("#filter-add")
    page.wait_for_selector(f'#rows tr[data-id="{row["id"]}"]', timeout=TIMEOUT_MS)
    page.click(f'#rows tr[data-id="{row["id"]}"] .row-edit')
    modal_submit(page, {"note": "edited in the console"})
    page.wait_for_selector(".toast:has-text('Row saved')", timeout=TIMEOUT_MS)
    [edited] = rows_via_api("edited in the console")
    assert edited["id"] == row["id"] and edited["state"] == "open"

    page.wait_for_selector(f'#rows tr[data-id="{row["id"]}"]', timeout=TIMEOUT_MS)
    page.click(f'#rows tr[data-id="{row["id"]}"] .row-delete')
    page.locator("dialog[open] button[type=submit]").click()  # destructive: asks first
    page.wait_for_selector(".toast:has-text('Row deleted')", timeout=TIMEOUT_MS)
    assert rows_via_api("edited in the console") == []
    # the writes went through /gateway/*, so the request log has them, with the console's
    # context headers (who acted)

    def logged() -> list[dict[str, Any]]:
        entries = admin_api.get("/admin/request-log", params={"limit": 50}).json()["entries"]
        return [e for e in entries if e["route"] in ("/gateway/insert", "/gateway/delete")]

    deadline = time.monotonic() + 10
    while len(logged()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    writes = logged()
    assert {e["route"] for e in writes} == {"/gateway/insert", "/gateway/delete"}, writes
    assert {e["user_id"] for e in writes} == {"console:admin"}
    assert all(200 <= e["status_code"] < 300 and e["client_name"] == "shop" for e in writes)
    page.locator("#filters button").first.click()


def test_create_a_table_and_a_column(
    admin_page: tuple[Any, Watch], admin_api: httpx.Client
) -> None:
    page, _ = admin_page
    open_screen(page, "structure")
    page.wait_for_selector("#columns", timeout=TIMEOUT_MS)
    page.click("#create-table")
    modal_submit(page, {"table_name": "console_made", "name": "title"})
    page.wait_for_selector(".toast:has-text('Table created')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#columns h2:has-text('console_made')", timeout=TIMEOUT_MS)
    page.click("#add-column")
    # the type is picked from the gateway's allowed types (/management/capabilities)
    page.locator("dialog[open] #f-data_type").select_option("integer")
    modal_submit(page, {"name": "qty"})
    page.wait_for_selector(".toast:has-text('Column added')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#columns td:text-is('qty')", timeout=TIMEOUT_MS)
    columns = admin_api.get("/schema/columns", params={"table_name": "console_made"}).json()
    names = {c["column_name"] for c in columns["columns"]}
    assert {"id", "title", "qty", "created_at"} <= names
    assert {c["column_name"]: c["data_type"] for c in columns["columns"]}["qty"] == "integer"
    page.wait_for_selector(
        "#audit td:has-text('add_column'), #audit td:has-text('edit_table')", timeout=TIMEOUT_MS
    )
    shot(page, "03-structure")


def test_rename_and_drop_a_column_create_and_drop_an_index_and_the_table(
    admin_page: tuple[Any, Watch], admin_api: httpx.Client
) -> None:
    page, _ = admin_page

    def columns() -> set[str]:
        body = admin_api.get("/schema/columns", params={"table_name": "console_made"}).json()
        return {c["column_name"] for c in body["columns"]}

    def indexes() -> list[str]:
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'console_made' ORDER BY 1"
        return [
            r["indexname"]
            for r in admin_api.post("/gateway/query", json={"query": sql}).json()["data"]
        ]

    page.click('#columns tr:has(td:text-is("qty")) .col-rename')
    modal_submit(page, {"to": "quantity"})
    page.wait_for_selector(".toast:has-text('Column renamed')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#columns td:text-is('quantity')", timeout=TIMEOUT_MS)
    assert "quantity" in columns() and "qty" not in columns()

    before = indexes()
    page.click("#create-index")
    modal_submit(page, {"columns": "title, quantity"})
    page.wait_for_selector(".toast:has-text('Index created')", timeout=TIMEOUT_MS)
    (made,) = set(indexes()) - set(before)
    page.wait_for_selector(f"#indexes td:text-is('{made}')", timeout=TIMEOUT_MS)
    shot(page, "03b-structure-index")
    page.click(f'#indexes tr:has(td:text-is("{made}")) .index-drop')
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_selector(".toast:has-text('Index dropped')", timeout=TIMEOUT_MS)
    assert indexes() == before

    page.click('#columns tr:has(td:text-is("quantity")) .col-drop')
    assert "quantity" in page.locator("dialog[open]").inner_text()  # it names what goes
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_selector(".toast:has-text('Column dropped')", timeout=TIMEOUT_MS)
    assert "quantity" not in columns()

    # dropping a table asks for its name: a wrong one drops nothing
    page.click("#drop-table")
    modal_submit(page, {"confirm": "not the name"})
    assert "title" in columns()
    page.click("#drop-table")
    modal_submit(page, {"confirm": "console_made"})
    page.wait_for_selector(".toast:has-text('Table dropped')", timeout=TIMEOUT_MS)
    tables = admin_api.get("/schema/tables").json()["tables"]
    assert "console_made" not in {t["table_name"] for t in tables}
    page.wait_for_selector("#audit td:has-text('drop_table')", timeout=TIMEOUT_MS)


def test_sql_editor_runs_and_shows_errors(admin_page: tuple[Any, Watch]) -> None:
    page, _ = admin_page
    open_screen(page, "sql")
    page.fill("#sql-text", "SELECT 40 + 2 AS answer")
    page.click("#sql-run")
    page.wait_for_selector("#sql-result td:text-is('42')", timeout=TIMEOUT_MS)
    assert "returned_row_count" in page.locator("#sql-meta").inner_text()
    page.fill("#sql-text", "SELECT * FROM no_such_table")
    page.keyboard.press("Control+Enter")
    error = page.locator("#sql-result .error-box")
    error.wait_for(timeout=TIMEOUT_MS)
    assert re.search(r"[a-z_]+ \(HTTP 4\d\d\)", error.inner_text())
    assert page.locator("#sql-history li").count() == 2
    shot(page, "04-sql")


def test_create_and_revoke_a_key(admin_page: tuple[Any, Watch], base: str) -> None:
    page, _ = admin_page
    open_screen(page, "keys")
    page.click("#key-create")
    dialog = page.locator("dialog[open]")
    dialog.locator("#f-name").fill("console made")
    dialog.locator("#f-client_name").select_option("shop")
    dialog.locator("#f-rights input[value='gateway.read']").check()
    dialog.locator("button[type=submit]").click()
    secret = page.locator("#new-key-secret").inner_text(timeout=TIMEOUT_MS)
    assert secret.startswith("ath_")
    shot(page, "05-keys")
    # the copy button puts the secret on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.click("#new-key-copy")
    page.wait_for_selector("#new-key-copy:text-is('Copied')", timeout=TIMEOUT_MS)
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    headers = {"apikey": secret, "X-Athena-Client": "shop"}
    body = {"table_name": "orders", "limit": 1}
    assert httpx.post(f"{base}/gateway/fetch", json=body, headers=headers).status_code == 200
    public_id = secret[4:20]
    page.click(f'#keys tr[data-public-id="{public_id}"] .key-revoke')
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_selector(".toast:has-text('Key revoked')", timeout=TIMEOUT_MS)
    page.wait_for_selector(
        f'#keys tr[data-public-id="{public_id}"] .badge:text-is("revoked")', timeout=TIMEOUT_MS
    )
    refused = httpx.post(f"{base}/gateway/fetch", json=body, headers=headers)
    assert refused.status_code == 401 and refused.json()["code"] == "inactive_api_key"


def test_edit_rights_expire_a_key_and_set_enforcement(
    admin_page: tuple[Any, Watch], base: str, env: dict[str, Any]
) -> None:
    page, _ = admin_page
    admin = {"apikey": env["admin_key"]}
    page.click("#key-create")
    dialog = page.locator("dialog[open]")
    dialog.locator("#f-name").fill("to expire")
    dialog.locator("#f-client_name").select_option("shop")
    dialog.locator("#f-rights input[value='gateway.read']").check()
    dialog.locator("button[type=submit]").click()
    secret = page.locator("#new-key-secret").inner_text(timeout=TIMEOUT_MS)
    public_id = secret[4:20]
    row = f'#keys tr[data-public-id="{public_id}"]'
    headers = {"apikey": secret, "X-Athena-Client": "shop"}

    def record() -> dict[str, Any]:
        keys = httpx.get(f"{base}/admin/api-keys", headers=admin).json()["api_keys"]
        return next(k for k in keys if k["public_id"] == public_id)

    page.click(f"{row} .key-rights")
    page.locator("dialog[open] #f-rights input[value='gateway.query']").check()
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_selector(".toast:has-text('Rights saved')", timeout=TIMEOUT_MS)
    assert sorted(record()["rights"]) == ["gateway.query", "gateway.read"]
    query = {"query": "SELECT 1 AS one"}
    ok = httpx.post(f"{base}/gateway/query", json=query, headers=headers)
    assert ok.status_code == 200, ok.text

    page.click(f"{row} .key-expire")
    page.locator("dialog[open] #f-now").check()
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_selector(".toast:has-text('Expiry saved')", timeout=TIMEOUT_MS)
    page.wait_for_selector(f'{row} .badge:text-is("expired")', timeout=TIMEOUT_MS)
    refused = httpx.post(f"{base}/gateway/query", json=query, headers=headers)
    assert refused.status_code == 401 and refused.json()["code"] == "expired_api_key"

    # per-client enforcement: set, seen through the API, then back to inheriting
    def override() -> Any:
        config = httpx.get(f"{base}/admin/api-key-config", headers=admin).json()
        return {c["client_name"]: c["enforce_api_keys"] for c in config["clients"]}.get("shop")

    page.select_option("#enforce-client", "shop")
    page.select_option("#enforce-mode", "false")
    page.click("#enforcement button:text-is('Apply')")
    page.wait_for_selector(".toast:has-text('Client setting saved')", timeout=TIMEOUT_MS)
    assert override() is False
    page.wait_for_selector("#enforcement td:text-is('shop')", timeout=TIMEOUT_MS)
    page.select_option("#enforce-client", "shop")
    page.select_option("#enforce-mode", "inherit")
    page.click("#enforcement button:text-is('Apply')")
    page.wait_for_function(
        "() => !document.querySelector('#enforcement td') ||"
        " ![...document.querySelectorAll('#enforcement td')].some(td => td.textContent === 'shop')"
    )
    assert override() is None


def test_watch_a_backup_to_the_end(admin_page: tuple[Any, Watch]) -> None:
    page, _ = admin_page
    open_screen(page, "backups")
    page.fill("#backup-label", "from the console")
    page.click("#backup-start")
    page.wait_for_selector("#job-phase", timeout=TIMEOUT_MS)
    page.wait_for_selector("#job-done", timeout=60_000)
    assert page.locator("#job-phase").inner_text() == "done"
    assert "uploaded" in page.locator("#job-bytes").inner_text()
    page.wait_for_selector("#backups td:text-is('from the console')", timeout=TIMEOUT_MS)
    shot(page, "06-backups")


def test_download_and_restore_a_backup_into_the_named_client(
    admin_page: tuple[Any, Watch], env: dict[str, Any]
) -> None:
    page, _ = admin_page
    row = page.locator("#backups tr", has=page.locator("td:text-is('from the console')"))
    with page.expect_download() as download:
        row.locator(".backup-download").click()
    dumped = open(download.value.path(), "rb").read()
    assert dumped[:2] == b"\x1f\x8b" and len(dumped) > 1000  # a gzipped pg_dump archive
    page.wait_for_selector(".toast:has-text('Downloaded')", timeout=TIMEOUT_MS)

    row.locator(".backup-restore").click()
    page.locator("dialog[open] #f-target").select_option("spare")
    page.locator("dialog[open] button[type=submit]").click()
    confirm = page.locator("dialog[open]")
    confirm.locator("#f-confirm").wait_for(timeout=TIMEOUT_MS)
    assert "Restore into spare?" in confirm.inner_text()  # the confirmation names the target
    confirm.locator("#f-confirm").fill("shop")  # the wrong name: nothing is restored
    confirm.locator("button[type=submit]").click()
    page.wait_for_timeout(300)
    assert page.locator("#job h2:has-text('Restore')").count() == 0

    row.locator(".backup-restore").click()
    page.locator("dialog[open] #f-target").select_option("spare")
    page.locator("dialog[open] button[type=submit]").click()
    modal_submit(page, {"confirm": "spare"})
    page.wait_for_selector("#job h2:has-text('into spare')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#job-done", timeout=60_000)
    shot(page, "06b-restore")
    with env["pg"].connect(env["spare_db"], superuser=True) as conn:
        restored = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert restored == (121,)


def test_activity_charts_and_cluster(
    admin_page: tuple[Any, Watch], base: str, env: dict[str, Any]
) -> None:
    page, _ = admin_page
    open_screen(page, "activity")
    page.wait_for_selector("#screen-activity[data-loaded=true]", timeout=TIMEOUT_MS)
    for chart in ("rate", "errors", "latency"):
        assert page.locator(f"#chart-{chart} svg.main-svg").count() > 0
        # drawn from the request log: the minutes of this run have points
        points = page.evaluate(
            f"() => document.getElementById('chart-{chart}').data.map(t => t.y.filter(v => v !== null).length)"
        )
        assert points and points[0] > 0, (chart, points)
    requests = page.evaluate("() => document.getElementById('chart-rate').data[0].y")
    assert sum(requests) > 20  # every request this module's tests made, per minute
    page.wait_for_selector("#log td:text-is('/gateway/fetch')", timeout=TIMEOUT_MS)
    page.select_option("#log-status", "4xx")
    page.click("#log-apply")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log tbody tr td:nth-child(6)')].every(td => td.textContent.startsWith('4'))"
    )
    shot(page, "07-activity")
    open_screen(page, "cluster")
    page.wait_for_selector("#cluster-summary", timeout=TIMEOUT_MS)
    mirrors = {
        r.locator("td").first.inner_text(): r.locator("td").all_inner_texts()
        for r in page.locator("#screen-cluster tbody tr").all()
    }
    header = page.locator("#screen-cluster thead th").all_inner_texts()
    own, dead = mirrors[base], mirrors[env["dead_mirror"]]
    assert own[header.index("status")] == "online" and dead[header.index("status")] == "offline"
    assert float(own[header.index("latency_ms")]) >= 0
    assert own[header.index("version")] == __version__
    shot(page, "08-cluster")


def test_a_read_only_key_sees_no_write_controls(browser: Any, base: str, seeded: Any) -> None:
    key = seeded(name="reader", rights=["orders.read"], client="shop")
    page = browser.new_page()
    watch = Watch(page)
    sign_in(page, base, key)
    screens = page.locator("#nav a").all_inner_texts()
    assert screens == ["Tables", "Cluster"]
    page.wait_for_selector("#rows tbody tr", timeout=TIMEOUT_MS)
    assert page.locator("#table-picker option").all_inner_texts() == ["orders"]
    assert page.locator("#row-insert, .row-edit, .row-delete").count() == 0
    shot(page, "09-read-only")
    assert watch.errors == [], watch.errors
    assert watch.failed == []
    assert watch.foreign(base) == []
    page.close()


def test_no_console_errors_and_no_other_hosts(admin_page: tuple[Any, Watch], base: str) -> None:
    _, watch = admin_page
    assert watch.errors == [], watch.errors
    # the only refused request was the SQL test's query of a missing table
    assert [(status, url.removeprefix(base)) for status, url in watch.failed] == [
        (400, "/gateway/query")
    ]
    assert watch.foreign(base) == []
    assert watch.dialogs == []
    assert watch.set_cookies == [] and admin_page[0].context.cookies(base) == []
