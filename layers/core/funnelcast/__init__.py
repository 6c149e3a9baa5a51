"""funnelcast: segment-targeted CRM campaigns with fatigue control, on your own AWS account."""

from __future__ import annotations

__version__ = "0.1.0"
