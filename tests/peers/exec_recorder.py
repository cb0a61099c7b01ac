"""A child for the exec sink tests: appends every line it reads to a file.

Usage: exec_recorder.py OUT PIDFILE
Writes its process id to PIDFILE (replacing the file in one step) and a line
to standard error, then appends each line of its standard input to OUT,
flushing after each. Exits when its standard input closes.
"""

import os
import sys


def main():
    out_path, pid_path = sys.argv[1], sys.argv[2]
    pid = os.getpid()
    with open(pid_path + ".tmp", "w") as pid_file:
        pid_file.write(str(pid))
    os.replace(pid_path + ".tmp", pid_path)
    print("exec recorder %d started" % pid, file=sys.stderr, flush=True)
    with open(out_path, "ab") as out:
        for line in iter(sys.stdin.buffer.readline, b""):
            out.write(line)
            out.flush()


if __name__ == "__main__":
    main()
