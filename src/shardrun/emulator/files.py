"""Resource files in, output files out, the way a Batch node moves them, with azure-storage-blob: by
SAS URL, or as one of the pool's managed identities (`identityReference`, identity.py).

A transfer problem becomes a `TransferError` carrying the failureInfo the task will show. URLs are
logged without their query string, so SAS signatures never reach a log or an error message. A URL
with neither a SAS nor an identity is fetched anonymously, as a node would: storage decides (a
private container answers 403, or 404 at Azure for some reads), and the code follows its answer.
"""

from __future__ import annotations

import glob
import os
import re
import urllib.parse
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from .identity import IdentityDenied, NodeIdentities

_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "connection_timeout": 10, "read_timeout": 60}
_HEADER_SETTINGS = {
    "content-type": "content_type",
    "content-encoding": "content_encoding",
    "content-language": "content_language",
    "content-disposition": "content_disposition",
    "cache-control": "cache_control",
}


@dataclass
class TransferError(Exception):
    """A failed download or upload, as the task's failureInfo shows it."""

    code: str
    message: str
    details: list[tuple[str, str]] = field(default_factory=list)

    def failure_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"category": "usererror", "code": self.code, "message": self.message}
        if self.details:
            info["details"] = [{"name": k, "value": v} for k, v in self.details]
        return info


def redact(url: str) -> str:
    """A URL without its query (where a SAS token lives)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _download_error(exc: AzureError, url: str, file_path: str) -> TransferError:
    details = [("FilePath", file_path), ("Url", redact(url))]
    if isinstance(exc, ResourceNotFoundError):
        return TransferError("BlobNotFound", "One of the specified Azure Blob(s) is not found.", details)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return TransferError(
            "BlobAccessDenied", "Access for one of the specified Azure Blob(s) is denied.", details
        )
    return TransferError(
        "BlobDownloadMiscError",
        "Miscellaneous error encountered while downloading one of the specified Azure Blob(s).",
        details,
    )


def _target(wd: Path, relative: str) -> Path:
    path = (wd / relative).resolve()
    if wd.resolve() not in path.parents:
        raise TransferError(
            "ResourceFileCreateFailed",
            "A resource file path leaves the task's directory.",
            [("FilePath", relative)],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_blob(client: BlobClient, path: Path, mode: str | None) -> None:
    with path.open("wb") as handle:
        client.download_blob().readinto(handle)
    if mode:
        os.chmod(path, int(mode, 8))


def _credential(
    spec: dict[str, Any], url: str, identities: NodeIdentities
) -> tuple[str, dict[str, str] | None]:
    """The URL to use and its credential: the identity's (the URL without any query), or none."""
    reference = spec.get("identityReference")
    if reference is None:
        return url, None
    return redact(url), identities.storage_credential(reference, url)


def download_resource_files(
    resource_files: list[dict[str, Any]], wd: Path, identities: NodeIdentities | None = None
) -> None:
    """Fetch every resource file into the working directory, or raise TransferError."""
    identities = identities or NodeIdentities()
    for spec in resource_files:
        file_path = spec.get("filePath", "")
        url = spec.get("httpUrl") or spec.get("storageContainerUrl") or ""
        try:
            target_url, credential = _credential(spec, url, identities)
        except IdentityDenied as exc:
            raise TransferError(
                "BlobAccessDenied",
                "Access for one of the specified Azure Blob(s) is denied.",
                [("FilePath", file_path), ("Url", redact(url)), ("IdentityReference", str(exc))],
            ) from None
        options = {**_CLIENT_OPTIONS, "credential": credential}
        if "httpUrl" in spec:
            if not file_path:
                raise TransferError("ResourceFileCreateFailed", "filePath is required with httpUrl.")
            try:
                _write_blob(
                    BlobClient.from_blob_url(target_url, **options),
                    _target(wd, file_path),
                    spec.get("fileMode"),
                )
            except AzureError as exc:
                raise _download_error(exc, url, file_path) from None
        elif "storageContainerUrl" in spec:
            try:
                container = ContainerClient.from_container_url(target_url, **options)
                for blob in container.list_blobs(name_starts_with=spec.get("blobPrefix")):
                    _write_blob(
                        container.get_blob_client(blob.name),
                        _target(wd, f"{file_path}/{blob.name}" if file_path else blob.name),
                        spec.get("fileMode"),
                    )
            except AzureError as exc:
                raise _download_error(exc, url, file_path) from None


# TaskFailureInformationCodes for output files, with the documented descriptions.
_UPLOAD_FAILURES = {
    404: (
        "FileUploadContainerNotFound",
        "The Azure Storage Container for uploading Output Files was not found.",
    ),
    403: (
        "FileUploadAccessDenied",
        "Access to the Azure Storage Container for uploading Output Files was denied.",
    ),
    409: ("FileUploadConflict", "There was a conflict encountered when uploading Output Files."),
}
_UPLOAD_MISC = (
    "FileUploadMiscError",
    "The compute node hit an unexpected error when uploading Output Files.",
)


def container_client(dest: dict[str, Any], identities: NodeIdentities) -> ContainerClient:
    """The destination container, by its SAS URL or as the identity it names (IdentityDenied)."""
    url, credential = _credential(dest, dest["containerUrl"], identities)
    return ContainerClient.from_container_url(url, credential=credential, **_CLIENT_OPTIONS)


def upload_failure(exc: BaseException) -> tuple[str, str]:
    """The failureInfo code and message for a failed upload, by the storage service's answer:
    404 (the container) -> FileUploadContainerNotFound, 401/403 -> FileUploadAccessDenied,
    409 -> FileUploadConflict, anything else (other statuses, no answer, a local error) ->
    FileUploadMiscError."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, IdentityDenied):
        status = 403
    if isinstance(exc, ClientAuthenticationError) and status is None:
        status = 403
    if status == 401:
        status = 403
    return _UPLOAD_FAILURES.get(status, _UPLOAD_MISC) if isinstance(status, int) else _UPLOAD_MISC


def _condition_holds(condition: str, succeeded: bool) -> bool:
    return condition == "taskcompletion" or (condition == "tasksuccess") == succeeded


# A file an output pattern matched: its name relative to the pattern's fixed part, its own name, and
# its content (a file on the node, or the bytes a simulated task made up).
Match = tuple[str, str, Path | bytes]
Containers = Callable[[dict[str, Any]], ContainerClient]


def _matches(pattern: str, wd: Path) -> list[Match]:
    """Files matched by a Batch file pattern, each with its name relative to the pattern's fixed part."""
    base = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    base_dir = base if base.endswith("/") or not base else os.path.dirname(base)
    out: list[Match] = []
    for name in sorted(glob.glob(pattern, root_dir=wd, recursive=True)):
        path = (wd / name).resolve()
        if path.is_file():
            relative = os.path.relpath(wd / name, wd / base_dir) if base_dir else name
            out.append((relative, path.name, path))
    return out


def expand_variables(pattern: str, env: dict[str, str]) -> str:
    """$NAME and ${NAME} from the task's environment, as a Linux node expands them in file patterns."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), pattern)


def upload_output_files(
    output_files: list[dict[str, Any]],
    task_dir: Path,
    wd: Path,
    succeeded: bool,
    env: dict[str, str],
    identities: NodeIdentities | None = None,
) -> None:
    """Upload what each output file's pattern matches, if its upload condition holds.

    A line per upload goes to fileuploadout.txt in the task directory (fileuploaderr.txt on failure),
    as on a node.
    """
    log_lines: list[str] = []
    nodes = identities or NodeIdentities()
    try:
        upload_outputs(
            output_files,
            succeeded,
            env,
            lambda pattern: _matches(pattern, wd),
            lambda dest: container_client(dest, nodes),
            log_lines,
        )
    except TransferError:
        _write_log(task_dir / "fileuploaderr.txt", log_lines[-1:])
        raise
    finally:
        _write_log(task_dir / "fileuploadout.txt", log_lines)


def upload_outputs(
    output_files: list[dict[str, Any]],
    succeeded: bool,
    env: dict[str, str],
    find: Callable[[str], list[Match]],
    containers: Containers,
    log_lines: list[str],
) -> None:
    """Upload what `find` gives for each output file whose upload condition holds; a failure raises
    TransferError with the documented FileUpload* code, and the last log line says what failed."""
    for spec in output_files:
        if not _condition_holds(spec["uploadOptions"]["uploadCondition"], succeeded):
            continue
        dest = spec["destination"]["container"]
        pattern = expand_variables(spec["filePattern"], env)
        wildcard = re.search(r"[*?\[]", pattern) is not None
        settings = {
            _HEADER_SETTINGS[h["name"].lower()]: h.get("value", "")
            for h in dest.get("uploadHeaders", [])
            if h["name"].lower() in _HEADER_SETTINGS
        }
        try:
            container = containers(dest)
            for relative, file_name, content in find(pattern):
                name = _blob_name(dest.get("path", "").strip("/"), wildcard, relative, file_name)
                with content.open("rb") if isinstance(content, Path) else nullcontext(content) as data:
                    container.upload_blob(
                        name,
                        data,
                        overwrite=True,
                        content_settings=ContentSettings(**settings) if settings else None,
                    )
                log_lines.append(f"uploaded {relative} to {redact(dest['containerUrl'])}/{name}")
        except (AzureError, HttpResponseError, OSError, IdentityDenied) as exc:
            log_lines.append(
                f"failed to upload {pattern} to {redact(dest['containerUrl'])}: {type(exc).__name__}"
            )
            code, message = upload_failure(exc)
            details = [("FilePattern", pattern), ("ContainerUrl", redact(dest["containerUrl"]))]
            if isinstance(exc, IdentityDenied):
                details.append(("IdentityReference", str(exc)))
            raise TransferError(code, message, details) from None


def _blob_name(prefix: str, wildcard: bool, relative: str, file_name: str) -> str:
    """With wildcards, `path` is a folder for each match's relative name; without, the blob itself."""
    if wildcard:
        return f"{prefix}/{relative}" if prefix else relative
    return prefix or file_name


def _write_log(path: Path, lines: list[str]) -> None:
    if lines:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
