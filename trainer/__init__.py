"""The trainer tier: `osml trainer` claims queued training jobs and runs each in a process of its own."""
