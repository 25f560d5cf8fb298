"""The fault matrix: every agent, run as a real process in the lab, under the faults of issue 6.

    make faults                                   # the whole matrix and the fuzzing, the table
    PYTHONPATH=lib:tests python -m faults --help  # choose agents, groups, cases; list them

Modules:

- ``faults.world``: the three agents as the matrix sees them: a resource's parameters, who AWS
  says holds it, what of it is in a node's OS, and how to damage either side behind its back;
- ``faults.execute``: agent runs with a process audit hook (no child process, ever), SIGKILL
  right after the n-th AWS call, and the checks every run gets (exit code, exit reason, time
  inside the timeout, no traceback, nothing left in the OS after a successful stop);
- ``faults.cases``: the matrix itself: cases, their expected outcomes, the scenarios;
- ``faults.fuzz``: hypothesis strategies of hostile values for every parameter, and their oracle;
- ``faults.runner``: runs cases on a few labs at once and prints the table.

tests/test_fault_matrix.py runs a representative part in pytest (see its docstring).
"""
