"""Figures only: every plot of the book and the CLI."""
