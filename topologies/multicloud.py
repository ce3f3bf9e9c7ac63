"""multicloud: N sites, each a switched fabric behind an edge router, joined pair by pair.

Every site ``<site>`` has a switch ``<site>-s``, an edge router ``<site>-r``
and hosts ``<site>-h1`` .. ``<site>-hN`` on its own fabric link profile
``fabric-<site>`` (preset ``site-fabric``; the hosts carry the site's GPU type
as node info ``gpu``). Each pair of sites ``a-b`` (in the order of ``sites``)
gets a path type in ``paths``:

* ``direct``: one router-to-router link ``a-b`` (preset ``direct-interconnect``);
* ``transit``: ``transit_hops`` transit routers ``t<k>-<i>`` chained by links
  ``a-b-transit`` (preset ``internet-transit`` per hop);
* ``vpn``: one link ``a-b`` with the ``vpn-tunnel`` preset (lower rate, the
  tunnel's per-packet overhead in a smaller MTU);
* ``direct+transit``: both, the direct link preferred by routing and the
  transit chain left as the backup a failover event switches to;
* ``none``: no path; traffic between the two sites is routed through another
  site (shortest path over the routers).

Pairs not named in ``paths`` are ``transit``. Example::

    testbed up multicloud --name mc --set 'sites=[cw, gcp, aws]' \\
        --set 'paths={cw-gcp: direct, cw-aws: transit, gcp-aws: none}'

Also a plain Mininet topology: ``mn --custom topologies/multicloud.py --topo multicloud``.
"""

import re

from mininet.topo import Topo

PATH_TYPES = ("direct", "transit", "vpn", "direct+transit", "none")
GPU_TYPES = ("H100", "A100", "L40S", "V100", "T4")
SITE_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")  # "<site>-h99" fits a 9-character node name (fewer for more hosts)
PRESET = {"direct": "direct-interconnect", "vpn": "vpn-tunnel"}
MAX_HOSTS_PER_SITE = 999  # one site switch: a Linux bridge takes at most 1023 ports


def _count(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def pair_names(sites):
    """Every site pair as ``a-b``, in the order of ``sites``."""
    return [f"{a}-{b}" for i, a in enumerate(sites) for b in sites[i + 1:]]


def check_sites(sites):
    if isinstance(sites, str) or not isinstance(sites, (list, tuple)):
        raise ValueError("sites must be a list of site names, e.g. [cw, gcp, aws]")
    sites = list(sites)
    if not 2 <= len(sites) <= 8:
        raise ValueError("sites must name 2 to 8 sites")
    for site in sites:
        if not isinstance(site, str) or not SITE_RE.match(site):
            raise ValueError(f"sites: {site!r} must be 1-6 characters of a-z and 0-9, starting with a letter")
    if len(set(sites)) != len(sites):
        raise ValueError("sites must be different")
    return sites


def _per_site(value, sites, name, check, default):
    """A value for every site from one value or a {site: value} mapping."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(sites))
        if unknown:
            raise ValueError(f"{name}: {unknown[0]!r} is not one of the sites ({', '.join(sites)})")
        out = {site: value.get(site, default) for site in sites}
    else:
        out = {site: value for site in sites}
    for site, item in out.items():
        check(site, item)
    return out


def check_paths(paths, sites):
    """{pair: path type} for every pair; pairs may be written either way round."""
    if paths is None:
        paths = {}
    if not isinstance(paths, dict):
        raise ValueError("paths must map site pairs to a path type, e.g. {cw-gcp: direct}")
    pairs = pair_names(sites)
    out = {pair: "transit" for pair in pairs}
    for key, kind in paths.items():
        a, _, b = str(key).partition("-")
        pair = f"{a}-{b}" if f"{a}-{b}" in out else f"{b}-{a}"
        if pair not in out:
            raise ValueError(f"paths: {key!r} is not a pair of the sites (pairs: {', '.join(pairs)})")
        if kind not in PATH_TYPES:
            raise ValueError(f"paths: {key}: path type must be one of {', '.join(PATH_TYPES)}, not {kind!r}")
        out[pair] = kind
    return out


def check_connected(sites, paths):
    """Every site must reach every other over some chain of paths."""
    reach, todo = {sites[0]}, [sites[0]]
    while todo:
        cur = todo.pop()
        for pair, kind in paths.items():
            a, b = pair.split("-")
            if kind != "none" and cur in (a, b):
                other = b if cur == a else a
                if other not in reach:
                    reach.add(other)
                    todo.append(other)
    cut = [s for s in sites if s not in reach]
    if cut:
        raise ValueError(f"paths: site {cut[0]!r} has no path to {sites[0]!r} (all its pairs are none)")


class MultiCloudTopo(Topo):
    """sites, each hosts -- switch -- edge router; site pairs joined by direct, transit, vpn or none"""

    def build(self, sites=("cw", "gcp", "aws"), hosts_per_site=2, paths=None, transit_hops=3, gpus="H100"):
        sites = check_sites(sites)

        def check_hosts(site, n):
            if not _count(n, 1, MAX_HOSTS_PER_SITE):
                raise ValueError(f"hosts_per_site: {site}: must be an integer from 1 to {MAX_HOSTS_PER_SITE}")

        def check_gpu(site, gpu):
            if gpu not in GPU_TYPES:
                raise ValueError(f"gpus: {site}: GPU type must be one of {', '.join(GPU_TYPES)}, not {gpu!r}")

        hosts = _per_site(hosts_per_site, sites, "hosts_per_site", check_hosts, 2)
        gpu = _per_site(gpus, sites, "gpus", check_gpu, "H100")
        if not _count(transit_hops, 1, 8):
            raise ValueError("transit_hops must be an integer from 1 to 8")
        kinds = check_paths(paths, sites)
        check_connected(sites, kinds)
        edge = {}
        for site in sites:
            switch = self.addSwitch(f"{site}-s", site=site)
            edge[site] = self.addHost(f"{site}-r", role="router", site=site)
            fabric = f"fabric-{site}"
            self.addLink(edge[site], switch, link=fabric, profile="site-fabric")
            for i in range(1, hosts[site] + 1):
                host = self.addHost(f"{site}-h{i}", site=site, gpu=gpu[site])
                self.addLink(host, switch, link=fabric, profile="site-fabric")
        for k, (pair, kind) in enumerate(kinds.items(), start=1):
            a, b = pair.split("-")
            if kind in ("direct", "vpn", "direct+transit"):
                preset = PRESET["vpn" if kind == "vpn" else "direct"]
                self.addLink(edge[a], edge[b], link=pair, profile=preset, path=kind)
            if kind in ("transit", "direct+transit"):
                previous = edge[a]
                for i in range(1, transit_hops + 1):
                    router = self.addHost(f"t{k}-{i}", role="router", site="transit")
                    self.addLink(previous, router, link=f"{pair}-transit", profile="internet-transit",
                                 path="transit")
                    previous = router
                self.addLink(previous, edge[b], link=f"{pair}-transit", profile="internet-transit",
                             path="transit")


topos = {"multicloud": MultiCloudTopo}
