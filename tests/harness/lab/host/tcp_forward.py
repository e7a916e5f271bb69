# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""python3 tcp_forward.py LISTEN_IP TARGET_IP PORT[,PORT...] [--pidfile FILE]

Plain TCP relay: every PORT on LISTEN_IP to the same PORT on TARGET_IP (one thread per
connection). The lab uses it twice to let a lab host reach the test cloud, whose endpoints
listen on the machine's 127.0.0.1 only: inside each lab host (127.0.0.1 -> the machine's
address on the lab network) and on the machine (that address -> 127.0.0.1). The cloud's
catalog URLs (http://127.0.0.1:<port>) then work unchanged inside the hosts. Nothing else
is reachable: only the listed ports, only from the lab network.
"""

import os
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    pump(client, upstream)
    client.close()
    upstream.close()


def listener(listen_ip, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen_ip, port))
    srv.listen(128)
    return srv


def serve(srv, target_ip, port):
    while True:
        client, _addr = srv.accept()
        threading.Thread(target=handle, args=(client, (target_ip, port)), daemon=True).start()


def main(argv):
    if len(argv) not in (3, 5) or (len(argv) == 5 and argv[3] != '--pidfile'):
        sys.exit(__doc__.split('\n', 1)[0])
    listen_ip, target_ip, ports = argv[0], argv[1], [int(p) for p in argv[2].split(',') if p]
    # every port bound before the pid file says "up" (a bind error ends it at once)
    servers = [(listener(listen_ip, p), p) for p in ports]
    threads = [threading.Thread(target=serve, args=(srv, target_ip, p), daemon=True) for srv, p in servers]
    for thread in threads:
        thread.start()
    if len(argv) == 5:
        with open(argv[4], 'w') as handle:
            handle.write('%d\n' % os.getpid())
    for thread in threads:
        thread.join()


if __name__ == '__main__':
    main(sys.argv[1:])
