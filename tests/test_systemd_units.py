"""The systemd units in systemd/: what they must say, and `systemd-analyze verify` on the real files.

`systemd-analyze verify` checks that ExecStart's program exists and is executable, so the units are
verified from copies in which only the install prefix ``/opt/signal-fleet`` is rewritten to a
temporary directory holding ``.venv/bin/python`` (a link to the interpreter running the tests).
Every other line is the shipped one. The directive tests parse the files themselves, so a
regression is caught on machines without systemd too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import RunnerSettings

UNITS = Path(__file__).resolve().parents[1] / "systemd"
TEMPLATE = UNITS / "signal-bot@.service"
FLEET = UNITS / "signal-fleet.service"
TARGET = UNITS / "signal-bots.target"
INSTALL_PREFIX = "/opt/signal-fleet"

Directives = dict[str, dict[str, list[str]]]

#: [Service] settings both services must carry, exactly (the hardening among them).
REQUIRED_SERVICE = {
    "Type": ["notify"],
    "NotifyAccess": ["main"],
    "WatchdogSec": ["5min"],
    "TimeoutStartSec": ["15min"],
    "TimeoutStopSec": ["35"],
    "Restart": ["on-failure"],
    "RestartPreventExitStatus": ["2"],
    "User": ["signal-fleet"],
    "Group": ["signal-fleet"],
    "WorkingDirectory": ["/opt/signal-fleet"],
    "EnvironmentFile": ["-/opt/signal-fleet/.env"],
    "StateDirectory": ["signal-fleet"],
    "LogsDirectory": ["signal-fleet"],
    "CacheDirectory": ["signal-fleet"],
    "UMask": ["0077"],
    "NoNewPrivileges": ["yes"],
    "CapabilityBoundingSet": [""],
    "ProtectSystem": ["strict"],
    "ReadWritePaths": ["/var/lib/signal-fleet /var/log/signal-fleet /var/cache/signal-fleet"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    "RestrictNamespaces": ["yes"],
    "LockPersonality": ["yes"],
    "MemoryDenyWriteExecute": ["yes"],
    "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
}


def parse_unit(path: Path) -> Directives:
    """A unit file as {section: {key: [values in order]}} (systemd allows a key several times)."""
    sections: Directives = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            raise ValueError(f"{path.name}:{number}: not a key=value line in a section: {raw!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(timespan: str) -> float:
    """A systemd time span such as ``35``, ``90s``, ``5min`` or ``1h`` in seconds (one unit only)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?", timespan)
    if match is None:
        raise ValueError(f"unsupported time span {timespan!r}")
    factor = {None: 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * factor


@pytest.mark.unit
@pytest.mark.parametrize("unit", [TEMPLATE, FLEET], ids=lambda path: path.name)
def test_services_carry_notify_watchdog_restart_and_hardening(unit: Path) -> None:
    """Each service is Type=notify with a watchdog, restarts on failure only, and has every hardening line."""
    service = parse_unit(unit)["Service"]
    missing_or_wrong = {
        key: (service.get(key), wanted)
        for key, wanted in REQUIRED_SERVICE.items()
        if service.get(key) != wanted
    }
    assert missing_or_wrong == {}


@pytest.mark.unit
def test_template_and_fleet_differ_only_in_what_they_run() -> None:
    """The two services share every [Service] line but ExecStart, which runs one bot or --all."""
    template, fleet = parse_unit(TEMPLATE)["Service"], parse_unit(FLEET)["Service"]
    assert template.pop("ExecStart") == ["/opt/signal-fleet/.venv/bin/python -m bots run %i"]
    assert fleet.pop("ExecStart") == ["/opt/signal-fleet/.venv/bin/python -m bots run --all"]
    assert template == fleet


@pytest.mark.unit
def test_layouts_exclude_each_other_and_install_where_documented() -> None:
    """Bot instances belong to signal-bots.target and conflict with the fleet; the target and the fleet
    start with multi-user.target and exclude each other; both services have the same start limit."""
    template, fleet, target = parse_unit(TEMPLATE), parse_unit(FLEET), parse_unit(TARGET)
    assert template["Unit"]["PartOf"] == ["signal-bots.target"]
    assert template["Unit"]["Conflicts"] == ["signal-fleet.service"]
    assert template["Install"] == {"WantedBy": ["signal-bots.target"]}
    assert fleet["Unit"]["Conflicts"] == ["signal-bots.target"]
    assert fleet["Install"] == {"WantedBy": ["multi-user.target"]}
    assert target["Install"] == {"WantedBy": ["multi-user.target"]}
    for unit in (template, fleet):
        assert (unit["Unit"]["StartLimitIntervalSec"], unit["Unit"]["StartLimitBurst"]) == (["600"], ["5"])


@pytest.mark.unit
def test_stop_timeout_leaves_room_for_the_graceful_shutdown() -> None:
    """systemd waits longer than the process's own shutdown limit before SIGKILL."""
    stop_s = seconds(parse_unit(FLEET)["Service"]["TimeoutStopSec"][0])
    assert stop_s - RunnerSettings().shutdown_timeout_s == 5.0


def _rewritten_copies(tmp_path: Path) -> Path:
    """Copies of the units with /opt/signal-fleet moved under ``tmp_path``, whose .venv/bin/python
    runs; returns the directory holding the copies."""
    install = tmp_path / "opt-signal-fleet"
    (install / ".venv" / "bin").mkdir(parents=True)
    (install / ".venv" / "bin" / "python").symlink_to(sys.executable)
    copies = tmp_path / "units"
    copies.mkdir()
    for unit in (TEMPLATE, FLEET, TARGET):
        text = unit.read_text(encoding="utf-8")
        (copies / unit.name).write_text(text.replace(INSTALL_PREFIX, str(install)), encoding="utf-8")
    return copies


def _verify(directory: Path, *names: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (the directive tests above still ran)")
    # Paths relative to the copies' directory: verify then finds the template of an instance name
    # and the target the units refer to beside them.
    return subprocess.run(
        [tool, "verify", *(f"./{name}" for name in names)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports nothing for a bot instance, the fleet unit and the target."""
    copies = _rewritten_copies(tmp_path)

    result = _verify(copies, "signal-bot@psar_bot.service", "signal-fleet.service", "signal-bots.target")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.integration
def test_systemd_analyze_verify_reports_a_misspelt_directive(tmp_path: Path) -> None:
    """The check above can fail: verify names a misspelt key even though its exit status stays 0."""
    copies = _rewritten_copies(tmp_path)
    unit = copies / "signal-fleet.service"
    unit.write_text(unit.read_text().replace("NotifyAccess=main", "NotifyAcess=main"), encoding="utf-8")

    result = _verify(copies, "signal-fleet.service")

    assert "Unknown key 'NotifyAcess' in section [Service], ignoring." in result.stdout + result.stderr
