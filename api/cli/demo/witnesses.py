"""The demo's witnesses: the finance bureau's and the audit office's, each its own
``suanli witness serve`` process on the loopback interface, and the tlog-policy file that
names them for ``suanli serve --witness-policy`` and for the audit (docs/witness.md).

They are started only when the demo starts the service itself; their keys and records
stay in ``<data dir>/demo/witnesses/<name>/`` so that a second run continues the history
they have cosigned.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from api.cli.demo.client import Api, DemoError
from api.keystore import load_service_keys

# (name in the policy, the witness's key name): 财政局 and 审计局.
WITNESSES = (
    ("czj", "czj.chengdu.example/witness"),
    ("sjj", "sjj.chengdu.example/witness"),
)


@dataclass
class DemoWitnesses:
    policy: Path
    names: list[str]
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
            if process.stdout is not None:
                process.stdout.close()


def start_witnesses(data_dir: Path, origin: str, count: int) -> DemoWitnesses:
    """Start ``count`` witnesses of the log whose key is in ``data_dir`` (made now if this
    is the data dir's first run, as ``suanli serve`` would) and write their policy: the log
    and all of them."""
    log_vkey = load_service_keys(data_dir, origin).log.verifier.vkey
    home = data_dir / "demo" / "witnesses"
    started = DemoWitnesses(home / "witnesses.policy", [])
    lines = [f"log {log_vkey}"]
    try:
        for name, key_name in WITNESSES[:count]:
            process, url, vkey = _start_one(home / name, key_name, log_vkey)
            started.processes.append(process)
            started.names.append(name)
            lines.append(f"witness {name} {vkey} {url}")
    except DemoError:
        started.stop()
        raise
    lines += [f"group all-witnesses all {' '.join(started.names)}", "quorum all-witnesses"]
    started.policy.write_text("\n".join(lines) + "\n", "utf-8")
    return started


def _start_one(
    directory: Path, key_name: str, log_vkey: str
) -> tuple[subprocess.Popen[str], str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "witness.log").open("a") as err:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "api.witness", "serve", "--data-dir", str(directory),
             "--name", key_name, "--log", log_vkey, "--http", "127.0.0.1:0",
             "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "listening" not in printed:
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise DemoError(f"witness {key_name} did not start (see {directory}/witness.log)")
        key, _, value = line.partition(":")
        printed[key.strip()] = value.strip()
    return process, printed["listening"], printed["witness key"]


def wait_until_witnessed(api: Api, size: int, witnesses: int, seconds: float = 60) -> int:
    """Wait until ``/checkpoint`` is at ``size`` or beyond with ``witnesses`` cosignatures;
    return the size it reached."""
    deadline = time.monotonic() + seconds
    while True:
        served_size, note = api.checkpoint()
        if served_size >= size and note.count("\n— ") >= 1 + witnesses:
            return served_size
        if time.monotonic() > deadline:
            raise DemoError(
                f"the witnesses have not cosigned size {size} after {seconds:.0f} s "
                f"(/checkpoint is at {served_size})"
            )
        time.sleep(0.2)
