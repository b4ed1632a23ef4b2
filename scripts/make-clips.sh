#!/usr/bin/env bash
# Speaks the synthetic sentence set with espeak-ng into DIR as 16 kHz mono WAV files, each with
# its transcript beside it (NAME.txt): the clips `kiki bench load` streams.
set -euo pipefail
dir=${1:?usage: scripts/make-clips.sh DIR [SENTENCES_FILE]}
list=${2:-$(dirname "$0")/../tests/data/sentences.txt}
mkdir -p "$dir"
i=0
while IFS= read -r line; do
    [ -z "$line" ] && continue
    i=$((i + 1))
    name=$(printf '%s/s%03d' "$dir" "$i")
    [ -f "$name.wav" ] && continue
    espeak-ng -v en-us -w "$name.22k.wav" "$line"
    sox -R "$name.22k.wav" -r 16000 -c 1 "$name.wav" 2>/dev/null
    rm -f "$name.22k.wav"
    printf '%s\n' "$line" > "$name.txt"
done < "$list"
echo "$i clips in $dir"
