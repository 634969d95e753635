"""Command-line tools around the engine: simulate, backtest, report, alarms, demo."""
