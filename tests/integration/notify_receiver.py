"""notify_receiver.py NAME LOG [SECONDS]: a stand-in for systemd's notify socket.

Binds the abstract datagram socket NAME ("@name", as in $NOTIFY_SOCKET), writes BOUND to
LOG once bound, then one line per message (newlines as spaces) until STOPPING=1 arrives or
nothing came for SECONDS (default 80)."""
import socket
import sys

s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1][1:])
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 80)
with open(sys.argv[2], "a", buffering=1) as f:
    print("BOUND", file=f)
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        print(msg.replace("\n", " "), file=f)
        if "STOPPING=1" in msg:
            break
