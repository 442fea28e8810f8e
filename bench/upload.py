"""Upload benchmark (issue 4, item 10): shardrun's blob store against plain SDK loops, on Azurite.

Two data sets: 5,000 files of 4 KiB, then 4 files of 128 MiB. Three ways to upload each, every one
into a fresh container of the same Azurite, with the same SDK:

    sequential   one `upload_blob` call per file, one after another (what the classic guide does)
    raw16        16 threads, one `upload_blob` call per file (the best plain concurrent upload)
    shardrun     BlobStore.put_files (bounded concurrency, blocks, MD5 checks, resume)

Measured twice: directly against Azurite (CPU-bound on a small machine: Azurite, the client and
the hashing share the cores), and through bench/latency_proxy.py, which adds 20 ms to every
request's round trip, as a real storage account far away would. Prints times and ratios.

    .venv/bin/python bench/upload.py            # the full benchmark (several minutes)
    .venv/bin/python bench/upload.py --quick    # 500 small files, 2 x 16 MiB: a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import BlobServiceClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency_proxy import start_in_subprocess  # noqa: E402  (bench/ is on sys.path)
from tests.fixtures.azurite import DEV_KEY, Azurite  # noqa: E402

from shardrun.providers.azure.blob import open_blob_store  # noqa: E402

MIB = 1024 * 1024
THREADS = 16


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"f{i:05d}.bin"
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MIB)
                f.write(os.urandom(n))
                left -= n
        files.append(path)
    return files


def sequential(service: BlobServiceClient, container: str, files: list[Path]) -> None:
    client = service.get_container_client(container)
    for path in files:
        with open(path, "rb") as f:
            client.upload_blob(f"data/{path.name}", f, overwrite=True)


def raw_concurrent(service: BlobServiceClient, container: str, files: list[Path]) -> None:
    client = service.get_container_client(container)

    def one(path: Path) -> None:
        with open(path, "rb") as f:
            # Large files also upload their chunks in parallel, as the SDK allows.
            client.upload_blob(f"data/{path.name}", f, overwrite=True,
                               max_concurrency=4 if path.stat().st_size > 64 * MIB else 1)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, files))


def shardrun_upload(url: str, container: str, files: list[Path]) -> None:
    store = open_blob_store(account_url=url, account_key=DEV_KEY, max_concurrency=THREADS)
    store.put_files([(f"{container}/data/{p.name}", p) for p in files])


def timed(label: str, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    print(f"    {label:<11} {took:8.2f} s", flush=True)
    return took


def pooled_service(url: str) -> BlobServiceClient:
    """The SDK client the loops use: a connection pool big enough for 16 threads (fair to them)."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=THREADS * 2)
    session.mount("http://", adapter)
    return BlobServiceClient(url, credential={"account_name": "devstoreaccount1", "account_key": DEV_KEY},
                             transport=RequestsTransport(session=session, session_owner=False))


def compare(url: str, name: str, files: list[Path], skip_sequential: bool = False) -> dict[str, float]:
    service = pooled_service(url)
    times: dict[str, float] = {}

    def fresh() -> str:
        c = f"bench-{uuid.uuid4().hex[:12]}"
        service.create_container(c)
        return c

    print(f"  {name}:", flush=True)
    if not skip_sequential:
        c = fresh()
        times["sequential"] = timed("sequential", lambda: sequential(service, c, files))
    c = fresh()
    times["raw16"] = timed("raw16", lambda: raw_concurrent(service, c, files))
    c = f"bench-{uuid.uuid4().hex[:12]}"  # shardrun makes its own container, with metadata
    times["shardrun"] = timed("shardrun", lambda: shardrun_upload(url, c, files))
    if "sequential" in times:
        print(f"    shardrun vs sequential: {times['sequential'] / times['shardrun']:.2f}x faster")
    print(f"    shardrun vs raw16:      {times['raw16'] / times['shardrun']:.2f}x "
          f"(1.0 = as fast; target >= 0.91, i.e. within 10%)", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description="shardrun blob upload benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--only", choices=("direct", "proxy"), help="run one of the two settings")
    args = parser.parse_args()
    n_small, n_large, large_mib = (500, 2, 16) if args.quick else (5000, 4, 128)

    with tempfile.TemporaryDirectory(prefix="shardrun-bench-") as tmp:
        root = Path(tmp)
        print(f"making {n_small} x 4 KiB and {n_large} x {large_mib} MiB files", flush=True)
        small = make_files(root / "small", n_small, 4096)
        large = make_files(root / "large", n_large, large_mib * MIB)
        server = Azurite(root / "azurite" / "data")
        server.start()
        proxy = None
        results: dict[str, dict[str, float]] = {}
        try:
            if args.only in (None, "direct"):
                print(f"direct to Azurite ({server.account_url}):")
                results["direct small"] = compare(server.account_url, f"{n_small} x 4 KiB", small)
                results["direct large"] = compare(server.account_url, f"{n_large} x {large_mib} MiB",
                                                  large)
            if args.only in (None, "proxy"):
                proxy, port = start_in_subprocess(server.port, args.delay_ms)
                url = f"http://127.0.0.1:{port}/devstoreaccount1"
                print(f"through the latency proxy (+{args.delay_ms:g} ms per round trip):")
                results["proxy small"] = compare(url, f"{n_small} x 4 KiB", small)
                results["proxy large"] = compare(url, f"{n_large} x {large_mib} MiB", large)
        finally:
            if proxy is not None:
                proxy.kill()
                proxy.wait()
            server.stop()

    print("\nsummary (ratio = other's time / shardrun's time; above 1 means shardrun is faster)")
    targets = {"proxy small": ("sequential", 10.0), "proxy large": ("sequential", 1.0)}
    for name, t in results.items():
        parts = [f"{other} {t[other] / t['shardrun']:.2f}x" for other in ("sequential", "raw16")
                 if other in t]
        line = f"  {name:<13} shardrun {t['shardrun']:7.2f} s; " + ", ".join(parts)
        if name in targets:
            other, goal = targets[name]
            ratio = t[other] / t["shardrun"]
            line += f"  [target vs {other} >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'}]"
        else:
            ratio = t["raw16"] / t["shardrun"]
            line += f"  [target within 10% of raw16: {'met' if ratio >= 1 / 1.1 else 'NOT met'}]"
        print(line)


if __name__ == "__main__":
    main()
