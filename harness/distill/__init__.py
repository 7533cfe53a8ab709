"""A reasoning-distillation task whose right answers are known by construction.

A teacher writes step-by-step rationales (running sums of digits, modulo a base) and slips now
and then with probabilities that are known in closed form; a tiny student learns the step
function from the teacher's rationales and then generates its own. Answers are graded the
production way: exact match of the final generated answer.

    task.py       problems, gold rationales, the teacher's soft labels and sampled rationales
    model.py      the student: one reasoning step, (state, digit) -> next state
    train.py      distillation: cross-entropy on the teacher's tokens, label smoothing,
                  a training-data fraction, plain SGD
    generate.py   decoding: greedy or sampling at a temperature
    evaluate.py   production scores (exact match) beside a token-accuracy proxy
    fixtures.py   the `distill_data` fixture for studies
"""
