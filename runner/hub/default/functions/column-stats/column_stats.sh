#!/bin/sh
# Statistics of one numeric column of a CSV file; see README.md.
set -eu

column="${RUNYARD_PARAM_COLUMN:-}"
data="${RUNYARD_INPUT_DATASET:-}"
delimiter="${RUNYARD_PARAM_DELIMITER:-,}"
if [ -z "$column" ]; then echo "column-stats: give the column to describe: -p column=NAME" >&2; exit 2; fi
if [ -z "$data" ]; then echo "column-stats: give the CSV file as the input 'dataset'" >&2; exit 2; fi

awk -F "$delimiter" -v column="$column" -v results="$RUNYARD_OUTPUTS/results.json" \
    -v table="$RUNYARD_ARTIFACTS/column-stats.md" '
function trim(text) { gsub(/^[ \t\r]+|[ \t\r]+$/, "", text); return text }
function json_string(text) { gsub(/\\/, "\\\\", text); gsub(/"/, "\\\"", text); return "\"" text "\"" }
NR == 1 {
    for (i = 1; i <= NF; i++) if (trim($i) == column) at = i
    if (!at) { print "column-stats: no column \"" column "\" in the header" > "/dev/stderr"; failed = 1; exit 1 }
    next
}
{
    value = trim($at)
    if (value == "" || value == "NA") { missing++; next }
    if (value !~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/) {
        print "column-stats: line " NR ": \"" value "\" is not a number" > "/dev/stderr"; failed = 1; exit 1
    }
    value += 0; count++; sum += value; squares += value * value
    if (count == 1 || value < low) low = value
    if (count == 1 || value > high) high = value
}
END {
    if (failed) exit 1
    if (count == 0) { print "column-stats: column \"" column "\" has no numbers" > "/dev/stderr"; exit 1 }
    mean = sum / count
    variance = count > 1 ? (squares - count * mean * mean) / (count - 1) : 0
    std = sqrt(variance > 0 ? variance : 0)
    printf "{\"column\": %s, \"count\": %d, \"missing\": %d, \"sum\": %.10g, \"mean\": %.10g, \"min\": %.10g, \"max\": %.10g, \"std\": %.10g}\n", \
        json_string(column), count, missing, sum, mean, low, high, std > results
    printf "| column | count | missing | mean | min | max | std |\n|---|---|---|---|---|---|---|\n| %s | %d | %d | %.6g | %.6g | %.6g | %.6g |\n", \
        column, count, missing, mean, low, high, std > table
    printf "%s: %d values, %d missing, mean %.6g\n", column, count, missing + 0, mean
}' "$data"
