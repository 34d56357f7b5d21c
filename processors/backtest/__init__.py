"""Backtests: a model version predicts on historical requests in its own process and is scored
against the feedback store's ground truth, side by side with what production served."""
from flywheel.processors.backtest.report import BacktestReport, Latency, SliceRow
from flywheel.processors.backtest.run import Backtest, BacktestPlan

__all__ = ["Backtest", "BacktestPlan", "BacktestReport", "Latency", "SliceRow"]
