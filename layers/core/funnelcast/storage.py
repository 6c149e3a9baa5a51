"""One object-store interface over S3 and a local folder, so the CLI and the Lambdas share code paths.

A *root* is ``s3://bucket/prefix/`` or a directory path. Keys are relative to the root and always
use ``/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import ObjectNotFoundError, PreconditionFailedError, StorageError


class ObjectStore(Protocol):
    """What every store offers. ``uri(key)`` names an object for messages and manifests."""

    def get_bytes(self, key: str) -> bytes: ...
    def put_bytes(self, key: str, body: bytes, *, if_absent: bool = False) -> None: ...
    def list_keys(self, prefix: str = "") -> list[str]: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str = "") -> str: ...
    def child(self, prefix: str) -> ObjectStore: ...


@dataclass(frozen=True)
class LocalStore:
    """A directory that behaves like a bucket prefix."""

    root: Path

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} escapes the store root {self.root}")
        return path

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"{self.uri(key)} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri(key)}: {exc}") from exc

    def put_bytes(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("xb" if if_absent else "wb") as handle:
                handle.write(body)
        except FileExistsError as exc:
            raise PreconditionFailedError(f"{self.uri(key)} already exists") from exc

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.root.resolve()
        if not base.exists():
            return []
        keys = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def child(self, prefix: str) -> LocalStore:
        return LocalStore(self.root / prefix)


@dataclass(frozen=True)
class S3Store:
    """``s3://bucket/prefix/``. ``s3_client`` is optional (Powertools style); tests pass moto's."""

    bucket: str
    prefix: str = ""
    s3_client: Any = None

    @property
    def _s3(self) -> Any:
        return self.s3_client if self.s3_client is not None else client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def get_bytes(self, key: str) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            code = error_code(exc)
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFoundError(f"{self.uri(key)} does not exist") from exc
            raise StorageError(f"cannot read {self.uri(key)}: {code or exc}") from exc
        return body

    def put_bytes(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **extra)
        except Exception as exc:
            code = error_code(exc)
            if code in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise PreconditionFailedError(f"{self.uri(key)} already exists") from exc
            raise StorageError(f"cannot write {self.uri(key)}: {code or exc}") from exc

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except Exception as exc:
            raise StorageError(f"cannot list {self.uri(prefix)}: {error_code(exc) or exc}") from exc

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(self._iter_keys(prefix))

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StorageError(f"cannot check {self.uri(key)}: {error_code(exc) or exc}") from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise StorageError(f"cannot delete {self.uri(key)}: {error_code(exc) or exc}") from exc

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def child(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, self._key(prefix), self.s3_client)


def open_store(root: str | os.PathLike[str], s3_client: Any = None) -> ObjectStore:
    """A store for ``s3://bucket/prefix`` or a local directory."""
    text = os.fspath(root)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(f"{text!r} names no bucket")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Store(bucket, prefix, s3_client)
    return LocalStore(Path(text))
