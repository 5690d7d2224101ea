#!/bin/sh
# A job in any language: params as JSON on stdin, progress as JSON lines on stdout, the
# result last; files left in $JOBSTREAM_OUTPUT_DIR become the job's artifacts. Runs
# unchanged as an exec type in the server or under `jobstream work`.
#   params: {"images": 4, "pause_ms": 200}
params=$(cat)
number() { printf '%s' "$params" | sed -n "s/.*\"$1\"[^0-9]*\([0-9][0-9]*\).*/\1/p"; }
count=$(number images); count=${count:-4}
pause=$(number pause_ms); pause=${pause:-200}
[ "$count" -gt 100 ] && count=100
i=1
while [ "$i" -le "$count" ]; do
  echo "{\"step\": \"image $i\", \"stepIndex\": $i, \"stepCount\": $count}"
  for pass in 1 2 3; do
    sleep "$(awk "BEGIN {print $pause / 1000}")"
    echo "{\"fraction\": $(awk "BEGIN {print ($i - 1 + $pass / 3) / $count}"), \"message\": \"image $i, pass $pass/3\"}"
  done
  i=$((i + 1))
done
# A contact sheet of the "thumbnails", as an SVG artifact the page shows.
if [ -n "$JOBSTREAM_OUTPUT_DIR" ]; then
  {
    echo "<svg xmlns='http://www.w3.org/2000/svg' width='$((count * 70))' height='70'>"
    i=0
    while [ "$i" -lt "$count" ]; do
      echo "<rect x='$((i * 70 + 5))' y='5' width='60' height='60' rx='6' fill='hsl($((i * 47 % 360)),60%,60%)'/>"
      i=$((i + 1))
    done
    echo "</svg>"
  } > "$JOBSTREAM_OUTPUT_DIR/contact-sheet.svg"
fi
echo "{\"result\": {\"thumbnails\": $count, \"attempt\": ${JOBSTREAM_ATTEMPT:-0}}}"
