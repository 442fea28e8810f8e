"""The merge task's script: the built-in mergers (concat, jsonl, csv, json) in POSIX sh, or the
user's [merge] command, on a Batch node. Kept apart from batch_merge.py so it is tested on its own.

It uses only the shell and tools busybox and coreutils both have (cat, head, tail, tr, wc, od,
printf, mkdir, mv, rm), so it runs in a busybox image as on an Ubuntu node. What it costs per
output, measured here on 10,000 small outputs (a busy 2-core machine, dash): concat and jsonl a
few processes per 256 outputs (about 3.5 s in all), csv about 2 ms per output, json several
processes per output (about 15 ms each: a json merge of many outputs is better done locally).

Its arguments: the method, the result's path, then (method "command") whether the command writes
{output} itself, and the command's argv. The outputs are in `m/outputs/<task>/<name>` (one
resource file brings the whole prefix); task ids have one width, so the shell's sorted glob of
task folders is task order. Each task folder is globbed for dot names too (`.[!.]*`, `..?*`): an
output named `.part` is merged as the local merger merges it.

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
last_is_nl() { [ "$(tail -c 1 "$1"; echo x)" = "$nl"x ]; }

outputs_exist() {
  for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do [ -f "$f" ] && return 0; done; done
  fail "no stored task outputs to merge"
}

merge_concat() {
  set --
  for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do
    [ -f "$f" ] || continue
    set -- "$@" "$f"
    if [ $# -ge 256 ]; then cat "$@" || exit 1; set --; fi
  done; done
  [ $# -eq 0 ] || cat "$@" || exit 1
}

# Every output, each followed by a newline, through one `tr -s`: empty lines go, a newline ends
# each output's last line (a doubled one is squeezed), and the leading "x" line takes any newline
# the first outputs start with. A few processes per 256 outputs, not per output.
merge_jsonl() {
  printf '\n' > "$out.nl"
  {
    printf 'x\n'
    set --
    for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do
      [ -f "$f" ] || continue
      set -- "$@" "$f" "$out.nl"
      if [ $# -ge 256 ]; then cat "$@" || exit 1; set --; fi
    done; done
    [ $# -eq 0 ] || cat "$@" || exit 1
  } | tr -s '\n' | tail -c +3
  rm -f "$out.nl"
}

# The header is read with the shell's `read` and its quotes counted without a process; a body
# costs one `tail` and one look at the last byte.
merge_csv() {
  header=""; seen=0
  for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do
    [ -f "$f" ] && [ -s "$f" ] || continue
    if IFS= read -r first < "$f"; then lines=1; else lines=0; fi
    rest=$first; quotes=0
    while :; do
      case $rest in *'"'*) rest=${rest#*'"'}; quotes=$((quotes + 1));; *) break;; esac
    done
    [ $((quotes % 2)) -eq 0 ] || fail "$f: a CSV header with a quoted line break" \
      "cannot be merged on the cluster; use [merge] where = \"client\""
    key=$first
    while :; do
      case $key in *"$cr") key=${key%?};; *) break;; esac
    done
    if [ $seen -eq 0 ]; then
      header=$key; seen=1
      cat "$f" || exit 1
      last_is_nl "$f" || printf '\n'
    else
      [ "$key" = "$header" ] || fail "$f: CSV header differs from the first output's"
      if [ $lines -eq 1 ]; then
        tail -n +2 "$f" || exit 1
        last_is_nl "$f" || printf '\n'
      fi
    fi
  done; done
}

# scan FILE OFFSET SIZE: sets `a` to the number of JSON whitespace bytes of FILE from byte OFFSET
# (0-based) on, and `c` to the byte after them (its code; empty at the end of the file).
scan() {
  w=64; a=0; c=""
  while :; do
    a=0
    for b in $(tail -c +$(($2 + 1)) "$1" | head -c $w | od -An -v -tu1); do
      case $b in 9|10|13|32) a=$((a + 1));; *) c=$b; return;; esac
    done
    [ $w -lt $(($3 - $2)) ] || return
    w=$((w * 8))
  done
}
# trail FILE SIZE: sets `z` to the number of JSON whitespace bytes at the end of FILE.
trail() {
  w=64
  while :; do
    z=0
    for b in $(tail -c $w "$1" | od -An -v -tu1); do
      case $b in 9|10|13|32) z=$((z + 1));; *) z=0;; esac
    done
    if [ $z -lt $w ] || [ $w -ge "$2" ]; then return; fi
    w=$((w * 8))
  done
}

# Each output's value as written, or an array's items between its brackets; a few processes per
# output (sizes and whitespace from `od` of its first and last bytes).
merge_json() {
  printf '['
  items=0
  for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do
    [ -f "$f" ] || continue
    n=$(($(wc -c < "$f")))
    scan "$f" 0 "$n"; lead=$a; first=$c
    [ -n "$first" ] || fail "$f: not valid JSON (empty)"
    trail "$f" "$n"
    if [ "$first" = 91 ]; then  # [
      scan "$f" $((lead + 1)) "$n"
      [ "$c" = 93 ] && [ $((lead + 1 + a)) -eq $((n - z - 1)) ] && continue  # [ ]: no items
      start=$((lead + 2)); len=$((n - lead - z - 2))
    else
      start=$((lead + 1)); len=$((n - lead - z))
    fi
    [ $items -eq 0 ] || printf ','
    items=$((items + 1))
    if [ $start -eq 1 ] && [ $len -eq "$n" ]; then
      cat "$f" || exit 1
    else
      tail -c +$start "$f" | head -c $len || exit 1
    fi
  done; done
  printf ']\n'
}

merge_command() {
  writes_itself="$1"; shift
  rm -rf COMMAND_DIR && mkdir COMMAND_DIR || exit 1
  for d in OUTPUTS/*/; do for f in "$d"* "$d".[!.]* "$d"..?*; do
    [ -f "$f" ] || continue
    name=${f##*/}; task=${f%/*}; task=${task##*/}
    case $name in ?*.*) suffix=".${name##*.}";; *) suffix="";; esac
    [ "$suffix" != "." ] || suffix=""
    mv "$f" "COMMAND_DIR/$task$suffix" || exit 1
  done; done
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
