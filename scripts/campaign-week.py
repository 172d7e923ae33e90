#!/usr/bin/env python3
"""A week of a busy internet-facing router's log, and what the edge makes of it.

    scripts/campaign-week.py generate week.log      # writes the log (and week.log.truth)
    scripts/campaign-week.py table week.log EDGE    # runs `EDGE replay week.log --json`, prints the table

`scripts/campaign-week.sh` does both with the release edge. The log is
deterministic (seeded): about 50,000 background sources failing SSH logins a
few times each over the week, 1,000 brute-forcing sources in bursts (some
trying many user names), firewall drops from the internet's scanners with a
few real port scans and one botnet scanning from 3,000 addresses, and WiFi
stations coming and going. The table counts
new findings per kind per day (the day of their first event), their updates,
and checks `ssh.bruteforce` against the generator's truth: every
brute-forcing source named, and no other.
"""

import collections
import datetime
import json
import random
import subprocess
import sys

START = datetime.datetime(2026, 3, 2, tzinfo=datetime.timezone.utc)
WEEK_S = 7 * 86400
NAMES = ["root", "admin", "user", "test", "ubnt", "pi", "oracle", "guest", "support", "ftp",
         "postgres", "mysql", "git", "ubuntu", "debian", "centos", "nagios", "www", "web", "backup",
         "operator", "service", "demo", "info", "mail", "sales", "office", "tomcat", "hadoop", "jenkins",
         "deploy", "dev", "minecraft", "steam", "teamspeak", "vagrant", "ansible", "docker", "kafka", "zabbix"]


def stamp(t):
    """logread's header time: `Mon Mar  2 00:00:05 2026`."""
    d = START + datetime.timedelta(seconds=t)
    return d.strftime("%a %b ") + f"{d.day:2d}" + d.strftime(" %H:%M:%S %Y")


def addr(rng, taken):
    while True:
        a = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if a not in taken and not a.startswith(("10.", "127.", "192.168.")):
            taken.add(a)
            return a


def ssh_fail(rng, t, src, user, pid):
    """One failed login, in OpenSSH's or dropbear's words."""
    port = rng.randint(1024, 65535)
    if rng.random() < 0.5:
        return (t, f"{stamp(t)} authpriv.info sshd[{pid}]: Failed password for invalid user {user} "
                   f"from {src} port {port} ssh2")
    return (t, f"{stamp(t)} authpriv.warn dropbear[{pid}]: Bad password attempt for '{user}' from {src}:{port}")


def generate(path):
    rng = random.Random(20260302)
    taken = set()
    lines = []
    pid = 1000
    # Background: sources failing 1-4 times each, hours apart.
    for _ in range(50_000):
        src = addr(rng, taken)
        t = rng.uniform(0, WEEK_S)
        for _ in range(rng.randint(1, 4)):
            pid += 1
            lines.append(ssh_fail(rng, t, src, rng.choice(NAMES), pid))
            t += rng.uniform(1800, 86400)
            if t >= WEEK_S:
                break
    # Brute force: 1,000 sources, a burst each of 20-200 failures a few seconds apart.
    brute = []
    for i in range(1_000):
        src = addr(rng, taken)
        brute.append(src)
        t = rng.uniform(0, WEEK_S - 3600)
        many_names = i % 4 == 0
        for _ in range(rng.randint(20, 200)):
            pid += 1
            user = rng.choice(NAMES) if many_names else "root"
            lines.append(ssh_fail(rng, t, src, user, pid))
            t += rng.uniform(0.5, 4)
    # Firewall: the internet's scanners knocking on single ports, and a few port scans.
    t = 0.0
    while t < WEEK_S:
        t += rng.expovariate(1 / 8)
        src = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        lines.append((t, fw(t, src, rng.choice([22, 23, 80, 443, 445, 3389, 8080, 5060]), rng)))
    # A botnet on day 4: 3,000 sources in half an hour, a few telnet ports each.
    t = 3 * 86400 + 14 * 3600
    for _ in range(3_000):
        src = addr(rng, taken)
        for port in rng.sample([23, 2323, 22, 80], 2):
            lines.append((t, fw(t, src, port, rng)))
        t += rng.uniform(0.2, 1.0)
    for _ in range(30):
        src = addr(rng, taken)
        t = rng.uniform(0, WEEK_S - 600)
        for port in rng.sample(range(1, 10000), 300):
            lines.append((t, fw(t, src, port, rng)))
            t += 0.2
    # WiFi: 20 stations joining in the morning and leaving at night, roaming a little.
    for day in range(7):
        for s in range(20):
            mac = f"02:00:00:00:{s // 256:02x}:{s % 256:02x}"
            t = day * 86400 + rng.uniform(6 * 3600, 9 * 3600)
            end = day * 86400 + rng.uniform(18 * 3600, 23 * 3600)
            while t < end:
                lines.append((t, f"{stamp(t)} daemon.info hostapd: wlan0: AP-STA-CONNECTED {mac}"))
                t += rng.uniform(600, 7200)
                lines.append((t, f"{stamp(t)} daemon.info hostapd: wlan0: AP-STA-DISCONNECTED {mac}"))
                t += rng.uniform(5, 60)
    lines.sort(key=lambda x: x[0])
    with open(path, "w") as f:
        for _, line in lines:
            f.write(line + "\n")
    with open(path + ".truth", "w") as f:
        json.dump({"bruteforce": brute}, f)
    print(f"{path}: {len(lines)} lines; {path}.truth: the {len(brute)} brute-forcing sources", file=sys.stderr)


def fw(t, src, port, rng):
    return (f"{stamp(t)} kern.warn kernel: [{int(t) + 1000}.000000] reject wan in: IN=eth1 OUT= "
            f"MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC={src} DST=203.0.113.1 LEN=44 TOS=0x00 "
            f"PREC=0x00 TTL=240 ID={rng.randint(1, 65535)} PROTO=TCP SPT={rng.randint(1024, 65535)} "
            f"DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0")


def table(path, edge):
    out = subprocess.run([edge, "replay", path, "--json"], check=True, capture_output=True, text=True).stdout
    truth = set(json.load(open(path + ".truth"))["bruteforce"])
    new = collections.defaultdict(collections.Counter)
    updates = collections.Counter()
    named = set()
    for line in out.splitlines():
        f = json.loads(line)
        day = (datetime.datetime.fromtimestamp(f["first_ms"] / 1000, datetime.timezone.utc) - START).days + 1
        # Edges before `stage` wrote `"update": true|false`.
        stage = f.get("stage") or ("update" if f.get("update") else "new")
        if stage == "new":
            new[f["kind"]][day] += 1
            if f["kind"] == "ssh.bruteforce":
                named.add(f.get("src_ip"))
        else:
            updates[f["kind"]] += 1
    days = range(1, 8)
    print(f"new findings per day (day 1 = {START:%a %Y-%m-%d}), and updates over the week")
    print(f"{'kind':30}" + "".join(f"{'d' + str(d):>7}" for d in days) + f"{'updates':>9}")
    for kind in sorted(new.keys() | updates.keys()):
        print(f"{kind:30}" + "".join(f"{new[kind][d]:7}" for d in days) + f"{updates[kind]:9}")
    print(f"ssh.bruteforce: {len(truth & named)} of {len(truth)} brute-forcing sources named, "
          f"{len(named - truth)} others named")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
