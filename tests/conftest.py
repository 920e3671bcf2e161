"""Suite-wide settings. The suite runs at log level DEBUG (pyproject) so every log call of ours
builds its record; aiosqlite's worker threads log each statement at DEBUG, which is noise, and
may outlive the test that opened them (writing into a closed capture stream at the end)."""

import logging

logging.getLogger("aiosqlite").setLevel(logging.INFO)
