"""Fetching the model files from S3 at start (MODEL_S3_URI), safely.

The `s3` entry of app/model/sources.py, run by run.sh before gunicorn starts. Every
file is downloaded under a temporary name and renamed when complete, so a cut transfer
never leaves half a weights file to be loaded; files already here with the same
size and ETag are kept; each download is retried with backoff; a failure is an
S3ModelError of one line, and no service starts on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .files import MODEL_SUFFIXES, ModelError, file_digest

log = logging.getLogger(__name__)
ETAG_SUFFIX = ".s3etag"  # sidecar: multipart ETags are not an MD5 we could recompute


class S3ModelError(ModelError):
    """The model cannot be fetched; the message says why in one line."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
            raise S3ModelError(f"MODEL_S3_URI={uri!r} is not s3://bucket/prefix")
        bucket, _, prefix = uri[5:].partition("/")
        return cls(bucket, prefix.rstrip("/") + "/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def fetch_model(uri: str, destination: Path, client=None, attempts: int = 4, backoff_s: float = 1.0) -> list[Path]:
    """Mirror the model files under `uri` into `destination`; returns the files."""
    location = S3Location.parse(uri)
    if client is None:
        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        with contextlib.closing(boto3.client("s3", config=config)) as own_client:
            return fetch_model(uri, destination, own_client, attempts, backoff_s)
    log.info("Getting weights from S3: %s", location)
    objects = _model_objects(client, location)
    if not any(key.endswith(".weights") for key in objects):
        raise S3ModelError(f"no .weights file under {location}")
    destination.mkdir(parents=True, exist_ok=True)
    fetched = []
    for key, (size, etag) in objects.items():
        target = destination / key[len(location.prefix) :]
        if _is_current(target, size, etag):
            log.info("%s is up to date", target.name)
        else:
            _download(client, location.bucket, key, target, etag, attempts, backoff_s)
        fetched.append(target)
    _remove_stale(destination, fetched)
    return fetched


def _model_objects(client, location: S3Location) -> dict[str, tuple[int, str]]:
    objects = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(location.prefix) :]
                if "/" not in name and Path(name).suffix.lower() in MODEL_SUFFIXES:
                    objects[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
    except ClientError as exc:
        raise S3ModelError(_explain(exc, location)) from None
    except BotoCoreError as exc:
        raise S3ModelError(f"cannot list {location}: {exc}") from None
    return objects


def _is_current(target: Path, size: int, etag: str) -> bool:
    if not target.is_file() or target.stat().st_size != size:
        return False
    sidecar = target.with_name(f".{target.name}{ETAG_SUFFIX}")
    if sidecar.is_file():
        return sidecar.read_text().strip() == etag
    # A single-part upload's ETag is the MD5 of the content (S3 docs).
    return "-" not in etag and file_digest(target, "md5") == etag


def _download(client, bucket: str, key: str, target: Path, etag: str, attempts: int, backoff_s: float) -> None:
    partial = target.with_name(f".{target.name}.partial")
    for attempt in range(1, attempts + 1):
        try:
            log.info("downloading s3://%s/%s (attempt %d)", bucket, key, attempt)
            client.download_file(bucket, key, str(partial))
            os.replace(partial, target)  # atomic: the model dir never holds a half file
            target.with_name(f".{target.name}{ETAG_SUFFIX}").write_text(etag)
            return
        except ClientError as exc:
            partial.unlink(missing_ok=True)
            raise S3ModelError(_explain(exc, S3Location(bucket, key))) from None
        except (Boto3Error, BotoCoreError, OSError) as exc:  # cut transfers, timeouts, full disk
            partial.unlink(missing_ok=True)
            if attempt == attempts:
                raise S3ModelError(f"s3://{bucket}/{key}: download failed {attempts} times, last: {exc}") from None
            time.sleep(backoff_s * 2 ** (attempt - 1))


def _remove_stale(destination: Path, fetched: list[Path]) -> None:
    """Files of an earlier model under another name would make the directory ambiguous."""
    for path in destination.iterdir():
        if path.suffix.lower() in MODEL_SUFFIXES and path not in fetched and not path.name.startswith("."):
            log.info("removing %s: no longer under the S3 prefix", path.name)
            path.unlink()


def _explain(exc: ClientError, location: S3Location) -> str:
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "NoSuchBucket":
        return f"bucket {location.bucket} does not exist"
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access denied to {location} ({code})"
    return f"{location}: {code or exc}"
