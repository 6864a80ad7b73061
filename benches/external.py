#!/usr/bin/env python3
"""The outside-in pipeline benchmark of BENCHMARKS.md: wrk posts 500-event NDJSON batches over
32 connections, a separate `thoth-load receive` process counts what a Splunk HEC sink delivers,
and this script only watches (/proc, /metrics, the receiver's /stats) once a second.

    cargo build --release -p thoth-gateway -p thoth-load
    python3 benches/external.py [--seconds 30] [--connections 32] [--endpoints 100000]
                                [--mix jamf|mixed] [--sinks hec|all] [--two-sends] [--no-transform]

Prints, from the gateway's own counters and the receiver's: accepted/s and delivered/s while
wrk ran, the delivered share, end to end (everything accepted delivered) events/s, gateway
CPU-seconds per million events, page faults per event, peak RSS (VmHWM), refused requests, the HEC limit and
mean round trip once a second; and one JSON line with all of it.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
HEC_TOKEN = "bench-hec-token-000000"
TOKENS = {"acme": "bench-acme-token-000000", "globex": "bench-globex-token-00000"}
TRANSFORM = """
.severity_score = if .risk == "critical" { 4 } else if .risk == "high" { 3 } else { 1 }
.fleet = .context.fleet.id
.owner = downcase(string(.context.endpoint.owner) ?? "")
del(.proxy_version)
.gateway = "thoth"
"""


def config(d, receiver, tenants, all_sinks, transform, hec_concurrency=None):
    c = f'data_dir = "{d}/data"\n[api]\nlisten = "127.0.0.1:0"\n'
    for t in tenants:
        c += f'[[api.tokens]]\ntenant_id = "{t}"\ntoken = "{TOKENS[t]}"\n'
    c += '[wal]\nmax_bytes = "8GiB"\nfsync = "always"\n'
    for t in tenants:
        c += f'[[tenants]]\nid = "{t}"\nname = "{t.title()}"\n'
    c += (f'[[mdm.providers]]\nname = "acme-jamf"\ntenant_id = "acme"\nkind = "jamf"\n'
          f'file = "{d}/acme-jamf.json"\nendpoint_id_attribute = "Thoth Endpoint ID"\n'
          '[[mdm.fleet_rules]]\ntenant_id = "acme"\nwhen = { department = "Engineering" }\n'
          'fleet = { id = "eng-macs", name = "Engineering Macs" }\n'
          '[[mdm.fleet_rules]]\ntenant_id = "acme"\nwhen = { os = "macOS" }\n'
          'fleet = { id = "acme-macs", name = "Acme Macs" }\n')
    if "globex" in tenants:
        c += (f'[[mdm.providers]]\nname = "globex-intune"\ntenant_id = "globex"\nkind = "intune"\n'
              f'file = "{d}/globex-intune.json"\n'
              '[[mdm.fleet_rules]]\ntenant_id = "globex"\nwhen = { os = "Windows" }\n'
              'fleet = { id = "globex-windows", name = "Globex Windows" }\n')
    if transform:
        c += f"[transform]\nsource = '''{TRANSFORM}'''\n"
    c += (f'[sinks.splunk]\ntype = "splunk_hec"\nendpoint = "http://{receiver}"\n'
          f'token = "{HEC_TOKEN}"\ncompression = "gzip"\n')
    if hec_concurrency:
        c += f"concurrency = {hec_concurrency}\n"
    if all_sinks:
        c += (f'[sinks.elastic]\ntype = "elasticsearch"\nendpoints = ["http://{receiver}"]\n'
              f'compression = "gzip"\n[sinks.archive]\ntype = "file"\npath = "{d}/archive.ndjson"\n')
    return c


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def metric(text, name, labels=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{" + labels) or (not labels and line.startswith(name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_times(pid):
    """(user, system) CPU seconds of the process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def minor_faults(pid):
    """Pages the process touched for the first time (or again after the allocator returned
    them): how much fresh memory it churns through, steadier between runs than CPU time."""
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[7])


def status_mib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid):
    return status_mib(pid, "VmHWM")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--endpoints", type=int, default=100_000)
    p.add_argument("--mix", choices=["jamf", "mixed"], default="mixed")
    p.add_argument("--sinks", choices=["hec", "all"], default="hec")
    p.add_argument("--two-sends", action="store_true")
    p.add_argument("--hec-concurrency", type=int, help="a fixed HEC concurrency instead of adaptive")
    p.add_argument("--no-transform", action="store_true", help="without the 5-line global VRL transform")
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release"))
    a = p.parse_args()
    gw_bin, load_bin = os.path.join(a.bin, "thoth-gateway"), os.path.join(a.bin, "thoth-load")
    wrk = shutil.which("wrk") or sys.exit("wrk is not installed (apt-get install wrk)")
    d = tempfile.mkdtemp(prefix="thoth-external-")
    tenants = ["acme", "globex"] if a.mix == "mixed" else ["acme"]
    per_tenant = a.endpoints // len(tenants)
    subprocess.run([load_bin, "snapshot", "--tenant", "acme", "--endpoints", str(per_tenant),
                    "--out", f"{d}/acme-jamf.json"], check=True)
    if "globex" in tenants:
        subprocess.run([load_bin, "snapshot", "--tenant", "globex", "--format", "intune",
                        "--endpoints", str(per_tenant), "--out", f"{d}/globex-intune.json"], check=True)
    subprocess.run([load_bin, "bodies", "--out-dir", f"{d}/bodies", "--files", "64",
                    "--endpoints", str(per_tenant)]
                   + sum((["--tenant", f"{t}={TOKENS[t]}"] for t in tenants), []), check=True)
    receiver_addr = "127.0.0.1:%d" % (18000 + os.getpid() % 1000)
    receiver = subprocess.Popen([load_bin, "receive", "--listen", receiver_addr, "--hec-token", HEC_TOKEN]
                                + (["--two-sends"] if a.two_sends else []),
                                stderr=subprocess.DEVNULL)
    open(f"{d}/gateway.toml", "w").write(config(d, receiver_addr, tenants, a.sinks == "all", not a.no_transform, a.hec_concurrency))
    log = open(f"{d}/gateway.log", "w+")
    gw = subprocess.Popen([gw_bin, "run", "--config", f"{d}/gateway.toml"], stderr=log)
    addr = None
    for _ in range(600):
        log.seek(0)
        m = re.search(r"listening on (\S+)", log.read())
        if m:
            addr = m.group(1)
            break
        time.sleep(0.1)
    if not addr:
        sys.exit("the gateway did not start: see " + log.name)
    delivered = lambda: json.loads(get(f"http://{receiver_addr}/stats"))["hec_events"]
    accepted = lambda m: metric(m, "thoth_events_received_total")
    time.sleep(1)  # the snapshot is loaded when the gateway listens; let the allocator settle
    idle_rss = status_mib(gw.pid, "VmRSS")
    (user0, sys0), faults0, t0 = cpu_times(gw.pid), minor_faults(gw.pid), time.time()
    env = dict(os.environ, BODIES=f"{d}/bodies")
    load = subprocess.Popen([wrk, f"-t{a.threads}", f"-c{a.connections}", f"-d{a.seconds}s",
                             "-s", os.path.join(ROOT, "benches/wrk/post_batches.lua"), f"http://{addr}"],
                            env=env, stdout=subprocess.PIPE, text=True)
    limits, round_trips, samples = [], [], []
    hec = 'sink="splunk"'
    requests = lambda m: (metric(m, "thoth_sink_request_seconds_sum", hec), metric(m, "thoth_sink_request_seconds_count", hec))
    before = requests(get(f"http://{addr}/metrics"))
    while load.poll() is None:
        time.sleep(1)
        m = get(f"http://{addr}/metrics")
        limits.append(metric(m, "thoth_sink_concurrency_limit", hec))
        now = requests(m)
        # The mean HEC round trip in the last second: what the adaptive limit reads.
        round_trips.append(round(1000 * (now[0] - before[0]) / max(now[1] - before[1], 1), 1))
        before = now
        samples.append((time.time() - t0, accepted(m), delivered(), peak_rss_mib(gw.pid)))
        print(f"{samples[-1][0]:5.1f}s accepted {samples[-1][1]:>10,.0f} delivered {samples[-1][2]:>10,.0f} "
              f"limit {limits[-1]:.0f} round trip {round_trips[-1]} ms rss {samples[-1][3]:.0f} MiB", file=sys.stderr)
    wrk_out = load.stdout.read()
    t_load = time.time() - t0
    m = get(f"http://{addr}/metrics")
    acc_load, dl_load = accepted(m), delivered()
    while delivered() < accepted(get(f"http://{addr}/metrics")):
        if time.time() - t0 > a.seconds * 20:
            sys.exit("the gateway did not deliver everything it accepted")
        time.sleep(0.05)
    user, system = (now - before for now, before in zip(cpu_times(gw.pid), (user0, sys0)))
    faults = minor_faults(gw.pid) - faults0
    t_all, cpu = time.time() - t0, user + system
    acc = accepted(get(f"http://{addr}/metrics"))
    refused = re.search(r"refused (\d+)", wrk_out)
    result = {
        "mix": a.mix, "sinks": a.sinks, "transform": not a.no_transform, "connections": a.connections, "endpoints": a.endpoints,
        "two_sends": a.two_sends, "seconds": round(t_load, 1),
        "accepted_per_s": round(acc_load / t_load), "delivered_during_load_per_s": round(dl_load / t_load),
        "delivered_share_during_load": round(dl_load / max(acc_load, 1), 3),
        "end_to_end_per_s": round(acc / t_all), "cpu_s_per_million": round(cpu / acc * 1e6, 2),
        "user_s_per_million": round(user / acc * 1e6, 2), "system_s_per_million": round(system / acc * 1e6, 2),
        "page_faults_per_event": round(faults / acc, 3),
        "peak_rss_mib": round(peak_rss_mib(gw.pid)), "idle_rss_mib": round(idle_rss), "refused_requests": int(refused.group(1)) if refused else None,
        "hec_limits": limits, "hec_round_trip_ms": round_trips,
    }
    print(wrk_out.strip())
    print(f"accepted {result['accepted_per_s']:,}/s during the load; delivered {result['delivered_during_load_per_s']:,}/s "
          f"({100 * result['delivered_share_during_load']:.0f} %); end to end {result['end_to_end_per_s']:,}/s; "
          f"{result['cpu_s_per_million']} CPU-s per M events ({result['user_s_per_million']} user, "
          f"{result['system_s_per_million']} system; {result['page_faults_per_event']} page faults per event); peak RSS {result['peak_rss_mib']} MiB "
          f"({result['idle_rss_mib']} MiB before the load)")
    print(json.dumps(result))
    gw.terminate(); receiver.terminate()
    gw.wait(); receiver.wait()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
