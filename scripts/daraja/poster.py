"""Posts callbacks and results at their due time: one scheduler thread,
one short thread per callback (a slow receiver holds up nobody else),
keep-alive connections reused per host."""
import heapq
import http.client
import threading
import time
import urllib.parse


class Poster:
    def __init__(self, state, logger):
        self.state = state
        self.log = logger
        self.cv = threading.Condition()
        self.heap = []
        self.n = 0
        self.pool_lock = threading.Lock()
        self.pool = {}
        threading.Thread(target=self._run, name="scheduler", daemon=True).start()

    def schedule(self, delay_s, fn, *args):
        with self.cv:
            self.n += 1
            heapq.heappush(self.heap, (time.monotonic() + delay_s, self.n, fn, args))
            self.cv.notify()

    def _run(self):
        while True:
            with self.cv:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cv.wait(None if not self.heap else self.heap[0][0] - time.monotonic())
                _, _, fn, args = heapq.heappop(self.heap)
            threading.Thread(target=fn, args=args, daemon=True).start()

    def post(self, url, raw, timeout=10):
        """POSTs raw JSON text; returns (status or error string, answer text)."""
        u = urllib.parse.urlsplit(url)
        key = (u.scheme, u.netloc)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        body = raw.encode("utf-8")
        for attempt in (1, 2):
            with self.pool_lock:
                idle = self.pool.get(key)
                conn = idle.pop() if idle else None
            reused = conn is not None
            if conn is None:
                cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
                conn = cls(u.hostname, u.port, timeout=timeout)
            else:
                conn.timeout = timeout
                if conn.sock:
                    conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, body, {
                    "Content-Type": "application/json",
                    "User-Agent": "daraja-emulator"})
                r = conn.getresponse()
                answer = r.read().decode("utf-8", "replace")
                if r.getheader("Connection", "").lower() == "close" or r.version == 10:
                    conn.close()
                else:
                    with self.pool_lock:
                        self.pool.setdefault(key, []).append(conn)
                return r.status, answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                # a keep-alive connection the receiver had closed: once more, fresh
                if not reused or attempt == 2:
                    return "%s: %s" % (type(e).__name__, e), None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                return "%s: %s" % (type(e).__name__, e), None
