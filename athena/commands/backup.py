"""``athena backup create | list | restore | jobs | download | delete | schedules …`` — client of
a running gateway's ``/admin/backups`` API.

The commands talk HTTP to a gateway, not to S3 or PostgreSQL directly: the gateway holds the
S3 settings, the client URIs and the job records, so a backup taken from the CLI is the same
job, in the same catalog, as one taken over the API.

Where the gateway is: ``--url``, else ``ATHENA_URL``, else ``http://127.0.0.1:<ATHENA_PORT or
4052>``. The admin key: ``--admin-key``, else ``ATHENA_KEY_12``, else ``<data-dir>/admin.key``
(written by ``athena serve`` when it generated the key).

``create`` and ``restore`` follow the job's Server-Sent Events; on a terminal a progress bar is
drawn on stderr. The result is printed as JSON on stdout. Exit status: 0 done, 1 the gateway
refused or the job failed, 2 no gateway or no admin key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

MB = 1024 * 1024


class CliError(Exception):
    """Printed as one line; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser("backup", help="back up, list and restore client databases")
    sub = backup.add_subparsers(dest="backup_command", required=True)

    create = sub.add_parser("create", help="back up a client's database to S3")
    create.add_argument("client", help="client name")
    create.add_argument("--label", help="free text stored with the backup")
    _common(create)
    create.set_defaults(func=_create)

    listing = sub.add_parser("list", help="list backups, newest first")
    listing.add_argument("--client", help="only this client's backups")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _common(listing)
    listing.set_defaults(func=_list)

    restore = sub.add_parser("restore", help="restore a backup into a client's database")
    restore.add_argument("key", help="the backup's key (see `athena backup list`)")
    restore.add_argument("client", help="client whose database is replaced")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _common(restore)
    restore.set_defaults(func=_restore)

    jobs = sub.add_parser("jobs", help="list recent backup and restore jobs")
    jobs.add_argument("--client", help="only this client's jobs")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true", help="print JSON")
    _common(jobs)
    jobs.set_defaults(func=_jobs)

    download = sub.add_parser("download", help="download a backup archive (.dump.gz)")
    download.add_argument("key")
    download.add_argument("-o", "--output", help="file to write (default: the archive's name)")
    _common(download)
    download.set_defaults(func=_download)

    delete = sub.add_parser("delete", help="delete a backup from S3")
    delete.add_argument("key")
    _common(delete)
    delete.set_defaults(func=_delete)

    _register_schedules(sub)


def _register_schedules(sub: Any) -> None:
    schedules = sub.add_parser("schedules", help="backups that run on a schedule")
    ssub = schedules.add_subparsers(dest="schedules_command", required=True)

    listing = ssub.add_parser("list", help="list backup schedules")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _common(listing)
    listing.set_defaults(func=_schedules_list)

    create = ssub.add_parser("create", help="back up a client on a schedule")
    create.add_argument("client", help="client name")
    create.add_argument(
        "--frequency", required=True,
        help="hourly, daily, weekly, monthly, or a 5-field cron expression",
    )  # fmt: skip
    create.add_argument("--time", dest="time_of_day", help="HH:MM (hourly uses the minutes)")
    create.add_argument("--day-of-week", type=int, help="weekly: 0 = Sunday … 6 = Saturday")
    create.add_argument("--day-of-month", type=int, help="monthly: 1-28")
    create.add_argument("--timezone", help="IANA time zone of the times (default UTC)")
    create.add_argument("--retention", type=int, help="keep only the newest N backups")
    create.add_argument("--label", help="label of the backups it takes")
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    _common(create)
    create.set_defaults(func=_schedules_create)

    delete = ssub.add_parser("delete", help="delete a schedule (its backups stay)")
    delete.add_argument("id", type=int)
    _common(delete)
    delete.set_defaults(func=_schedules_delete)

    run = ssub.add_parser("run", help="run a schedule's backup now (prints the queued job)")
    run.add_argument("id", type=int)
    _common(run)
    run.set_defaults(func=_schedules_run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="gateway base URL (default $ATHENA_URL or local 4052)")
    parser.add_argument("--admin-key", help="admin key (default $ATHENA_KEY_12 or data-dir)")
    parser.add_argument("--data-dir", help="where `athena serve` keeps admin.key (./.athena)")


# -- plumbing ------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> httpx.Client:
    url = args.url or os.environ.get("ATHENA_URL")
    if not url:
        url = f"http://127.0.0.1:{os.environ.get('ATHENA_PORT') or 4052}"
    key = args.admin_key or os.environ.get("ATHENA_KEY_12")
    if not key:
        data_dir = Path(args.data_dir or os.environ.get("ATHENA_DATA_DIR") or ".athena")
        try:
            key = (data_dir / "admin.key").read_text().strip()
        except OSError:
            raise CliError(
                "no admin key: pass --admin-key, set ATHENA_KEY_12, or point --data-dir at the "
                "gateway's data directory",
                2,
            ) from None
    # Jobs may run for hours: no read timeout on the event stream.
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"X-Athena-Admin-Key": key},
        timeout=httpx.Timeout(30.0, read=None),
    )


def _fail(response: httpx.Response) -> CliError:
    try:
        body = response.json()
        message = body.get("message") or response.reason_phrase
        detail = body.get("error")
        if detail and detail != message:
            message = f"{message}: {detail}"
    except ValueError:
        message = f"HTTP {response.status_code}"
    return CliError(message)


def _run(args: argparse.Namespace, action: Any) -> int:
    try:
        with _client(args) as client:
            return int(action(client) or 0)
    except CliError as exc:
        print(f"athena: {exc}", file=sys.stderr)
        return exc.status
    except httpx.ConnectError:
        print(
            "athena: no gateway answers at the given URL (start one with `athena serve`, "
            "or pass --url)",
            file=sys.stderr,
        )
        return 2


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    event = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


class Progress:
    """rich's progress bar (phase, bar, percent, bytes, rate, ETA) on a terminal; silent otherwise.

    ``update`` takes the job's progress events (``phase``, ``bytes``, ``total_bytes``). A backup
    streams its dump, so its total is unknown until it ends: the bar pulses and shows the bytes
    and rate; a restore or a download knows its total and shows percent and ETA.
    """

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=stream)
        self.enabled = self.console.is_terminal
        self._bar: Any = None
        self._task: Any = None
        self._phase = ""

    def update(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich import progress as rp

            self._bar = rp.Progress(
                rp.TextColumn("{task.description:<11}"),
                rp.BarColumn(),
                rp.TaskProgressColumn(),
                rp.DownloadColumn(binary_units=True),
                rp.TransferSpeedColumn(),
                rp.TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task("", total=None)
            self._bar.start()
        phase = str(event.get("phase") or "")
        self._bar.update(
            self._task,
            description=phase,
            completed=int(event.get("bytes") or 0),
            total=event.get("total_bytes") or None,
        )
        if phase != self._phase:
            # rich redraws ten times a second; a phase shorter than that (a small dump) would
            # never be seen, so each new phase is drawn at once.
            self._phase = phase
            self._bar.refresh()

    def close(self, finished: bool = False) -> None:
        """Stop drawing; ``finished`` fills the bar (the job or download is complete)."""
        if self._bar is None:
            return
        if finished:
            task = self._bar.tasks[0]
            self._bar.update(self._task, total=task.completed or 1, completed=task.completed or 1)
        self._bar.stop()
        self._bar = None


SSE_HEADERS = {"Accept": "text/event-stream"}
Outcome = tuple[str, dict[str, Any]]  # ("result", body) or ("error", envelope)


def follow_job(
    client: httpx.Client, url: str, body: dict[str, Any], on_progress: Any
) -> dict[str, Any]:
    """POST a job with SSE and follow it to its end; its result body, or ``CliError``.

    A stream can be cut before the job ends (a proxy or the server closing a long response);
    the job goes on in the gateway, so we re-attach to it by id, and poll it when it runs on
    another instance behind a load balancer.
    """
    job: dict[str, str] = {}

    def consume(response: httpx.Response) -> Outcome | None:
        try:
            for event, data in _sse(response):
                if event == "progress":
                    job.setdefault("id", data["job_id"])
                    on_progress(data)
                elif event in ("result", "error"):
                    return event, data
        except httpx.TransportError:
            pass  # cut: re-attach below
        return None

    with client.stream("POST", url, json=body, headers=SSE_HEADERS) as response:
        if response.status_code != 200:
            response.read()
            raise _fail(response)
        outcome = consume(response)
    while outcome is None:
        if "id" not in job:
            raise CliError("the gateway closed the stream before the job started")
        outcome = _reattach(client, job["id"], consume, on_progress)
    event, data = outcome
    if event == "result":
        return data
    message = data.get("message", "the job failed")
    raise CliError(f"{message}: {data.get('error', '')}".rstrip(": "))


def _reattach(client: httpx.Client, job_id: str, consume: Any, on_progress: Any) -> Outcome | None:
    try:
        with client.stream(
            "GET", f"/admin/backups/jobs/{job_id}", params={"stream": "true"}, headers=SSE_HEADERS
        ) as response:
            if response.status_code != 200:
                response.read()
                raise _fail(response)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return consume(response)  # type: ignore[no-any-return]
            response.read()
            record = response.json()["job"]
    except httpx.TransportError:
        time.sleep(1)
        return None
    if record["state"] == "succeeded":
        return "result", record["result"]
    if record["state"] == "failed":
        return "error", {"message": f"the {record['kind']} failed", "error": record["error"]}
    on_progress(record)
    time.sleep(1)
    return None


def _follow(client: httpx.Client, url: str, body: dict[str, Any]) -> int:
    """Follow a job with a progress bar; print its result as JSON."""
    progress = Progress(sys.stderr)
    try:
        result = follow_job(client, url, body, progress.update)
    except KeyboardInterrupt:
        progress.close()
        print(
            "athena: stopped following; the job goes on in the gateway (see `athena backup jobs`)",
            file=sys.stderr,
        )
        return 130
    except CliError:
        progress.close()
        raise
    progress.close(finished=True)
    _print_json(result)
    return 0


# -- commands ------------------------------------------------------------------------------


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"client_name": args.client}
    if args.label:
        body["label"] = args.label
    return _run(args, lambda c: _follow(c, "/admin/backups", body))


def _restore(args: argparse.Namespace) -> int:
    if not args.yes and sys.stdin.isatty():
        answer = input(
            f"Replace the database of client '{args.client}' with backup {args.key}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("athena: restore cancelled", file=sys.stderr)
            return 1
    url = f"/admin/backups/{quote(args.key, safe='')}/restore"
    return _run(args, lambda c: _follow(c, url, {"client_name": args.client}))


def _list(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        params = {"client_name": args.client} if args.client else {}
        response = client.get("/admin/backups", params=params)
        if response.status_code != 200:
            raise _fail(response)
        backups = response.json()["backups"]
        if args.json:
            _print_json(backups)
            return 0
        if not backups:
            print("no backups", file=sys.stderr)
        for b in backups:
            label = f"  {b['label']}" if b.get("label") else ""
            print(f"{b['created_at']:<32} {b['size_bytes'] / MB:9.1f} MB  {b['key']}{label}")
        return 0

    return _run(args, action)


def _jobs(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        params: dict[str, Any] = {"limit": args.limit}
        if args.client:
            params["client_name"] = args.client
        response = client.get("/admin/backups/jobs", params=params)
        if response.status_code != 200:
            raise _fail(response)
        jobs = response.json()["jobs"]
        if args.json:
            _print_json(jobs)
            return 0
        for j in jobs:
            error = f"  {j['error']}" if j.get("error") else ""
            print(
                f"{j['created_at']:<32} {j['kind']:<7} {j['state']:<9} {j['client_name']:<16} "
                f"{(j['bytes'] or 0) / MB:9.1f} MB  {j.get('backup_key') or ''}{error}"
            )
        return 0

    return _run(args, action)


def _download(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        url = f"/admin/backups/{quote(args.key, safe='')}/download"
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()
                raise _fail(response)
            output = Path(args.output or args.key.rsplit("/", 1)[-1])
            total = int(response.headers.get("content-length") or 0)
            progress = Progress(sys.stderr)
            done = 0
            with open(output, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    done += len(chunk)
                    progress.update({"phase": "download", "bytes": done, "total_bytes": total})
            progress.close(finished=True)
        print(str(output))
        return 0

    return _run(args, action)


def _delete(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        response = client.delete(f"/admin/backups/{quote(args.key, safe='')}")
        if response.status_code != 200:
            raise _fail(response)
        _print_json(response.json())
        return 0

    return _run(args, action)


# -- schedules -----------------------------------------------------------------------------


def _checked(response: httpx.Response, *ok: int) -> Any:
    if response.status_code not in (ok or (200,)):
        raise _fail(response)
    return response.json()


def _schedules_list(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        schedules = _checked(client.get("/admin/backups/schedules"))["schedules"]
        if args.json:
            _print_json(schedules)
            return 0
        if not schedules:
            print("no schedules", file=sys.stderr)
        for s in schedules:
            state = "on " if s["enabled"] else "off"
            keep = f"keep {s['retention']}" if s.get("retention") else "keep all"
            print(
                f"{s['id']:>5} {state} {s['client_name']:<16} {s['cron']:<16} {s['timezone']:<14} "
                f"next {s.get('next_run_at') or '-':<33} last {s.get('last_status') or '-':<9} "
                f"{keep}"
            )
        return 0

    return _run(args, action)


def _schedules_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"client_name": args.client, "frequency": args.frequency}
    for name in ("time_of_day", "day_of_week", "day_of_month", "timezone", "retention", "label"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.disabled:
        body["enabled"] = False

    def action(client: httpx.Client) -> int:
        _print_json(_checked(client.post("/admin/backups/schedules", json=body), 201))
        return 0

    return _run(args, action)


def _schedules_delete(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        _print_json(_checked(client.delete(f"/admin/backups/schedules/{args.id}")))
        return 0

    return _run(args, action)


def _schedules_run(args: argparse.Namespace) -> int:
    def action(client: httpx.Client) -> int:
        _print_json(_checked(client.post(f"/admin/backups/schedules/{args.id}/run"), 202))
        return 0

    return _run(args, action)
