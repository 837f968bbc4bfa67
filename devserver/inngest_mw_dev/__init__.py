"""Embedded Inngest-compatible engine."""
