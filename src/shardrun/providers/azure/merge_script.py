"""The merge task's script: the built-in mergers (concat, jsonl, csv, json) in POSIX sh, or the
user's [merge] command, on a Batch node. Kept apart from batch_merge.py so it is tested on its own.

It uses only the shell and tools busybox and coreutils both have (cat, head, tail, tr, wc, od,
printf, mkdir, mv), so it runs in a busybox image as on an Ubuntu node. Its arguments: the method,
the result's path, then (method "command") whether the command writes {output} itself, and the
command's argv. The outputs are in `m/outputs/<task>/<name>` (one resource file brings the whole
prefix); task ids have one width, so the shell's sorted glob is task order.

For every output the local merger accepts (core/merge.py), the result is the same bytes. What the
shell cannot check, it does not: jsonl lines and json values are not parsed (a local merge refuses
what is not JSON; the cluster merge passes it on), and a CSV whose header holds a quoted line break
is refused on the cluster.
"""

from __future__ import annotations

OUTPUTS = "m/outputs"  # where the merge task's resource file puts the run's outputs
COMMAND_DIR = "merge-in"  # {outdir} of a [merge] command: the outputs named <task><suffix>
RESULT = "merged.out"  # the merged file, uploaded on success

MERGE_SCRIPT = r"""
set -u
LC_ALL=C; export LC_ALL
cd "${AZ_BATCH_TASK_WORKING_DIR:-$PWD}" || exit 1
method="$1"; out="$2"; shift 2
nl='
'
cr=$(printf '\r')
fail() { printf 'shardrun merge: %s\n' "$*" >&2; exit 1; }
size() { wc -c < "$1" | tr -d ' '; }
last_is_nl() { [ "$(tail -c 1 "$1" | wc -l | tr -d ' ')" = 1 ]; }

outputs_exist() {
  for f in OUTPUTS/*/*; do [ -f "$f" ] && return 0; done
  fail "no stored task outputs to merge"
}

merge_concat() {
  set --
  for f in OUTPUTS/*/*; do
    [ -f "$f" ] || continue
    set -- "$@" "$f"
    if [ $# -ge 256 ]; then cat "$@" || exit 1; set --; fi
  done
  [ $# -eq 0 ] || cat "$@" || exit 1
}

merge_jsonl() {
  for f in OUTPUTS/*/*; do
    [ -f "$f" ] && [ -s "$f" ] || continue
    if [ "$(head -c 1 "$f" | wc -l | tr -d ' ')" = 1 ]; then
      tr -s '\n' < "$f" | tail -c +2
    else
      tr -s '\n' < "$f"
    fi
    last_is_nl "$f" || printf '\n'
  done
}

merge_csv() {
  header=""; seen=0
  for f in OUTPUTS/*/*; do
    [ -f "$f" ] && [ -s "$f" ] || continue
    first=$(head -n 1 "$f"; printf x); first=${first%x}
    quotes=$(printf '%s' "$first" | tr -cd '"' | wc -c | tr -d ' ')
    [ $((quotes % 2)) -eq 0 ] || fail "$f: a CSV header with a quoted line break" \
      "cannot be merged on the cluster; use [merge] where = \"client\""
    key=$first
    while :; do
      case $key in *"$nl"|*"$cr") key=${key%?};; *) break;; esac
    done
    if [ $seen -eq 0 ]; then
      header=$key; seen=1
      cat "$f" || exit 1
      last_is_nl "$f" || printf '\n'
    else
      [ "$key" = "$header" ] || fail "$f: CSV header differs from the first output's"
      rest=$(( $(size "$f") - $(head -n 1 "$f" | wc -c | tr -d ' ') ))
      if [ $rest -gt 0 ]; then
        tail -n +2 "$f" || exit 1
        last_is_nl "$f" || printf '\n'
      fi
    fi
  done
}

# JSON whitespace bytes at the start (lead) or the end (trail) of file $1 of $2 bytes.
lead() {
  w=64
  while :; do
    n=0
    for b in $(head -c $w "$1" | od -An -v -tu1); do
      case $b in 9|10|13|32) n=$((n + 1));; *) echo $n; return;; esac
    done
    [ $w -lt "$2" ] || { echo $n; return; }
    w=$((w * 8))
  done
}
trail() {
  w=64
  while :; do
    n=0
    for b in $(tail -c $w "$1" | od -An -v -tu1); do
      case $b in 9|10|13|32) n=$((n + 1));; *) n=0;; esac
    done
    if [ $n -lt $w ] || [ $w -ge "$2" ]; then echo $n; return; fi
    w=$((w * 8))
  done
}

merge_json() {
  printf '['
  items=0
  for f in OUTPUTS/*/*; do
    [ -f "$f" ] || continue
    n=$(size "$f"); a=$(lead "$f" "$n")
    [ "$a" -lt "$n" ] || fail "$f: not valid JSON (empty)"
    z=$(trail "$f" "$n")
    if [ "$(tail -c +$((a + 1)) "$f" | head -c 1)" = "[" ]; then
      [ "$(tr -d ' \t\r\n' < "$f" | head -c 2)" = "[]" ] && continue
      start=$((a + 2)); len=$((n - a - z - 2))
    else
      start=$((a + 1)); len=$((n - a - z))
    fi
    [ $items -eq 0 ] || printf ','
    items=$((items + 1))
    tail -c +$start "$f" | head -c $len || exit 1
  done
  printf ']\n'
}

merge_command() {
  writes_itself="$1"; shift
  rm -rf COMMAND_DIR && mkdir COMMAND_DIR || exit 1
  for f in OUTPUTS/*/*; do
    [ -f "$f" ] || continue
    name=${f##*/}; task=${f%/*}; task=${task##*/}
    case $name in ?*.*) suffix=".${name##*.}";; *) suffix="";; esac
    [ "$suffix" != "." ] || suffix=""
    mv "$f" "COMMAND_DIR/$task$suffix" || exit 1
  done
  if [ -n "$writes_itself" ]; then "$@" > /dev/null; else "$@" > "$out"; fi
  rc=$?
  [ $rc -eq 0 ] || fail "the merge command $1 exited $rc"
  [ -e "$out" ] || fail "the merge command exited 0 but wrote nothing at {output}"
}

outputs_exist
rm -f "$out"
case $method in
  concat|jsonl|csv|json) "merge_$method" > "$out.part" && mv "$out.part" "$out" || exit 1;;
  command) merge_command "$@";;
  *) fail "unknown merge method $method";;
esac
""".replace("OUTPUTS", OUTPUTS).replace("COMMAND_DIR", COMMAND_DIR).strip() + "\n"
