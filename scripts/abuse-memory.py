#!/usr/bin/env python3
"""Memory of a node under abuse (issue 17): starts one release node
(--insecure: the bounds sit behind the TLS layer, the same code either way),
lets one abuser hold many connections open against it, and prints the
node's RSS before, at its peak while the abuse lasts, and after.

    scripts/abuse-memory.py [--bin-dir ./target/release] [--connections 2000]

Abuses, one after another on a fresh node each:
  frames    every connection sends a frame header announcing a 1 MiB body,
            then all but the last 64 bytes of it, and waits (unfinished frames)
  idle      every connection connects and says nothing
  slowloris every HTTP connection sends an unfinished request head, one more
            header line every second
  trickle   every connection sends a valid frame one byte per second
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

HEADER_BYTES = 32
MAX_BODY = (1 << 20) - HEADER_BYTES
SUBMIT = 0x0101


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def header(body_len: int) -> bytes:
    h = bytearray(HEADER_BYTES)
    h[0:4] = b"SETL"
    h[4:6] = (2).to_bytes(2, "little")
    h[6:8] = SUBMIT.to_bytes(2, "little")
    h[8:16] = (1).to_bytes(8, "little")
    h[16:20] = body_len.to_bytes(4, "little")
    h[28:32] = crc32c(bytes(h[:28])).to_bytes(4, "little")
    return bytes(h)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_node(bin_dir: str, work: str):
    port, http = free_port(), free_port()
    participants = os.path.join(work, "participants.json")
    with open(participants, "w") as f:
        subprocess.run([f"{bin_dir}/settle-loadgen", "participants", "--count", "8"], stdout=f, check=True)
    log = open(os.path.join(work, "node.log"), "w")
    node = subprocess.Popen(
        [f"{bin_dir}/settle", "start", "--insecure", "--data-dir", os.path.join(work, "data"),
         "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}",
         "--participants", participants],
        stderr=log, stdout=subprocess.DEVNULL)
    for _ in range(300):
        if "listening on" in open(os.path.join(work, "node.log")).read():
            return node, port, http
        time.sleep(0.1)
    raise SystemExit("node did not start: " + open(os.path.join(work, "node.log")).read())


def abuse(kind: str, port: int, http: int, n: int, node_pid: int, seconds: float):
    socks, refused, closed = [], 0, 0
    peak = rss_mb(node_pid)
    target = http if kind == "slowloris" else port
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", target), timeout=5)
            s.setblocking(False)
            socks.append(s)
            if kind == "frames":
                s.setblocking(True)
                s.settimeout(5)
                s.sendall(header(MAX_BODY))
                s.sendall(b"\x00" * (MAX_BODY - 64))
                s.setblocking(False)
            elif kind == "slowloris":
                s.send(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            refused += 1
        if i % 100 == 0:
            peak = max(peak, rss_mb(node_pid))
    start = time.time()
    frame = header(0)
    step = 0
    while time.time() - start < seconds:
        peak = max(peak, rss_mb(node_pid))
        for s in list(socks):
            try:
                if kind == "slowloris":
                    s.send(f"X-{step}: y\r\n".encode())
                elif kind == "trickle":
                    s.send(frame[step % len(frame):step % len(frame) + 1])
                s.recv(1 << 16)
                # Readable with data or EOF: the node answered or closed it.
                socks.remove(s)
                s.close()
                closed += 1
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(s)
                closed += 1
        step += 1
        time.sleep(1)
    open_now = len(socks)
    for s in socks:
        s.close()
    return peak, refused, closed, open_now


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="./target/release")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--kinds", default="frames,idle,slowloris,trickle")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print(f"{'abuse':<10} {'conns':>6} {'refused':>8} {'closed':>7} {'open':>6} "
          f"{'RSS before':>11} {'RSS peak':>9} {'RSS after':>10}  (MB)")
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory() as work:
            node, port, http = start_node(args.bin_dir, work)
            try:
                time.sleep(2)
                before = rss_mb(node.pid)
                peak, refused, closed, open_now = abuse(kind, port, http, args.connections, node.pid, args.seconds)
                time.sleep(2)
                after = rss_mb(node.pid)
                alive = node.poll() is None
                print(f"{kind:<10} {args.connections:>6} {refused:>8} {closed:>7} {open_now:>6} "
                      f"{before:>11.0f} {peak:>9.0f} {after:>10.0f}  {'' if alive else 'NODE DIED'}")
                sys.stdout.flush()
            finally:
                node.terminate()
                node.wait()


if __name__ == "__main__":
    main()
