"""Automation: jobs (``jobs.py``), sensors (``sensors.py``), schedules (``schedules.py``) and the
automation conditions of stale assets (``conditions.py``)."""
