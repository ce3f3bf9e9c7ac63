"""star: ``hosts`` hosts on one switch -- for scale tests and single-site collectives.

Every host link is named ``fabric`` (default preset ``site-fabric``: unshaped,
jumbo frames); give it a profile to shape them all.

A Linux bridge takes at most 1023 ports, so above ``PORTS_PER_SWITCH`` hosts
the hosts are spread over leaf switches ``s1``, ``s2``, ... (up to
``PORTS_PER_SWITCH`` hosts each) joined by a spine switch ``s0`` with links
named ``spine`` (unshaped): still one layer-2 segment, one subnet.

Also a plain Mininet topology: ``mn --custom topologies/star.py --topo star,hosts=8``.
"""

from mininet.topo import Topo

PORTS_PER_SWITCH = 1000
MAX_HOSTS = 4096


class StarTopo(Topo):
    """h1 ... hN -- s1 (or leaf switches s1..sK under a spine s0)"""

    def build(self, hosts=4):
        if not isinstance(hosts, int) or isinstance(hosts, bool) or not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"hosts must be an integer from 1 to {MAX_HOSTS} "
                             f"(above {PORTS_PER_SWITCH}, leaf switches under a spine)")
        leaves = (hosts + PORTS_PER_SWITCH - 1) // PORTS_PER_SWITCH
        switches = [self.addSwitch(f"s{k}", site="site") for k in range(1, leaves + 1)]
        if leaves > 1:
            spine = self.addSwitch("s0", site="site")
            for leaf in switches:
                self.addLink(leaf, spine, link="spine", profile="site-fabric")
        for i in range(1, hosts + 1):
            host = self.addHost(f"h{i}", site="site")
            self.addLink(host, switches[(i - 1) // PORTS_PER_SWITCH], link="fabric", profile="site-fabric")


topos = {"star": StarTopo}
