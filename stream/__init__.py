"""churnwatch: real-time churn alarms for mobile operators."""

__version__ = "0.1.0"
