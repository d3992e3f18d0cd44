#!/usr/bin/env bash
# man_completion.sh - the CLI's help, man page and bash completion, and the
# global options: every command has --help with examples (also as `qformer
# help CMD`), --version is cli.h's QF_VERSION; man/qformer.1 and
# completions/qformer.bash equal a fresh scripts/gen-man.sh run (never stale)
# and the page renders without a groff warning; COMPREPLY for typical cases;
# --quiet / --verbose before or after the command, the "[rank N]" log prefix,
# and colour only on a terminal without NO_COLOR.
set -euo pipefail
: "${QF_BIN:?}" "${QF_FIXTURES:?}" "${QF_SOURCE_DIR:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { local what=$1; shift; if ! "$@"; then fail "$what"; fi; }
has() { grep -qF -- "$2" <<<"$1"; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }
itm=$QF_FIXTURES/tiny-blip2-itm
unset NO_COLOR QF_CACHE HF_HUB_CACHE HF_HOME XDG_CACHE_HOME OMPI_COMM_WORLD_RANK PMIX_RANK PMI_RANK

# ---- help and version ---------------------------------------------------------
top=$("$QF_BIN" --help)
check "-h = --help" test "$("$QF_BIN" -h)" = "$top"
check "help = --help" test "$("$QF_BIN" help)" = "$top"
for section in "commands:" "global options" "exit status:" "environment:" "examples:"; do
  check "--help has '$section'" has "$top" "$section"
done
for var in HF_TOKEN HF_ENDPOINT QF_CACHE HF_HOME NO_COLOR OPENBLAS_NUM_THREADS; do
  check "--help documents $var" has "$top" "  $var "
done
mapfile -t cmds < <(sed -n '/^commands:$/,/^$/{s/^  \([a-z]*\) .*/\1/p}' <<<"$top")
check "at least 8 commands listed (${cmds[*]})" test "${#cmds[@]}" -ge 8
for c in embed tokenize info caption index search export pull; do
  check "--help lists $c" has " ${cmds[*]} " " $c "
done
for c in "${cmds[@]}"; do
  if ! h=$("$QF_BIN" "$c" --help); then fail "$c --help exits 0"; continue; fi
  check "$c --help starts with its usage" has "$(head -n1 <<<"$h")" "usage: qformer $c"
  check "$c --help has examples" grep -q "^examples:$" <<<"$h"
  check "help $c = $c --help" test "$("$QF_BIN" help "$c")" = "$h"
  check "$c -h = $c --help" test "$("$QF_BIN" "$c" -h)" = "$h"
done
rc=0; "$QF_BIN" help nosuch >/dev/null 2>"$tmp/err" || rc=$?
check "help nosuch exits 2 ($rc)" test "$rc" = 2
check "help nosuch names it" grep -q "unknown command 'nosuch'" "$tmp/err"
rc=0; "$QF_BIN" serch x >/dev/null 2>"$tmp/err" || rc=$?
check "a misspelt command exits 2 with a suggestion" grep -q "did you mean 'search'" "$tmp/err"
check "... exit 2" test "$rc" = 2
rc=0; "$QF_BIN" >/dev/null 2>&1 || rc=$?
check "no command exits 2" test "$rc" = 2
want=$(sed -n 's/^#define QF_VERSION "\(.*\)"$/\1/p' "$QF_SOURCE_DIR/bin/cli.h")
check "cli.h defines QF_VERSION" test -n "$want"
check "--version prints QF_VERSION" test "$("$QF_BIN" --version)" = "qformer $want"
check "-V = --version" test "$("$QF_BIN" -V)" = "qformer $want"

# ---- man page and completion are up to date ----------------------------------
bash "$QF_SOURCE_DIR/scripts/gen-man.sh" "$QF_BIN" "$tmp/gen" 2>/dev/null
for f in man/qformer.1 completions/qformer.bash; do
  if ! diff -u "$QF_SOURCE_DIR/$f" "$tmp/gen/$f" >"$tmp/diff"; then
    head -n 40 "$tmp/diff" >&2
    fail "$f is stale: run cmake --build BUILD --target man"
  fi
done
page=$QF_SOURCE_DIR/man/qformer.1
groff -man -Tutf8 -ww -z "$page" 2>"$tmp/groff.err" || fail "groff exits non-zero"
check "groff renders the page without warnings: $(head -c 400 "$tmp/groff.err")" test ! -s "$tmp/groff.err"
if command -v man >/dev/null; then
  LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$page" >/dev/null 2>"$tmp/man.err" || fail "man -l exits non-zero"
  check "man -l renders without warnings: $(head -c 400 "$tmp/man.err")" test ! -s "$tmp/man.err"
fi
txt=$(groff -man -Tutf8 -P-cbou "$page")   # plain text: no overstrike, no underline
for s in NAME SYNOPSIS DESCRIPTION OPTIONS COMMANDS "EXIT STATUS" ENVIRONMENT EXAMPLES; do
  check "man page has section $s" grep -q "^$s\$" <<<"$txt"
done
for c in "${cmds[@]}"; do check "man page has qformer $c" grep -q "^   qformer $c\$" <<<"$txt"; done
for var in HF_TOKEN HF_ENDPOINT QF_CACHE HF_HOME NO_COLOR OPENBLAS_NUM_THREADS; do
  check "man page ENVIRONMENT has $var" grep -q "^       $var\$" <<<"$txt"
done
check "man page keeps options as typed (ASCII hyphens)" has "$txt" "qformer search --db FILE.db [-k N]"
check "man page keeps UTF-8 text" has "$txt" "Café"

# ---- bash completion ------------------------------------------------------------
# shellcheck source=/dev/null
source "$QF_SOURCE_DIR/completions/qformer.bash"
complete_words() {   # complete_words WORD... : COMPREPLY for the last WORD, sorted
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
  _qformer
  printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd' ' -
}
expect() { local want=$1; shift; local got; got=$(complete_words "$@"); check "'$*<TAB>' -> '$want' (got '$got')" test "$got" = "$want"; }
mkdir -p "$tmp/c/models" "$tmp/c/cache/models--Salesforce--blip2-itm-vit-g/snapshots"
touch "$tmp/c/photos.db" "$tmp/c/pic.jpg"
expect "search serve" qformer se
expect "search" qformer --verbose sea
expect "serve" qformer serv
expect "--port" qformer serve --po
expect "caption" qformer help ca
expect "--quiet" qformer --qu
expect "--format" qformer search --fo
expect "html json table" qformer search --format ""
expect "json" qformer caption --format j
expect "auto bf16 f32 int8" qformer bench --dtype ""
expect "bf16 f32" qformer embed --dtype ""
expect "bf16 f32 int8" qformer caption --dtype ""
expect "int8" qformer search --caption-dtype i
expect "--format=json" qformer search --format=j
expect "json" qformer search --format = j
expect "--quiet" qformer index --qu
expect "--verbose" qformer embed --verb
expect "-k" qformer search -k
expect "" qformer search --db x.db -k ""
expect "$tmp/c/photos.db" qformer search --db "$tmp/c/ph"
expect "$tmp/c/pic.jpg" qformer caption --model m "$tmp/c/pi"
expect "$tmp/c/models" qformer index --model "$tmp/c/mo"
expect "$tmp/c/models" qformer export --db x.db --out "$tmp/c/mo"
expect "" qformer search --db x.db "$tmp/c/pi"                       # TEXT: no files
expect "" qformer tokenize --model m -- --fo                          # after --: a TEXT
QF_CACHE=$tmp/c/cache expect "Salesforce/blip2-itm-vit-g" qformer embed --model Sales
HF_HOME=$tmp/c expect "" qformer embed --model Sales                  # $HF_HOME/hub: none
# main.c's list of options that take a value = the help's (completion's)
main_c=$QF_SOURCE_DIR/bin/main.c
for c in "${cmds[@]}"; do
  line=$(sed -n "s/^ *{ \"$c\", *\"\(.*\)\" },\$/\1/p" "$main_c")
  [ -n "$line" ] || { fail "bin/main.c value_options has no line for $c"; continue; }
  from_help=""
  for o in $(_qformer_options "$c"); do
    if [ -n "$(_qformer_value "$c" "$o")" ]; then o=${o#-}; from_help+=" ${o#-}"; fi
  done
  check "main.c value options of $c = help's (main.c: '$line', help: '$from_help')" \
    test "$(tr ' ' '\n' <<<"$line" | sed '/^$/d' | sort | paste -sd' ')" = \
         "$(tr ' ' '\n' <<<"$from_help" | sed '/^$/d' | sort | paste -sd' ')"
done

# ---- --quiet / --verbose ----------------------------------------------------------
mkdir -p "$tmp/corpus"
cp "$itm"/inputs/*.png "$tmp/corpus/"
printf 'not a png' >"$tmp/corpus/broken.png"
run_index() {   # run_index NAME ARGS... : stdout to NAME.out, stderr to NAME.err
  local name=$1; shift
  "$QF_BIN" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || fail "$name: exit $?: $(cat "$tmp/$name.err")"
}
ix=(--model "$itm" --factory "IVF2,Flat")
run_index plain index "${ix[@]}" --db "$tmp/a.db" "$tmp/corpus"
check "default: progress on stderr" grep -q "images, .* img/s" "$tmp/plain.err"
check "default: warnings on stderr" grep -q "^qformer: skipped: .*broken.png" "$tmp/plain.err"
check "default: no info lines" lacks "$(cat "$tmp/plain.err")" "training IVF2,Flat"
run_index vbefore --verbose index "${ix[@]}" --db "$tmp/b.db" "$tmp/corpus"
check "--verbose before: info lines" grep -q "^qformer: training IVF2,Flat on" "$tmp/vbefore.err"
run_index vafter index "${ix[@]}" --db "$tmp/c.db" --verbose "$tmp/corpus"
check "--verbose after: info lines" grep -q "^qformer: training IVF2,Flat on" "$tmp/vafter.err"
check "--verbose after: the run" grep -q "embedded 5 images, 1 failed" "$tmp/vafter.out"
run_index qbefore -q index "${ix[@]}" --db "$tmp/d.db" "$tmp/corpus"
check "--quiet before: no progress" lacks "$(cat "$tmp/qbefore.err")" "img/s"
check "--quiet before: warnings still print" grep -q "skipped: .*broken.png" "$tmp/qbefore.err"
check "--quiet before: the result on stdout" grep -q "embedded 5 images, 1 failed" "$tmp/qbefore.out"
OMPI_COMM_WORLD_RANK=3 run_index rank --quiet index "${ix[@]}" --db "$tmp/e.db" --verbose "$tmp/corpus"
check "last of --quiet/--verbose wins; [rank N] prefix" grep -q "^qformer \[rank 3\]: training IVF2,Flat" "$tmp/rank.err"
OMPI_COMM_WORLD_RANK=0 run_index rank0 --verbose index "${ix[@]}" --db "$tmp/f.db" "$tmp/corpus"
check "rank 0: no rank prefix" grep -q "^qformer: training IVF2,Flat" "$tmp/rank0.err"
rc=0; "$QF_BIN" --quiet info --db "$tmp/nonexistent/x.db" >/dev/null 2>"$tmp/q.err" || rc=$?
check "--quiet: errors still print (exit $rc)" test "$rc" = 1 -a -s "$tmp/q.err"
rc=0; "$QF_BIN" tokenize --model "$itm" --format --verbose x >/dev/null 2>"$tmp/v.err" || rc=$?
check "an option's value '--verbose' stays its value" grep -q "not '--verbose'" "$tmp/v.err"
out=$("$QF_BIN" tokenize --model "$itm" -- --quiet a)
check "after --, '--quiet' is a TEXT" test "$(wc -l <<<"$out")" = 2
rc=0; "$QF_BIN" --bogus info >/dev/null 2>"$tmp/b.err" || rc=$?
check "unknown global option exits 2" test "$rc" = 2

# ---- colour: only on a terminal, never with NO_COLOR --------------------------------
if command -v script >/dev/null; then
  tty_run() { TERM=xterm script -qec "$1" /dev/null </dev/null; }
  esc=$'\033['
  out=$(env -u NO_COLOR TERM=xterm script -qec "'$QF_BIN' nosuch" /dev/null </dev/null || true)
  check "a terminal gets a coloured error prefix" has "$out" "$esc"
  check "... and the message" has "$out" "unknown command 'nosuch'"
  out=$(NO_COLOR=1 tty_run "'$QF_BIN' nosuch" || true)
  check "NO_COLOR=1: no colour" lacks "$out" "$esc"
  check "NO_COLOR=1: the message" has "$out" "unknown command 'nosuch'"
  out=$(NO_COLOR="" tty_run "'$QF_BIN' nosuch" || true)
  check "NO_COLOR empty counts as unset" has "$out" "$esc"
  out=$(TERM=dumb script -qec "'$QF_BIN' nosuch" /dev/null </dev/null || true)
  check "TERM=dumb: no colour" lacks "$out" "$esc"
  out=$(tty_run "'$QF_BIN' nosuch 2>'$tmp/col.err'" || true)
  check "stderr not a terminal: no colour" lacks "$(cat "$tmp/col.err")" "$esc"
  check "... the message is there" grep -q "unknown command 'nosuch'" "$tmp/col.err"
else
  fail "script (util-linux) is needed for the terminal checks"
fi

if [ "$fails" -ne 0 ]; then echo "man_completion: $fails failure(s)" >&2; exit 1; fi
echo "man_completion: all checks passed"
