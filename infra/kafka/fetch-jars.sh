#!/usr/bin/env bash
# Copies the pinned Kafka broker and its runtime dependencies into infra/kafka/libs/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if compgen -G "$here/libs/kafka_2.13-*.jar" >/dev/null; then
  exit 0
fi
mkdir -p "$here/libs"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$here/libs" -DincludeScope=runtime
echo "Kafka jars in $here/libs: $(ls "$here/libs" | wc -l)"
