"""Pipelines: read a source table in batches, transform, insert into a sink.

- ``config``: the prebuilt definitions (``config/pipelines.yaml``, loaded once at start-up into
  ``Runtime.pipelines``) and inline overrides.
- ``runner``: one run.
"""
