"""Backups and restores of client databases to S3, as jobs in the catalog.

- ``jobs``: ``JobRegistry`` — backup and restore jobs, their progress and the orphan reaper.
- ``schedules``: ``ScheduleBook`` — cron schedules, fired by whichever instance claims a slot.
- ``dump`` / ``restore``: ``pg_dump`` into a multipart upload, ``pg_restore`` from a download;
  ``pgtools`` what both share; ``storage`` the S3 objects; ``targets`` which clients qualify.

Both registries are started by ``athena.runtime.Runtime._start_capabilities`` (jobs first: the
schedules start jobs, and webhooks hook the events of finished ones).
"""
