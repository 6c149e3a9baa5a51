"""One module per CLI sub-command. Each defines ``add_arguments(parser)`` and ``run(args) -> int``;
heavy imports (pandas, boto3, moto) happen inside ``run``."""

from __future__ import annotations
