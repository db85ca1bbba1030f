"""Integrations with other tools (Optuna)."""
