"""The emulator: an HTTP server on loopback speaking Batch REST api-version 2025-06-01.

Every request goes through the same steps as at the service: fault injection (when asked for),
authentication, routing by the spec's paths, query and body validation against the spec, the
operation, and a response in the service's shape with request-id, ETag and Last-Modified headers.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import jobs, management, pools, preparation, tasks  # noqa: F401  (they register their handlers)
from .api import HANDLERS, Request, Response
from .auth import Credentials, verify
from .config import EmulatorConfig
from .errors import BatchApiError
from .faults import Faults
from .management import is_management_path
from .nodes import Scheduler
from .spec import load_spec
from .state import State, http_date, iso, utcnow
from .taskindex import TaskIndexes

log = logging.getLogger("shardrun.emulator")
JSON_TYPE = "application/json;odata=minimalmetadata"


class Emulator:
    """One emulated Batch account. Use as a context manager, or call start() and stop()."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.spec = load_spec()
        self.state = State(TaskIndexes(), self.config.folder)
        self.faults = Faults(self.config.faults)
        self.creds = Credentials(self.config.account_name, self.config.account_key, self.config.allow_bearer)
        self._temp: Path | None = None
        if self.config.folder is not None:
            self.disk_root = self.config.folder / "nodes"
        else:
            self._temp = Path(tempfile.mkdtemp(prefix="shardrun-batch-emulator-"))
            self.disk_root = self._temp / "nodes"
        self.scheduler = Scheduler(self)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Emulator:
        handler = type("BoundHandler", (_HttpHandler,), {"emulator": self})
        self._httpd = ThreadingHTTPServer((self.config.host, self.config.port), handler)
        if self.config.tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            name="batch-emulator-http",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )
        self._thread.start()
        self.scheduler.start()
        log.info("Batch emulator for account %s listening on %s", self.config.account_name, self.url)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.scheduler.stop()
        self.state.flush()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    # -- one request -----------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request; transport-independent so it can be driven without a socket."""
        request_id = str(uuid.uuid4())
        raw_path, _, raw_query = target.partition("?")
        op_id = "-"
        try:
            fault = self.faults.request_fault()
            if fault is not None:
                raise fault
            verify(self.creds, method, raw_path, raw_query, headers)
            if is_management_path(raw_path):
                if len(body) > self.config.max_body_bytes:
                    raise BatchApiError(413, "RequestBodyTooLarge")
                query_values = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
                with self.state.lock:
                    response = management.handle(self, method, raw_path, query_values, body, base_url)
                return self._encode(method, response, headers, request_id)
            op, params = self.spec.match(method, raw_path)
            op_id = op.operation_id
            query = self.spec.parse_query(op, urllib.parse.parse_qs(raw_query, keep_blank_values=True))
            parsed = self._read_body(op, headers, body)
            handler = HANDLERS.get(op.operation_id)
            if handler is None:
                raise BatchApiError(501, "NotImplementedByEmulator", values=[("Operation", op.operation_id)])
            req = Request(op, method, raw_path, params, query, headers, parsed, base_url, request_id)
            with self.state.lock:
                response = handler(self, req)
            if self.config.check_responses:
                self._check_response(
                    op.responses.get(response.status), response, "$select" in query or "$skiptoken" in query
                )
        except BatchApiError as error:
            response = self._error_response(error, request_id)
        except Exception:
            log.exception("internal error in %s %s", method, raw_path)
            response = self._error_response(BatchApiError(500, "InternalError"), request_id)
        log.debug("%s %s %s -> %d", method, raw_path, op_id, response.status)
        return self._encode(method, response, headers, request_id)

    def _read_body(self, op: Any, headers: Mapping[str, str], body: bytes) -> Any:
        if len(body) > self.config.max_body_bytes:
            raise BatchApiError(
                413, "RequestBodyTooLarge", values=[("MaxBytes", str(self.config.max_body_bytes))]
            )
        if op.body_definition is None:
            return None
        if not body.strip():
            if op.body_required:
                raise BatchApiError(
                    400, "InvalidRequestBody", values=[("Reason", "The request body is missing.")]
                )
            return None
        content_type = (headers.get("Content-Type") or "").lower()
        if not content_type.startswith("application/json"):
            raise BatchApiError(
                400,
                "InvalidHeaderValue",
                values=[("HeaderName", "Content-Type"), ("HeaderValue", content_type)],
            )
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise BatchApiError(400, "InvalidRequestBody", values=[("Reason", f"not JSON: {exc}")]) from None
        # The 100-task limit is checked before the body itself, as the service does.
        if op.operation_id == "Tasks_CreateTaskCollection" and isinstance(parsed, dict):
            values = parsed.get("value")
            if isinstance(values, list) and len(values) > self.config.max_tasks_per_collection:
                raise BatchApiError(
                    413,
                    "RequestBodyTooLarge",
                    values=[
                        (
                            "Reason",
                            f"a task collection holds at most {self.config.max_tasks_per_collection} tasks",
                        )
                    ],
                )
        self.spec.validate_body(op.body_definition, parsed)
        return parsed

    def _check_response(self, definition: str | None, response: Response, selected: bool) -> None:
        if definition is None or not isinstance(response.body, dict):
            return
        problems = self.spec.response_problems(definition, response.body, selected=selected)
        if problems:
            log.error("response does not match %s: %s", definition, problems[:5])
            raise BatchApiError(500, "InternalError", values=[("ResponseCheck", "; ".join(problems[:5]))])

    def _error_response(self, error: BatchApiError, request_id: str) -> Response:
        body = None if error.status == 304 else error.body(request_id, iso(utcnow()))
        if self.config.check_responses and body is not None:
            assert not self.spec.response_problems("BatchError", body)
        return Response(error.status, body, headers=dict(error.headers))

    def _encode(
        self, method: str, response: Response, headers: Mapping[str, str], request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        out = {"request-id": request_id, "Date": formatdate(usegmt=True)}
        out.update(response.headers)
        client_id = headers.get("client-request-id")
        if client_id and (headers.get("return-client-request-id") or "").lower() == "true":
            out["client-request-id"] = client_id
        if response.resource is not None:
            out["ETag"] = response.resource["eTag"]
            out["Last-Modified"] = http_date(response.resource["lastModified"])
        if response.data_service_id:
            out["DataServiceId"] = response.data_service_id
        payload = b""
        if isinstance(response.body, bytes):
            payload = response.body
            out.setdefault("Content-Type", "application/octet-stream")
        elif response.body is not None:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
            out["Content-Type"] = JSON_TYPE
        if method != "HEAD" or "Content-Length" not in out:
            out["Content-Length"] = str(len(payload))
        return response.status, out, b"" if method == "HEAD" else payload


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: Emulator
    server_version = "shardrun-batch-emulator"

    def _serve(self) -> None:
        faults = self.emulator.faults
        raw_path = self.path.split("?")[0]  # for the log
        if faults.reset_connection():
            # Before the request is read or handled: nothing happened, and the client sees a reset.
            log.debug("fault: resetting the connection for %s %s", self.command, raw_path)
            self._reset()
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > 8 * self.emulator.config.max_body_bytes:
            # Far too large to read at all: answer 413 from an empty body and drop the connection.
            self.close_connection = True
            length, body = 0, b"x" * (self.emulator.config.max_body_bytes + 1)
        else:
            body = self.rfile.read(length) if length else b""
        address = self.emulator.config.host, self.emulator.port
        host = self.headers.get("Host") or f"{address[0]}:{address[1]}"
        status, headers, payload = self.emulator.handle(
            self.command,
            self.path,
            _Headers(self.headers),
            body,
            f"{self.emulator.url.split(':')[0]}://{host}",
        )
        if faults.drop_response():
            # The request took effect; its answer is lost: the connection closes without one.
            log.debug("fault: dropping the %d answer to %s %s", status, self.command, raw_path)
            self.close_connection = True
            return
        delay = faults.response_delay()
        if delay:
            log.debug("fault: answering %s %s %.1fs late", self.command, raw_path, delay)
            time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("date", "server"):
                    self.send_header(name, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up waiting (a slow answer): nobody to tell

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a connection reset by a load balancer looks."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only; headers (which carry the signature) are never logged.
        log.debug("%s " + format, self.address_string(), *args)


class _Headers(Mapping[str, str]):
    """Case-insensitive read-only view of the request headers."""

    def __init__(self, message: Any) -> None:
        self._items = {k.lower(): v for k, v in message.items()}

    def __getitem__(self, key: str) -> str:
        value: str = self._items[key.lower()]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key.lower(), default)

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
