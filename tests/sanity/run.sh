#!/usr/bin/env bash
# ansible-test sanity and ansible-doc for the collection as it is shipped.
#
#   tests/sanity/run.sh [extra ansible-test sanity args, e.g. --test pylint]
#
# ansible-test must run from .../ansible_collections/usbip/usbip and lints every
# file it finds there, so the collection is copied to
# build/ansible_collections/usbip/usbip first, with only what belongs to it:
# the files git knows (tracked, or new and not ignored), less galaxy.yml's
# build_ignore (lab/, bench/, .ci/ ... are development tools, not part of the
# built collection) and tool caches. ansible-test looks for version control
# upwards from the collection and would find this checkout's .git, where
# build/ is ignored (and so nothing would be tested): the copy gets its own
# empty git repository, so that ansible-test lints exactly the files copied
# (it lists untracked files too).
#
# Local, no container: the sanity tests run in virtual environments that
# ansible-test creates with its pinned requirements (PyPI is needed the first
# time; they are cached under ~/.ansible/test afterwards). ansible-test puts
# pip into each of them with a get-pip script it downloads from its own CI
# host, which this project's machines cannot reach: a stand-in of that script
# is cached in its place, which takes pip from the interpreter's ensurepip
# and then installs the pinned pip from PyPI like the real one. Only Python 3.11 is
# tested (--python 3.11): the targets this collection supports are Debian 12
# and later, and the other interpreters ansible-test knows are not installed
# here. Skipped tests, and why:
#   pslint       PowerShell modules only (there are none; it needs pwsh).
#   shellcheck   needs the shellcheck binary, which the project does not install;
#                the collection's shell files are the lab's and the tests'.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
VENV_BIN=$REPO/.venv/bin
DEST=$REPO/build/ansible_collections/usbip/usbip

rm -rf "$DEST"
mkdir -p "$DEST"
"$VENV_BIN/python" - "$REPO" "$DEST" <<'EOF'
import fnmatch, os, shutil, subprocess, sys
import yaml

repo, dest = sys.argv[1], sys.argv[2]
with open(os.path.join(repo, "galaxy.yml")) as f:
    ignore = list(yaml.safe_load(f).get("build_ignore") or [])
# Never part of the collection: VCS data, tool caches, build output.
ignore += [".git", ".gitignore", ".ansible", ".pytest_cache", ".ruff_cache", ".hypothesis",
           ".benchmarks", "__pycache__", "*.pyc", "tests/output", "build", "usbip-usbip-*.tar.gz"]


def ignored(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(part, pattern)
               for pattern in ignore for p, part in zip(prefixes, parts))


try:
    out = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout.decode()
    files = [f for f in out.split("\0") if f]
except (OSError, subprocess.CalledProcessError):  # no git: every file
    files = [os.path.relpath(os.path.join(root, name), repo) for root, _, names in os.walk(repo) for name in names]
count = 0
for rel in sorted(set(files)):
    src = os.path.join(repo, rel)
    if ignored(rel) or not os.path.lexists(src):
        continue
    target = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(src, target, follow_symlinks=False)
    count += 1
print("sanity: %d files of the collection copied to %s" % (count, dest))
EOF

# The pip bootstrap stand-in (see above), for the pip version this ansible-test asks for.
PIP_VERSION=$("$VENV_BIN/python" -c 'import re, ansible_test, os.path as p
src = open(p.join(p.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip=.([0-9.]+).", src).group(1))')
GET_PIP=$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py
if [ ! -s "$GET_PIP" ] || ! grep -q "usbip.usbip stand-in" "$GET_PIP"; then
    mkdir -p "$(dirname "$GET_PIP")"
    cat > "$GET_PIP" <<'GETPIP'
"""usbip.usbip stand-in for ansible-test's get-pip script (tests/sanity/run.sh): pip from ensurepip, then pip install."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
GETPIP
fi

cd "$DEST"
git init -q .
export PATH="$VENV_BIN:$PATH"
for module in plugins/modules/*.py; do
    name=$(basename "$module" .py)
    ANSIBLE_COLLECTIONS_PATH="$REPO/build" ansible-doc "usbip.usbip.$name" > /dev/null
    echo "ansible-doc usbip.usbip.$name: ok"
done
ansible-test sanity --python 3.11 --color no --skip-test pslint --skip-test shellcheck "$@"
