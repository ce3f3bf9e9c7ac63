"""The Vagrant VM lab (top-level Vagrantfile).

* ``vagrant validate --ignore-provider`` accepts it (when ``vagrant`` is
  installed; Debian's ``vagrant`` package is enough, no provider needed),
  also with the optional big lab, and refuses a too-small VM or a broken copy
  -- so the check can fail;
* the VM is a current Ubuntu LTS with room for the flagship;
* provisioning runs the README's own set-up script (one way to install), in a
  mode setup.sh really has;
* the message after ``vagrant up`` says how to run the flagship inside the VM.

Vagrant runs with its own data and home directories in a temporary folder,
so no ``.vagrant/`` appears in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"
SETUP_SH = ROOT / "setup.sh"
README = ROOT / "README.md"
VALIDATE_TIMEOUT_S = 120
FLAGSHIP_IN_VM = "vagrant ssh -c 'cd /vagrant && sudo ./setup.sh run'"

needs_vagrant = pytest.mark.skipif(
    shutil.which("vagrant") is None,
    reason="vagrant is not installed (apt-get install vagrant); 'vagrant validate' not run",
)


def _text() -> str:
    return VAGRANTFILE.read_text()


def _constant(name: str) -> str:
    match = re.search(rf"^{name}\s*=\s*(.+?)\s*$", _text(), re.M)
    assert match, f"Vagrantfile defines no {name}"
    return match.group(1)


def _validate(tmp_path: Path, vagrant_dir: Path = ROOT,
              env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTBED_", "VAGRANT_"))}
    full_env.update({
        "VAGRANT_CWD": str(vagrant_dir),
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),
        "VAGRANT_HOME": str(tmp_path / "home"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    })
    full_env.update(env or {})
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], capture_output=True,
                          text=True, timeout=VALIDATE_TIMEOUT_S, env=full_env, cwd=str(tmp_path))


# ------------------------------------------------------------------ validate


@needs_vagrant
@pytest.mark.parametrize("env", [{}, {"TESTBED_BIG_LAB": "1"}, {"TESTBED_SYNC_TYPE": "virtualbox"},
                                 {"TESTBED_VM_CPUS": "4", "TESTBED_VM_MEMORY_MB": "8192"},
                                 {"TESTBED_MACHINES": "3"}],
                         ids=["default", "big-lab", "virtualbox-share", "sized", "three-machines"])
def test_vagrant_validate(tmp_path, env):
    dotdir_before = (ROOT / ".vagrant").exists()
    proc = _validate(tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    if env.get("TESTBED_BIG_LAB"):
        assert "big:" in proc.stdout  # the second machine is defined and validated
    if env.get("TESTBED_MACHINES"):
        assert all(f"m{i}:" in proc.stdout for i in (1, 2, 3)), proc.stdout
    assert (ROOT / ".vagrant").exists() == dotdir_before, "vagrant wrote .vagrant/ into the checkout"


@needs_vagrant
@pytest.mark.parametrize("env,message", [
    ({"TESTBED_VM_CPUS": "1"}, "TESTBED_VM_CPUS"),
    ({"TESTBED_VM_MEMORY_MB": "lots"}, "TESTBED_VM_MEMORY_MB"),
    ({"TESTBED_BIG_LAB": "1", "TESTBED_BIG_MEMORY_MB": "1024"}, "TESTBED_BIG_MEMORY_MB"),
    ({"TESTBED_MACHINES": "1"}, "TESTBED_MACHINES"),
    ({"TESTBED_MACHINES": "99"}, "TESTBED_MACHINES"),
])
def test_vagrant_refuses_a_too_small_vm(tmp_path, env, message):
    proc = _validate(tmp_path, env=env)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


@needs_vagrant
def test_vagrant_validate_catches_a_broken_vagrantfile(tmp_path):
    # the validation is not vacuous: an unknown setting in a copy fails it
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Vagrantfile").write_text(_text().replace(
        "config.vm.box = BOX", "config.vm.box = BOX\n  config.vm.no_such_setting = 1"))
    proc = _validate(tmp_path, vagrant_dir=broken)
    assert proc.returncode != 0
    assert "no_such_setting" in proc.stdout + proc.stderr


# ------------------------------------------------------------ what it says


def test_box_is_a_current_ubuntu_lts():
    box = _constant("BOX").strip('"')
    match = re.fullmatch(r"bento/ubuntu-(\d\d)\.04", box)
    assert match, f"box {box!r} is not a bento Ubuntu LTS"
    year = int(match.group(1))
    assert year % 2 == 0 and year >= 22, f"Ubuntu {year}.04 is not a current LTS"


def test_vm_has_room_for_the_flagship():
    assert int(_constant("DEFAULT_CPUS")) >= 2
    assert int(_constant("DEFAULT_MEMORY_MB")) >= 4096
    assert int(_constant("MIN_CPUS")) >= 2 and int(_constant("MIN_MEMORY_MB")) >= 4096
    assert int(_constant("BIG_CPUS")) > int(_constant("DEFAULT_CPUS"))
    assert int(_constant("BIG_MEMORY_MB")) > int(_constant("DEFAULT_MEMORY_MB"))
    for provider in ("virtualbox", "libvirt"):
        assert f'provider "{provider}"' in _text()


def test_repository_is_synced_to_vagrant():
    assert re.search(r'^REPO_IN_VM = "/vagrant"$', _text(), re.M)
    assert 'config.vm.synced_folder ".", REPO_IN_VM' in _text()
    # the host's virtualenv never reaches the VM (its interpreter paths are the host's)
    assert '".venv/"' in _text()


def test_provisioning_runs_the_readme_setup_script():
    provision = _constant("PROVISION")
    match = re.fullmatch(r'"cd #\{REPO_IN_VM\} && \./setup\.sh (\w+)"', provision)
    assert match, f"provisioning is not './setup.sh MODE' in the repository: {provision}"
    assert 'config.vm.provision "testbed-setup", type: "shell", privileged: true, inline: PROVISION' \
        in _text()
    # the same script the README's quick start runs
    assert "sudo ./setup.sh run" in README.read_text()
    mode = match.group(1)
    assert mode == "install", "the VM installs only; the flagship runs when the user asks"
    cases = re.search(r'case "\$mode" in(.*?)\besac\b', SETUP_SH.read_text(), re.S)
    assert cases, "setup.sh has no 'case \"$mode\" in' block"
    patterns = re.findall(r"^\s*([\w|*-]+)\)", cases.group(1), re.M)
    modes = {m for p in patterns for m in p.split("|")}
    assert mode in modes, (f"setup.sh has no '{mode}' mode (it has: {', '.join(sorted(modes))}); "
                           "the Vagrantfile provisions with it")


def test_post_up_message_says_how_to_run_the_flagship():
    assert "machine.vm.post_up_message = post_up_message(name, REPO_IN_VM)" in _text()
    body = re.search(r"def post_up_message\(machine, repo\)(.*?)\nend\n", _text(), re.S)
    assert body, "no post_up_message helper"
    rendered = (body.group(1).replace('#{ssh}', "vagrant ssh").replace("#{repo}", "/vagrant"))
    assert FLAGSHIP_IN_VM in rendered


def test_multi_machine_mode_documents_the_across_machines_command():
    text = _text()
    assert "TESTBED_MACHINES=3 vagrant up" in text
    command = re.search(r"vagrant ssh m1 -c '(.*?)'", text, re.S)
    assert command, "no documented command run on m1"
    body = command.group(1)
    assert "testbed run across-machines" in body
    for i in (1, 2, 3):
        assert f"machines.m{i}=root@192.168.56.{10 + i}" in body
    # one VM per site on a private network, root ssh between them with a shared key
    assert 'vm.network "private_network"' in text and "authorized_keys" in text
    assert "StrictHostKeyChecking accept-new" in text
