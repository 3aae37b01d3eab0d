"""Run the zkCli.sh (Java) and cli_mt (C) shell scripts against the fixture server."""

import os
import shutil
import subprocess

CLI_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "cli"))
ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
CLI_MT = os.environ.get("CLI_MT", "/usr/lib/zookeeper/bin/cli_mt")


def run_script(name, server, tool):
    # scripts/test.sh installs both tools; a missing one is a failure, not a skip.
    assert os.path.exists(tool) or shutil.which(tool), (
        f"{tool} not installed (Debian zookeeper / zookeeper-bin)"
    )
    proc = subprocess.run(
        [os.path.join(CLI_DIR, name), server.hosts],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "all checks passed" in proc.stdout


def test_zkcli_java_shell(server):
    run_script("zkcli.sh", server, ZKCLI)


def test_cli_mt_c_shell(server):
    run_script("cli_mt.sh", server, CLI_MT)
