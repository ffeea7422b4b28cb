#!/usr/bin/env bash
# How long nbgrader takes to autograde one submission of the six notebooks, and how much disk it
# leaves: a course folder made by python -m lab_utils.course in a scratch folder, the student
# edition generated there, the teacher edition submitted as one student's work (every task solved,
# so every cell runs), then autograde and generate_feedback, each timed; then the size of the
# submission, of its autograded copy and of its feedback.
#   bash results/autograde/measure.sh            (needs pip install -e ".[teacher]")
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(dirname "$(command -v python)")
export PATH="$BIN:$PATH"
COURSE=$(mktemp -d)/course
python -m lab_utils.course "$COURSE" > /dev/null
cd "$COURSE"
nbgrader generate_assignment lab --force --log-level=ERROR
mkdir -p submitted/student1/lab
cp source/lab/*.ipynb submitted/student1/lab/
t0=$(date +%s.%N)
nbgrader autograde lab --force --log-level=ERROR
t1=$(date +%s.%N)
nbgrader generate_feedback lab --force --log-level=ERROR
t2=$(date +%s.%N)
echo "autograde: $(echo "$t1 - $t0" | bc) s, generate_feedback: $(echo "$t2 - $t1" | bc) s"
for d in submitted/student1 autograded/student1 feedback/student1; do
  echo "$d: $(du -sk "$d" | cut -f1) KB, $(find "$d" -type f | wc -l) files"
done
python - <<'PY'
from nbgrader.api import Gradebook
with Gradebook("sqlite:///gradebook.db") as gb:
    sub = gb.find_submission("lab", "student1")
    code = sum(g.score for nb in sub.notebooks for g in nb.grades if g.auto_score is not None)
    print(f"code points: {code:g} of {sub.max_code_score:g}")
PY
