"""two-clouds: two sites joined by a direct interconnect or by internet transit.

Each site has ``hosts_per_site`` GPU hosts on a site fabric (a switch whose
links use the ``site-fabric`` profile) behind an edge router ``<site>-r1``.
The sites are joined either

* ``path="direct"``: one router-to-router link with the ``direct`` profile
  (preset ``direct-interconnect``, MTU 9000 end to end), or
* ``path="transit"``: a chain of ``transit_hops`` transit routers
  (``tr1`` ... ``trN``: provider edge, transit AS, ..., provider edge), every
  hop a link with its own ``transit-hop`` profile (preset ``internet-transit``,
  MTU 1500, so path-MTU discovery matters).

Site names are short ids (they prefix node names, and interface names must
fit 15 characters): ``cw`` (CoreWeave) and ``gcp`` (Google Cloud) by default.

Also a plain Mininet topology:
``mn --custom topologies/two_clouds.py --topo two-clouds,path=transit``.
"""

from mininet.topo import Topo

PATHS = ("direct", "transit")
MAX_HOSTS_PER_SITE = 999


def _count(value, low, high):
    """An int in [low, high]; YAML's true/false are not counts."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class TwoCloudsTopo(Topo):
    """site A hosts -- switch -- edge router == direct | transit == edge router -- switch -- site B hosts"""

    def build(self, hosts_per_site=1, path="direct", transit_hops=4, sites=("cw", "gcp")):
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
        if not _count(hosts_per_site, 1, MAX_HOSTS_PER_SITE):
            raise ValueError(f"hosts_per_site must be an integer from 1 to {MAX_HOSTS_PER_SITE} "
                             "(one site switch: a Linux bridge takes at most 1023 ports)")
        if not _count(transit_hops, 1, 16):
            raise ValueError("transit_hops must be an integer from 1 to 16")
        if isinstance(sites, str) or not isinstance(sites, (list, tuple)):
            raise ValueError("sites must be a list of two short site names, e.g. [cw, gcp]")
        sites = list(sites)
        if len(sites) != 2 or len(set(sites)) != 2 or not all(isinstance(s, str) for s in sites):
            raise ValueError("sites must name exactly two different sites")
        edges = []
        for site in sites:
            switch = self.addSwitch(f"{site}-s1", site=site)
            router = self.addHost(f"{site}-r1", role="router", site=site)
            self.addLink(router, switch, link="site-fabric", profile="site-fabric")
            for i in range(1, hosts_per_site + 1):
                host = self.addHost(f"{site}-h{i}", site=site)
                self.addLink(host, switch, link="site-fabric", profile="site-fabric")
            edges.append(router)
        if path == "direct":
            self.addLink(edges[0], edges[1], link="direct", profile="direct-interconnect")
            return
        previous = edges[0]
        for i in range(1, transit_hops + 1):
            router = self.addHost(f"tr{i}", role="router", site="transit")
            self.addLink(previous, router, link="transit-hop", profile="internet-transit")
            previous = router
        self.addLink(previous, edges[1], link="transit-hop", profile="internet-transit")


topos = {"two-clouds": TwoCloudsTopo}
