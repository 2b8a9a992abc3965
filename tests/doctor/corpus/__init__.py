"""Celery configurations modelled on published settings of open-source projects.

Each module builds an app from values written here after the project's documented
settings (the file is cited at the top); they are simplified, not copies. ``MUST`` and
``MUST_NOT`` are the rule ids ``celery-kit doctor`` has to report and must not report.
"""
