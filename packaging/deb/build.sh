#!/usr/bin/env bash
# Build the Vedette Debian package (`make deb`): dist/vedette_<version>_<arch>.deb
#
#   /opt/vedette/venv              the agent in its own venv, built from requirements.txt (hashes)
#   /usr/bin/vedette               -> /opt/vedette/venv/bin/vedette (the unit's ExecStart)
#   /usr/lib/systemd/system/vedette.service, /usr/lib/sysusers.d/vedette.conf,
#   /usr/lib/tmpfiles.d/vedette.conf
#   /etc/vedette/vedette.yaml      conffile (every option commented out: the defaults)
#   /var/lib/vedette               state (created by tmpfiles at configure, removed at purge)
#   /usr/share/vedette/rules       -> the shipped rules inside the venv (agent/shipped_rules)
#   /usr/share/vedette/wheelhouse  every wheel of the lock + vedette's own + requirements.txt,
#                                  for offline venv installs (docs/install.md)
#
# Only Debian's own tools: python3 (venv), pip from the project venv, dpkg-deb. The venv is
# built under a staging root and relocated (script shebangs, byte-code paths) to /opt/vedette.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
# The venv runs on Debian's own interpreter (never a pyenv or /usr/local one), by its versioned
# name, which the package depends on (python3.X): an upgrade of python3 cannot break it.
PYTHON=$(readlink -f "${PYTHON:-/usr/bin/python3}")
PIP=${PIP:-$REPO/.venv/bin/pip}
OUT=${OUT:-$REPO/dist}

version=$($PYTHON -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("agent/__init__.py").read()).group(1))')
arch=$(dpkg --print-architecture)
pyver=$($PYTHON -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
work=${WORK:-$OUT/.deb-build}  # never ./build: it would shadow `import build` for ruff
root=$work/root
venv=/opt/vedette/venv
wheelhouse=$root/usr/share/vedette/wheelhouse

rm -rf "$work"
mkdir -p "$root" "$OUT" "$wheelhouse"

echo "== wheelhouse: the locked dependencies (hash-checked) and vedette $version ($SECONDS s)"
$PIP download --quiet --disable-pip-version-check --require-hashes --no-deps \
  --only-binary=:all: -r requirements.txt -d "$wheelhouse"
# the wheel is built from a copy, so setuptools leaves no build/ or *.egg-info in the checkout
src=$work/src
mkdir -p "$src"
tar --exclude=__pycache__ -cf - agent rules setup.py pyproject.toml README.md | tar -xf - -C "$src"
$PIP wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  -w "$wheelhouse" "$src"
cp requirements.txt "$wheelhouse/requirements.txt"

echo "== venv in $venv (Python $pyver), offline from the wheelhouse ($SECONDS s)"
$PYTHON -m venv --without-pip "$root$venv"
$PIP --python "$root$venv/bin/python" install --quiet --disable-pip-version-check --no-compile \
  --no-index --find-links "$wheelhouse" --require-hashes --no-deps -r requirements.txt
$PIP --python "$root$venv/bin/python" install --quiet --disable-pip-version-check --no-compile \
  --no-index --no-deps "$wheelhouse"/vedette-"$version"-*.whl
# Relocate: console-script shebangs and activate scripts name the staging path.
grep -rlI --null "$root$venv" "$root$venv/bin" | xargs -0 -r sed -i "s#$root$venv#$venv#g"
if grep -rqI "$root" "$root$venv/bin"; then echo "staging path left in $venv/bin" >&2; exit 1; fi
# Byte-code compiled now (dpkg owns it; nothing is written under /opt at run time), with the
# installed paths in tracebacks.
$PYTHON -m compileall -q -j 0 -s "$root" -p / "$root$venv/lib" >/dev/null
site=$venv/lib/python$pyver/site-packages
test -d "$root$site/agent/shipped_rules"

echo "== files ($SECONDS s)"
install -d "$root/usr/bin" "$root/usr/share/vedette" "$root/etc/vedette" \
  "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
  "$root/usr/share/doc/vedette"
ln -s "$venv/bin/vedette" "$root/usr/bin/vedette"
ln -s "$site/agent/shipped_rules" "$root/usr/share/vedette/rules"
install -m 0644 systemd/vedette.service "$root/usr/lib/systemd/system/vedette.service"
install -m 0644 systemd/vedette.sysusers "$root/usr/lib/sysusers.d/vedette.conf"
install -m 0644 systemd/vedette.tmpfiles "$root/usr/lib/tmpfiles.d/vedette.conf"
install -m 0640 systemd/vedette.yaml.example "$root/etc/vedette/vedette.yaml"
install -m 0644 packaging/deb/copyright "$root/usr/share/doc/vedette/copyright"
install -m 0644 docs/install.md "$root/usr/share/doc/vedette/install.md"

echo "== control ($SECONDS s)"
install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYVER@/$pyver/g" \
  -e "s/@SIZE@/$size/" packaging/deb/control.in > "$root/DEBIAN/control"
echo /etc/vedette/vedette.yaml > "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$script" "$root/DEBIAN/$script"
done

deb=$OUT/vedette_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1), $SECONDS s)"
