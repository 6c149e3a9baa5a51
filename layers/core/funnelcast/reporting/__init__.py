"""Reporting: KPIs per campaign/variant/channel and the self-contained HTML report."""
