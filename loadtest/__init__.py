"""dnslab's DNS load generator: a Locust user that keeps pace with dnsperf and records every query.

Run: `locust -f loadtest/dns.py --host SERVER[:PORT] [--headless -u N -r N -t 30s] [--dns-* ...]`
(`locust -f loadtest/dns.py --help` lists the --dns-* knobs), or `from loadtest.user import DnsUser`
in a locustfile of your own. Modules: knobs (the one table of load settings), options (--dns-* ->
Settings), clients (the raw, glibc and musl client models), wire (DNS bytes), engine (the hot path)
with transport (its sockets), retries (the client models on them) and inflight (what it keeps per
query), user (`DnsUser`), process (what a Locust process's users share, and the listeners that
validate the options), recording (the records writer, a listener), records (binary per-worker
records), stats (bulk Locust stats), merge (records -> queries.csv), dns (the locustfile); its
benchmark is `python -m bench.loadtest`. Imports only stdlib, locust, gevent and dnspython, so the
lab VM can run it from /opt/dnslab.

Contract with the chaos runner (and anyone driving a recorded run):
1. Start Locust with `--dns-records DIR` (created if missing; it must be writable). A bad argument,
   an unresolvable --host or an unwritable DIR print one line `dnslab loadtest: error: ...` and
   exit with status 2 before any query is sent.
2. Each process that runs users (the single process, or every worker with `--processes N` or
   `--worker`) appends its rows to `DIR/<host>-<pid>.dq`, flushed every 0.5 s in one write each.
3. Stop it with SIGINT (or SIGTERM; `-t` also works). The non-worker process then closes its file
   and writes `DIR/queries.csv` (waiting up to 10 s for local workers' files to be closed).
   Lookups still in flight at the stop are neither recorded nor counted by Locust.
4. Always run `python -m loadtest.merge DIR` afterwards and fetch `DIR/queries.csv`: it is
   idempotent, and after a SIGKILL (or remote workers, whose .dq files you copy into one DIR) it
   recovers everything flushed before the kill (at most the last 0.5 s is lost).

`queries.csv` has the columns of docs/run-directory.md, one row per query (each attempt of a lookup
is a query), sorted by t_send_ns: `t_send_ns` is CLOCK_REALTIME at the send; `latency_ms` (µs
precision) runs from that send to the answer and is empty without an answer; `outcome` is `ok`
(the expected RCODE: NOERROR, or the one given as NAME:TYPE:RCODE in --dns-names), `rcode`
(another RCODE), `timeout` or `error` (ICMP unreachable / refused, broken TCP connection, send
failure); `resolver` is the TXT answer of who.lab.test (empty for other names); `worker` is
`<host>-<pid>.u<n>`, one id per Locust user; `lookup_id` numbers the user's lookups from 0 and
`attempt` the queries of one lookup from 0 (a musl lookup's first round is attempts 0..n-1).

Locust's stats count lookups (for the raw client every query is one): an answered lookup with its
time from its first send, a failed one with its last query's RCODE name or `timeout`; answered
lookups go into the stats in bulk (loadtest/stats.py).
"""
