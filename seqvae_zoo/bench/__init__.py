"""The benchmark harness: suites of presets x datasets x seeds, cached runs, records and leaderboard tables."""
