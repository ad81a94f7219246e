#!/usr/bin/env python3
"""What one scrape of /metrics costs the daemon: scrapes http://ADDR:PORT/metrics N times
(one connection each, as Prometheus does) and prints the CPU time the daemon's control
thread (its main thread, tid == pid) and the whole process used per scrape, from
/proc/PID/task/PID/stat and /proc/PID/stat (utime + stime, clock ticks). The difference
between the two is what the worker threads spent while scrapes were served.

    python3 scripts/scrape_cost.py ADDR:PORT N PID

Run it where ADDR is reachable (e.g. `ip netns exec NS ...` for a daemon in a namespace).
Fails on any response other than 200.
"""
import os
import socket
import sys
import time


def cpu_s(path):
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    count, pid = int(sys.argv[2]), int(sys.argv[3])
    main_stat, proc_stat = f"/proc/{pid}/task/{pid}/stat", f"/proc/{pid}/stat"
    main0, proc0 = cpu_s(main_stat), cpu_s(proc_stat)
    started, size = time.monotonic(), 0
    for _ in range(count):
        with socket.create_connection((host.strip("[]"), int(port))) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: xblade\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200 OK"):
            sys.exit(f"unexpected response: {data[:200]!r}")
        size = len(data)
    wall = time.monotonic() - started
    main1, proc1 = cpu_s(main_stat), cpu_s(proc_stat)
    print(f"{count} scrapes in {wall:.2f} s ({count / wall:.0f}/s), response {size} bytes; "
          f"control thread {1e6 * (main1 - main0) / count:.1f} us CPU per scrape, "
          f"whole process {1e6 * (proc1 - proc0) / count:.1f} us per scrape")


if __name__ == "__main__":
    main()
