"""`shardrun emulator` and `python -m shardrun.emulator`: run the Batch emulator until interrupted.

This module imports only click at import time, so the main CLI stays fast and works without the
`azure` extra; the emulator itself is imported when the command runs.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

ENV_PREFIX = "SHARDRUN_EMULATOR_"


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # The development key is published: the emulator never listens beyond this machine.
    if value != "localhost":
        try:
            if ipaddress.ip_address(value).is_loopback:
                return value
        except ValueError:
            pass
        raise click.BadParameter("the emulator listens on a loopback address only (127.0.0.1, ::1)")
    return value


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_loopback, help="Loopback address.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=10010, show_default=True, help="0: any free port."
)
@click.option("--account-name", envvar=ENV_PREFIX + "ACCOUNT_NAME", help="[default: devbatchaccount1]")
@click.option(
    "--account-key",
    envvar=ENV_PREFIX + "ACCOUNT_KEY",
    help="Base64 key [default: the published "
    "development key]. Prefer the environment variable to keep it out of `ps`.",
)
@click.option("--dev-auth", is_flag=True, help="Development mode: also accept any bearer token.")
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Serve HTTPS with this PEM certificate (azure-core sends bearer tokens over TLS only).",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The certificate's PEM private key.",
)
@click.option(
    "--folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep state and node disks here so the emulator can restart [default: memory].",
)
@click.option("--node-start-seconds", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--pool-delete-seconds", type=click.FloatRange(0), default=0.0, show_default=True,
              help="how long a deleted pool stays in the deleting state")
@click.option(
    "--container-runtime",
    type=click.Choice(["process", "podman"]),
    default="process",
    show_default=True,
    help="How container tasks run: as plain processes, or in podman.",
)
@click.option(
    "--autoscale-min-interval",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Shortest autoScaleEvaluationInterval accepted, in seconds (the service: 300).",
)
@click.option("--autoscale-enable-cooldown", type=click.FloatRange(0), default=30.0, show_default=True)
@click.option(
    "--sample-seconds",
    type=click.FloatRange(0.01),
    default=30.0,
    show_default=True,
    help="Period of the autoscale metric samples.",
)
@click.option("--fault-seed", type=int, default=0, show_default=True)
@click.option(
    "--throttle-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of requests given 429."
)
@click.option("--busy-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of requests given 503.")
@click.option(
    "--retry-after-share",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Share of 429/503 answers that carry Retry-After.",
)
@click.option(
    "--preempt-rate",
    type=click.FloatRange(0),
    default=0.0,
    help="Preemptions per second of each Spot node running tasks.",
)
@click.option("--node-start-failure-rate", type=click.FloatRange(0, 1), default=0.0)
@click.option(
    "--reset-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of connections reset before the request is handled (no side effect).",
)
@click.option(
    "--drop-response-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests applied whose answer is lost (the connection closes without one).",
)
@click.option(
    "--slow-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests applied whose answer comes --slow-seconds late.",
)
@click.option("--slow-seconds", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option(
    "--resize-error",
    type=click.Choice(
        [
            "AccountCoreQuotaReached",
            "AccountLowPriorityCoreQuotaReached",
            "AllocationFailed",
            "AllocationTimedOut",
        ]
    ),
    help="Growing a pool fails with this resize error: the first growth of each pool, or a share of all "
    "growths with --resize-error-rate.",
)
@click.option(
    "--resize-error-rate",
    type=click.FloatRange(0, 1),
    help="With --resize-error: the share of pool growths that fail, instead of the first of each pool.",
)
@click.option(
    "--identity-storage",
    "identity_storage",
    multiple=True,
    envvar=ENV_PREFIX + "IDENTITY_STORAGE",
    metavar="ID=CREDENTIAL",
    help="Development mode: a managed identity's resource ID (or *) and the storage connection string or "
    "account key it stands for. Prefer the environment variable (entries separated by spaces): a key on "
    "the command line shows in `ps`.",
)
@click.option(
    "--simulate-tasks",
    "simulate_tasks",
    metavar="SECONDS|LOW-HIGH",
    callback=lambda ctx, param, value: _seconds_range(value),
    help="Simulated tasks: no process, no resource files; each completes after SECONDS (or a seeded draw "
    "from LOW-HIGH) and its output files are written straight into storage. For runs of 100,000 tasks.",
)
@click.option("--simulate-seed", type=int, default=0, show_default=True)
@click.option("--check-responses", is_flag=True, help="Check every response against the spec (slower).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request (never its credentials).")
def emulator_command(**options: Any) -> None:
    """Run a local Azure Batch emulator (REST api-version 2025-06-01) on loopback."""
    if options["resize_error_rate"] is not None and options["resize_error"] is None:
        raise click.UsageError("--resize-error-rate needs --resize-error CODE")
    identity_storage = _identity_storage(options["identity_storage"])
    try:
        from . import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Emulator, EmulatorConfig, FaultConfig
    except ImportError as exc:
        raise click.ClickException(
            f"the emulator needs the azure extra: pip install 'shardrun[azure]' ({exc})"
        ) from None

    logging.basicConfig(
        level=logging.DEBUG if options["verbose"] else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    faults = FaultConfig(
        seed=options["fault_seed"],
        throttle_rate=options["throttle_rate"],
        busy_rate=options["busy_rate"],
        retry_after_share=options["retry_after_share"],
        preempt_rate=options["preempt_rate"],
        node_start_failure_rate=options["node_start_failure_rate"],
        reset_rate=options["reset_rate"],
        drop_response_rate=options["drop_response_rate"],
        slow_rate=options["slow_rate"],
        slow_seconds=options["slow_seconds"],
        resize_error=options["resize_error"],
        resize_error_rate=options["resize_error_rate"],
    )
    config = EmulatorConfig(
        host=options["host"],
        port=options["port"],
        account_name=options["account_name"] or DEV_ACCOUNT_NAME,
        account_key=options["account_key"] or DEV_ACCOUNT_KEY,
        allow_bearer=options["dev_auth"],
        tls_cert=options["tls_cert"],
        tls_key=options["tls_key"],
        folder=options["folder"],
        node_start_seconds=options["node_start_seconds"],
        pool_delete_seconds=options["pool_delete_seconds"],
        container_runtime=options["container_runtime"],
        autoscale_min_interval=options["autoscale_min_interval"],
        autoscale_enable_cooldown=options["autoscale_enable_cooldown"],
        sample_seconds=options["sample_seconds"],
        check_responses=options["check_responses"],
        identity_storage=identity_storage,
        simulate_seconds=options["simulate_tasks"],
        simulate_seed=options["simulate_seed"],
        faults=faults,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with Emulator(config) as emu:
        # One machine-readable line, so scripts and tests can find the port.
        click.echo(f"shardrun batch emulator: account {config.account_name} at {emu.url}", err=False)
        while not done.wait(0.5):
            pass
    click.echo("shardrun batch emulator: stopped")


def _identity_storage(entries: tuple[str, ...]) -> dict[str, str]:
    """ID=CREDENTIAL entries as a map; an error names the entry's ID, never its credential."""
    out: dict[str, str] = {}
    for entry in entries:
        identity, sep, credential = entry.partition("=")
        if not (identity == "*" or identity.startswith("/")) or not sep or not credential:
            # The entry may be a bare key (base64 holds "="): it is never quoted back.
            raise click.BadParameter(
                "each entry is ID=CREDENTIAL, where ID is * or a resource ID (/subscriptions/...)",
                param_hint="--identity-storage",
            )
        out[identity] = credential
    return out


def _seconds_range(value: str | None) -> tuple[float, float] | None:
    """'2' -> (2.0, 2.0); '1-3' -> (1.0, 3.0)."""
    if value is None:
        return None
    low, _, high = value.partition("-")
    try:
        span = (float(low), float(high or low))
    except ValueError:
        raise click.BadParameter(
            "give SECONDS or LOW-HIGH, e.g. 2 or 1-3", param_hint="--simulate-tasks"
        ) from None
    if not 0 <= span[0] <= span[1]:
        raise click.BadParameter("LOW must be 0 or more and at most HIGH", param_hint="--simulate-tasks")
    return span
