#!/bin/sh
# A `command:` function: params arrive as RUNYARD_PARAM_* variables and in
# /runyard/params.json, inputs as RUNYARD_INPUT_* paths; results and artifacts
# go to /runyard/outputs/.
set -eu
out=/runyard/outputs
mkdir -p "$out/artifacts"
{
  echo "# ${RUNYARD_PARAM_TITLE:-Report}"
  echo
  echo '```json'
  cat "$RUNYARD_INPUT_METRICS"
  echo '```'
} > "$out/artifacts/report.md"
echo '{"report_lines": '"$(wc -l < "$out/artifacts/report.md")"'}' > "$out/results.json"
echo "wrote report.md"
