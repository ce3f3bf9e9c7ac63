"""star: ``hosts`` hosts on one switch -- for scale tests and single-site collectives.

Every host link is named ``fabric`` (default preset ``site-fabric``: unshaped,
jumbo frames); give it a profile to shape them all.

Also a plain Mininet topology: ``mn --custom topologies/star.py --topo star,hosts=8``.
"""

from mininet.topo import Topo


class StarTopo(Topo):
    """h1 ... hN -- s1"""

    def build(self, hosts=4):
        if not isinstance(hosts, int) or isinstance(hosts, bool) or not 1 <= hosts <= 1023:
            raise ValueError("hosts must be an integer from 1 to 1023 (a Linux bridge takes at most 1023 ports)")
        switch = self.addSwitch("s1", site="site")
        for i in range(1, hosts + 1):
            host = self.addHost(f"h{i}", site="site")
            self.addLink(host, switch, link="fabric", profile="site-fabric")


topos = {"star": StarTopo}
