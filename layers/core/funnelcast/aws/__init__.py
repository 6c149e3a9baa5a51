"""Adapters to AWS. Each takes an optional boto3 client and maps AWS error codes to domain errors."""

from __future__ import annotations
