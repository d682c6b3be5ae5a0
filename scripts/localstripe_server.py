"""Runs localstripe (PyPI) on 127.0.0.1 for tests and local development.

    python localstripe_server.py PORT_FILE [DATA_FILE]

Binds 127.0.0.1 on a free port and writes that port to PORT_FILE once it
listens. localstripe pickles its whole store to /tmp on every write; here
that is a no-op (tests), or a write to DATA_FILE when one is given (local
demo, so data survives restarts). It exits when the process that started
it goes away, so an interrupted test run leaves nothing listening.
"""

import os
import pickle
import socket
import sys
import threading
import time

import aiohttp.web
import localstripe.resources
import localstripe.server


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: localstripe_server.py PORT_FILE [DATA_FILE]")
    port_file = sys.argv[1]
    data_file = sys.argv[2] if len(sys.argv) == 3 else None

    store = localstripe.resources.store
    if data_file is None:
        type(store).dump_to_disk = lambda self: None
    else:
        if os.path.exists(data_file):
            with open(data_file, "rb") as f:
                store.update(pickle.load(f))

        def dump(self):
            tmp = data_file + ".tmp"
            with open(tmp, "wb") as f:
                pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, data_file)

        type(store).dump_to_disk = dump

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def announce(_app):
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, port_file)

    parent = os.getppid()

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()

    app = localstripe.server.app
    app.on_startup.append(announce)
    aiohttp.web.run_app(app, sock=sock, print=None)


if __name__ == "__main__":
    main()
