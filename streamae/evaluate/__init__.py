"""Honest evaluation: event-level metrics, AUC-PR, time to detect, baselines, reports."""
